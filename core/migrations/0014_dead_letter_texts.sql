-- A dead letter's reason as a catalogue message id and its fields, so that the API, the
-- dashboard and `ioc deadletters tail` show it in the reader's language (Vietnamese or
-- English). `reason` keeps the English sentence: rows written before this column (NULL
-- key) read as they always did, and the `reason` filter still searches it.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS reason_key text;     -- e.g. payload.value.out_of_range
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS reason_fields jsonb; -- the message's fields
