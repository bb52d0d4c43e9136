"""Sizing from measured numbers: `python -m deploy.capacity --rps 10000 --chunks-per-response 80`.

Every default is a figure measured on this project (docs/PERFORMANCE.md, docs/SCALING.md name
the command of each) or a stated planning assumption; every one is a flag. The output is the
Markdown table docs/SCALING.md shows (a test keeps the two equal).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields

DAY_S = 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """Per-core and per-exchange figures; the defaults are this project's measurements."""

    # docs/PERFORMANCE.md "throughput, one process": 1,316 requests per CPU-second (1 KB
    # request, capture on, non-streamed: request + one chunk + completed).
    proxy_requests_per_cpu_s: float = 1316.0
    # Each further chunk: capture 8.4 µs (bench_capture_cost) + the Kafka path's share of an
    # event, 34.7 µs / 3 events (bench_publisher, linger 50 ms, zstd).
    proxy_us_per_chunk: float = 20.0
    # docs/PERFORMANCE.md loader: ~47,000 events per core for the loader's own work.
    loader_events_per_cpu_s: float = 47_000.0
    # The engine's share of the load, 0.006-0.008 CPU s per 1k events, spent by ClickHouse.
    clickhouse_cpu_s_per_1k_events: float = 0.007
    # bench_bytes_per_exchange --exchanges 5000 --chunks 80 (docs/SCALING.md): per exchange of
    # 80 chunks; scaled linearly by the chunk count below.
    kafka_bytes_per_exchange_80: float = 1678.0
    clickhouse_bytes_per_exchange_80: float = 2690.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Planning assumptions (not measured here): headroom, node sizes, retention."""

    target_cpu_utilisation: float = 0.6
    kafka_replication: int = 3
    kafka_retention_days: float = 7.0
    kafka_broker_write_mb_s: float = 50.0  # a broker's sustained disk writes, replicas included
    kafka_broker_disk_tb: float = 4.0
    partitions_per_consumer: int = 2  # room to double the consumers without repartitioning
    clickhouse_replicas: int = 3
    clickhouse_node_cores: int = 16
    clickhouse_node_disk_tb: float = 10.0
    # Days of data the disks are sized for: the schema sets no TTL, so disk grows until an
    # operator adds one or adds shards.
    clickhouse_retention_days: float = 30.0


@dataclass(frozen=True, slots=True)
class Sizing:
    rps: float
    chunks: int
    events_per_s: float
    proxy_cores: int
    loader_cores: int
    partitions: int
    brokers: int
    kafka_mb_s: float
    kafka_disk_tb_per_broker: float
    clickhouse_shards: int
    clickhouse_replicas: int
    clickhouse_gb_per_day: float
    clickhouse_tb_per_replica: float


def _up(value: float) -> int:
    return max(1, math.ceil(value - 1e-9))


def _round_up(value: int, step: int) -> int:
    return step * math.ceil(value / step)


def size(rps: float, chunks: int, measured: Measured, plan: Plan) -> Sizing:
    if rps <= 0 or chunks < 1:
        raise ValueError("--rps must be above 0 and --chunks-per-response at least 1")
    events = rps * (chunks + 2)  # request + chunks + completed
    proxy_cpu_s = (
        1 / measured.proxy_requests_per_cpu_s + (chunks - 1) * measured.proxy_us_per_chunk / 1e6
    )
    proxy_cores = _up(rps * proxy_cpu_s / plan.target_cpu_utilisation)
    loader_cores = _up(events / measured.loader_events_per_cpu_s / plan.target_cpu_utilisation)
    scale = (chunks + 2) / 82
    kafka_bytes_s = rps * measured.kafka_bytes_per_exchange_80 * scale
    kafka_write_mb_s = kafka_bytes_s * plan.kafka_replication / 1e6
    kafka_disk_tb = (
        kafka_bytes_s * DAY_S * plan.kafka_retention_days * plan.kafka_replication / 1e12
    )
    brokers = max(
        plan.kafka_replication,
        _up(kafka_write_mb_s / plan.kafka_broker_write_mb_s),
        _up(kafka_disk_tb / plan.kafka_broker_disk_tb),
    )
    partitions = _round_up(max(6, loader_cores * plan.partitions_per_consumer), brokers)
    gb_per_day = rps * measured.clickhouse_bytes_per_exchange_80 * scale * DAY_S / 1e9
    tb_retained = gb_per_day * plan.clickhouse_retention_days / 1e3
    insert_cores = events * measured.clickhouse_cpu_s_per_1k_events / 1e3
    shards = max(
        _up(insert_cores / plan.target_cpu_utilisation / plan.clickhouse_node_cores),
        _up(tb_retained / plan.clickhouse_node_disk_tb),
    )
    return Sizing(
        rps=rps,
        chunks=chunks,
        events_per_s=events,
        proxy_cores=proxy_cores,
        loader_cores=loader_cores,
        partitions=partitions,
        brokers=brokers,
        kafka_mb_s=kafka_bytes_s / 1e6,
        kafka_disk_tb_per_broker=kafka_disk_tb / brokers,
        clickhouse_shards=shards,
        clickhouse_replicas=plan.clickhouse_replicas,
        clickhouse_gb_per_day=gb_per_day,
        clickhouse_tb_per_replica=tb_retained / shards,
    )


def render(sizing: Sizing, plan: Plan) -> str:
    """The Markdown table of one sizing."""
    rows = [
        ("requests/s", f"{sizing.rps:,.0f}"),
        ("chunks per response", f"{sizing.chunks}"),
        ("events/s into Kafka", f"{sizing.events_per_s:,.0f}"),
        ("proxy cores (1-core pods)", f"{sizing.proxy_cores}"),
        ("loader cores (1-core pods)", f"{sizing.loader_cores}"),
        ("partitions", f"{sizing.partitions}"),
        ("Kafka brokers", f"{sizing.brokers}"),
        ("Kafka in, MB/s (zstd, before replication)", f"{sizing.kafka_mb_s:,.1f}"),
        (
            f"Kafka disk per broker, TB ({plan.kafka_retention_days:g} days, RF "
            f"{plan.kafka_replication})",
            f"{sizing.kafka_disk_tb_per_broker:,.2f}",
        ),
        (
            "ClickHouse shards x replicas",
            f"{sizing.clickhouse_shards} x {sizing.clickhouse_replicas}",
        ),
        ("ClickHouse disk per day, GB (one replica)", f"{sizing.clickhouse_gb_per_day:,.1f}"),
        (
            f"ClickHouse disk per replica, TB ({plan.clickhouse_retention_days:g} days)",
            f"{sizing.clickhouse_tb_per_replica:,.2f}",
        ),
    ]
    lines = ["| | |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines)


def _add_flags(parser: argparse.ArgumentParser, cls: type[Measured] | type[Plan]) -> None:
    for field in fields(cls):
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            type=type(field.default),
            default=field.default,
            help=f"default {field.default}",
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.capacity",
        description="Size a Logorhythms deployment from this project's measured per-core "
        "numbers (docs/SCALING.md).",
    )
    parser.add_argument("--rps", type=float, required=True, help="peak requests per second")
    parser.add_argument("--chunks-per-response", type=int, default=80)
    _add_flags(parser, Measured)
    _add_flags(parser, Plan)
    args = vars(parser.parse_args(argv))
    measured = Measured(**{f.name: args[f.name] for f in fields(Measured)})
    plan = Plan(**{f.name: args[f.name] for f in fields(Plan)})
    try:
        sizing = size(args["rps"], args["chunks_per_response"], measured, plan)
    except ValueError as exc:
        print(f"deploy.capacity: {exc}", file=sys.stderr)
        return 2
    print(render(sizing, plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
