"""The producer process: Kafka's client and compression, beside a proxy worker, off its event loop.

With ``LOGORHYTHMS_PRODUCER=process`` the proxy's loop only appends events to its journal and
rings a doorbell (one byte on a pipe); this process, started and restarted by the proxy
(proxy/process_publisher.py), tails the journal's segments from the acknowledged position
(proxy/journal_tail.py), sends them in order with aiokafka's default partitioner (the one the
inline publisher computes itself, ``partition_for``), and reports every acknowledged position
on its stdout as ``ack <segment> <offset> <count>``, ``up``/``down`` as Kafka answers or not, and
``drop <key hex>`` for an event Kafka refused as too large. The proxy acknowledges its journal
with those (segment deletion, the cursor, ``/readyz`` degraded). The doorbell's end of file means
the proxy is gone or stopping: this process exits, and the next one starts from the cursor, so a
kill of either process re-sends at most what was unacknowledged, never loses it.

Run as ``python -m proxy.producer_process --journal-dir ... --doorbell-fd N ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from proxy.journal import Position
from proxy.journal_tail import JournalTail
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

log = logging.getLogger("proxy.producer_process")

_WINDOW = 1000  # records handed to aiokafka and not yet acknowledged
_READ_BYTES = 4 * 1024 * 1024
_BATCH_BYTES = 512 * 1024  # as the inline publisher's producer
_IDLE_WAKE_S = 0.5  # without a ring, look at the journal this often (a lost ring costs this much)


class _SendFailed(Exception):
    pass


class ProducerProcess:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tail = JournalTail(Path(args.journal_dir), Position(args.segment, args.offset))
        self.acked = self.tail.position
        self.ring = asyncio.Event()
        self.gone = asyncio.Event()  # the doorbell closed: the proxy stopped or died

    def report(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def _on_ring(self) -> None:
        try:
            data = os.read(self.args.doorbell_fd, 4096)
        except BlockingIOError:
            return
        if not data:
            asyncio.get_running_loop().remove_reader(self.args.doorbell_fd)
            self.gone.set()
        self.ring.set()

    async def run(self) -> None:
        os.set_blocking(self.args.doorbell_fd, False)
        asyncio.get_running_loop().add_reader(self.args.doorbell_fd, self._on_ring)
        delay = 0.2
        while not self.gone.is_set():
            producer = await self._connect()
            if producer is None:
                return
            try:
                await self._pump(producer)
                await _stop(producer, flush_s=2.0)
                return
            except (KafkaError, TimeoutError, _SendFailed) as exc:
                log.warning("sending the journal failed (%r); resending from the last ack", exc)
                self.report("down")
                await _stop(producer, flush_s=0)
                self.tail.seek(self.acked)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _connect(self) -> AIOKafkaProducer | None:
        delay = 0.2
        while not self.gone.is_set():
            producer = AIOKafkaProducer(
                bootstrap_servers=self.args.bootstrap,
                client_id=self.args.client_id,
                acks="all",
                enable_idempotence=True,
                compression_type=None if self.args.compression == "none" else self.args.compression,
                linger_ms=self.args.linger_ms,
                max_batch_size=_BATCH_BYTES,
                max_request_size=KAFKA_MAX_MESSAGE_BYTES,
                request_timeout_ms=int(self.args.timeout_s * 1000),
            )
            try:
                async with asyncio.timeout(self.args.timeout_s):
                    await producer.start()
                    await producer.partitions_for(self.args.topic)
            except (KafkaError, TimeoutError) as exc:
                log.warning("Kafka not reachable at %s (%r); retrying", self.args.bootstrap, exc)
                self.report("down")
                await _stop(producer, flush_s=0)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                self.report("up")
                return producer
        return None

    async def _pump(self, producer: AIOKafkaProducer) -> None:
        timeout_s = self.args.timeout_s
        sent: collections.deque[tuple[Position, bytes, float, asyncio.Future[object]]] = (
            collections.deque()
        )
        while not self.gone.is_set():
            count = 0
            while sent and sent[0][3].done():
                position, key, _, future = sent.popleft()
                failure = None if future.cancelled() else future.exception()
                if isinstance(failure, MessageSizeTooLargeError):
                    log.error("Kafka refused an event of exchange %r as too large", key)
                    self.report(f"drop {key.hex()}")
                elif future.cancelled() or failure is not None:
                    raise _SendFailed(failure)
                else:
                    count += 1
                self.acked = position
            if count:
                self.report(f"ack {self.acked.segment} {self.acked.offset} {count}")
            self.ring.clear()
            batch = self.tail.read(_WINDOW - len(sent), _READ_BYTES) if len(sent) < _WINDOW else []
            for position, record in batch:
                async with asyncio.timeout(timeout_s):
                    future = await producer.send(
                        self.args.topic, record.value, key=record.key, headers=record.headers
                    )
                sent.append((position, record.key, time.monotonic(), future))
            if batch:
                await asyncio.sleep(0)
                continue
            if sent:
                overdue_in = sent[0][2] + timeout_s - time.monotonic()
                if overdue_in <= 0:
                    raise _SendFailed(TimeoutError("no acknowledgement in time"))
                await asyncio.wait({sent[0][3]}, timeout=overdue_in)
                continue
            ring = asyncio.ensure_future(self.ring.wait())
            await asyncio.wait({ring}, timeout=_IDLE_WAKE_S)
            ring.cancel()


async def _stop(producer: AIOKafkaProducer, *, flush_s: float) -> None:
    """Stop within ``flush_s``; then cancel the sender, so nothing unacknowledged goes out late."""
    if flush_s > 0:
        try:
            async with asyncio.timeout(flush_s):
                await producer.stop()
            return
        except (TimeoutError, KafkaError):
            pass
    sender = getattr(producer, "_sender", None)
    try:
        async with asyncio.timeout(5.0):
            if sender is not None:
                await sender.close()
            await producer.stop()
    except (TimeoutError, KafkaError) as exc:
        log.error("could not abort the Kafka producer cleanly: %r", exc)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m proxy.producer_process")
    parser.add_argument("--journal-dir", required=True)
    parser.add_argument("--segment", type=int, required=True)
    parser.add_argument("--offset", type=int, required=True)
    parser.add_argument("--doorbell-fd", type=int, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--compression", default="zstd")
    parser.add_argument("--linger-ms", type=int, default=50)
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--client-id", default="logorhythms-producer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    args = _arguments(argv)
    # A broken pipe: the proxy is gone; the next producer process starts from its cursor.
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        asyncio.run(ProducerProcess(args).run())


if __name__ == "__main__":
    main()
