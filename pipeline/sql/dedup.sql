-- R1 Dedup: records with the same event_id are one record.
--
-- Input : parsed (this batch, from parse.sql), attempts (everything ingested before).
-- Output: every valid record of the batch with a verdict:
--   new                 first time this event_id is seen: it is accepted
--   duplicate           the same record again (same content hash): changes nothing
--   duplicate_conflict  same event_id, different content: quarantined; the first one stands
-- "First" is: ingested in an earlier run; within this batch, files in name order
-- (file_order), then lines in file order. (file_order, line_no) is unique within a batch, so
-- "first" is a total order (SPEC E4).
--
-- The first record of each event_id is found by aggregation (arg_min over that key) and
-- joined back, not by window functions over the whole records: a file of ten million copies
-- of one line is then one small group, not a ten-million-row partition to sort with every
-- column in it, and DuckDB's aggregate and join spill to disk under a memory limit.
WITH valid AS (
    SELECT * FROM parsed WHERE problem IS NULL
),
firsts AS (
    SELECT event_id,
           min({'file_order': file_order, 'line_no': line_no}) AS first_key,
           arg_min(content_sha256, {'file_order': file_order, 'line_no': line_no}) AS batch_first_sha256,
           arg_min(source_file, {'file_order': file_order, 'line_no': line_no}) AS batch_first_file
    FROM valid
    GROUP BY event_id
),
stored AS (
    SELECT a.event_id, a.content_sha256, a.source_file, a.source_line
    FROM attempts a
    WHERE a.event_id IN (SELECT event_id FROM firsts)
)
SELECT v.*,
       CASE
           WHEN s.event_id IS NOT NULL AND s.content_sha256 = v.content_sha256 THEN 'duplicate'
           WHEN s.event_id IS NOT NULL THEN 'duplicate_conflict'
           WHEN f.first_key = {'file_order': v.file_order, 'line_no': v.line_no} THEN 'new'
           WHEN v.content_sha256 = f.batch_first_sha256 THEN 'duplicate'
           ELSE 'duplicate_conflict'
       END AS verdict,
       coalesce(s.source_file, f.batch_first_file) AS first_file,
       coalesce(s.source_line, f.first_key.line_no) AS first_line
FROM valid v
JOIN firsts f USING (event_id)
LEFT JOIN stored s ON s.event_id = v.event_id
