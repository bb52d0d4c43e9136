-- Every export that leaves ClickHouse, one row each: what kind (dataset, legal, archive), when,
-- who ran it, for whom (recipient, licence, profile, case reference), where it was written,
-- the filter, the sha256 of its manifest.json (which holds every file's sha256) and which
-- request ids went out. "Who received this exchange?" is
--   SELECT exported_at, kind, recipient FROM export_audit WHERE has(request_ids, '<id>')
-- which the bloom filter index answers without reading every row. Append-only: no TTL, and the
-- exporter user may insert here but never alter or delete (deploy/clickhouse/exporter.sql).
-- ReplacingMergeTree keyed by (exported_at, export_id): a retried insert of the same export
-- is one row, whether the insert token or a merge catches it.

CREATE TABLE IF NOT EXISTS export_audit
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
    request_ids Array(String) CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(exported_at)
ORDER BY (exported_at, export_id)
SETTINGS non_replicated_deduplication_window = 1000;

ALTER TABLE export_audit ADD INDEX IF NOT EXISTS idx_request_ids request_ids TYPE bloom_filter(0.01) GRANULARITY 1;
ALTER TABLE export_audit ADD INDEX IF NOT EXISTS idx_recipient recipient TYPE bloom_filter(0.01) GRANULARITY 1;
