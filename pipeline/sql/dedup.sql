-- R1 Dedup: records with the same event_id are one record.
--
-- Input : parsed (this batch, from parse.sql), stored_keys and stored_twins (what was
--         ingested before with the same keys, see below).
-- Output: every valid record of the batch with a verdict, and its lookup keys:
--   new                 first time this event_id is seen: it is accepted
--   duplicate           the same record again (same content hash): changes nothing. The
--                       hash is of the canonical content (parse.sql): key order, whitespace
--                       and string escapes do not count. Attempts stored before that (their
--                       hash is of the minified line, key order counting) also match a
--                       record whose minified line hashes the same: equal text, equal content.
--   duplicate_conflict  same event_id, different content: quarantined; the first one stands
-- "First" is: ingested in an earlier run; within this batch, files in name order
-- (file_order), then lines in file order. (file_order, line_no) is unique within a batch, so
-- "first" is a total order (SPEC E4).
--
-- Cost (docs/performance.md): nearly every record is new, so only the few that are not are
-- looked at closely. `special` = records whose event_id repeats within the batch or is
-- already stored; the history is searched by attempt_keys.event_key (8 bytes a row,
-- migrations 006 and 025): pipeline/ingest/apply.py fills stored_keys (the matching keys and
-- their runs) and stored_twins (those runs' attempts with a matching key, read from their
-- lake files) before this runs, and they are compared by event_id, so a hash collision
-- never changes a verdict. Everything else is `new` without a sort or a wide join.
--
-- The first record of each special event_id is found by aggregation (arg_min over the
-- (file_order, line_no) key), not by a window over the records: a file of ten million copies
-- of one line is then one small group, not a ten-million-row partition to sort, and DuckDB's
-- aggregate and joins spill to disk under a memory limit (docs/reliability.md).
WITH valid AS (
    SELECT file_order, line_no, event_id, content_sha256, source_file, hash(event_id) AS event_key
    FROM parsed
    WHERE problem IS NULL
),
repeated AS MATERIALIZED (
    SELECT event_key FROM valid GROUP BY event_key HAVING count(*) > 1
),
stored_key_set AS MATERIALIZED (
    SELECT DISTINCT event_key FROM stored_keys
),
special AS (
    SELECT event_id, file_order, line_no, content_sha256, source_file
    FROM valid
    WHERE event_key IN (SELECT event_key FROM repeated) OR event_key IN (SELECT event_key FROM stored_key_set)
),
firsts AS (
    SELECT event_id,
           min({'file_order': file_order, 'line_no': line_no}) AS first_key,
           arg_min(content_sha256, {'file_order': file_order, 'line_no': line_no}) AS batch_first_sha256,
           arg_min(source_file, {'file_order': file_order, 'line_no': line_no}) AS batch_first_file
    FROM special
    GROUP BY event_id
),
-- Stored digests are compared by their first 16 hex digits (64 bits): what attempts store
-- since migration 047 (rows stored before hold 32 or all 64; a prefix of them compares the
-- same way). A match of two different contents under one event_id is a 2^-64 chance, and it
-- would only make the later record a duplicate instead of a duplicate_conflict: either way
-- the first stands, so nothing billed depends on the digest's length.
stored AS (
    SELECT event_id, left(content_sha256, 16) AS content_digest, source_file, source_line FROM stored_twins
),
-- the minified-line hash, only of records whose stored twin has another hash (rare)
legacy AS (
    SELECT p.file_order, p.line_no,
           sha256(CASE WHEN strlen(l.line) <= 1048576 THEN CAST(json(CASE WHEN p.surrogates_replaced
               THEN repair_lone_surrogates(l.line, '\\ufffd') ELSE l.line END) AS VARCHAR) ELSE l.line END) AS legacy_sha256
    FROM parsed p
    JOIN stored s ON s.event_id = p.event_id
    JOIN staged_lines l ON l.file_order = p.file_order AND l.line_no = p.line_no
    WHERE p.problem IS NULL AND s.content_digest <> left(p.content_sha256, 16)
)
SELECT p.*,
       hash(p.event_id) AS event_key,
       hash(p.account_id, p.request_id) AS request_key,
       CASE
           WHEN s.event_id IS NOT NULL AND s.content_digest IN (left(p.content_sha256, 16), left(g.legacy_sha256, 16))
               THEN 'duplicate'
           WHEN s.event_id IS NOT NULL THEN 'duplicate_conflict'
           WHEN f.event_id IS NULL THEN 'new'  -- not special: seen once, nowhere stored
           WHEN f.first_key = {'file_order': p.file_order, 'line_no': p.line_no} THEN 'new'
           WHEN p.content_sha256 = f.batch_first_sha256 THEN 'duplicate'
           ELSE 'duplicate_conflict'
       END AS verdict,
       coalesce(s.source_file, f.batch_first_file, p.source_file) AS first_file,
       coalesce(s.source_line, f.first_key.line_no, p.line_no) AS first_line
FROM parsed p
LEFT JOIN firsts f ON f.event_id = p.event_id
LEFT JOIN stored s ON s.event_id = p.event_id
LEFT JOIN legacy g ON g.file_order = p.file_order AND g.line_no = p.line_no
WHERE p.problem IS NULL
