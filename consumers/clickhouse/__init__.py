"""The ClickHouse loader: raw events and assembled exchanges, via clickhouse-connect."""
