-- 047: attempts keep the first 64 bits of their content digest (issue 14 item 3). The 32 hex
-- digits of migration 026 were 16.6 of the ~40 bytes a stored attempt costs in its lake file
-- (random digits do not compress). The digest only decides whether a re-sent event_id is a
-- duplicate (same content) or a duplicate_conflict (other content); in both cases the first
-- record stands and the later one is not billed, so a match of two different contents (a
-- 2^-64 chance per re-sent record, adversarial or not) would only leave a conflict out of the
-- quarantine, never change a charge. Dedup compares the first 16 digits, so rows stored
-- before (32 or 64 digits) compare the same way. Nothing is rewritten.
COMMENT ON COLUMN attempts_before_lake.content_sha256 IS 'The first 16 hex digits (64 bits) of the sha256 of the record''s canonical content (keys sorted, escapes decoded, whitespace dropped; over 1 MiB or deeply nested: the line''s bytes / minified line). A re-sent event_id whose digest differs is a duplicate_conflict; one whose digest matches is a duplicate (either way the first stands). Rows stored before migration 047 hold 32 digits, before migration 026 all 64, before migration 010 the sha256 of the minified line; dedup compares the first 16.';
