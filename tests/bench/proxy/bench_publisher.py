"""CPU per exchange handed to Kafka by the proxy's Publisher, paced the way a busy proxy publishes.

Each "exchange" publishes three events (request ~2 KB, one chunk ~0.5 KB, completed ~0.4 KB,
partly random so compression has real work), in bursts of ``--burst`` exchanges every ``burst``
ms, i.e. ``1000`` exchanges/s by default. The same loop without publishing is the baseline; the
difference is the Kafka path's whole cost: publish, the pump, batches, aiokafka's sender,
compression, the produce requests and their acknowledgements. No HTTP, so the figure is steady
on a busy machine. Each round runs the baseline and every compression, so drift hits all alike.

    .venv/bin/python -m tests.bench.proxy.bench_publisher --lingers 5,20,50,100 --rounds 3
    .venv/bin/python -m tests.bench.proxy.bench_publisher --lingers 50 --compressions zstd,lz4,none
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from deploy.local.kafka import KafkaBroker, create_topic, ensure_kafka_jars
from proxy.journal import Journal
from proxy.publisher import Publisher

TOPIC = "bench.publisher"
REQUEST = os.urandom(600) + b"x" * 1400
CHUNK = os.urandom(200) + b"y" * 300
COMPLETED = os.urandom(100) + b"z" * 300


async def cpu_per_exchange(
    bootstrap: str, *, publish: bool, exchanges: int, burst: int, linger_ms: int, compression: str
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
    started = time.process_time()
    for number in range(exchanges):
        if publish:
            key = b"%036d" % number  # as long as a request id
            publisher.publish(key, REQUEST)
            publisher.publish(key, CHUNK)
            publisher.publish(key, COMPLETED)
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
    args = parser.parse_args()
    with KafkaBroker(
        Path(tempfile.mkdtemp(prefix="bench-kafka-")), libs_dir=ensure_kafka_jars()
    ) as k:
        asyncio.run(create_topic(k.bootstrap_servers, TOPIC, partitions=args.partitions))
        compressions = args.compressions.split(",")
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
                                burst=args.burst,
                                linger_ms=linger,
                                compression="none" if name == "baseline" else name,
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
