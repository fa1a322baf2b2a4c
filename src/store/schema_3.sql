-- Migration 3: an outbox item is given up after MAX_ATTEMPTS failures of
-- the message itself (the server answered, and not with success). Rounds
-- in which the server could not be reached still count in `attempts` (for
-- the backoff) but not here, so a long outage does not use them up.

ALTER TABLE outbox ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
