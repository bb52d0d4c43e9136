"""What writing every event through the journal adds to the proxy's hot path, per event and per
exchange: ``Journal.append`` (CRC + buffered write, per event) and ``Journal.flush`` (one
``write`` to the page cache, before a response head and before an exchange's last byte).

The events are the real codec's, as bench_publisher builds them (a 1 KB chat request ~1.7 KB, one
streamed frame, the completed event). Thread CPU time, best of ``--rounds``; no Kafka, no HTTP.

    .venv/bin/python -m tests.bench.proxy.bench_journal_hotpath --rounds 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from proxy.journal import Journal
from tests.bench.proxy.bench_publisher import captured_exchanges


def _cpu_us(rounds: int, count: int, run: object) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        run()  # type: ignore[operator]
        best = min(best, (time.thread_time() - started) / count * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=20_000)
    parser.add_argument("--chunks", type=int, default=20, help="frames of a streamed exchange")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    payloads = captured_exchanges(1000)
    n = args.exchanges

    def journal() -> Journal:
        opened = Journal(Path(tempfile.mkdtemp(prefix="bench-wal-")), max_bytes=1 << 40)
        opened.open()
        return opened

    def appends_only() -> None:
        j = journal()
        for number in range(n):
            key, _, chunk, _ = payloads[number % 1000]
            j.append(key, chunk)
        j.ack(j.tail, n)
        j.close()

    def plain_exchange() -> None:  # request, one frame, completed; one flush at the end
        j = journal()
        for number in range(n):
            key, request, chunk, completed = payloads[number % 1000]
            j.append(key, request)
            j.append(key, chunk)
            j.append(key, completed)
            j.flush()
        j.ack(j.tail, 3 * n)
        j.close()

    def streamed_exchange() -> None:  # request, flush at the head, frames, completed, flush
        j = journal()
        for number in range(n // 10):
            key, request, chunk, completed = payloads[number % 1000]
            j.append(key, request)
            j.flush()
            for _ in range(args.chunks):
                j.append(key, chunk)
            j.append(key, completed)
            j.flush()
        j.ack(j.tail, 0)
        j.close()

    per_event = _cpu_us(args.rounds, n, appends_only)
    per_plain = _cpu_us(args.rounds, n, plain_exchange)
    per_stream = _cpu_us(args.rounds, n // 10, streamed_exchange)
    sizes = [len(p[1]) for p in payloads[:100]], [len(p[2]) for p in payloads[:100]]
    print(
        f"events: request ~{sum(sizes[0]) // 100} B, frame ~{sum(sizes[1]) // 100} B; "
        f"best of {args.rounds} rounds, thread CPU"
    )
    print(f"append, per chunk event:                     {per_event:6.2f} µs")
    print(f"plain exchange (3 appends + 1 flush):        {per_plain:6.2f} µs")
    print(f"streamed exchange ({args.chunks} frames, 2 flushes):   {per_stream:6.2f} µs")


if __name__ == "__main__":
    main()
