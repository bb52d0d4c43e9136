"""Check deploy.capacity's per-node Kafka figures against a real broker and a real 3-node cluster.

Run by hand (not in CI), from the repository root, on a quiet machine:

    .venv/bin/python -m tests.bench.kafka.bench_brokers --brokers 1,3 --exchanges 12000 \
        --rate 200 --out tests/bench/kafka/results/brokers-$(date +%F).json

For each broker count: a private single broker (RF 1) or 3-node KRaft cluster (RF 3, min ISR 2,
no unclean election: ``deploy.local.kafka``'s no-loss settings) on free ports in a temp dir, and
a topic of ``--partitions`` partitions. The proxy's own ``Publisher`` (acks=all, idempotence,
zstd, its 50 ms linger and its journal: the production path) publishes ``--exchanges`` streamed
exchanges of ``--chunks-per-response`` chunks at ``--rate`` exchanges per second, each with the
event headers every proxy record carries, after a warm-up on another topic (so the JVMs' JIT work
is not charged to the run). The exchanges are ``bench_bytes_per_exchange``'s (~1 KB prompts, one
word per chunk), ``--distinct`` of them encoded once and repeated.

Measured per node: the topic's segment bytes (``.log`` files; what retention keeps) and every
partition file's allocated blocks (indexes included), once every replica holds the same bytes;
each broker JVM's CPU seconds from ``/proc/<pid>/stat`` above its own idle rate (taken over
``--idle-seconds`` just before). The publisher: achieved events/s and CPU per event, its process
CPU less the same paced loop's CPU without publishing. Predicted: ``deploy.capacity.size`` for
the same rate and a retention window as long as the run, i.e. bytes per exchange x exchanges x
RF / brokers, and the Kafka path's share of the proxy's per-chunk CPU. The calculator does not
model broker CPU (it sizes brokers by disk and write bandwidth); the table prints the measured CPU
per MB stored and what it would come to at the plan's write ceiling if it scaled linearly, which
overstates it at low rates, where each produce request's fixed cost is shared by few records.

The publisher hands over each exchange's events at once; the proxy spreads a stream's chunks over
its duration, so its batches mix more exchanges. A producer batch holds one partition's events of
one linger window, so the rate and the partition count set how much zstd sees at once: compare
runs at the rate you plan for, not one figure for all rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from deploy.capacity import DAY_S, Measured, Plan, size
from deploy.local.kafka import (
    KafkaBroker,
    KafkaCluster,
    create_topic,
    describe_partitions,
    ensure_kafka_jars,
)
from proxy.journal import Journal
from proxy.journal_record import Headers
from proxy.publisher import Publisher
from schemas import Codec
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES
from tests.bench.clickhouse.bench_bytes_per_exchange import traffic

TOPIC = "bench.brokers"
WARMUP_TOPIC = "bench.brokers.warmup"
# Capture's CPU per chunk event before Kafka (bench_capture_cost, docs/PERFORMANCE.md): the part
# of deploy.capacity's proxy_us_per_chunk that this benchmark does not run.
CAPTURE_US_PER_CHUNK_EVENT = 8.4
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Event = tuple[bytes, bytes, Headers]


def exchange_events(exchanges: int, chunks: int) -> list[list[Event]]:
    """Each exchange's events (key, Avro value, the proxy's event headers), in publication order."""
    codec = Codec()
    return [
        [
            (x.request_id.encode(), codec.encode(kind, event), codec.event_headers(kind))
            for kind, event in x.events()
        ]
        for x in traffic(exchanges, chunks)
    ]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from procfs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14, 15


@dataclass(frozen=True, slots=True)
class TopicDisk:
    log_bytes: int  # the segments' .log files: the records as stored
    allocated_bytes: int  # every file of the topic's partition dirs, blocks on disk


def topic_disk(node: KafkaBroker, topic: str) -> TopicDisk:
    log_bytes = allocated = 0
    for partition_dir in node.log_dir.glob(f"{topic}-*"):
        for path in partition_dir.iterdir():
            stat = path.stat()
            allocated += stat.st_blocks * 512  # indexes are preallocated sparse files
            if path.suffix == ".log":
                log_bytes += stat.st_size
    return TopicDisk(log_bytes, allocated)


@dataclass(frozen=True, slots=True)
class Paced:
    exchanges: int
    events: int
    wall_s: float  # first publish to the last acknowledgement (or the loop's end)
    cpu_s: float  # this process


async def paced(
    publisher: Publisher | None, pool: Sequence[list[Event]], exchanges: int, rate: float
) -> Paced:
    """Hand ``exchanges`` exchanges to ``publisher`` at ``rate`` per second, then wait for Kafka's
    acknowledgement of all of them; ``publisher=None`` runs the same loop publishing nothing."""
    events = 0
    started, cpu_started = time.monotonic(), time.process_time()
    for number in range(exchanges):
        due = started + number / rate
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        if publisher is not None:
            exchange = pool[number % len(pool)]
            for key, value, headers in exchange:
                publisher.publish(key, value, headers)
            # The proxy hands an exchange's events to the kernel before its last byte.
            publisher.write_through()
            events += len(exchange)
    if publisher is not None:
        await publisher.flush()
    return Paced(exchanges, events, time.monotonic() - started, time.process_time() - cpu_started)


async def started_publisher(bootstrap: str, topic: str, journal_dir: Path) -> Publisher:
    publisher = Publisher(bootstrap_servers=bootstrap, topic=topic, journal=Journal(journal_dir))
    await publisher.start()
    await publisher.flush()  # connected, nothing left from start-up
    return publisher


async def replicas_caught_up(
    nodes: Sequence[KafkaBroker], bootstrap: str, timeout_s: float = 60
) -> bool:
    """Every replica in sync and every node holding the same segment bytes, polled until
    ``timeout_s``. Here RF = brokers, so every node holds every partition, and followers copy the
    leader's batches verbatim: equal bytes mean every replica holds everything."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = await describe_partitions(bootstrap, TOPIC)
        in_sync = all(set(s.isr) == set(s.replicas) for s in states.values())
        if in_sync and len({topic_disk(n, TOPIC).log_bytes for n in nodes}) == 1:
            return True
        await asyncio.sleep(0.2)
    return False


