-- Migration 2: small blobs (most mails' raw bytes, small attachments) live
-- in the database, written in the same transaction as the rows naming
-- them: one file and one filesystem sync fewer per message. Larger ones
-- stay files under blobs/.

CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    data   BLOB NOT NULL
);
