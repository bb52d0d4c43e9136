"""Run one broker in the foreground: ``python -m deploy.local.kafka --data-dir ./data/kafka``.

``--fetch-only`` only downloads the jars (a CI cache warm-up).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from deploy.local.kafka.broker import KafkaBroker
from deploy.local.kafka.errors import KafkaSetupError
from deploy.local.kafka.jars import KAFKA_VERSION, ensure_kafka_jars

__all__ = ["main"]


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.kafka",
        description=f"Run a single-node Kafka {KAFKA_VERSION} (KRaft) broker in the foreground.",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data/kafka"))
    parser.add_argument(
        "--port", type=int, default=9092, help="PLAINTEXT port (default 9092; 0 = any free)"
    )
    parser.add_argument(
        "--controller-port", type=int, default=None, help="KRaft port (default PORT+1)"
    )
    parser.add_argument("--heap-mb", type=int, default=384)
    parser.add_argument(
        "--quick-jit",
        action="store_true",
        help="C1-only JIT: faster start, lower throughput (for throwaway brokers)",
    )
    parser.add_argument("--log-file", type=Path, default=None, help="default DATA_DIR/broker.log")
    parser.add_argument("--timeout", type=float, default=90, help="start-up timeout, seconds")
    parser.add_argument(
        "--fetch-only", action="store_true", help="only download the jars (CI cache warm-up)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        libs = ensure_kafka_jars(progress=say)
        if args.fetch_only:
            return 0
        port: int | None = args.port or None
        controller_port: int | None = args.controller_port
        if controller_port is None and port is not None:
            controller_port = port + 1
        broker = KafkaBroker(
            args.data_dir,
            port=port,
            controller_port=controller_port,
            heap_mb=args.heap_mb,
            log_file=args.log_file,
            libs_dir=libs,
            quick_jit=args.quick_jit,
        )
        stop_requested = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            stop_requested.set()

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, on_signal)
        say(f"Starting Kafka {KAFKA_VERSION} (log: {broker.log_file}) ...")
        broker.start(timeout_s=args.timeout)
    except KafkaSetupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1

    try:
        say(
            f"Kafka ready in {broker.last_start_seconds or 0:.1f}s, pid {broker.pid}, "
            f"data {broker.data_dir}"
        )
        say(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
        say("Press Ctrl-C to stop.")
        while not stop_requested.wait(0.5):
            if not broker.is_running:
                print(
                    f"error: the broker exited unexpectedly.\n{broker.log_tail()}",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        say("Stopping Kafka ...")
    finally:
        broker.stop()
    say("Kafka stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
