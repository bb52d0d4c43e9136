-- Analysts' access to a ClickHouse server or cluster (server mode): the least that the queries in
-- docs/ANALYSTS.md need, and the same limits as the embedded endpoint's defaults
-- (consumers/settings.py SqlLimits; docs/OPERATIONS.md). Here the server's own access control does
-- what consumers/clickhouse/sqlpolicy.py does in embedded mode.
--
-- Applied by `logorhythms migrate --cluster NAME` after the migrations and loader.sql, with NAME in
-- place of the {cluster} macro; or by hand: clickhouse-client --multiquery < deploy/clickhouse/analyst.sql
-- On a single server without a cluster, drop the ON CLUSTER clauses:
--   sed "s/ ON CLUSTER '{cluster}'//" deploy/clickhouse/analyst.sql | clickhouse-client --multiquery
--
-- Not exercised against a server here: tests/integration/clickhouse/test_cluster_ddl.py
-- parses every statement with ClickHouse's own parser (chdb), and
-- tests/unit/consumers/clickhouse/test_access_sql.py checks what is granted. Server settings this
-- relies on (config.xml), without which every user reads every system table:
--   <access_control_improvements>
--     <select_from_system_db_requires_grant>true</select_from_system_db_requires_grant>
--     <select_from_information_schema_requires_grant>true</select_from_information_schema_requires_grant>
--   </access_control_improvements>

-- readonly = 1: no SET, no SETTINGS clause, no temporary tables, no writes, from any client.
-- The limits are ceilings (MAX) too, should an operator ever relax readonly to 2.
CREATE SETTINGS PROFILE IF NOT EXISTS analyst_profile ON CLUSTER '{cluster}' SETTINGS
    readonly = 1 CONST,
    max_execution_time = 60 MAX 60,
    max_memory_usage = 2147483648 MAX 2147483648,
    max_result_rows = 100000000 MAX 100000000,
    max_result_bytes = 4294967296 MAX 4294967296,
    result_overflow_mode = 'throw' CONST,
    timeout_overflow_mode = 'throw' CONST,
    max_concurrent_queries_for_user = 4 CONST,
    allow_ddl = 0 CONST,
    allow_introspection_functions = 0 CONST;

CREATE ROLE IF NOT EXISTS analyst_role ON CLUSTER '{cluster}';
-- Start from nothing, so re-applying this file also takes back anything granted by hand or by an
-- older version: no SOURCES (file, url, s3, remote, mysql, postgresql, hdfs, jdbc, odbc...),
-- no CREATE TEMPORARY TABLE, no dictGet (dictionary sources), no INTROSPECTION, no KILL QUERY
-- (without it a user may kill only their own queries).
REVOKE ON CLUSTER '{cluster}' ALL ON *.* FROM analyst_role;

GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.* TO analyst_role;
-- Except the operators' record of exports: legal case references, recipients and the keys that
-- trace a dataset to its buyer (the embedded endpoint refuses it too: sqlpolicy.DENIED_TABLES).
REVOKE ON CLUSTER '{cluster}' SELECT ON logorhythms.export_audit FROM analyst_role;

-- The system tables the embedded endpoint lets analysts read (sqlpolicy.ALLOWED_SYSTEM_TABLES;
-- the unit test keeps the two lists equal).
GRANT ON CLUSTER '{cluster}' SELECT ON system.aggregate_function_combinators TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.build_options TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.codecs TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.collations TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.columns TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.constraints TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.contributors TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.data_skipping_index_types TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.data_skipping_indices TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.data_type_families TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.database_engines TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.databases TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.documentation TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.events TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.formats TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.functions TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.keywords TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.licenses TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.merge_tree_settings TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.merges TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.metrics TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.mutations TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.numbers TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.numbers_mt TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.one TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.parts TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.parts_columns TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.primes TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.projection_parts TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.projections TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.settings TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.settings_changes TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.table_engines TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.table_functions TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.tables TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.time_zones TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.tokenizers TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.unicode TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.zeros TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.zeros_mt TO analyst_role;

-- Their own queries only: a server knows who ran what (embedded mode cannot tell callers apart,
-- so it refuses these two tables). A permissive row policy; users without any policy on these
-- tables keep seeing every row as long as users_without_row_policies_can_read_rows is on (the
-- default), which is what admins and the loader need.
GRANT ON CLUSTER '{cluster}' SELECT ON system.query_log TO analyst_role;
GRANT ON CLUSTER '{cluster}' SELECT ON system.processes TO analyst_role;
CREATE ROW POLICY IF NOT EXISTS analyst_own_query_log ON system.query_log ON CLUSTER '{cluster}'
    FOR SELECT USING user = currentUser() TO analyst_role;
CREATE ROW POLICY IF NOT EXISTS analyst_own_processes ON system.processes ON CLUSTER '{cluster}'
    FOR SELECT USING user = currentUser() TO analyst_role;

-- The user cannot log in from anywhere (HOST NONE) until an operator gives it a password and the
-- networks it may come from; passwords are never stored here:
--   ALTER USER analyst ON CLUSTER '{cluster}' IDENTIFIED WITH sha256_password BY '...'
--       HOST IP '10.0.0.0/8'
CREATE USER IF NOT EXISTS analyst ON CLUSTER '{cluster}'
    IDENTIFIED WITH no_password HOST NONE
    SETTINGS PROFILE 'analyst_profile';
GRANT ON CLUSTER '{cluster}' analyst_role TO analyst;
ALTER USER analyst ON CLUSTER '{cluster}' DEFAULT ROLE analyst_role;
