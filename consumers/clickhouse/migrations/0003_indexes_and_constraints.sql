-- Skip indexes for the filters analysts use most, and a guard on request ids.
--
-- Time: every table is ordered by request_id (UUIDv7 text, so time order), which makes event times
-- nearly monotonic inside each part; a minmax index on them prunes granules for time ranges.
-- chunks_raw has no wall-clock column of its own: its index is on the time inside the UUIDv7.
-- Lookups: bloom filters answer "all exchanges of this client / key / upstream request id"
-- without reading every granule. ADD INDEX covers parts written from then on; a database that
-- already held data needs `ALTER TABLE t MATERIALIZE INDEX name` once (a background mutation).
--
-- request_id must be a UUID: the raw tables partition by the time inside it, and a non-UUID id
-- (a foreign or buggy producer) would land in a 1970 partition and break time order. ClickHouse
-- rejects such rows (VIOLATED_CONSTRAINT); the loader isolates and dead-letters them.

ALTER TABLE requests_raw ADD INDEX IF NOT EXISTS idx_received_at received_at TYPE minmax GRANULARITY 1;
ALTER TABLE requests_raw ADD INDEX IF NOT EXISTS idx_client_ip client_ip TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE requests_raw ADD CONSTRAINT IF NOT EXISTS request_id_is_uuid CHECK toUUIDOrNull(request_id) IS NOT NULL;

ALTER TABLE chunks_raw ADD INDEX IF NOT EXISTS idx_started_at UUIDv7ToDateTime(toUUIDOrZero(request_id)) TYPE minmax GRANULARITY 1;
ALTER TABLE chunks_raw ADD CONSTRAINT IF NOT EXISTS request_id_is_uuid CHECK toUUIDOrNull(request_id) IS NOT NULL;

ALTER TABLE completions_raw ADD INDEX IF NOT EXISTS idx_completed_at completed_at TYPE minmax GRANULARITY 1;
ALTER TABLE completions_raw ADD CONSTRAINT IF NOT EXISTS request_id_is_uuid CHECK toUUIDOrNull(request_id) IS NOT NULL;

ALTER TABLE exchanges ADD INDEX IF NOT EXISTS idx_received_at received_at TYPE minmax GRANULARITY 1;
ALTER TABLE exchanges ADD INDEX IF NOT EXISTS idx_client_ip client_ip TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE exchanges ADD INDEX IF NOT EXISTS idx_client_key client_key_fingerprint TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE exchanges ADD INDEX IF NOT EXISTS idx_upstream_request_id upstream_request_id TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE exchanges ADD INDEX IF NOT EXISTS idx_prompt_group prompt_group_hash TYPE bloom_filter(0.01) GRANULARITY 4;
