-- 007: ingest-only runs whose attempts the next nightly must rate. The nightly used to find
-- them with an anti-join of all attempts against all rated attempts, every night, which
-- grows with the history (docs/performance.md).

CREATE TABLE unrated_runs (
    run_id BIGINT PRIMARY KEY
);
COMMENT ON TABLE unrated_runs IS 'Ingest-only runs whose attempts are not rated yet; the next nightly rates them.';
COMMENT ON COLUMN unrated_runs.run_id IS 'The ingest run whose attempts wait for rating.';

INSERT INTO unrated_runs
SELECT DISTINCT a.run_id FROM attempts a ANTI JOIN rated_attempts r ON r.event_id = a.event_id;
