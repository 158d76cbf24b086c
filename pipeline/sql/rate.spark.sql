-- GENERATED from pipeline/sql/rate.sql by sqlglot 30.30.0 (DuckDB -> Spark): do not edit.
-- Edit rate.sql, then run `make spark-sql`; tests/spark fails while this file is stale.
WITH tokens AS (
  SELECT
    a.*,
    CASE
      WHEN a.has_usage
      THEN 'provider'
      WHEN NOT a.est_output_tokens IS NULL
      THEN 'estimated'
    END AS usage_source,
    CASE
      WHEN a.has_usage
      THEN a.prompt_tokens - a.cached_tokens
      ELSE a.est_input_tokens
    END AS t_input_uncached,
    CASE WHEN a.has_usage THEN a.cached_tokens ELSE 0 END AS t_input_cached,
    CASE WHEN a.has_usage THEN a.completion_tokens ELSE a.est_output_tokens END AS t_output,
    CASE WHEN a.has_usage THEN a.reasoning_tokens ELSE 0 END AS t_reasoning,
    CASE WHEN a.has_usage THEN a.image_tokens ELSE 0 END AS t_image
  FROM scoped_attempts AS a
), status_rule AS (
  SELECT
    t.*,
    CASE
      WHEN t.status BETWEEN 200 AND 299 OR t.status = 499
      THEN CASE
        WHEN t.finish_reason IS NULL
        AND (
          (
            t.has_usage AND t.completion_tokens = 0
          )
          OR (
            NOT t.has_usage
            AND COALESCE(t.output_text_chars, 0) = 0
            AND (
              t.has_messages OR NOT t.output_text_chars IS NULL
            )
          )
        )
        THEN 'no_output'
      END
      WHEN t.status BETWEEN 400 AND 499
      THEN 'client_error'
      WHEN t.status BETWEEN 500 AND 599
      THEN 'upstream_error'
      ELSE 'status_not_billable'
    END AS status_reason
  FROM tokens AS t
), ranked AS (
  SELECT
    s.*,
    ROW_NUMBER() OVER (
      PARTITION BY s.account_id, s.request_id
      ORDER BY CASE WHEN s.status_reason IS NULL THEN 0 ELSE 1 END NULLS LAST, s.attempt DESC, s.ts DESC, RPAD(REGEXP_EXTRACT(s.ts_text, '[.][0-9]{6}([0-9]*)'), 12, '0') DESC, s.event_id DESC
    ) AS billing_rank
  FROM status_rule AS s
), in_force AS (
  SELECT
    r.event_id,
    v.version_id
  FROM ranked AS r
  JOIN price_versions AS v
    ON r.ts >= v.effective_from
    AND (
      v.effective_until IS NULL OR r.ts < v.effective_until
    )
), priced AS (
  SELECT
    r.*,
    f.version_id AS price_version,
    NOT acc.account_id IS NULL AS account_known,
    NOT ip.event_id IS NULL AS price_issued,
    ip.unit_price_input_uncached AS i_input,
    ip.unit_price_input_cached AS i_cached,
    ip.unit_price_output AS i_output,
    CASE
      WHEN NOT ip.event_id IS NULL AND NOT acc.account_id IS NULL
      THEN ip.price_basis
      WHEN NOT o.account_id IS NULL AND NOT acc.account_id IS NULL
      THEN 'override'
      WHEN NOT mp.model IS NULL
      THEN 'list'
    END AS price_basis,
    CAST(COALESCE(g.multiplier, 1) * (
      1 - acc.discount_pct * CAST(0.01 AS DECIMAL(3, 2))
    ) AS DECIMAL(12, 8)) AS price_factor,
    o.input_per_1m AS o_input,
    o.cached_input_per_1m AS o_cached,
    o.output_per_1m AS o_output,
    mp.list_input_per_1m,
    mp.list_cached_input_per_1m,
    mp.list_output_per_1m,
    mp.upstream_input_per_1m,
    mp.upstream_cached_input_per_1m,
    mp.upstream_output_per_1m
  FROM ranked AS r
  LEFT JOIN in_force AS f
    ON f.event_id = r.event_id
  LEFT JOIN model_prices AS mp
    ON mp.version_id = f.version_id AND mp.model = r.model
  LEFT JOIN accounts AS acc
    ON acc.account_id = r.account_id
  LEFT JOIN account_groups AS g
    ON g.group_name = acc.group_name
  LEFT JOIN price_overrides AS o
    ON o.account_id = r.account_id
    AND o.model = r.model
    AND r.ts >= o.effective_from
    AND (
      o.effective_until IS NULL OR r.ts < o.effective_until
    )
  LEFT JOIN issued_prices AS ip
    ON ip.event_id = r.event_id
), unit_prices AS (
  SELECT
    p.*,
    CAST(CASE
      WHEN price_issued AND account_known
      THEN i_input
      WHEN price_basis = 'override'
      THEN o_input
      ELSE CAST(list_input_per_1m AS DECIMAL(24, 14)) * price_factor
    END AS DECIMAL(24, 14)) AS unit_price_input_uncached,
    CAST(CASE
      WHEN price_issued AND account_known
      THEN i_cached
      WHEN price_basis = 'override'
      THEN o_cached
      ELSE CAST(list_cached_input_per_1m AS DECIMAL(24, 14)) * price_factor
    END AS DECIMAL(24, 14)) AS unit_price_input_cached,
    CAST(CASE
      WHEN price_issued AND account_known
      THEN i_output
      WHEN price_basis = 'override'
      THEN o_output
      ELSE CAST(list_output_per_1m AS DECIMAL(24, 14)) * price_factor
    END AS DECIMAL(24, 14)) AS unit_price_output
  FROM priced AS p
), decided AS (
  SELECT
    u.*,
    CASE
      WHEN NOT status_reason IS NULL
      THEN status_reason
      WHEN billing_rank > 1
      THEN 'superseded_attempt'
      WHEN NOT account_known
      THEN 'unknown_account'
      WHEN price_basis IS NULL
      THEN 'unpriced_model'
      WHEN usage_source IS NULL
      THEN 'usage_missing'
    END AS reason
  FROM unit_prices AS u
), charged AS (
  SELECT
    d.*,
    CASE
      WHEN reason IS NULL
      THEN CAST(CAST(CAST(t_input_uncached AS DECIMAL(12, 0)) * unit_price_input_uncached AS DECIMAL(36, 14)) * CAST(0.000001 AS DECIMAL(7, 6)) AS DECIMAL(38, 20))
      ELSE CAST(0 AS DECIMAL(38, 20))
    END AS charge_input_uncached,
    CASE
      WHEN reason IS NULL
      THEN CAST(CAST(CAST(t_input_cached AS DECIMAL(12, 0)) * unit_price_input_cached AS DECIMAL(36, 14)) * CAST(0.000001 AS DECIMAL(7, 6)) AS DECIMAL(38, 20))
      ELSE CAST(0 AS DECIMAL(38, 20))
    END AS charge_input_cached,
    CASE
      WHEN reason IS NULL
      THEN CAST(CAST(CAST(t_output AS DECIMAL(12, 0)) * unit_price_output AS DECIMAL(36, 14)) * CAST(0.000001 AS DECIMAL(7, 6)) AS DECIMAL(38, 20))
      ELSE CAST(0 AS DECIMAL(38, 20))
    END AS charge_output,
    CAST((
      CAST(COALESCE(t_input_uncached, 0) AS DECIMAL(12, 0)) * CAST(upstream_input_per_1m AS DECIMAL(24, 14)) + CAST(COALESCE(t_input_cached, 0) AS DECIMAL(12, 0)) * CAST(upstream_cached_input_per_1m AS DECIMAL(24, 14)) + CAST(COALESCE(t_output, 0) AS DECIMAL(12, 0)) * CAST(upstream_output_per_1m AS DECIMAL(24, 14))
    ) * CAST(0.000001 AS DECIMAL(7, 6)) AS DECIMAL(38, 20)) AS upstream_ref_cost
  FROM decided AS d
)
SELECT
  event_id,
  request_id,
  account_id,
  attempt,
  ts,
  DATE_FORMAT(ts, 'yyyy-MM') AS period,
  CAST(ts AS DATE) AS usage_date,
  model,
  status,
  CASE
    WHEN reason IS NULL
    THEN 'billed'
    WHEN reason IN ('unknown_account', 'unpriced_model', 'usage_missing')
    THEN 'held'
    ELSE 'not_billed'
  END AS outcome,
  reason IS NULL AS billable,
  reason,
  usage_source,
  CAST(COALESCE(t_input_uncached, 0) AS BIGINT) AS input_uncached_tokens,
  CAST(COALESCE(t_input_cached, 0) AS BIGINT) AS input_cached_tokens,
  CAST(COALESCE(t_output, 0) AS BIGINT) AS output_tokens,
  CAST(COALESCE(t_reasoning, 0) AS BIGINT) AS reasoning_tokens,
  CAST(COALESCE(t_image, 0) AS BIGINT) AS image_tokens,
  price_version,
  price_basis,
  unit_price_input_uncached,
  unit_price_input_cached,
  unit_price_output,
  charge_input_uncached,
  charge_input_cached,
  charge_output,
  CAST(charge_input_uncached + charge_input_cached + charge_output AS DECIMAL(38, 20)) AS charge_total,
  upstream_ref_cost,
  upstream_cost_usd
FROM charged
