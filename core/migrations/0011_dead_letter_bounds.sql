-- Dead letters keep at most the head of an oversized payload, with the whole payload's
-- size and SHA-256, and are deleted after a retention (ioc_maintain's caller decides).
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS payload_size integer;   -- bytes of the whole payload
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS payload_sha256 text;    -- hex SHA-256 of the whole payload
