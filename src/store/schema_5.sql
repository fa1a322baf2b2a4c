-- Migration 5: sends that got no answer after the message went out. The
-- server may have delivered each of them, so they are bounded apart from
-- the refusals (`failures`): a relay that always drops the answer reaches
-- the buyer a few times, not once per allowed refusal.

ALTER TABLE outbox ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0;
