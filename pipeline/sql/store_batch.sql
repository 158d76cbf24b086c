-- Store one validated, deduplicated batch (parse.sql -> dedup.sql -> recount).
-- $run_id: the run writing it. Every line ends in exactly one place: attempts (new),
-- nowhere new (an identical duplicate of a stored record), or quarantine. New attempts go
-- to the TEMP table run_attempts, which the run writes to its lake file before it commits
-- (core/attempt_store.py), and their lookup keys to attempt_keys. new_attempts, a TEMP VIEW
-- (pipeline/ingest/apply.py): the records dedup found new, with their R5 counts; on the
-- Spark path also the valid rows of the executors' parts the driver did not load (new by
-- dedup's own rule: neither repeated in the batch nor stored).
-- Free-text fields are stored with API keys masked (ids that carry one never get here:
-- parse.sql quarantines them, because a masked id would merge distinct records).

INSERT INTO run_attempts
SELECT d.event_id, d.request_id, d.attempt, d.ts, d.ts_text, d.duration_ms,
       d.account_id, mask_secrets(d.api_key_id), mask_secrets(d.group_name), mask_secrets(d.endpoint),
       d.model, mask_secrets(d.provider),
       d.status, mask_secrets(d.error_code), d.stream, mask_secrets(d.finish_reason),
       d.has_usage, d.usage_json, d.prompt_tokens, d.completion_tokens,
       d.cached_tokens, d.reasoning_tokens, d.image_tokens,
       d.has_messages, d.output_text_chars,
       d.est_input_tokens, d.est_output_tokens, d.est_tokenizer,
       d.upstream_cost_usd, left(d.content_sha256, 32),  -- 128 bits of it (migration 026)
       d.source_file, d.source_sha256, d.line_no, $run_id, d.event_key, d.request_key
FROM new_attempts d;

INSERT INTO attempt_keys
SELECT event_key, request_key, $run_id FROM new_attempts;

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
