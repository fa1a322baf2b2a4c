-- Migration 6: the text of mails attached whole (message/rfc822: "forward
-- as attachment", a shop's mail passed on), shown under the message that
-- carried them. NULL for none, and for mail filed before this migration.

ALTER TABLE messages ADD COLUMN attached_text TEXT;
