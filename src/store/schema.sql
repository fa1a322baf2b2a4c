-- Migration 1: tickets, their messages and attachments, the outbox of mail
-- to send, and how far each mailbox has been read.

CREATE TABLE tickets (
    id             INTEGER PRIMARY KEY,        -- WN-000001 is 1
    status         TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    subject        TEXT NOT NULL,
    requester      TEXT NOT NULL,              -- lower-cased address
    requester_name TEXT,
    language       TEXT NOT NULL,
    created_at     INTEGER NOT NULL,           -- unix seconds, UTC
    updated_at     INTEGER NOT NULL,
    due_at         INTEGER,                    -- response promised by
    issue_type     TEXT NOT NULL DEFAULT 'general',
    category       TEXT,
    closed_at      INTEGER,
    responded_at   INTEGER                     -- first agent reply: the clock stops
);
CREATE INDEX tickets_updated ON tickets(updated_at);

CREATE TABLE participants (
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    address   TEXT NOT NULL,
    PRIMARY KEY (ticket_id, address)
) WITHOUT ROWID;

CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    ticket_id    INTEGER REFERENCES tickets(id),   -- NULL: stored, not filed
    message_id   TEXT NOT NULL UNIQUE,             -- Message-ID, or sha256:<sha256 of the raw bytes>
    direction    TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    kind         TEXT NOT NULL,                    -- human, autoreply, ..., ack
    from_addr    TEXT,
    from_name    TEXT,
    subject      TEXT NOT NULL,
    date_header  INTEGER,
    received_at  INTEGER NOT NULL,
    in_reply_to  TEXT,                             -- space-separated ids
    refs         TEXT,
    text_body    TEXT NOT NULL,                    -- the whole text part
    new_text     TEXT NOT NULL,                    -- without quoted history
    html_body    TEXT,
    issue_type   TEXT,
    raw_sha256   TEXT NOT NULL,                    -- blob name of the raw bytes: parse::raw_name (sha256 in older rows)
    raw_size     INTEGER NOT NULL,
    language     TEXT,
    mailbox      TEXT,
    uid          INTEGER,
    problems     TEXT,                             -- what could not be decoded
    ack_skip     TEXT                              -- why no ack was sent, if none
);
CREATE INDEX messages_ticket ON messages(ticket_id, received_at);

CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY,
    message      INTEGER NOT NULL REFERENCES messages(id),
    sha256       TEXT NOT NULL,
    filename     TEXT,                             -- metadata only, never a path
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_id   TEXT
);
CREATE INDEX attachments_message ON attachments(message);
CREATE INDEX attachments_sha ON attachments(sha256);

-- What was read out of each message (order, shipment, username,
-- account_email, category, purchase_date, delivery_date), for search by
-- exact identifier and for what the ticket knows.
CREATE TABLE facts (
    id        INTEGER PRIMARY KEY,                 -- keeps the order found
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    message   INTEGER NOT NULL REFERENCES messages(id),
    kind      TEXT NOT NULL,
    value     TEXT NOT NULL,
    UNIQUE (message, kind, value)
);
CREATE INDEX facts_lookup ON facts(kind, value);
CREATE INDEX facts_ticket ON facts(ticket_id, kind);

CREATE VIRTUAL TABLE messages_fts USING fts5(
    subject, body, tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    ticket_id       INTEGER NOT NULL REFERENCES tickets(id),
    cause           INTEGER REFERENCES messages(id),  -- the mail this answers
    message_id      TEXT NOT NULL UNIQUE,             -- fixed at enqueue time
    envelope_from   TEXT NOT NULL,
    envelope_to     TEXT NOT NULL,
    raw             BLOB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed', 'bounced')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_cause ON outbox(cause);
CREATE INDEX outbox_recipient ON outbox(envelope_to, created_at);

CREATE TABLE mailbox_positions (
    mailbox     TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL
);
