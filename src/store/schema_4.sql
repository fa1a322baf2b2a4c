-- Migration 4: messages the server left out of a FETCH answer (a body or a
-- size it did not send, though UID SEARCH lists the message). The mailbox
-- position moves past them, so later mail is not held up, and each is asked
-- for again on every pass until it is filed or gone from the mailbox.

CREATE TABLE left_out (
    mailbox     TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    tries       INTEGER NOT NULL,          -- passes that asked and got nothing
    first_at    INTEGER NOT NULL,          -- unix seconds
    last_at     INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uidvalidity, uid)
) WITHOUT ROWID;

-- Mail filed from a mailbox that is still to be flagged \Seen or moved
-- (imap.mark_seen, imap.move_to): written in the transaction that files
-- it, deleted once the server has done it, so a crash in between only
-- means doing it again.
CREATE TABLE after_filing (
    mailbox     TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uidvalidity, uid)
) WITHOUT ROWID;
