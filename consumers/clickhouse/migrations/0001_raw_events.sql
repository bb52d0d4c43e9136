-- Raw layer: every event exactly as it arrived, lossless. ReplacingMergeTree keyed by the event's
-- identity collapses redeliveries that slip past insert deduplication (e.g. after a rebalance the
-- batch boundaries, and so the tokens, differ); insert tokens stop ordinary retries from writing
-- a second part at all. request_id is a UUIDv7 kept as text: its text order is time order, so the
-- primary key serves both point lookups and time ranges. Retention is indefinite: no TTL.
-- Every column that carries payload bytes (bodies, chunk data, headers) is ZSTD-compressed; event
-- times use Delta+ZSTD because they arrive nearly sorted.

CREATE TABLE IF NOT EXISTS requests_raw
(
    request_id String,
    received_at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    method LowCardinality(String),
    path String,
    query String,
    headers Array(Tuple(name LowCardinality(String), value String)) CODEC(ZSTD(3)),
    peer_ip String,
    forwarded_for Nullable(String),
    client_ip String,
    user_agent Nullable(String),
    client_key_fingerprint Nullable(String),
    body String CODEC(ZSTD(3)),
    body_size UInt64,
    body_truncated Bool,
    body_sha256 String,
    model_requested Nullable(String),
    stream Bool,
    endpoint LowCardinality(String),
    dialect LowCardinality(String),
    provider LowCardinality(String),
    upstream_url String,
    model_sent Nullable(String),
    proxy_instance LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY request_id
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS chunks_raw
(
    request_id String,
    seq UInt32,
    offset_ns UInt64,
    data String CODEC(ZSTD(3)),
    size UInt64,
    truncated Bool,
    delivered Bool,
    kafka_partition UInt32,
    kafka_offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    -- The exchange's start, decoded from its UUIDv7: lets analysts filter chunks by time.
    started_at DateTime64(3, 'UTC') ALIAS UUIDv7ToDateTime(toUUIDOrZero(request_id))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(UUIDv7ToDateTime(toUUIDOrZero(request_id)))
ORDER BY (request_id, seq)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS completions_raw
(
    request_id String,
    completed_at DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    status UInt16,
    outcome LowCardinality(String),
    error_type LowCardinality(Nullable(String)),
    error_message Nullable(String),
    upstream_status UInt16,
    response_headers Array(Tuple(name LowCardinality(String), value String)) CODEC(ZSTD(3)),
    ttfb_ns Nullable(UInt64),
    duration_ns UInt64,
    bytes_in UInt64,
    bytes_out UInt64,
    chunk_count UInt32,
    kafka_partition UInt32,
    kafka_offset UInt64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(UUIDv7ToDateTime(toUUIDOrZero(request_id)))
ORDER BY request_id
SETTINGS non_replicated_deduplication_window = 10000;
