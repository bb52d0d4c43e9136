"""CPU per exchange handed to Kafka by the proxy's Publisher, paced the way a busy proxy publishes.

Each "exchange" publishes the proxy's three events for a 1 KB chat request (request ~1.7 KB, one
streamed frame, completed), encoded by the real codec (``--random-payload``: a third random
bytes, the worst case for compression), in bursts of ``--burst`` exchanges every ``burst`` ms,
i.e. 1,000 exchanges/s by default. The same loop without publishing is the baseline; the
difference is the Kafka path's whole cost: publish, the pump, batches, aiokafka's sender,
compression, the produce requests and their acknowledgements. No HTTP, so the figure is steady
on a busy machine. Each round runs the baseline and every compression, so drift hits all alike.

    .venv/bin/python -m tests.bench.proxy.bench_publisher --lingers 5,20,50,100 --rounds 3
    .venv/bin/python -m tests.bench.proxy.bench_publisher --lingers 50 --compressions zstd,lz4,none
    .venv/bin/python -m tests.bench.proxy.bench_publisher --lingers 50 --headers

``--headers`` adds, for each compression, a run whose records carry the event and schema
headers every proxy record carries (docs/EVENTS.md), so the two differ only by those headers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from deploy.local.kafka import KafkaBroker, create_topic, ensure_kafka_jars
from proxy.journal import Journal
from proxy.publisher import Publisher
from schemas import Codec, EventType
from tests.bench.proxy.bench_capture_cost import Steps

TOPIC = "bench.publisher"
Exchange = tuple[bytes, bytes, bytes, bytes]  # key, request, chunk and completed events


def captured_exchanges(count: int) -> list[Exchange]:
    """The events the proxy publishes for a 1 KB chat request, one streamed frame and the end,
    encoded by the real codec, each exchange with its own request id and timestamps (so
    compression sees what it sees in production: similar records, not one repeated)."""
    steps = Steps(1024)
    codec = steps.codec
    exchanges = []
    for _ in range(count):
        request_id = str(uuid.uuid4())
        now_us = time.time_ns() // 1000
        request = {**steps.build_request(), "request_id": request_id, "received_at_us": now_us}
        chunk = {**steps.build_chunk(), "request_id": request_id}
        completed = {
            **steps.build_completed(),
            "request_id": request_id,
            "completed_at_us": now_us + random.randrange(100_000),
        }
        exchanges.append(
            (
                request_id.encode(),
                codec.encode(EventType.REQUEST, request),
                codec.encode(EventType.CHUNK, chunk),
                codec.encode(EventType.COMPLETED, completed),
            )
        )
    return exchanges


def random_exchanges(count: int) -> list[Exchange]:
    """The worst case for compression: a third of every event random bytes."""
    request = os.urandom(600) + b"x" * 1400
    chunk = os.urandom(200) + b"y" * 300
    completed = os.urandom(100) + b"z" * 300
    return [(b"%036d" % number, request, chunk, completed) for number in range(count)]


async def cpu_per_exchange(
    bootstrap: str,
    *,
    publish: bool,
    exchanges: int,
    payloads: list[Exchange],
    burst: int,
    linger_ms: int,
    compression: str,
    named: bool = False,
) -> float:
    """Process CPU µs per exchange, from the first publish to the last acknowledgement."""
    publisher = Publisher(
        bootstrap_servers=bootstrap,
        topic=TOPIC,
        journal=Journal(Path(tempfile.mkdtemp(prefix="bench-journal-"))),
        linger_ms=linger_ms,
        compression=compression,
    )
    await publisher.start()
    await publisher.flush()  # connected, and nothing left from the start-up journal
    codec = Codec()
    names = {t: codec.event_headers(t) if named else None for t in EventType}
    started = time.process_time()
    for number in range(exchanges):
        if publish:
            key, request, chunk, completed = payloads[number % len(payloads)]
            publisher.publish(key, request, names[EventType.REQUEST])
            publisher.publish(key, chunk, names[EventType.CHUNK])
            publisher.publish(key, completed, names[EventType.COMPLETED])
            # The proxy hands an exchange's events to the kernel before its last byte.
            write_through = getattr(publisher, "write_through", None)
            if write_through is not None:
                write_through()
        if number % burst == burst - 1:
            await asyncio.sleep(burst / 1000)
    await publisher.flush()
    cpu = time.process_time() - started
    await publisher.stop()
    return cpu / exchanges * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lingers", default="20,50", help="LOGORHYTHMS_KAFKA_LINGER_MS values")
    parser.add_argument(
        "--compressions",
        default="zstd",
        help="LOGORHYTHMS_KAFKA_COMPRESSION values (zstd,lz4,gzip,none)",
    )
    parser.add_argument("--exchanges", type=int, default=4000)
    parser.add_argument("--burst", type=int, default=16, help="exchanges per ms of sleep")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--headers", action="store_true", help="also each compression with the event headers"
    )
    parser.add_argument(
        "--random-payload", action="store_true", help="a third random bytes, not real events"
    )
    args = parser.parse_args()
    payloads = (random_exchanges if args.random_payload else captured_exchanges)(1000)
    with KafkaBroker(
        Path(tempfile.mkdtemp(prefix="bench-kafka-")), libs_dir=ensure_kafka_jars()
    ) as k:
        asyncio.run(create_topic(k.bootstrap_servers, TOPIC, partitions=args.partitions))
        compressions = args.compressions.split(",")
        if args.headers:
            compressions += [f"{name}+headers" for name in compressions]
        print(f"1,000 exchanges/s in bursts of {args.burst}, 3 events each; rounds interleaved")
        print("linger ms | compression | baseline µs | with publishing µs | Kafka path µs/exchange")
        for linger in (int(value) for value in args.lingers.split(",")):
            # Every compression and the baseline in each round, so a drifting host hits all alike.
            runs: dict[str, list[float]] = {name: [] for name in ("baseline", *compressions)}
            for _ in range(args.rounds):
                for name in runs:
                    runs[name].append(
                        uvloop.run(
                            cpu_per_exchange(
                                k.bootstrap_servers,
                                publish=name != "baseline",
                                exchanges=args.exchanges,
                                payloads=payloads,
                                burst=args.burst,
                                linger_ms=linger,
                                compression="none" if name == "baseline" else name.split("+")[0],
                                named=name.endswith("+headers"),
                            )
                        )
                    )
            base = statistics.median(runs["baseline"])
            for name in compressions:
                on = statistics.median(runs[name])
                print(
                    f"{linger:9d} | {name:11} | {base:11.1f} | {on:18.1f} | {on - base:.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
