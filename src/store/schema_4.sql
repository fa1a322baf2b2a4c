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

