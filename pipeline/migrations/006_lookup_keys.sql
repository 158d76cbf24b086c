-- 006: lookup keys on attempts, so that the nightly reads what its day can affect, not the
-- whole history (docs/performance.md). Dedup (is this event_id stored?) and rating (which
-- stored attempts belong to tonight's requests?) must consult all of history; comparing
-- 8-byte hashes reads one narrow column instead of hashing every stored id string, and the
-- stored rows themselves are read only for the keys that match (then compared exactly, so a
-- hash collision costs a lookup, never a wrong answer). The keys are DuckDB's hash(); if
-- another DuckDB build hashes differently, they are recomputed on open (pipeline/db.py).

ALTER TABLE attempts ADD COLUMN event_key UBIGINT;
ALTER TABLE attempts ADD COLUMN request_key UBIGINT;
UPDATE attempts SET event_key = hash(event_id), request_key = hash(account_id, request_id);
COMMENT ON COLUMN attempts.event_key IS 'Internal lookup key: hash(event_id), so dedup reads 8 bytes a stored row instead of its id.';
COMMENT ON COLUMN attempts.request_key IS 'Internal lookup key: hash(account_id, request_id), to find the stored attempts of a request.';
