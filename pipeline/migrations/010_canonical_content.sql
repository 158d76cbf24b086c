-- 010: R1 compares the canonical content of a record (parse.sql), not its minified line.
-- Nothing to rewrite: the lines of stored attempts are gone, and dedup.sql still matches a
-- stored minified-line hash against the re-sent line's own minified hash.

COMMENT ON COLUMN attempts.content_sha256 IS 'sha256 of the record''s canonical content (keys sorted, escapes decoded, whitespace dropped; over 1 MiB or deeply nested: the line''s bytes / minified line). A re-sent event_id with other content is a duplicate_conflict. Rows stored before migration 010 hold the sha256 of the minified line.';
