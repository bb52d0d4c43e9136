-- Exchange layer: one row per exchange with everything an analyst asks about, assembled by the
-- loader from the raw events once the exchange's completed event arrives.
--
-- ReplacingMergeTree(loaded_at): should an exchange ever be loaded twice (the loader skips
-- exchanges already present, so only a race can do it), the latest assembly wins at merge time and
-- FINAL shows exactly one row per request_id. ORDER BY request_id (UUIDv7 text = time order) makes
-- both "this exchange" and "this time range" cheap; received_at follows the key, so its minmax
-- skip index (migration 0003) prunes granules for time filters.

CREATE TABLE IF NOT EXISTS exchanges
(
    request_id String,
    received_at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    completed_at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    method LowCardinality(String),
    path String,
    endpoint LowCardinality(String),
    dialect LowCardinality(String),
    provider LowCardinality(String),
    upstream_url String,
    model_requested LowCardinality(String),
    model_sent LowCardinality(String),
    model_responded LowCardinality(String),
    stream Bool,
    peer_ip String,
    forwarded_for String CODEC(ZSTD(1)),
    client_ip String,
    user_agent LowCardinality(String),
    client_key_fingerprint String,
    request_headers Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    response_headers Map(LowCardinality(String), String) CODEC(ZSTD(3)),
    upstream_request_id String,
    request_body String CODEC(ZSTD(3)),
    request_body_size UInt64,
    request_body_truncated Bool,
    request_json_valid Bool,
    request_utf8_valid Bool,
    request_params String CODEC(ZSTD(3)),
    temperature Nullable(Float64),
    top_p Nullable(Float64),
    max_tokens Nullable(UInt32),
    n Nullable(UInt16),
    response_format LowCardinality(String),
    tools_count UInt16,
    tools String CODEC(ZSTD(3)),
    system_prompt String CODEC(ZSTD(3)),
    messages Array(Tuple(role LowCardinality(String), content String)) CODEC(ZSTD(3)),
    prompt_group_hash UInt64 MATERIALIZED cityHash64(system_prompt, tools),
    response_text String CODEC(ZSTD(3)),
    choices Array(String) CODEC(ZSTD(3)),
    tool_calls String CODEC(ZSTD(3)),
    tool_calls_count UInt16,
    finish_reason LowCardinality(String),
    response_id String,
    prompt_tokens Nullable(UInt32),
    completion_tokens Nullable(UInt32),
    total_tokens Nullable(UInt32),
    cached_tokens Nullable(UInt32),
    reasoning_tokens Nullable(UInt32),
    usage_estimated Bool,
    status UInt16,
    upstream_status UInt16,
    outcome LowCardinality(String),
    error_type LowCardinality(String),
    error_message String CODEC(ZSTD(3)),
    ttfb_ms Nullable(Float64),
    ttft_ms Nullable(Float64),
    duration_ms Float64,
    bytes_in UInt64,
    bytes_out UInt64,
    chunk_count UInt32,
    chunks_missing UInt32,
    gap_max_ms Float64,
    gap_p50_ms Float64,
    gap_p99_ms Float64,
    sse_events UInt32,
    sse_parse_errors UInt32,
    done_marker Bool,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3),
    -- Derived, stored once at insert, never sent by the loader (not part of SELECT *).
    client_ip_addr IPv6 MATERIALIZED toIPv6OrDefault(client_ip),
    status_class UInt8 MATERIALIZED intDiv(status, 100),
    model LowCardinality(String) MATERIALIZED
        if(model_responded != '', model_responded, if(model_sent != '', model_sent, model_requested))
)
ENGINE = ReplacingMergeTree(loaded_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY request_id
SETTINGS non_replicated_deduplication_window = 10000;
