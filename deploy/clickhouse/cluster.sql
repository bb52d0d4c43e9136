-- Production DDL for a ClickHouse cluster: the same tables and columns as the loader's embedded
-- migrations (consumers/clickhouse/migrations/), replicated and sharded.
-- tests/unit/consumers/clickhouse/test_cluster_ddl.py fails if the two ever drift apart.
--
-- Layout: each table is a Replicated*MergeTree `<name>_local` on every node (macros {shard} and
-- {replica} from the server config, cluster name in the {cluster} macro) and a Distributed table
-- `<name>` over it, which is what the loader writes to and analysts query. The sharding key is
-- cityHash64(request_id), so every event of one exchange lives on one shard: ReplacingMergeTree
-- collapses duplicates within a shard and FINAL is exact across the cluster.
--
-- Deduplication on a cluster: Replicated tables deduplicate inserts through Keeper
-- (replicated_deduplication_window), keyed by the loader's insert_deduplication_token. Give the
-- loader `distributed_foreground_insert = 1` (profile below) so the token reaches the shards
-- with the block instead of being dropped by a background send.
--
-- Apply with: clickhouse-client --multiquery < deploy/clickhouse/cluster.sql
-- then point the loader at the cluster (CLICKHOUSE_URL=https://loader:...@host:8443/logorhythms).
-- The last statement records the schema version, so the loader applies no embedded migration.
-- A cluster created from an older version of this file gets a later migration's ALTER TABLE
-- statements by hand, run ON CLUSTER '{cluster}' on both `<name>_local` and `<name>`, then its
-- row in schema_migrations.

CREATE DATABASE IF NOT EXISTS logorhythms ON CLUSTER '{cluster}';

CREATE TABLE IF NOT EXISTS logorhythms.requests_raw_local ON CLUSTER '{cluster}'
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
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_received_at received_at TYPE minmax GRANULARITY 1,
    INDEX idx_client_ip client_ip TYPE bloom_filter(0.01) GRANULARITY 4,
    CONSTRAINT request_id_is_uuid CHECK toUUIDOrNull(request_id) IS NOT NULL
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/logorhythms/requests_raw', '{replica}')
PARTITION BY toYYYYMM(received_at)
ORDER BY request_id
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS logorhythms.requests_raw ON CLUSTER '{cluster}'
AS logorhythms.requests_raw_local
ENGINE = Distributed('{cluster}', logorhythms, requests_raw_local, cityHash64(request_id));

CREATE TABLE IF NOT EXISTS logorhythms.chunks_raw_local ON CLUSTER '{cluster}'
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
    started_at DateTime64(3, 'UTC') ALIAS UUIDv7ToDateTime(toUUIDOrZero(request_id)),
    INDEX idx_started_at UUIDv7ToDateTime(toUUIDOrZero(request_id)) TYPE minmax GRANULARITY 1,
    CONSTRAINT request_id_is_uuid CHECK toUUIDOrNull(request_id) IS NOT NULL
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/logorhythms/chunks_raw', '{replica}')
PARTITION BY toYYYYMM(UUIDv7ToDateTime(toUUIDOrZero(request_id)))
ORDER BY (request_id, seq)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS logorhythms.chunks_raw ON CLUSTER '{cluster}'
AS logorhythms.chunks_raw_local
ENGINE = Distributed('{cluster}', logorhythms, chunks_raw_local, cityHash64(request_id));

CREATE TABLE IF NOT EXISTS logorhythms.completions_raw_local ON CLUSTER '{cluster}'
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
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_completed_at completed_at TYPE minmax GRANULARITY 1,
    CONSTRAINT request_id_is_uuid CHECK toUUIDOrNull(request_id) IS NOT NULL
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/logorhythms/completions_raw', '{replica}')
PARTITION BY toYYYYMM(UUIDv7ToDateTime(toUUIDOrZero(request_id)))
ORDER BY request_id
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS logorhythms.completions_raw ON CLUSTER '{cluster}'
AS logorhythms.completions_raw_local
ENGINE = Distributed('{cluster}', logorhythms, completions_raw_local, cityHash64(request_id));

CREATE TABLE IF NOT EXISTS logorhythms.exchanges_local ON CLUSTER '{cluster}'
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
    upstream_response_text String DEFAULT response_text CODEC(ZSTD(3)),
    choices Array(String) CODEC(ZSTD(3)),
    tool_calls String CODEC(ZSTD(3)),
    upstream_tool_calls String DEFAULT tool_calls CODEC(ZSTD(3)),
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
    provider_error_type LowCardinality(String),
    provider_error_code LowCardinality(String),
    provider_error_message String CODEC(ZSTD(3)),
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
    client_ip_addr IPv6 MATERIALIZED toIPv6OrDefault(client_ip),
    status_class UInt8 MATERIALIZED intDiv(status, 100),
    model LowCardinality(String) MATERIALIZED
        if(model_responded != '', model_responded, if(model_sent != '', model_sent, model_requested)),
    INDEX idx_received_at received_at TYPE minmax GRANULARITY 1,
    INDEX idx_client_ip client_ip TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_client_key client_key_fingerprint TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_upstream_request_id upstream_request_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_prompt_group prompt_group_hash TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/logorhythms/exchanges', '{replica}', loaded_at)
PARTITION BY toYYYYMM(received_at)
ORDER BY request_id
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS logorhythms.exchanges ON CLUSTER '{cluster}'
AS logorhythms.exchanges_local
ENGINE = Distributed('{cluster}', logorhythms, exchanges_local, cityHash64(request_id));

CREATE TABLE IF NOT EXISTS logorhythms.exchanges_per_minute_local ON CLUSTER '{cluster}'
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
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/logorhythms/exchanges_per_minute', '{replica}')
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, provider, model, endpoint, status_class, outcome, stream)
SETTINGS replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS logorhythms.exchanges_per_minute ON CLUSTER '{cluster}'
AS logorhythms.exchanges_per_minute_local
ENGINE = Distributed('{cluster}', logorhythms, exchanges_per_minute_local, cityHash64(minute, provider, model));

