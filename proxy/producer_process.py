"""The producer process: Kafka's client and compression, beside a proxy worker, off its event loop.

With ``LOGORHYTHMS_PRODUCER=process`` the proxy's loop only appends events to its journal and
rings a doorbell (one byte on a pipe); this process, started and restarted by the proxy
(proxy/process_publisher.py), tails the journal's segments from the acknowledged position
(proxy/journal_tail.py), sends what gathered over a linger as one batch per partition, where
aiokafka's default partitioner puts each key (as the inline publisher: proxy/batching.py), and
runs at a lower CPU priority than its worker. It reports every acknowledged position
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
from asyncio import FIRST_COMPLETED
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from proxy.batching import UNCOMPRESSED_ABOVE, build_batches, partition_for
from proxy.journal import Position
from proxy.journal_record import JournalRecord
from proxy.journal_tail import JournalTail
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

log = logging.getLogger("proxy.producer_process")

_WINDOW = 10_000  # records handed to aiokafka and not yet acknowledged
_READ_BYTES = 4 * 1024 * 1024
_PARTITIONS_KNOWN_MAX = 4096  # exchanges' partitions remembered: more than are in flight at once
_IDLE_WAKE_S = 0.5  # without a ring, look at the journal this often (a lost ring costs this much)


class _SendFailed(Exception):
    pass


class ProducerProcess:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tail = JournalTail(Path(args.journal_dir), Position(args.segment, args.offset))
        self.acked = self.tail.position
        self.partitions = 0
        # After Kafka refused a batch as too large: up to here, one event per batch.
        self.alone_until = Position(0, 0)
        self.gone = asyncio.Event()  # the doorbell closed: the proxy stopped or died

    def report(self, line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def _drain_doorbell(self) -> bool:
        """Empty the doorbell; whether it rang. Its end of file: the proxy stopped or died."""
        rang = False
        while True:
            try:
                data = os.read(self.args.doorbell_fd, 65536)
            except BlockingIOError:
                return rang
            if not data:
                self.gone.set()
                return True
            rang = True

    async def _wait(
        self, futures: set[asyncio.Future[Any]], within_s: float, *, listen: bool
    ) -> bool:
        """Wait for one of ``futures``, ``within_s`` or, when ``listen``, the doorbell; whether
        it rang. The doorbell is watched only while a read of the journal may follow: a ring
        that wakes this process for nothing costs a loop iteration, one per proxy response."""
        loop = asyncio.get_running_loop()
        rung: asyncio.Future[None] = loop.create_future()
        if listen:
            loop.add_reader(self.args.doorbell_fd, _resolve, rung)
        try:
            await asyncio.wait({rung, *futures}, timeout=within_s, return_when=FIRST_COMPLETED)
        finally:
            if listen:
                loop.remove_reader(self.args.doorbell_fd)
        if rung.done():
            return self._drain_doorbell()
        rung.cancel()
        return False

    async def run(self) -> None:
        os.set_blocking(self.args.doorbell_fd, False)
        delay = 0.2
        while not self.gone.is_set():
            producer = await self._connect()
            if producer is None:
                return
            try:
                await self._pump(producer, self.partitions)
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
        while True:
            self._drain_doorbell()  # its end of file ends the retries
            if self.gone.is_set():
                return None
            producer = AIOKafkaProducer(
                bootstrap_servers=self.args.bootstrap,
                client_id=self.args.client_id,
                acks="all",
                enable_idempotence=True,
                compression_type=None if self.args.compression == "none" else self.args.compression,
                linger_ms=0,  # the pump lingers itself, so what it hands over is complete
                max_batch_size=UNCOMPRESSED_ABOVE,  # a larger event goes alone in its own batch
                max_request_size=KAFKA_MAX_MESSAGE_BYTES,
                request_timeout_ms=int(self.args.timeout_s * 1000),
            )
            try:
                async with asyncio.timeout(self.args.timeout_s):
                    await producer.start()
                    self.partitions = len(await producer.partitions_for(self.args.topic))
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

    async def _pump(self, producer: AIOKafkaProducer, partitions: int) -> None:
        """Send the journal as it grows, one batch per partition per linger, acknowledging in
        journal order."""
        linger_s = self.args.linger_ms / 1000
        drains: collections.deque[_Drain] = collections.deque()
        in_flight = 0

        known: dict[bytes, int] = {}

        def partition_of(key: bytes) -> int:
            # murmur2 is pure Python (~15 µs); an exchange's events share their key.
            partition = known.get(key)
            if partition is None:
                if len(known) >= _PARTITIONS_KNOWN_MAX:
                    known.clear()
                partition = known[key] = partition_for(key, partitions)
            return partition

        read_after = 0.0  # reads are spaced by the linger, unless a backlog is being sent
        while not self.gone.is_set():
            in_flight -= self._acknowledge(drains)
            may_read = in_flight < _WINDOW and time.monotonic() >= read_after
            if may_read:
                self._drain_doorbell()  # what it announced is read now
                limit = 1 if self.tail.position < self.alone_until else _WINDOW - in_flight
                records = self.tail.read(limit, _READ_BYTES)
                if records:
                    drains.append(await self._send(producer, records, partition_of))
                    in_flight += len(records)
                    backlog = len(records) == limit or drains[-1].value_bytes >= _READ_BYTES
                    # Let events gather: each hand-over costs aiokafka a produce request, far
                    # more than an event, so fewer and fuller batches make the capture cheaper;
                    # the wait adds to capture lag only.
                    read_after = time.monotonic() + (0.0 if backlog else linger_s)
                    await asyncio.sleep(0)
                    continue
            timeout = _IDLE_WAKE_S if may_read else max(0.0, read_after - time.monotonic())
            waiting_for: set[asyncio.Future[Any]] = set()
            if drains:
                oldest = drains[0]
                overdue_in = oldest.sent_at + self.args.timeout_s - time.monotonic()
                if overdue_in <= 0:
                    raise _SendFailed(TimeoutError("no acknowledgement in time"))
                timeout = min(timeout, overdue_in)
                waiting_for = {future for future, _ in oldest.batches if not future.done()}
            if await self._wait(waiting_for, timeout, listen=may_read):
                read_after = max(read_after, time.monotonic() + linger_s)

    async def _send(
        self,
        producer: AIOKafkaProducer,
        records: list[tuple[Position, JournalRecord]],
        partition_of: Callable[[bytes], int],
    ) -> _Drain:
        events = ((record.key, record.value, record.headers, record.key) for _, record in records)
        drain = _Drain(records[-1][0], len(records), time.monotonic())
        drain.value_bytes = sum(len(record.value) for _, record in records)
        for partition, batch, keys in build_batches(producer, events, partition_of):
            async with asyncio.timeout(self.args.timeout_s):
                future = await producer.send_batch(batch, self.args.topic, partition=partition)
            drain.batches.append((future, keys))
        return drain

    def _acknowledge(self, drains: collections.deque[_Drain]) -> int:
        """Report the oldest drains Kafka took whole; the number of records they held."""
        count = 0
        while drains and all(future.done() for future, _ in drains[0].batches):
            drain = drains.popleft()
            for future, keys in drain.batches:
                failure = None if future.cancelled() else future.exception()
                if isinstance(failure, MessageSizeTooLargeError) and len(keys) == 1:
                    log.error("Kafka refused an event of exchange %r as too large", keys[0])
                    self.report(f"drop {keys[0].hex()}")
                elif isinstance(failure, MessageSizeTooLargeError):
                    # Which event is too large is not known in a batch: send this stretch of
                    # the journal again, an event per batch, so only that one is dropped.
                    self.alone_until = drain.end
                    raise _SendFailed(failure)
                elif future.cancelled() or failure is not None:
                    raise _SendFailed(failure)
            self.acked = drain.end
            count += drain.count
            self.report(f"ack {drain.end.segment} {drain.end.offset} {drain.count}")
        return count


@dataclass(slots=True)
class _Drain:
    """Records handed over together: acknowledged once every batch of them is."""

    end: Position  # the journal position after its last record
    count: int
    sent_at: float
    value_bytes: int = 0
    batches: list[tuple[asyncio.Future[Any], list[bytes]]] = field(default_factory=list)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


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
    parser.add_argument("--nice", type=int, default=10, help="added to this process's niceness")
    return parser.parse_args(argv)


def yield_to_the_worker(niceness: int) -> None:
    """Run behind the proxy worker on a shared core: its loop serves clients, this process only
    moves what is already safe in the journal. ``SCHED_BATCH`` keeps this process's wake-ups from
    preempting the worker; the niceness gives it a smaller share while both want the core, which
    only delays capture (the journal holds the events meanwhile), never a client."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the default policy
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.nice(niceness)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    args = _arguments(argv)
    yield_to_the_worker(args.nice)
    # A broken pipe: the proxy is gone; the next producer process starts from its cursor.
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        asyncio.run(ProducerProcess(args).run())


if __name__ == "__main__":
    main()
