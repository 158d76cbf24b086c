-- Store one validated, deduplicated batch (parse.sql -> dedup.sql -> recount).
-- $run_id: the run writing it. Every line ends in exactly one place: attempts (new),
-- nowhere new (an identical duplicate of a stored record), or quarantine. New attempts go
-- to the TEMP table run_attempts, which the run writes to its lake file before it commits
-- (core/attempt_store.py), and their lookup keys to run_attempt_keys (written to the run's
-- attempt_keys lake file with them, migration 045). new_attempts, a TEMP VIEW
-- (pipeline/ingest/apply.py): the records dedup found new, with their R5 counts;
-- stored_new_attempts: their stored columns (stored_attempts.sql). On the Spark path the
-- valid rows of the executors' parts the driver did not load (new by dedup's own rule:
-- neither repeated in the batch nor stored, or the first of a repeat that Spark's probe
-- decided; the duplicates it decided are stored by nobody) are not here: apply.py writes
-- them straight from the parts into the run's lake file, with the same stored_attempts.sql.
INSERT INTO run_attempts BY NAME
SELECT *, $run_id AS run_id FROM stored_new_attempts;

INSERT INTO run_attempt_keys
SELECT event_key, request_key, $run_id FROM new_attempts;

-- when findings: only when the batch has a line to quarantine (apply.py asks first)
INSERT INTO quarantine
SELECT (SELECT coalesce(max(quarantine_id), 0) FROM quarantine)
           + row_number() OVER (ORDER BY q.file_order, q.line_no),
       $run_id, q.source_file, q.source_sha256, q.line_no, mask_secrets(bounded_excerpt(mask_secrets(q.event_id), 256)),
       q.reason, q.field, mask_secrets(q.message), q.redacted_record, now(), NULL
FROM (
    SELECT file_order, line_no, source_file, source_sha256, event_id,
           problem.reason AS reason, problem.field AS field, problem.message AS message,
           redacted_record
    FROM parsed
    WHERE problem IS NOT NULL
    UNION ALL
    SELECT d.file_order, d.line_no, d.source_file, d.source_sha256, d.event_id,
           'duplicate_conflict', 'event_id',
           'field event_id: ' || left(mask_secrets(d.event_id), 80) || ' was already ingested with different content (first at '
               || d.first_file || ':' || d.first_line || '); the first record stands',
           redacted_json_record(CASE WHEN d.surrogates_replaced THEN repair_lone_surrogates(s.line, '\\ufffd') ELSE s.line END)
    FROM deduped d
    JOIN staged_lines s USING (file_order, line_no)
    WHERE d.verdict = 'duplicate_conflict'
) q;

-- A fixed record, re-ingested and accepted, resolves the quarantine entries it replaces.
UPDATE quarantine SET resolved_run_id = $run_id
WHERE resolved_run_id IS NULL
  AND reason <> 'duplicate_conflict'
  AND event_id IN (SELECT event_id FROM deduped WHERE verdict = 'new');