-- On every node: each shard's exchanges feed that shard's rollup.
CREATE MATERIALIZED VIEW IF NOT EXISTS logorhythms.exchanges_per_minute_mv ON CLUSTER '{cluster}'
TO logorhythms.exchanges_per_minute_local AS
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
FROM logorhythms.exchanges_local
GROUP BY minute, provider, model, endpoint, status_class, outcome, stream;

-- The audit trail of exports (migration 0006); sharded by export, one row each.
CREATE TABLE IF NOT EXISTS logorhythms.export_audit_local ON CLUSTER '{cluster}'
(
    export_id String,
    kind LowCardinality(String),
    exported_at DateTime64(3, 'UTC'),
    operator String,
    recipient String,
    licence String,
    profile LowCardinality(String),
    case_reference String,
    destination String,
    filter String CODEC(ZSTD(3)),
    manifest_sha256 String,
    -- A dataset's record key (hex): its conversation ids are HMAC(key, request id), so a leaked
    -- copy is traced to this export. Never written into the dataset, empty for other kinds.
    record_key String,
    rows UInt64,
    request_ids Array(String) CODEC(ZSTD(3)),
    INDEX idx_request_ids request_ids TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_recipient recipient TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/logorhythms/export_audit', '{replica}')
PARTITION BY toYYYYMM(exported_at)
ORDER BY (exported_at, export_id)
SETTINGS replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS logorhythms.export_audit ON CLUSTER '{cluster}'
AS logorhythms.export_audit_local
ENGINE = Distributed('{cluster}', logorhythms, export_audit_local, cityHash64(export_id));

-- Schema version bookkeeping, read by the loader at start-up (same table as embedded).
CREATE TABLE IF NOT EXISTS logorhythms.schema_migrations ON CLUSTER '{cluster}'
(
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/all/logorhythms/schema_migrations', '{shard}-{replica}')
ORDER BY version;

INSERT INTO logorhythms.schema_migrations (version, name) VALUES (1, 'raw_events'), (2, 'exchanges'), (3, 'indexes_and_constraints'), (4, 'rollups'), (5, 'provider_errors_and_upstream_text'), (6, 'export_audit');

-- Access. Passwords are never stored here: set them with
--   ALTER USER loader ON CLUSTER '{cluster}' IDENTIFIED WITH sha256_password BY '...'
-- (or manage the users in your secrets-backed users.xml) after running this file.
-- Analysts (read-only role, user and limits) are in deploy/clickhouse/analyst.sql.

-- The loader: inserts and reads (read-back of open exchanges, schema version), no DDL.
CREATE SETTINGS PROFILE IF NOT EXISTS loader_profile ON CLUSTER '{cluster}' SETTINGS
    distributed_foreground_insert = 1,
    insert_deduplicate = 1,
    deduplicate_blocks_in_dependent_materialized_views = 1;
CREATE USER IF NOT EXISTS loader ON CLUSTER '{cluster}'
    IDENTIFIED WITH no_password
    SETTINGS PROFILE 'loader_profile';
GRANT ON CLUSTER '{cluster}' SELECT, INSERT ON logorhythms.* TO loader;
-- Its start-up check runs CREATE TABLE IF NOT EXISTS schema_migrations (a no-op here).
GRANT ON CLUSTER '{cluster}' CREATE TABLE ON logorhythms.schema_migrations TO loader;
