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
--
-- Cost (docs/performance.md): nearly every record is new, so only the few that are not are
-- looked at closely. `special` = records whose event_id repeats within the batch or is
-- already stored; the history is searched by attempts.event_key (8 bytes a row, migration
-- 006), stored rows are read only for matching keys and compared by event_id, so a hash
-- collision never changes a verdict. Everything else is `new` without a sort or a wide join.
-- redacted_record is only kept where the quarantine needs it (a duplicate_conflict).
WITH valid AS (
    SELECT file_order, line_no, event_id, content_sha256, source_file, hash(event_id) AS event_key
    FROM parsed
    WHERE problem IS NULL
),
repeated AS (
    SELECT event_key FROM valid GROUP BY event_key HAVING count(*) > 1
),
stored_keys AS (
    SELECT DISTINCT event_key FROM attempts WHERE event_key IN (SELECT event_key FROM valid)
),
special AS (
    SELECT * FROM valid
    WHERE event_key IN (SELECT event_key FROM repeated) OR event_key IN (SELECT event_key FROM stored_keys)
),
ordered AS (
    SELECT file_order, line_no, event_id, content_sha256,
           row_number() OVER w AS batch_seq,
           first_value(content_sha256) OVER w AS batch_first_sha256,
           first_value(source_file) OVER w AS batch_first_file,
           first_value(line_no) OVER w AS batch_first_line
    FROM special
    WINDOW w AS (PARTITION BY event_id ORDER BY file_order, line_no)
),
stored AS (
    SELECT a.event_id, a.content_sha256, a.source_file, a.source_line
    FROM attempts a
    WHERE a.event_key IN (SELECT event_key FROM stored_keys)
),
judged AS (
    SELECT o.file_order, o.line_no,
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
)
SELECT p.* REPLACE (CASE WHEN j.verdict = 'duplicate_conflict' THEN p.redacted_record END AS redacted_record),
       hash(p.event_id) AS event_key, hash(p.account_id, p.request_id) AS request_key,
       coalesce(j.verdict, 'new') AS verdict,
       coalesce(j.first_file, p.source_file) AS first_file,
       coalesce(j.first_line, p.line_no) AS first_line
FROM parsed p
LEFT JOIN judged j ON j.file_order = p.file_order AND j.line_no = p.line_no
WHERE p.problem IS NULL
