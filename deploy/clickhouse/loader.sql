-- The loader's access to a ClickHouse server cluster: inserts and reads (read-back of open
-- exchanges, the schema version), no DDL. `logorhythms migrate --cluster NAME` applies this file
-- after the migrations, with NAME in place of the {cluster} macro; on a single server drop the
-- ON CLUSTER clauses:
--   sed "s/ ON CLUSTER '{cluster}'//" deploy/clickhouse/loader.sql | clickhouse-client --multiquery
--
-- Deduplication on a cluster: Replicated tables deduplicate inserts through Keeper
-- (replicated_deduplication_window), keyed by the loader's insert_deduplication_token.
-- distributed_foreground_insert = 1 makes the Distributed table pass the block, and so the
-- token, to the shards at once instead of queueing it for a background send.
--
-- Passwords are never stored here: set one with
--   ALTER USER loader ON CLUSTER '{cluster}' IDENTIFIED WITH sha256_password BY '...'
-- (or manage the user in a secrets-backed users.xml; deploy/kubernetes does).

CREATE SETTINGS PROFILE IF NOT EXISTS loader_profile ON CLUSTER '{cluster}' SETTINGS
    distributed_foreground_insert = 1,
    insert_deduplicate = 1,
    deduplicate_blocks_in_dependent_materialized_views = 1;
CREATE USER IF NOT EXISTS loader ON CLUSTER '{cluster}'
    IDENTIFIED WITH no_password HOST NONE
    SETTINGS PROFILE 'loader_profile';
GRANT ON CLUSTER '{cluster}' SELECT, INSERT ON logorhythms.* TO loader;
-- Its start-up check runs CREATE TABLE IF NOT EXISTS schema_migrations (a no-op on a cluster)
-- and reads the version table's engine from system.tables.
GRANT ON CLUSTER '{cluster}' CREATE TABLE ON logorhythms.schema_migrations TO loader;
