-- The export tools' access to a ClickHouse server or cluster (server mode): `logorhythms export`,
-- `archive` and `restore`'s source reads. SELECT on the captured tables, INSERT on export_audit
-- and nothing else: an exporter can neither change what was captured nor rewrite the audit trail.
--
-- Apply after cluster.sql:  clickhouse-client --multiquery < deploy/clickhouse/exporter.sql
-- On a single server without a cluster, drop the ON CLUSTER clauses:
--   sed "s/ ON CLUSTER '{cluster}'//" deploy/clickhouse/exporter.sql | clickhouse-client --multiquery
-- Then run the tools with --clickhouse http://exporter:PASSWORD@HOST:8123/logorhythms
--
-- Restoring an archive needs more (creating tables, inserting into every table): run
-- `logorhythms restore` as an administrator into a new, empty database, never as this user.

CREATE SETTINGS PROFILE IF NOT EXISTS exporter_profile ON CLUSTER '{cluster}' SETTINGS
    readonly = 0 CONST,
    allow_ddl = 0 CONST,
    allow_introspection_functions = 0 CONST;

CREATE ROLE IF NOT EXISTS exporter_role ON CLUSTER '{cluster}';
-- Start from nothing, so re-applying this file takes back anything granted by hand.
REVOKE ON CLUSTER '{cluster}' ALL ON *.* FROM exporter_role;

GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.requests_raw TO exporter_role;
GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.chunks_raw TO exporter_role;
GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.completions_raw TO exporter_role;
GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.exchanges TO exporter_role;
GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.exchanges_per_minute TO exporter_role;
GRANT ON CLUSTER '{cluster}' SELECT ON logorhythms.schema_migrations TO exporter_role;
-- The audit trail: written by every export, read back by the archive (it is archived with the
-- data) and by an operator tracing a leaked copy (docs/DATASETS.md). Analysts cannot read it.
GRANT ON CLUSTER '{cluster}' SELECT, INSERT ON logorhythms.export_audit TO exporter_role;

-- No login until an operator sets a password and the networks it may come from:
--   ALTER USER exporter ON CLUSTER '{cluster}' IDENTIFIED WITH sha256_password BY '...'
--       HOST IP '10.0.0.0/8'
CREATE USER IF NOT EXISTS exporter ON CLUSTER '{cluster}'
    IDENTIFIED WITH no_password HOST NONE
    SETTINGS PROFILE 'exporter_profile';
GRANT ON CLUSTER '{cluster}' exporter_role TO exporter;
ALTER USER exporter ON CLUSTER '{cluster}' DEFAULT ROLE exporter_role;
