-- Migration 7: mail deleted on request (`ticketd delete`). The mailbox
-- still holds it (ticketd never deletes there), so a rescan would file it
-- again; only a hash of each message's key and sender is kept to say no.

CREATE TABLE deleted_mail (
    key_sha256 TEXT PRIMARY KEY,              -- sha256 of "<message key>\n<sender>"
    deleted_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Deleting a ticket looks up its outbox rows (and the foreign key check
-- does, for each ticket).
CREATE INDEX outbox_ticket ON outbox(ticket_id);

-- The highest ticket number given out before tickets were deleted: new
-- tickets are numbered past it, so no number is given out twice (a buyer
-- may still hold a deleted ticket's number in an ack).
CREATE TABLE ticket_high_water (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
