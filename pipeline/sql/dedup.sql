-- R1 Dedup: records with the same event_id are one record.
--
-- Input : parsed (this batch, from parse.sql), attempts (everything ingested before).
-- Output: every valid record of the batch with a verdict:
--   new                 first time this event_id is seen: it is accepted
--   duplicate           the same record again (same content hash): changes nothing
--   duplicate_conflict  same event_id, different content: quarantined; the first one stands
-- "First" is: ingested in an earlier run; within this batch, files in name order
-- (file_order), then lines in file order. The ORDER BY is total: (file_order, line_no) is
-- unique within a batch (SPEC E4).
WITH valid AS (
    SELECT * FROM parsed WHERE problem IS NULL
),
ordered AS (
    SELECT v.*,
           row_number() OVER (PARTITION BY event_id ORDER BY file_order, line_no) AS batch_seq,
           first_value(content_sha256) OVER (PARTITION BY event_id ORDER BY file_order, line_no) AS batch_first_sha256,
           first_value(source_file) OVER (PARTITION BY event_id ORDER BY file_order, line_no) AS batch_first_file,
           first_value(line_no) OVER (PARTITION BY event_id ORDER BY file_order, line_no) AS batch_first_line
    FROM valid v
),
stored AS (
    SELECT a.event_id, a.content_sha256, a.source_file, a.source_line
    FROM attempts a
    WHERE a.event_id IN (SELECT event_id FROM valid)
)
SELECT o.*,
       CASE
           WHEN s.event_id IS NOT NULL AND s.content_sha256 = o.content_sha256 THEN 'duplicate'
           WHEN s.event_id IS NOT NULL THEN 'duplicate_conflict'
           WHEN o.batch_seq = 1 THEN 'new'
           WHEN o.content_sha256 = o.batch_first_sha256 THEN 'duplicate'
           ELSE 'duplicate_conflict'
       END AS verdict,
       coalesce(s.source_file, o.batch_first_file) AS first_file,
       coalesce(s.source_line, o.batch_first_line) AS first_line
FROM ordered o
LEFT JOIN stored s ON s.event_id = o.event_id
