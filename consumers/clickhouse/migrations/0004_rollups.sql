-- Rollups for dashboards: one row per minute and (provider, model, endpoint, status class,
-- outcome, stream), fed by a materialized view on every insert into `exchanges`.
--
-- Sums are SimpleAggregateFunction (merge = plain sum, readable without -Merge); latencies keep
-- t-digest states so any minute range can be merged into p50/p90/p95/p99 (the levels are fixed
-- by the state type: read them with quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(...)[i]).
--
-- Double counting: an MV sees every inserted block, before ReplacingMergeTree collapses anything.
-- Retried inserts carry the same deduplication token, and the loader sets
-- deduplicate_blocks_in_dependent_materialized_views=1, so a deduplicated block feeds no MV. A
-- redelivery with different batch boundaries (rebalance, replay from offset 0) is stopped by the
-- loader itself: it skips exchanges already present in `exchanges`. See docs/ANALYSTS.md.

CREATE TABLE IF NOT EXISTS exchanges_per_minute
(
    minute DateTime('UTC'),
    provider LowCardinality(String),
    model LowCardinality(String),
    endpoint LowCardinality(String),
    status_class UInt8,
    outcome LowCardinality(String),
    stream Bool,
    exchanges SimpleAggregateFunction(sum, UInt64),
    failed SimpleAggregateFunction(sum, UInt64),
    usage_estimated SimpleAggregateFunction(sum, UInt64),
    prompt_tokens SimpleAggregateFunction(sum, UInt64),
    completion_tokens SimpleAggregateFunction(sum, UInt64),
    cached_tokens SimpleAggregateFunction(sum, UInt64),
    reasoning_tokens SimpleAggregateFunction(sum, UInt64),
    bytes_in SimpleAggregateFunction(sum, UInt64),
    bytes_out SimpleAggregateFunction(sum, UInt64),
    duration_ms_max SimpleAggregateFunction(max, Float64),
    ttft_ms_quantiles AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    duration_ms_quantiles AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    clients AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, provider, model, endpoint, status_class, outcome, stream)
-- The view's blocks carry tokens derived from the exchanges insert's: dedup needs a window here too.
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS exchanges_per_minute_mv TO exchanges_per_minute AS
SELECT
    toStartOfMinute(received_at) AS minute,
    provider,
    model,
    endpoint,
    status_class,
    outcome,
    stream,
    count() AS exchanges,
    countIf(outcome != 'ok' OR status >= 400) AS failed,
    countIf(usage_estimated) AS usage_estimated,
    sum(ifNull(prompt_tokens, 0)) AS prompt_tokens,
    sum(ifNull(completion_tokens, 0)) AS completion_tokens,
    sum(ifNull(cached_tokens, 0)) AS cached_tokens,
    sum(ifNull(reasoning_tokens, 0)) AS reasoning_tokens,
    sum(bytes_in) AS bytes_in,
    sum(bytes_out) AS bytes_out,
    max(duration_ms) AS duration_ms_max,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(assumeNotNull(ttft_ms), ttft_ms IS NOT NULL)
        AS ttft_ms_quantiles,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(duration_ms) AS duration_ms_quantiles,
    uniqState(client_ip) AS clients
FROM exchanges
GROUP BY minute, provider, model, endpoint, status_class, outcome, stream;
