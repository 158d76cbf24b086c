-- 026: attempts keep the first 128 bits of their content digest (issue 14 item 3). The full
-- sha256 written as 64 hex digits was 35 of the 77 bytes a stored attempt costs in the lake
-- (random digits do not compress); 32 hex digits still make an accidental match of two
-- different records that share an event_id a 2^-128 event. Dedup compares the first 32 digits,
-- so rows stored before keep their 64 and compare the same way. Nothing is rewritten.
COMMENT ON COLUMN attempts_before_lake.content_sha256 IS 'The first 32 hex digits (128 bits) of the sha256 of the record''s canonical content (keys sorted, escapes decoded, whitespace dropped; over 1 MiB or deeply nested: the line''s bytes / minified line). A re-sent event_id whose digest differs is a duplicate_conflict. Rows stored before migration 026 hold all 64 digits, rows stored before migration 010 the sha256 of the minified line; dedup compares the first 32.';