def predicted(args: argparse.Namespace, brokers: int) -> dict[str, float]:
    """What deploy.capacity says for this run: the same rate, a retention window as long as it."""
    window_days = args.exchanges / args.rate / DAY_S
    plan = Plan(kafka_replication=brokers, kafka_retention_days=window_days)
    sizing = size(args.rate, args.chunks_per_response, Measured(), plan)
    # The calculator spreads the cluster's bytes over the brokers it sizes; spread them over ours.
    cluster_bytes = sizing.kafka_disk_tb_per_broker * 1e12 * sizing.brokers
    return {
        "log_bytes_per_node": cluster_bytes / brokers,
        "write_mb_s_per_node": sizing.kafka_mb_s * plan.kafka_replication / brokers,
        "publisher_us_per_event": Measured().proxy_us_per_chunk - CAPTURE_US_PER_CHUNK_EVENT,
    }


async def measure(
    args: argparse.Namespace,
    pool: Sequence[list[Event]],
    brokers: int,
    nodes: Sequence[KafkaBroker],
    work: Path,
) -> dict[str, Any]:
    bootstrap = ",".join(n.bootstrap_servers for n in nodes)
    sized = {"max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES)}
    for topic in (WARMUP_TOPIC, TOPIC):
        await create_topic(
            bootstrap, topic, args.partitions, replication_factor=brokers, configs=sized
        )
    warm = await started_publisher(bootstrap, WARMUP_TOPIC, work / "journal-warmup")
    await paced(warm, pool, max(1, round(args.warmup_seconds * args.rate)), args.rate)
    await warm.stop()

    publisher = await started_publisher(bootstrap, TOPIC, work / "journal")
    pids = {n.node_id: n.pid for n in nodes}
    if any(pid is None for pid in pids.values()):
        raise RuntimeError(f"a broker is not running: {nodes}")

    def broker_cpu() -> dict[int, float]:
        return {node_id: process_cpu_s(pid) for node_id, pid in pids.items() if pid}

    idle_exchanges = max(1, round(args.idle_seconds * args.rate))
    before = broker_cpu()
    idle = await paced(None, pool, idle_exchanges, args.rate)
    after_idle = broker_cpu()
    run = await paced(publisher, pool, args.exchanges, args.rate)
    run_began = time.monotonic() - run.wall_s
    caught_up = await replicas_caught_up(nodes, bootstrap)
    after_run = broker_cpu()
    broker_wall = time.monotonic() - run_began
    stats = publisher.stats
    await publisher.stop()

    loop_cpu_rate = idle.cpu_s / idle.wall_s
    per_node = []
    for node in nodes:
        disk = topic_disk(node, TOPIC)
        idle_rate = (after_idle[node.node_id] - before[node.node_id]) / idle.wall_s
        cpu_s = after_run[node.node_id] - after_idle[node.node_id]
        busy_s = cpu_s - idle_rate * broker_wall
        per_node.append(
            {
                "node_id": node.node_id,
                "heap_mb": node.heap_mb,
                "log_bytes": disk.log_bytes,
                "allocated_bytes": disk.allocated_bytes,
                "write_mb_s": disk.log_bytes / run.wall_s / 1e6,
                "cpu_s": cpu_s,
                "idle_cpu_per_s": idle_rate,
                "busy_cpu_s": busy_s,
                "busy_cores": busy_s / broker_wall,
                "busy_cpu_s_per_mb": busy_s / (disk.log_bytes / 1e6) if disk.log_bytes else None,
            }
        )
    publisher_cpu_s = run.cpu_s - loop_cpu_rate * run.wall_s
    return {
        "brokers": brokers,
        "replication_factor": brokers,
        "min_insync_replicas": min(2, brokers),
        "partitions": args.partitions,
        "replicas_caught_up": caught_up,
        "nodes": per_node,
        "publisher": {
            "exchanges": run.exchanges,
            "events": run.events,
            "wall_s": run.wall_s,
            "target_events_per_s": args.rate * run.events / run.exchanges,
            "events_per_s": run.events / run.wall_s,
            "cpu_s": run.cpu_s,
            "loop_cpu_per_s": loop_cpu_rate,
            "us_per_event": publisher_cpu_s / run.events * 1e6,
            "stats": asdict(stats),
        },
        "predicted": predicted(args, brokers),
    }


def run_brokers(
    args: argparse.Namespace, pool: Sequence[list[Event]], brokers: int, libs: Path
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-brokers-{brokers}-") as directory:
        work = Path(directory)
        server: KafkaBroker | KafkaCluster
        if brokers == 1:  # `logorhythms up`'s single broker
            server = KafkaBroker(work / "kafka", libs_dir=libs)
            nodes = [server]
        else:
            server = KafkaCluster(work / "kafka-cluster", nodes=brokers, libs_dir=libs)
            nodes = list(server.nodes)
        server.start()
        try:
            return uvloop.run(measure(args, pool, brokers, nodes, work))
        finally:
            server.stop()


def _ratio(measured: float | None, predicted: float | None) -> str:
    if measured is None or not predicted:
        return "-"
    return f"{measured / predicted:.2f}"


def table(results: Sequence[dict[str, Any]]) -> str:
    rows = ["brokers | per node | measured | predicted | measured / predicted"]
    for result in results:
        nodes, pub, pred = result["nodes"], result["publisher"], result["predicted"]
        brokers = result["brokers"]
        log = [n["log_bytes"] for n in nodes]
        alloc = [n["allocated_bytes"] for n in nodes]
        write = sum(n["write_mb_s"] for n in nodes) / len(nodes)
        cores = [n["busy_cores"] for n in nodes]
        per_mb = [n["busy_cpu_s_per_mb"] for n in nodes if n["busy_cpu_s_per_mb"] is not None]
        mean_log = sum(log) / len(log)
        pred_log = pred["log_bytes_per_node"]
        rows += [
            f"{brokers} | Kafka log bytes, MB | {mean_log / 1e6:.2f} ({min(log) / 1e6:.2f}-"
            f"{max(log) / 1e6:.2f}) | {pred_log / 1e6:.2f} | {_ratio(mean_log, pred_log)}",
            f"{brokers} | bytes on disk incl. indexes, MB | {sum(alloc) / len(alloc) / 1e6:.2f} "
            f"| {pred_log / 1e6:.2f} | {_ratio(sum(alloc) / len(alloc), pred_log)}",
            f"{brokers} | writes, MB/s | {write:.3f} | {pred['write_mb_s_per_node']:.3f} | "
            f"{_ratio(write, pred['write_mb_s_per_node'])}",
            f"{brokers} | broker CPU above idle, cores | "
            + ", ".join(f"{c:.3f}" for c in cores)
            + " | not modelled | -",
            f"{brokers} | broker CPU s per MB stored (cores at {Plan().kafka_broker_write_mb_s:g} "
            f"MB/s if linear) | "
            + ", ".join(f"{c:.3f} ({c * Plan().kafka_broker_write_mb_s:.1f})" for c in per_mb)
            + " | not modelled | -",
            f"{brokers} | publisher events/s (target {pub['target_events_per_s']:,.0f}) | "
            f"{pub['events_per_s']:,.0f} | - | "
            f"{_ratio(pub['events_per_s'], pub['target_events_per_s'])}",
            f"{brokers} | publisher CPU per event, µs | {pub['us_per_event']:.1f} | "
            f"{pred['publisher_us_per_event']:.1f} | "
            f"{_ratio(pub['us_per_event'], pred['publisher_us_per_event'])}",
        ]
    return "\n".join(rows)


def warnings(result: dict[str, Any]) -> list[str]:
    """What makes a run's figures suspect, in words."""
    stats = result["publisher"]["stats"]
    found = []
    if not result["replicas_caught_up"]:
        found.append("replicas did not converge within 60 s: disk figures are a lower bound")
    if stats["spills"] or stats["dropped"]:
        found.append(
            f"the publisher spilled {stats['spills']} times and dropped {stats['dropped']} "
            "events: Kafka did not keep up; lower --rate"
        )
    if result["publisher"]["events_per_s"] < 0.95 * result["publisher"]["target_events_per_s"]:
        found.append("the publisher fell behind the rate: the machine is too busy for it")
    return [f"{result['brokers']} broker(s): {text}" for text in found]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--brokers", default="1,3", help="broker counts to run, e.g. 1,3")
    parser.add_argument("--exchanges", type=int, default=12_000, help="exchanges published")
    parser.add_argument("--rate", type=float, default=200.0, help="exchanges per second")
    parser.add_argument("--chunks-per-response", type=int, default=80)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--distinct", type=int, default=1000, help="exchanges encoded, repeated")
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        args.broker_counts = [int(value) for value in args.brokers.split(",")]
    except ValueError:
        parser.error(f"--brokers takes counts separated by commas, e.g. 1,3 (got {args.brokers})")
    if any(count < 1 for count in args.broker_counts):
        parser.error("--brokers: every count must be at least 1")
    if args.exchanges < 1 or args.rate <= 0 or args.distinct < 1 or args.partitions < 1:
        parser.error("--exchanges, --distinct and --partitions must be at least 1, --rate above 0")
    if args.chunks_per_response < 1:
        parser.error("--chunks-per-response must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = datetime.now(UTC)
    load_before = os.getloadavg()
    pool = exchange_events(min(args.distinct, args.exchanges), args.chunks_per_response)
    events_per_exchange = sum(map(len, pool)) / len(pool)
    print(
        f"{args.exchanges:,} exchanges of {args.chunks_per_response} chunks "
        f"({events_per_exchange:.1f} events each) at {args.rate:g}/s, "
        f"{args.partitions} partitions; load average {load_before[0]:.1f}",
        flush=True,
    )
    libs = ensure_kafka_jars()
    results = []
    for brokers in args.broker_counts:
        results.append(run_brokers(args, pool, brokers, libs))
        print(f"{brokers} broker(s) done", flush=True)
    load_after = os.getloadavg()
    print(table(results))
    for line in (w for result in results for w in warnings(result)):
        print(f"warning: {line}", file=sys.stderr)
    print(f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    if args.out is not None:
        report = {
            "command": " ".join(["python -m tests.bench.kafka.bench_brokers", *sys.argv[1:]]),
            "started_utc": began.isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_average": {"before": load_before, "after": load_after},
            "params": {
                key: str(value) if isinstance(value, Path) else value
                for key, value in vars(args).items()
            },
            "results": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
