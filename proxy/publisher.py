"""The proxy's only Kafka producer, with an on-disk journal for when Kafka is slow or away.

``publish()`` never waits. While Kafka keeps up, events go to a bounded in-memory queue that one
pump task drains, once the oldest has waited the linger (50 ms by default), into one aiokafka
batch per partition, in arrival order (so the events of an exchange keep their order on their
partition). When Kafka is unreachable, a send does not finish within our deadline, a delivery
fails, or too many events wait in memory, the publisher
*spills*: what still waits in memory is appended to the journal, and so is every new event, until
the pump has replayed the whole journal into Kafka (oldest first) and Kafka acknowledged it. Keeping
every event in the journal while it is non-empty is what keeps global order: a new event can never
overtake a journaled one. Dropping happens only when the journal refuses a record (its size cap, a
failed disk), and is counted.

Every aiokafka call runs under our own deadline: its producer can hang in ``start()``, ``send()``
(waiting for metadata) and ``stop()`` while the broker is away.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from proxy.journal import Headers, Journal, Position
from proxy.partitioner import partition_for

log = logging.getLogger(__name__)

_Event = tuple[bytes, bytes, Headers | None]
_CURSOR_SAVE_INTERVAL_S = 1.0
# Publish-to-acknowledgement latencies kept between two metric flushes: a bounded sample, so a
# busy proxy spends nothing more on it than an idle one.
_LATENCY_SAMPLES_MAX = 1024
_PARTITION_CACHE_MAX = 4096  # exchanges' partitions remembered: more than are in flight at once


@dataclass(slots=True)
class PublishStats:
    """The proxy's own accounting, exposed so served vs captured can be reconciled.

    Every published event ends in exactly one of: delivered straight from memory, journaled (and
    later replayed), or dropped. ``replayed`` also counts records an earlier run journaled.
    """

    published: int = 0
    delivered: int = 0  # acknowledged by Kafka, from memory or from the journal
    journaled: int = 0
    replayed: int = 0  # journal records acknowledged by Kafka
    dropped: int = 0
    send_failures: int = 0  # sends that failed or timed out and were journaled or retried
    resent: int = 0  # journaled after a missed deadline, yet acknowledged later: sent twice
    spills: int = 0  # times the publisher switched from memory to the journal

    @property
    def enqueued(self) -> int:  # the name the first /statsz used
        return self.published


class Publisher:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        journal: Journal,
        queue_max: int = 100_000,
        kafka_timeout_s: float = 10.0,
        linger_ms: int = 50,
        compression: str = "zstd",
        stop_timeout_s: float = 10.0,
        fsync_interval_s: float = 0.2,
        replay_window: int = 1000,
        client_id: str = "logorhythms-proxy",
    ) -> None:
        self.topic = topic
        self.journal = journal
        self.stats = PublishStats()
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._queue: collections.deque[_Event] = collections.deque()
        self._latency_samples_ms: list[float] = []
        self._queue_max = queue_max
        self._kafka_timeout_s = kafka_timeout_s
        self._linger_s = linger_ms / 1000
        self._queued_since = 0.0  # when the oldest event in the queue arrived
        self._compression = None if compression == "none" else compression
        self._stop_timeout_s = stop_timeout_s
        self._fsync_interval_s = fsync_interval_s
        self._replay_window = replay_window
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()  # set whenever ``idle`` became true
        self._producer: AIOKafkaProducer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Handed to aiokafka, not yet acknowledged, in send order, with the time it was sent.
        # One entry per batch handed to aiokafka: its events, in order, and when it was sent.
        self._in_flight: dict[asyncio.Future[object], tuple[list[_Event], float]] = {}
        self._in_flight_events = 0
        self._partition_count = 0
        self._partition_of: dict[bytes, int] = {}
        self._producer_broken = False
        self._connected = False
        self._spilling = False
        self._started = False

    # -- state -----------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def degraded(self) -> bool:
        """True while events go to the journal instead of straight to Kafka."""
        return self._spilling or not self._connected or not self.journal.healthy

    @property
    def in_memory(self) -> int:
        return len(self._queue) + self._in_flight_events

    @property
    def idle(self) -> bool:
        """Everything published so far is acknowledged by Kafka (or dropped)."""
        return not self._spilling and not self._queue and not self._in_flight

    # -- lifecycle -------------------------------------------------------------------------------

    def drain_latency_samples(self) -> list[float]:
        """Milliseconds from handing events to Kafka to their acknowledgement, since last asked."""
        samples, self._latency_samples_ms = self._latency_samples_ms, []
        return samples

    async def start(self) -> None:
        if self._started:
            return
        self.journal.open()
        # Until Kafka answers, events are safest on disk (anything queued before start goes first).
        self._spilling = True
        while self._queue:
            self._append(self._queue.popleft())
        self._started = True
        for name, coro in (("kafka-publisher", self._run()), ("journal-sync", self._sync_loop())):
            task = asyncio.create_task(coro, name=name)
            self._tasks.add(task)

    async def stop(self) -> None:
        """Deliver what we can within the stop budget; everything else ends up in the journal."""
        if not self._started:
            return
        try:
            async with asyncio.timeout(self._stop_timeout_s):
                await self.flush()
        except TimeoutError:
            log.warning(
                "Kafka did not take everything within %.1fs; %d events in memory and the journal's "
                "%d bytes stay on disk for the next start",
                self._stop_timeout_s,
                self.in_memory,
                self.journal.size_bytes,
            )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._close_producer(flush=True)
        # What Kafka did not acknowledge is journaled: at worst re-sent once, never lost.
        for future in self._in_flight:
            future.remove_done_callback(self._on_delivery)  # settled here, once
        unacked = [
            event
            for future, (events, _) in self._in_flight.items()
            if not _succeeded(future)
            for event in events
        ]
        self.stats.delivered += self._in_flight_events - len(unacked)
        self._in_flight.clear()
        self._in_flight_events = 0
        self._queue.extendleft(reversed(unacked))
        if self._queue:
            self._spill("shutting down before Kafka acknowledged everything")
        self.journal.close()
        self._connected = False
        self._started = False

    async def flush(self) -> None:
        """Wait until Kafka acknowledged every event published so far (journal included).

        ``_idle`` may still be set from an earlier idle moment (publishing does not clear it, to
        stay cheap), hence the loop on ``idle`` itself.
        """
        self._wakeup.set()
        while not self.idle:
            self._idle.clear()
            await self._idle.wait()

    # -- the hot path ----------------------------------------------------------------------------

    def publish(self, key: bytes, value: bytes, headers: Headers | None = None) -> None:
        """Hand one event over. Never blocks; never raises."""
        self.stats.published += 1
        if not self._spilling and len(self._queue) + self._in_flight_events < self._queue_max:
            if not self._queue:  # the pump waits for events only while the queue is empty
                self._queued_since = time.monotonic()
                self._wakeup.set()
            self._queue.append((key, value, headers))
            return
        if not self._spilling:
            self._spill(f"{self._queue_max} events wait for Kafka")
        self._append((key, value, headers))

    def _append(self, event: _Event) -> None:
        if self.journal.append(*event):
            self.stats.journaled += 1
        else:
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 10_000 == 0:
                log.error(
                    "journal cannot take more events (%d bytes used, healthy=%s): %d dropped",
                    self.journal.size_bytes,
                    self.journal.healthy,
                    self.stats.dropped,
                )

    def _spill(self, reason: str) -> None:
        """Switch to the journal; what still waits in memory goes first, to keep the order."""
        if not self._spilling:
            self._spilling = True
            self._idle.clear()
            self.stats.spills += 1
            log.warning("Kafka is not keeping up (%s): journaling events to disk", reason)
        while self._queue:
            self._append(self._queue.popleft())
        self._wakeup.set()

    def _abandon_in_flight(self, reason: str) -> None:
        """Kafka did not confirm in time: journal every unconfirmed event (in send order, ahead of
        the queue) and drop the producer, so its buffered batches are not sent a second time."""
        unconfirmed = [event for events, _ in self._in_flight.values() for event in events]
        self._in_flight.clear()
        self._in_flight_events = 0
        self._queue.extendleft(reversed(unconfirmed))
        self._producer_broken = True
        self._connected = False
        self.stats.send_failures += 1
        self._spill(reason)

    # -- the pump --------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                if self._producer_broken:
                    await self._close_producer(flush=False)
                if self._producer is None:
                    await self._connect()
                ok = await self._replay() if self._spilling else await self._send_from_memory()
            except Exception:  # a bug here must not stop capture: start over with a new producer
                log.exception("Kafka publisher failed unexpectedly; restarting it")
                self.stats.send_failures += 1
                self._abandon_in_flight("publisher error")
                self.journal.rewind()  # records read but not acknowledged are read again
                ok = False
            if ok:
                delay = 0.2
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _connect(self) -> None:
        delay = 0.2
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                compression_type=self._compression,
                # The pump lingers itself (_send_from_memory), so what it hands over is complete.
                linger_ms=0,
                max_batch_size=512 * 1024,
                request_timeout_ms=int(self._kafka_timeout_s * 1000),
            )
            try:
                async with asyncio.timeout(self._kafka_timeout_s):
                    await producer.start()
                    partitions = await producer.partitions_for(self.topic)
            except (KafkaError, TimeoutError) as exc:
                log.warning("Kafka not reachable at %s (%r); retrying", self._bootstrap, exc)
                await _stop_producer(producer, flush_s=0)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            else:
                self._producer = producer
                self._producer_broken = False
                self._partition_count = len(partitions)
                # The producer fetched metadata from a live broker: connected, until a send or an
                # acknowledgement says otherwise.
                self._connected = True
                log.info("publishing to Kafka %s topic %s", self._bootstrap, self.topic)
                return

    async def _send(self, event: _Event) -> asyncio.Future[object]:
        """Hand one event to aiokafka (enqueue only), within our deadline."""
        assert self._producer is not None
        key, value, headers = event
        async with asyncio.timeout(self._kafka_timeout_s):
            future: asyncio.Future[object] = await self._producer.send(
                self.topic, value, key=key, headers=headers
            )
        return future

    async def _send_from_memory(self) -> bool:
        if not self._queue:
            # Idle, or waiting for acknowledgements: wake up for new events, or when the oldest
            # unacknowledged send passes its deadline (an idempotent aiokafka producer retries
            # forever while the broker is away, so only our deadline notices).
            oldest = next(iter(self._in_flight.values()), None)
            self._wakeup.clear()
            if oldest is None:
                await self._wakeup.wait()
                return True
            overdue_in = oldest[1] + self._kafka_timeout_s - time.monotonic()
            if overdue_in > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(overdue_in):
                        await self._wakeup.wait()
                return True
            self._abandon_in_flight(f"no acknowledgement within {self._kafka_timeout_s:.1f}s")
            return False
        # Let events gather for the linger, counted from the oldest: each wake-up of this pump,
        # of aiokafka's sender and each Kafka request costs far more CPU than an event does, so
        # fewer, fuller batches make the capture cheaper; the wait adds to capture lag only.
        gathering = self._queued_since + self._linger_s - time.monotonic()
        if gathering > 0:
            await asyncio.sleep(gathering)
        # Everything waiting goes out now, as one batch per partition: one aiokafka call and one
        # future per batch instead of per event (about 8x less CPU per event, PERFORMANCE.md).
        batches = self._build_batches()
        for position, (partition, batch, events) in enumerate(batches):
            try:
                async with asyncio.timeout(self._kafka_timeout_s):
                    future: asyncio.Future[object] = await self._producer_or_raise().send_batch(
                        batch, self.topic, partition=partition
                    )
            except (KafkaError, TimeoutError) as exc:
                # Not handed over: back to the front of the queue, in order, behind nothing.
                unsent = [
                    event for _, _, batch_events in batches[position:] for event in batch_events
                ]
                self._queue.extendleft(reversed(unsent))
                self._abandon_in_flight(f"send failed: {exc!r}")
                return False
            self._in_flight[future] = (events, time.monotonic())
            self._in_flight_events += len(events)
            future.add_done_callback(self._on_delivery)
        return True

    def _producer_or_raise(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise KafkaError("the producer is not connected")
        return self._producer

    def _build_batches(self) -> list[tuple[int, Any, list[_Event]]]:
        """Drain the queue into aiokafka batches, one open batch per partition, in order.

        The partition is Kafka's default partitioner's (murmur2 of the key), so an exchange's
        events land where a plain ``send()`` would have put them, in the same order.
        """
        producer = self._producer_or_raise()
        built: list[tuple[int, Any, list[_Event]]] = []
        open_batches: dict[int, tuple[Any, list[_Event]]] = {}
        while self._queue:
            event = self._queue.popleft()
            key, value, headers = event
            partition = self._partition(key)
            current = open_batches.get(partition)
            if (
                current is None
                or current[0].append(timestamp=None, key=key, value=value, headers=headers or [])
                is None
            ):
                if current is not None:
                    built.append((partition, current[0], current[1]))
                batch = producer.create_batch()
                batch.append(timestamp=None, key=key, value=value, headers=headers or [])
                current = open_batches[partition] = (batch, [])
            current[1].append(event)
        built.extend(
            (partition, batch, events) for partition, (batch, events) in open_batches.items()
        )
        return built

    def _partition(self, key: bytes) -> int:
        partition = self._partition_of.get(key)
        if partition is None:
            partition = partition_for(key, self._partition_count)
            if len(self._partition_of) >= _PARTITION_CACHE_MAX:
                # Keys are request ids: only exchanges in flight come back, and a forgotten one
                # is recomputed to the same partition. A large cache was ~10 MB of RSS.
                self._partition_of.clear()
            self._partition_of[key] = partition
        return partition

    def _on_delivery(self, future: asyncio.Future[object]) -> None:
        if future not in self._in_flight:
            if _succeeded(future):
                # Journaled when its deadline passed, yet Kafka took it after all: the replay
                # will send it again (the raw tables' replacing keys absorb the copy).
                self.stats.resent += 1
            return
        if not _succeeded(future):
            self._abandon_in_flight(f"delivery failed: {_failure(future)!r}")
            return
        events, sent_at = self._in_flight.pop(future)
        self._in_flight_events -= len(events)
        if len(self._latency_samples_ms) < _LATENCY_SAMPLES_MAX:
            self._latency_samples_ms.append((time.monotonic() - sent_at) * 1000)
        self.stats.delivered += len(events)
        self._connected = True
        if self.idle:
            self._idle.set()

    async def _replay(self) -> bool:
        """Send the journal to Kafka in order; stop spilling once all of it is acknowledged.

        Returns False after a failure (the caller backs off); the journal is rewound to the last
        acknowledged record, so nothing is skipped (a record may be sent twice, never lost).
        """
        sent: collections.deque[tuple[Position, float, asyncio.Future[object]]] = (
            collections.deque()
        )
        cursor_saved = time.monotonic()
        try:
            while True:
                while sent and sent[0][2].done():
                    position, _, future = sent.popleft()
                    if not _succeeded(future):
                        raise _ReplayFailed(_failure(future))
                    self.journal.ack(position, 1)
                    self.stats.replayed += 1
                    self.stats.delivered += 1
                    self._connected = True
                if time.monotonic() - cursor_saved > _CURSOR_SAVE_INTERVAL_S:
                    self.journal.save_cursor()
                    cursor_saved = time.monotonic()
                # After a failure, one record probes the broker before a whole window follows.
                window = self._replay_window if self._connected else 1
                batch = self.journal.read(window - len(sent)) if len(sent) < window else []
                for position, record in batch:
                    future = await self._send((record.key, record.value, record.headers))
                    sent.append((position, time.monotonic(), future))
                if sent:
                    if not batch or len(sent) >= window:
                        overdue_in = sent[0][1] + self._kafka_timeout_s - time.monotonic()
                        if overdue_in <= 0:
                            raise _ReplayFailed(TimeoutError("no acknowledgement in time"))
                        await asyncio.wait({sent[0][2]}, timeout=overdue_in)
                    continue
                if not self.journal.has_unacked:
                    self._spilling = False
                    self.journal.save_cursor()
                    if self.idle:
                        self._idle.set()
                    log.info("journal replayed into Kafka; publishing straight from memory again")
                    return True
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._wakeup.wait()
        except (KafkaError, TimeoutError, _ReplayFailed) as exc:
            self.stats.send_failures += 1
            self._connected = False
            self._producer_broken = True  # its buffered batches must not go out after the rewind
            log.warning("replaying the journal failed (%r); will retry from the last ack", exc)
            self.journal.rewind()
            return False

    async def _sync_loop(self) -> None:
        """fsync the journal every interval, off the event loop, when anything was appended."""
        while True:
            await asyncio.sleep(self._fsync_interval_s)
            if not self.journal.needs_sync:
                continue
            self.journal.flush()  # in the loop, where a failed write is handled
            try:
                await asyncio.to_thread(self.journal.sync)
            except OSError as exc:
                log.error("journal fsync failed: %s", exc)

    async def _close_producer(self, *, flush: bool) -> None:
        """Close the producer. ``flush``: give aiokafka a short chance to deliver what it holds
        (at shutdown); without it (after a missed deadline, when those events are journaled
        already) its buffered batches are discarded, so they cannot arrive twice."""
        producer, self._producer = self._producer, None
        self._producer_broken = False
        if producer is not None:
            await _stop_producer(producer, flush_s=min(2.0, self._stop_timeout_s) if flush else 0)


class _ReplayFailed(Exception):
    pass


async def _stop_producer(producer: AIOKafkaProducer, *, flush_s: float) -> None:
    """Stop a producer within ``flush_s``, then abort whatever it still holds.

    aiokafka's ``stop()`` waits until every buffered batch is delivered, which never happens while
    the broker is away (aiokafka #1101); and once interrupted, its sender task keeps retrying in
    the background and would deliver those batches later. aiokafka has no public abort, so we
    cancel its sender first; ``stop()`` then has nothing left to wait for.
    """
    if flush_s > 0:
        try:
            async with asyncio.timeout(flush_s):
                await producer.stop()
            return
        except (TimeoutError, KafkaError) as exc:
            log.warning("Kafka producer did not flush within %.1fs (%r): aborting it", flush_s, exc)
    sender = getattr(producer, "_sender", None)
    try:
        async with asyncio.timeout(5.0):
            if sender is not None:
                await sender.close()
            await producer.stop()  # with the sender gone it only closes the connections
    except (TimeoutError, KafkaError) as exc:
        log.error("could not abort the Kafka producer cleanly: %r", exc)


def _succeeded(future: asyncio.Future[object]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _failure(future: asyncio.Future[object]) -> BaseException | None:
    if future.cancelled():
        return asyncio.CancelledError()
    return future.exception()
