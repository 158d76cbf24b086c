-- Parse and validate raw gateway log lines (SPEC section 1; R4 counts; R8 timestamps; R9).
--
-- Input : parse_input(file_order, source_file, source_sha256, line_no, line, stage_problem),
--         a slice of the TEMP table staged_lines (pipeline/ingest/staging.py runs it over
--         slices of a few MiB of text, as DuckDB's JSON functions hold a vector's worth of
--         parse trees in memory): one row per physical line (line is NULL when empty;
--         stage_problem says why a line could not even be read, e.g. invalid UTF-8).
-- Output: one row per non-blank line with its typed fields. A line that fails a check
--         carries `problem` = {reason, field, message}: the FIRST failing check in the order
--         written below. Types are checked explicitly (SPEC E5): "100", 12.5 and true are not
--         counts, and nothing relies on a reader's implicit casts.
-- Needs the macros mask_secrets, carries_secret, describe_json, describe_json_type (pipeline/redact.py),
-- repair_lone_surrogates, redacted_json_record, json_key_count, finding, finding_described
-- and finding_ts (pipeline/ingest/macros.py).
--
-- Nothing here may quote prompt or output text, or an unmasked API key: messages name the
-- field and the JSON type, values are masked before they are cut to length (a cut key
-- would escape the mask), and `messages`/`output_text` are described by type only.
-- Those two fields (the bulk of a line) are not copied out of the line: their types, the
-- number of messages and the length of the output are read with path functions.
WITH staged AS (
    -- blank = only JSON whitespace (space, tab, CR): not a record, not counted. Only a line
    -- that starts with one of them is trimmed: trim() with a character set costs ~9 us a
    -- line (about a third of parse.sql's CPU when it ran on every line), the CASE guard
    -- ~0.2 us (docs/performance.md, "Parse").
    SELECT file_order, source_file, source_sha256, line_no, line, stage_problem,
           stage_problem IS NULL AND json_valid(line) AS valid_as_is
    FROM parse_input
    WHERE stage_problem IS NOT NULL
       OR (line IS NOT NULL
           AND CASE WHEN ascii(line) IN (32, 9, 13) THEN trim(line, ' ' || chr(9) || chr(13)) <> ''
                    ELSE line <> '' END)
),
-- Lone UTF-16 surrogate escapes ("\ud800" without its low half) are grammatical JSON but not
-- Unicode, and DuckDB's parser refuses them. Gateways emit them when a stream is cut inside
-- an emoji, i.e. in `messages`/`output_text`, which are only ever counted (R5), never stored.
-- Such a line is repaired (each lone escape becomes U+FFFD) and accepted when the lone escapes
-- sit only in those two fields: repairing with two different replacements and dropping the
-- two fields must give the same record. Anywhere else (an id, usage, an unknown field) the
-- record stays a parse_error: replacing a character there would change what is billed or
-- which record it is. See docs/hostile-input.md.
surrogates AS (
    SELECT *,
           CASE WHEN NOT valid_as_is AND stage_problem IS NULL AND NOT contains(line, chr(1))
                     AND regexp_matches(line, '\\u[dD][89a-fA-F][0-9a-fA-F]{2}')
                THEN repair_lone_surrogates(line, '\\ufffd') END AS repaired
    FROM staged
),
surrogates_checked AS (
    SELECT *,
           CASE WHEN repaired IS NOT NULL AND json_valid(repaired) THEN
               CASE WHEN json_type(repaired) <> 'OBJECT' THEN FALSE
                    ELSE json_merge_patch(repaired, '{"messages": null, "output_text": null}')
                         = json_merge_patch(repair_lone_surrogates(line, '\\ufdd0'), '{"messages": null, "output_text": null}')
               END
           END AS text_only_surrogates
    FROM surrogates
),
raw AS (
    SELECT file_order, source_file, source_sha256, line_no,
           CASE WHEN text_only_surrogates THEN repaired ELSE line END AS line,
           coalesce(stage_problem, CASE WHEN text_only_surrogates = FALSE THEN
               'line is not valid JSON: a lone UTF-16 surrogate escape (\ud800-\udfff) outside messages/output_text' END
           ) AS stage_problem,
           coalesce(text_only_surrogates, FALSE) AS surrogates_replaced,
           valid_as_is OR coalesce(text_only_surrogates, FALSE) AS is_json
    FROM surrogates_checked
),
-- One parse answers what the line is and what its text fields are: the root type, the types
-- of messages and output_text, and whether messages has a first element. (Written once:
-- DuckDB hoists a subexpression used twice out of its CASE guards, which would run it on
-- lines that are not JSON and fail the statement. And every JSON function call holds its
-- own parse of the line in memory, so a 50 MB line costs per call.)
-- The same parse also gives the JSON type of every field the canonical form's fast path
-- writes (t[5] on, see `recon` below): json_transform reads null and absent both as NULL.
types AS (
    SELECT *, CASE WHEN is_json THEN json_type(line, ['$', '$.messages', '$.output_text', '$.messages[0]',
               '$.account_id', '$.api_key_id', '$.attempt', '$.duration_ms', '$.endpoint',
               '$.error_code', '$.event_id', '$.finish_reason', '$.group', '$.model', '$.provider',
               '$.request_id', '$.status', '$.stream', '$.ts', '$.upstream_cost_usd', '$.usage',
               '$.usage.completion_tokens', '$.usage.completion_tokens_details',
               '$.usage.completion_tokens_details.image_tokens',
               '$.usage.completion_tokens_details.reasoning_tokens',
               '$.usage.prompt_cache_hit_tokens', '$.usage.prompt_cache_miss_tokens',
               '$.usage.prompt_tokens', '$.usage.prompt_tokens_details',
               '$.usage.prompt_tokens_details.cached_tokens', '$.usage.total_tokens']) END AS t
    FROM raw
),
kinds AS (
    SELECT * EXCLUDE (t), coalesce(t[1] = 'OBJECT', FALSE) AS is_object,
           CASE WHEN t[1] = 'OBJECT' THEN [t[2], t[3]] END AS text_types,
           t[1] = 'OBJECT' AND t[2] = 'ARRAY' AND t[4] IS NOT NULL AS has_first_message,
           CASE WHEN t[1] = 'OBJECT' THEN t END AS field_types
    FROM types
),
obj AS (
    SELECT *,
           CASE WHEN is_object THEN json_transform(line, '{
               "event_id": "JSON", "request_id": "JSON", "attempt": "JSON", "ts": "JSON",
               "duration_ms": "JSON", "account_id": "JSON", "api_key_id": "JSON",
               "group": "JSON", "endpoint": "JSON", "model": "JSON", "provider": "JSON",
               "status": "JSON", "error_code": "JSON", "stream": "JSON",
               "finish_reason": "JSON", "usage": "JSON", "upstream_cost_usd": "JSON"}') END AS j
    FROM kinds
),
-- The usage object, field by field, still as JSON (shapes: OpenAI and DeepSeek).
usage_obj AS (
    SELECT *,
           CASE WHEN json_type(j.usage) = 'OBJECT' THEN json_transform(j.usage, '{
               "prompt_tokens": "JSON", "completion_tokens": "JSON", "total_tokens": "JSON",
               "prompt_tokens_details": "JSON", "completion_tokens_details": "JSON",
               "prompt_cache_hit_tokens": "JSON", "prompt_cache_miss_tokens": "JSON"}') END AS u
    FROM obj
),
usage_details AS (
    SELECT *,
           CASE WHEN json_type(u.prompt_tokens_details) = 'OBJECT'
                THEN json_extract(u.prompt_tokens_details, '$.cached_tokens') END AS u_cached,
           CASE WHEN json_type(u.completion_tokens_details) = 'OBJECT'
                THEN json_extract(u.completion_tokens_details, '$.reasoning_tokens') END AS u_reasoning,
           CASE WHEN json_type(u.completion_tokens_details) = 'OBJECT'
                THEN json_extract(u.completion_tokens_details, '$.image_tokens') END AS u_image
    FROM usage_obj
),
-- Canonical form (SPEC section 1 and R1): the record as a DuckDB VARIANT written back as
-- JSON. The VARIANT sorts every object's keys, decodes string escapes and keeps one member
-- per key, so it is the parsed content: key order, whitespace and \u escapes vanish, types
-- stay (1, 1.0 and "1" differ). Comparing its number of keys with the minified line's
-- finds an object that repeats a key, at any depth (a repeat is the only thing that makes
-- the VARIANT lose a member). Only for lines up to 1 MiB with at most 10,000 brackets: the
-- VARIANT cast recurses per nesting level (100,000 levels crash DuckDB) and takes ~10x a
-- line's size; other object lines are checked for repeated keys by ingest/repeated_keys.py
-- (key_check 'unchecked') and keep the old content identity (docs/hostile-input.md).
--
-- Fast path (issue 14 item 1: the cast was ~45% of this statement's CPU): a line without a
-- backslash gets its canonical form written from the fields json_transform already read
-- (`recon`, keys in the VARIANT's order, i.e. sorted by bytes), each member spelled as the
-- VARIANT spells it (macro canonical_member: strings, true/false/null, BIGINT integers;
-- messages/output_text only when null; usage and its two details objects member by member).
-- A member it cannot spell is left out, as is any key it does not know, so `recon` is
-- taken only when it has as many keys as the line (`key_counts`): then every key of the line
-- (each counted at every depth, repeats included) is one of `recon`'s, and `recon` is the
-- VARIANT's text. Every other line takes the cast. tests/test_canonical_fast_path.py
-- compares both paths on generated and hostile lines.
formable AS (
    SELECT *,
           is_object AND strlen(line) <= 1048576
               AND strlen(line) - strlen(replace(replace(line, '{', ''), '[', '')) <= 10000 AS formable
    FROM usage_details
),
recon AS (
    SELECT *,
           CASE WHEN formable AND canonical_fast_path() AND NOT contains(line, '\') THEN '{' || concat_ws(',',
               canonical_member('account_id', field_types[5], j.account_id),
               canonical_member('api_key_id', field_types[6], j.api_key_id),
               canonical_member('attempt', field_types[7], j.attempt),
               canonical_member('duration_ms', field_types[8], j.duration_ms),
               canonical_member('endpoint', field_types[9], j.endpoint),
               canonical_member('error_code', field_types[10], j.error_code),
               canonical_member('event_id', field_types[11], j.event_id),
               canonical_member('finish_reason', field_types[12], j.finish_reason),
               canonical_member('group', field_types[13], j."group"),
               CASE WHEN text_types[1] = 'NULL' THEN '"messages":null' END,
               canonical_member('model', field_types[14], j.model),
               CASE WHEN text_types[2] = 'NULL' THEN '"output_text":null' END,
               canonical_member('provider', field_types[15], j.provider),
               canonical_member('request_id', field_types[16], j.request_id),
               canonical_member('status', field_types[17], j.status),
               canonical_member('stream', field_types[18], j.stream),
               canonical_member('ts', field_types[19], j.ts),
               canonical_member('upstream_cost_usd', field_types[20], j.upstream_cost_usd),
               CASE WHEN field_types[21] = 'OBJECT' THEN '"usage":{' || concat_ws(',',
                        canonical_member('completion_tokens', field_types[22], u.completion_tokens),
                        CASE WHEN field_types[23] = 'OBJECT' THEN '"completion_tokens_details":{' || concat_ws(',',
                                 canonical_member('image_tokens', field_types[24], u_image),
                                 canonical_member('reasoning_tokens', field_types[25], u_reasoning)) || '}'
                             ELSE canonical_member('completion_tokens_details', field_types[23], u.completion_tokens_details) END,
                        canonical_member('prompt_cache_hit_tokens', field_types[26], u.prompt_cache_hit_tokens),
                        canonical_member('prompt_cache_miss_tokens', field_types[27], u.prompt_cache_miss_tokens),
                        canonical_member('prompt_tokens', field_types[28], u.prompt_tokens),
                        CASE WHEN field_types[29] = 'OBJECT' THEN '"prompt_tokens_details":{' || concat_ws(',',
                                 canonical_member('cached_tokens', field_types[30], u_cached)) || '}'
                             ELSE canonical_member('prompt_tokens_details', field_types[29], u.prompt_tokens_details) END,
                        canonical_member('total_tokens', field_types[31], u.total_tokens)) || '}'
                    ELSE canonical_member('usage', field_types[21], j.usage) END) || '}'
           END AS recon
    FROM formable
),
-- The fast path's form is taken when it has every key of the line: counted on the line itself
-- (no backslash: a `"` only delimits a string, so each key ends `":` unless blanks come
-- before its colon, which sends the line to the cast; a string value starting with `:` adds
-- one to the line's count and to recon's alike, or to the line's only).
key_counts AS (
    SELECT *,
           coalesce(recon IS NOT NULL AND NOT regexp_matches(line, '"[ \t\r\n]+:')
                    AND json_key_count(recon) = (strlen(line) - strlen(replace(line, '":', ''))) // 2, FALSE) AS recon_taken
    FROM recon
),
forms AS (
    SELECT * EXCLUDE (field_types, formable, recon, recon_taken),
           CASE WHEN recon_taken THEN recon
                WHEN formable THEN CAST(CAST(CAST(CAST(line AS JSON) AS VARIANT) AS JSON) AS VARCHAR) END AS canonical_form,
           -- the keys of the minified line, repeats counted (the cast keeps one member a key)
           CASE WHEN formable AND NOT recon_taken THEN json_key_count(CAST(json(line) AS VARCHAR)) END AS line_keys
    FROM key_counts
),
canonical AS (
    SELECT * EXCLUDE (canonical_form, line_keys),
           CASE WHEN is_object AND canonical_form IS NULL THEN 'unchecked'
                WHEN line_keys <> json_key_count(canonical_form) THEN 'repeated' END AS key_check,
           -- R1 content identity. Without a canonical form (see above): the minified line up
           -- to 1 MiB (key order counts), the line's own bytes beyond (re-serializing a 50 MB
           -- document takes DuckDB over 512 MiB); a giant record re-written differently is then
           -- a duplicate_conflict: the first stands, nothing is billed twice.
           sha256(coalesce(canonical_form, CASE WHEN is_json AND strlen(line) <= 1048576 THEN CAST(json(line) AS VARCHAR) ELSE line END)) AS content_sha256,
           -- RFC 8259 (SPEC section 1: JSON Lines): DuckDB's reader also takes a comma before
           -- a closing bracket and NaN/Infinity; such a line is a parse_error, not a record.
           -- Exact test (macro json_extension) only of a flagged line: the canonical form
           -- spells every NaN and infinity `NaN`/`Infinity`, and a trailing comma needs a
           -- comma, blanks, then a bracket (~0.5 us a line; the exact test ~2 us on every line).
           CASE WHEN is_json AND (canonical_form IS NULL OR contains(canonical_form, 'NaN') OR contains(canonical_form, 'Infinity')
                                  OR regexp_matches(line, ',[ \t\r\n]*[\]}]'))
                THEN json_extension(line) END AS json_extension
    FROM forms
),
-- Typed values: NULL where the JSON value is absent, null, or of another type.
typed AS (
    SELECT *,
           CASE WHEN json_type(j.event_id) = 'VARCHAR' THEN j.event_id ->> '$' END AS event_id,
           CASE WHEN json_type(j.request_id) = 'VARCHAR' THEN j.request_id ->> '$' END AS request_id,
           CASE WHEN json_type(j.attempt) IN ('BIGINT', 'UBIGINT') THEN TRY_CAST(j.attempt AS BIGINT) END AS attempt,
           CASE WHEN json_type(j.ts) = 'VARCHAR' THEN j.ts ->> '$' END AS ts_text,
           CASE WHEN json_type(j.duration_ms) IN ('BIGINT', 'UBIGINT') THEN TRY_CAST(j.duration_ms AS BIGINT) END AS duration_ms,
           CASE WHEN json_type(j.account_id) = 'VARCHAR' THEN j.account_id ->> '$' END AS account_id,
           CASE WHEN json_type(j.api_key_id) = 'VARCHAR' THEN j.api_key_id ->> '$' END AS api_key_id,
           CASE WHEN json_type(j."group") = 'VARCHAR' THEN j."group" ->> '$' END AS group_value,
           CASE WHEN json_type(j.endpoint) = 'VARCHAR' THEN j.endpoint ->> '$' END AS endpoint_value,
           CASE WHEN json_type(j.model) = 'VARCHAR' THEN j.model ->> '$' END AS model,
           CASE WHEN json_type(j.provider) = 'VARCHAR' THEN j.provider ->> '$' END AS provider,
           CASE WHEN json_type(j.status) IN ('BIGINT', 'UBIGINT') THEN TRY_CAST(j.status AS INTEGER) END AS status,
           CASE WHEN json_type(j.error_code) = 'VARCHAR' THEN j.error_code ->> '$' END AS error_code,
           CASE WHEN json_type(j.stream) = 'BOOLEAN' THEN CAST(j.stream AS BOOLEAN) END AS stream_value,
           CASE WHEN json_type(j.finish_reason) = 'VARCHAR' THEN j.finish_reason ->> '$' END AS finish_reason,
           CASE WHEN text_types[2] = 'VARCHAR' THEN length(json_extract_string(line, '$.output_text')) END AS output_text_chars,
           CASE WHEN json_type(j.upstream_cost_usd) = 'VARCHAR' THEN j.upstream_cost_usd ->> '$' END AS upstream_cost_text,
           -- token counts: JSON integers 0 <= n < 10^12 per attempt (README: the bound of rate.sql's
           -- DECIMAL(12,0) tokens, which keeps every charge product exact); anything else is not a count
           CASE WHEN json_type(u.prompt_tokens) IN ('BIGINT', 'UBIGINT') AND TRY_CAST(u.prompt_tokens AS BIGINT) BETWEEN 0 AND 999999999999 THEN TRY_CAST(u.prompt_tokens AS BIGINT) END AS prompt_tokens,
           CASE WHEN json_type(u.completion_tokens) IN ('BIGINT', 'UBIGINT') AND TRY_CAST(u.completion_tokens AS BIGINT) BETWEEN 0 AND 999999999999 THEN TRY_CAST(u.completion_tokens AS BIGINT) END AS completion_tokens,
           CASE WHEN json_type(u.total_tokens) IN ('BIGINT', 'UBIGINT') AND TRY_CAST(u.total_tokens AS BIGINT) BETWEEN 0 AND 1999999999998 THEN TRY_CAST(u.total_tokens AS BIGINT) END AS total_tokens,
           CASE WHEN json_type(u_cached) IN ('BIGINT', 'UBIGINT') AND TRY_CAST(u_cached AS BIGINT) BETWEEN 0 AND 999999999999 THEN TRY_CAST(u_cached AS BIGINT) END AS openai_cached,
           CASE WHEN json_type(u.prompt_cache_hit_tokens) IN ('BIGINT', 'UBIGINT') AND TRY_CAST(u.prompt_cache_hit_tokens AS BIGINT) BETWEEN 0 AND 999999999999 THEN TRY_CAST(u.prompt_cache_hit_tokens AS BIGINT) END AS cache_hit,
           CASE WHEN json_type(u.prompt_cache_miss_tokens) IN ('BIGINT', 'UBIGINT') AND TRY_CAST(u.prompt_cache_miss_tokens AS BIGINT) BETWEEN 0 AND 999999999999 THEN TRY_CAST(u.prompt_cache_miss_tokens AS BIGINT) END AS cache_miss,
           CASE WHEN json_type(u_reasoning) IN ('BIGINT', 'UBIGINT') AND TRY_CAST(u_reasoning AS BIGINT) BETWEEN 0 AND 999999999999 THEN TRY_CAST(u_reasoning AS BIGINT) END AS reasoning_tokens,
           CASE WHEN json_type(u_image) IN ('BIGINT', 'UBIGINT') AND TRY_CAST(u_image AS BIGINT) BETWEEN 0 AND 999999999999 THEN TRY_CAST(u_image AS BIGINT) END AS image_tokens,
           -- RFC 3339 instant: fractional seconds beyond microseconds are truncated (never
           -- rounded, which could carry 23:59:59.9999999Z into the next month)
           CASE WHEN json_type(j.ts) = 'VARCHAR' THEN TRY_CAST(
               regexp_replace(upper(j.ts ->> '$'), '(\.[0-9]{6})[0-9]+', '\1') AS TIMESTAMPTZ) END AS ts_parsed
    FROM canonical
),
-- Helpers for the checks below.
flags AS (
    SELECT *,
           j.usage IS NOT NULL AND json_type(j.usage) <> 'NULL' AS usage_present,
           regexp_full_match(coalesce(ts_text, ''),
               '[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})') AS ts_has_offset,
           regexp_full_match(coalesce(ts_text, ''),
               '[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?') AS ts_is_naive,
           -- the numeric fields of an instant, checked against RFC 3339's ranges below (DuckDB's
           -- cast rolls T24:00 into the next day and reads any +hh:mm offset)
           CAST(regexp_extract(coalesce(ts_text, ''),
               '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))$',
               ['hour', 'minute', 'second', 'fraction', 'offset_hour', 'offset_minute']) AS
               STRUCT(hour VARCHAR, minute VARCHAR, second VARCHAR, fraction VARCHAR, offset_hour VARCHAR, offset_minute VARCHAR)) AS ts_part
    FROM typed
),
checked AS (
    SELECT *,
        coalesce(
            CASE WHEN NOT is_json THEN finding('parse_error', NULL,
                 coalesce(stage_problem, CASE WHEN starts_with(line, chr(65279))
                     THEN 'line is not valid JSON: it starts with a byte-order mark (U+FEFF)'
                     ELSE 'line is not valid JSON' END)) END,
            CASE WHEN json_extension IS NOT NULL THEN finding('parse_error', NULL,
                 'line is not valid JSON: ' || json_extension) END,
            CASE WHEN j IS NULL THEN finding('invalid_record', NULL,
                 'line is JSON but not an object') END,
            -- SPEC section 1: an object that repeats a key (at any depth) is not a record;
            -- ingest/repeated_keys.py names the key in the message
            CASE WHEN key_check = 'repeated' THEN finding('parse_error', NULL,
                 'line is not a record: an object repeats a key') END,
            -- required fields (SPEC section 1), in the order of the spec's table
            CASE WHEN event_id IS NULL OR event_id = '' THEN finding_described('invalid_record', 'event_id',
                 'field event_id: required non-empty string, ', j.event_id) END,
            CASE WHEN request_id IS NULL OR request_id = '' THEN finding_described('invalid_record', 'request_id',
                 'field request_id: required non-empty string, ', j.request_id) END,
            CASE WHEN attempt IS NULL OR attempt < 1 THEN finding_described('invalid_record', 'attempt',
                 'field attempt: required integer >= 1, ', j.attempt) END,
            CASE WHEN ts_text IS NULL THEN finding_described('invalid_record', 'ts',
                 'field ts: required RFC 3339 string, ', j.ts) END,
            CASE WHEN account_id IS NULL OR account_id = '' THEN finding_described('invalid_record', 'account_id',
                 'field account_id: required non-empty string, ', j.account_id) END,
            CASE WHEN api_key_id IS NULL OR api_key_id = '' THEN finding_described('invalid_record', 'api_key_id',
                 'field api_key_id: required non-empty string, ', j.api_key_id) END,
            CASE WHEN model IS NULL OR model = '' THEN finding_described('invalid_record', 'model',
                 'field model: required non-empty string, ', j.model) END,
            CASE WHEN status IS NULL OR status < 100 OR status > 599 THEN finding_described('invalid_record', 'status',
                 'field status: required HTTP status integer 100-599, ', j.status) END,
            -- identifiers and names are bounded (README, docs/hostile-input.md): a 20 MB
            -- request_id would be stored, and written whole into a customer's detail CSV
            CASE WHEN length(event_id) > 256 THEN finding('invalid_record', 'event_id',
                 'field event_id: ' || length(event_id) || ' characters, over the bound of 256') END,
            CASE WHEN length(request_id) > 256 THEN finding('invalid_record', 'request_id',
                 'field request_id: ' || length(request_id) || ' characters, over the bound of 256') END,
            CASE WHEN length(account_id) > 256 THEN finding('invalid_record', 'account_id',
                 'field account_id: ' || length(account_id) || ' characters, over the bound of 256') END,
            CASE WHEN length(api_key_id) > 256 THEN finding('invalid_record', 'api_key_id',
                 'field api_key_id: ' || length(api_key_id) || ' characters, over the bound of 256') END,
            CASE WHEN length(model) > 256 THEN finding('invalid_record', 'model',
                 'field model: ' || length(model) || ' characters, over the bound of 256') END,
            CASE WHEN length(group_value) > 256 THEN finding('invalid_record', 'group',
                 'field group: ' || length(group_value) || ' characters, over the bound of 256') END,
            CASE WHEN length(endpoint_value) > 1024 THEN finding('invalid_record', 'endpoint',
                 'field endpoint: ' || length(endpoint_value) || ' characters, over the bound of 1024') END,
            CASE WHEN length(provider) > 256 THEN finding('invalid_record', 'provider',
                 'field provider: ' || length(provider) || ' characters, over the bound of 256') END,
            CASE WHEN length(error_code) > 256 THEN finding('invalid_record', 'error_code',
                 'field error_code: ' || length(error_code) || ' characters, over the bound of 256') END,
            CASE WHEN length(finish_reason) > 256 THEN finding('invalid_record', 'finish_reason',
                 'field finish_reason: ' || length(finish_reason) || ' characters, over the bound of 256') END,
            CASE WHEN strlen(CAST(j.usage AS VARCHAR)) > 4096 THEN finding('invalid_record', 'usage',
                 'field usage: ' || strlen(CAST(j.usage AS VARCHAR)) || ' bytes of JSON, over the bound of 4096') END,
            -- an id that carries an API key cannot be stored, and masking it would merge
            -- records, requests or accounts: quarantined (informational fields are masked)
            CASE WHEN carries_secret(event_id) THEN finding('invalid_record', 'event_id',
                 'field event_id: contains an API key (masked in this copy); ids must not carry secrets') END,
            CASE WHEN carries_secret(request_id) THEN finding('invalid_record', 'request_id',
                 'field request_id: contains an API key (masked in this copy); ids must not carry secrets') END,
            CASE WHEN carries_secret(account_id) THEN finding('invalid_record', 'account_id',
                 'field account_id: contains an API key (masked in this copy); ids must not carry secrets') END,
            CASE WHEN carries_secret(model) THEN finding('invalid_record', 'model',
                 'field model: contains an API key (masked in this copy); ids must not carry secrets') END,
            -- optional fields: absent or null is fine, another type is not
            CASE WHEN j.duration_ms IS NOT NULL AND (duration_ms IS NULL OR duration_ms < 0) THEN finding_described('invalid_record', 'duration_ms',
                 'field duration_ms: expected integer >= 0, ', j.duration_ms) END,
            CASE WHEN j."group" IS NOT NULL AND group_value IS NULL THEN finding_described('invalid_record', 'group',
                 'field group: expected string, ', j."group") END,
            CASE WHEN j.endpoint IS NOT NULL AND endpoint_value IS NULL THEN finding_described('invalid_record', 'endpoint',
                 'field endpoint: expected string, ', j.endpoint) END,
            CASE WHEN j.provider IS NOT NULL AND provider IS NULL THEN finding_described('invalid_record', 'provider',
                 'field provider: expected string, ', j.provider) END,
            CASE WHEN j.error_code IS NOT NULL AND error_code IS NULL THEN finding_described('invalid_record', 'error_code',
                 'field error_code: expected string or null, ', j.error_code) END,
            CASE WHEN j.stream IS NOT NULL AND stream_value IS NULL THEN finding_described('invalid_record', 'stream',
                 'field stream: expected true or false, ', j.stream) END,
            CASE WHEN j.finish_reason IS NOT NULL AND finish_reason IS NULL THEN finding_described('invalid_record', 'finish_reason',
                 'field finish_reason: expected string or null, ', j.finish_reason) END,
            CASE WHEN usage_present AND u IS NULL THEN finding_described('invalid_record', 'usage',
                 'field usage: expected object or null, ', j.usage) END,
            CASE WHEN text_types[1] NOT IN ('ARRAY', 'NULL') THEN finding('invalid_record', 'messages',
                 'field messages: expected array or null, ' || describe_json_type(text_types[1])) END,
            CASE WHEN text_types[2] NOT IN ('VARCHAR', 'NULL') THEN finding('invalid_record', 'output_text',
                 'field output_text: expected string or null, ' || describe_json_type(text_types[2])) END,
            CASE WHEN j.upstream_cost_usd IS NOT NULL AND NOT regexp_full_match(coalesce(upstream_cost_text, ''), '[0-9]{1,9}(\.[0-9]{1,20})?')
                 THEN finding('invalid_record', 'upstream_cost_usd',
                 'field upstream_cost_usd: expected a non-negative decimal string below 1000000000 with at most 20 decimals, such as "0.0123"') END,
            -- R8: an instant needs an offset
            CASE WHEN NOT ts_has_offset AND ts_is_naive THEN finding_ts('bad_timestamp', 'ts',
                 'field ts: ', ' has no UTC offset (write Z or +hh:mm)') END,
            -- RFC 3339 ranges (docs/hostile-input.md): hours 00-23, minutes 00-59, seconds 00-59
            -- (a leap second :60 is refused, see README), offsets within -23:59..+23:59
            CASE WHEN ts_has_offset AND (ts_part.hour > '23' OR ts_part.minute > '59' OR ts_part.second > '59') THEN finding_ts('bad_timestamp', 'ts',
                 'field ts: ', ' is not an RFC 3339 instant (time of day out of range 00:00:00-23:59:59)') END,
            CASE WHEN ts_has_offset AND (ts_part.offset_hour > '23' OR ts_part.offset_minute > '59') THEN finding_ts('bad_timestamp', 'ts',
                 'field ts: ', ' is not an RFC 3339 instant (UTC offset out of range -23:59..+23:59)') END,
            CASE WHEN NOT ts_has_offset OR ts_parsed IS NULL THEN finding_ts('bad_timestamp', 'ts',
                 'field ts: ', ' is not an RFC 3339 instant') END,
            -- plausibility window (README): not before 2000, not after the run's latest instant
            -- (ts_latest(), derived from the run's recorded date; NULL = no upper bound)
            CASE WHEN ts_parsed < TIMESTAMPTZ '2000-01-01 00:00:00+00' THEN finding_ts('bad_timestamp', 'ts',
                 'field ts: ', ' is before 2000-01-01T00:00:00Z (implausible for a gateway log)') END,
            CASE WHEN ts_parsed >= ts_latest() THEN finding_ts('bad_timestamp', 'ts',
                 'field ts: ', ' is in the future: on or after '
                            || strftime(ts_latest(), '%Y-%m-%dT%H:%M:%SZ') || ', more than a day after the run date') END,
            -- R4: usage must not contradict itself
            CASE WHEN u IS NOT NULL AND prompt_tokens IS NULL THEN finding_described('usage_inconsistent', 'usage.prompt_tokens',
                 'field usage.prompt_tokens: expected an integer count 0-999999999999, ', u.prompt_tokens) END,
            CASE WHEN u IS NOT NULL AND completion_tokens IS NULL THEN finding_described('usage_inconsistent', 'usage.completion_tokens',
                 'field usage.completion_tokens: expected an integer count 0-999999999999, ', u.completion_tokens) END,
            CASE WHEN u.total_tokens IS NOT NULL AND total_tokens IS NULL THEN finding_described('usage_inconsistent', 'usage.total_tokens',
                 'field usage.total_tokens: expected an integer count 0-1999999999998 (prompt + completion), ', u.total_tokens) END,
            CASE WHEN total_tokens IS NOT NULL AND total_tokens <> prompt_tokens + completion_tokens THEN finding('usage_inconsistent', 'usage.total_tokens',
                 'field usage.total_tokens: ' || total_tokens || ' <> prompt_tokens ' || prompt_tokens || ' + completion_tokens ' || completion_tokens) END,
            CASE WHEN u.prompt_tokens_details IS NOT NULL AND json_type(u.prompt_tokens_details) <> 'OBJECT' THEN finding_described('usage_inconsistent', 'usage.prompt_tokens_details',
                 'field usage.prompt_tokens_details: expected object, ', u.prompt_tokens_details) END,
            CASE WHEN u.completion_tokens_details IS NOT NULL AND json_type(u.completion_tokens_details) <> 'OBJECT' THEN finding_described('usage_inconsistent', 'usage.completion_tokens_details',
                 'field usage.completion_tokens_details: expected object, ', u.completion_tokens_details) END,
            CASE WHEN u_cached IS NOT NULL AND json_type(u_cached) <> 'NULL' AND openai_cached IS NULL THEN finding_described('usage_inconsistent', 'usage.prompt_tokens_details.cached_tokens',
                 'field usage.prompt_tokens_details.cached_tokens: expected an integer count 0-999999999999, ', u_cached) END,
            CASE WHEN openai_cached > prompt_tokens THEN finding('usage_inconsistent', 'usage.prompt_tokens_details.cached_tokens',
                 'field usage.prompt_tokens_details.cached_tokens: ' || openai_cached || ' > prompt_tokens ' || prompt_tokens) END,
            CASE WHEN u.prompt_cache_hit_tokens IS NOT NULL AND cache_hit IS NULL THEN finding_described('usage_inconsistent', 'usage.prompt_cache_hit_tokens',
                 'field usage.prompt_cache_hit_tokens: expected an integer count 0-999999999999, ', u.prompt_cache_hit_tokens) END,
            CASE WHEN u.prompt_cache_miss_tokens IS NOT NULL AND cache_miss IS NULL THEN finding_described('usage_inconsistent', 'usage.prompt_cache_miss_tokens',
                 'field usage.prompt_cache_miss_tokens: expected an integer count 0-999999999999, ', u.prompt_cache_miss_tokens) END,
            CASE WHEN cache_hit IS NOT NULL AND cache_miss IS NOT NULL AND cache_hit + cache_miss <> prompt_tokens THEN finding('usage_inconsistent', 'usage.prompt_cache_hit_tokens',
                 'field usage.prompt_cache_hit_tokens: hit ' || cache_hit || ' + miss ' || cache_miss || ' <> prompt_tokens ' || prompt_tokens) END,
            CASE WHEN cache_hit > prompt_tokens OR cache_miss > prompt_tokens THEN finding('usage_inconsistent', 'usage.prompt_cache_hit_tokens',
                 'field usage.prompt_cache_hit_tokens: cache hit/miss tokens exceed prompt_tokens ' || prompt_tokens) END,
            CASE WHEN openai_cached IS NOT NULL AND cache_hit IS NOT NULL AND openai_cached <> cache_hit THEN finding('usage_inconsistent', 'usage.prompt_cache_hit_tokens',
                 'field usage.prompt_cache_hit_tokens: ' || cache_hit || ' <> prompt_tokens_details.cached_tokens ' || openai_cached) END,
            CASE WHEN u_reasoning IS NOT NULL AND json_type(u_reasoning) <> 'NULL' AND reasoning_tokens IS NULL THEN finding_described('usage_inconsistent', 'usage.completion_tokens_details.reasoning_tokens',
                 'field usage.completion_tokens_details.reasoning_tokens: expected an integer count 0-999999999999, ', u_reasoning) END,
            CASE WHEN reasoning_tokens > completion_tokens THEN finding('usage_inconsistent', 'usage.completion_tokens_details.reasoning_tokens',
                 'field usage.completion_tokens_details.reasoning_tokens: ' || reasoning_tokens || ' > completion_tokens ' || completion_tokens || ' (reasoning is included in completion)') END,
            CASE WHEN u_image IS NOT NULL AND json_type(u_image) <> 'NULL' AND image_tokens IS NULL THEN finding_described('usage_inconsistent', 'usage.completion_tokens_details.image_tokens',
                 'field usage.completion_tokens_details.image_tokens: expected an integer count 0-999999999999, ', u_image) END,
            CASE WHEN image_tokens > completion_tokens THEN finding('usage_inconsistent', 'usage.completion_tokens_details.image_tokens',
                 'field usage.completion_tokens_details.image_tokens: ' || image_tokens || ' > completion_tokens ' || completion_tokens || ' (image tokens are included in completion)') END
        ) AS finding
    FROM flags
),
-- The first failing check's finding, worded. finding(reason, field, message) is the message
-- as written; finding_described(..., message, value) appends describe_json(value), and
-- finding_ts(..., message, tail) the line's ts (masked, then cut to 40 characters) and the
-- tail (the macros: pipeline/ingest/macros.py). The values are masked here, once for every check,
-- because each call site of mask_secrets costs DuckDB milliseconds to compile its regex
-- whenever this statement is planned, i.e. on every run (docs/performance.md, "Small runs").
-- (The four id checks above keep their own calls: they run on every line, and one
-- list_transform lambda over the four ids costs ~10x more per row than four calls.)
worded AS (
    SELECT * EXCLUDE (finding),
           CASE WHEN finding IS NOT NULL THEN {'reason': finding.reason, 'field': finding.field,
               'message': CASE finding.shows
                   WHEN 'value' THEN finding.message || describe_json(finding.value)
                   WHEN 'ts' THEN finding.message || left(mask_secrets(ts_text), 40) || finding.tail
                   ELSE finding.message END} END AS problem
    FROM checked
)
SELECT
    file_order, source_file, source_sha256, line_no,
    problem,
    event_id, request_id, attempt, ts_parsed AS ts, ts_text, duration_ms,
    account_id, api_key_id,
    coalesce(group_value, 'default') AS group_name,
    coalesce(endpoint_value, '/v1/chat/completions') AS endpoint,
    model, provider, status, error_code,
    coalesce(stream_value, FALSE) AS stream,
    finish_reason,
    u IS NOT NULL AS has_usage,
    CASE WHEN u IS NOT NULL THEN mask_secrets(CAST(json(j.usage) AS VARCHAR)) END AS usage_json,
    prompt_tokens, completion_tokens,
    CASE WHEN u IS NOT NULL THEN coalesce(openai_cached, cache_hit, prompt_tokens - cache_miss, 0) END AS cached_tokens,
    CASE WHEN u IS NOT NULL THEN coalesce(reasoning_tokens, 0) END AS reasoning_tokens,
    CASE WHEN u IS NOT NULL THEN coalesce(image_tokens, 0) END AS image_tokens,
    coalesce(has_first_message, FALSE) AS has_messages,
    output_text_chars,
    TRY_CAST(upstream_cost_text AS DECIMAL(38,20)) AS upstream_cost_usd,
    surrogates_replaced,
    content_sha256, key_check,
    -- what the quarantine keeps of a failing line (valid lines need none; store_batch.sql
    -- builds it for the rare duplicate_conflict): the record without prompt/output text
    -- (redacted_json_record), or an excerpt of an unparseable line cut before any text field
    -- and before the first \u escape (which could spell a key or a field name that the mask
    -- and the cut would not recognize), masked, then cut
    CASE WHEN problem IS NULL THEN NULL
         WHEN j IS NOT NULL THEN redacted_json_record(line)
         ELSE mask_secrets(left(mask_secrets(regexp_replace(regexp_replace(coalesce(line, ''),
                  '"(messages|output_text)".*$', '"\1": <dropped>'), '\\u[0-9a-fA-F]{4}.*$', '<cut at a \\u escape>')), 300))
    END AS redacted_record
FROM worded
