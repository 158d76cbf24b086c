-- The columns an attempt is stored with (the table run_attempts and the lake's attempts
-- files; run_id is the run's), from new_attempts: the records to store, with their R5 counts
-- and lookup keys. The TEMP VIEW stored_new_attempts of store_batch.sql (dedup's new records,
-- pipeline/ingest/apply.py), and on the Spark path also the query that writes the parts'
-- other valid rows straight into the run's lake file (core/attempt_store.py store_run_rows).
-- Free-text fields are stored with API keys masked (ids that carry one never get here:
-- parse.sql quarantines them, because a masked id would merge distinct records).
SELECT d.event_id, d.request_id, d.attempt, d.ts, d.ts_text, d.duration_ms,
       d.account_id, mask_secrets(d.api_key_id) AS api_key_id, mask_secrets(d.group_name) AS group_name,
       mask_secrets(d.endpoint) AS endpoint, d.model, mask_secrets(d.provider) AS provider,
       d.status, mask_secrets(d.error_code) AS error_code, d.stream, mask_secrets(d.finish_reason) AS finish_reason,
       d.has_usage, d.usage_json, d.prompt_tokens, d.completion_tokens,
       d.cached_tokens, d.reasoning_tokens, d.image_tokens,
       d.has_messages, d.output_text_chars,
       d.est_input_tokens, d.est_output_tokens, d.est_tokenizer,
       d.upstream_cost_usd, left(d.content_sha256, 16) AS content_sha256,  -- 64 bits of it (migration 047)
       d.source_file, d.source_sha256, d.line_no AS source_line, d.event_key, d.request_key
FROM new_attempts d
