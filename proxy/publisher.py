"""The proxy's only Kafka producer, with an on-disk journal for when Kafka is slow or away.

``publish()`` never waits. Every event is appended to the journal (a buffered write-ahead log;
``write_through()`` hands it to the kernel, which the proxy does before an exchange's response head
and before its last byte, so a killed proxy loses nothing a client saw). While Kafka keeps up,
events also go to a bounded in-memory queue that one pump task drains, once the oldest has waited
the linger (50 ms by default), into one aiokafka batch per partition, in arrival order (so the
events of an exchange keep their order on their partition); when Kafka acknowledges a drain, the
journal is acknowledged up to where that drain ended, and its segments are deleted. When Kafka is
unreachable, a send does not finish within our deadline, a delivery fails, or too many events
wait in memory, the publisher *spills*: it forgets what it holds in memory (the journal has it),
rewinds the journal to the last acknowledged record, and from then on new events go to the
journal only, until the pump has replayed the whole journal into Kafka (oldest first) and Kafka
acknowledged it. Keeping every event in the journal while it is non-empty is what keeps global
order: a new event can never overtake a journaled one. Dropping happens only when the journal
refuses a record while spilling (its size cap, a failed disk); it is counted and the exchange is
named in the drop log (``proxy/droplog.py``). At start, the exchanges an earlier, killed run
left open get a ``proxy_died`` completed event (``proxy/recovery.py``).

Every aiokafka call runs under our own deadline: its producer can hang in ``start()``, ``send()``
(waiting for metadata) and ``stop()`` while the broker is away.

Length: the pump (memory to Kafka) and the spill and replay (journal to Kafka) are two modes of
one state machine: they hand over to each other on every failure and recovery, and share the
producer, the queue, the in-flight drains and the journal's acknowledged position. Split apart,
each would need the other's internals, so they stay in one module.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from proxy.batching import (
    UNCOMPRESSED_ABOVE,
    Batches,
    PrecompressedBatch,
    compress_all,
    partition_for,
)
from proxy.droplog import DropLog
from proxy.journal import Journal, Position
from proxy.journal_record import Headers, JournalRecord
from proxy.looplag import FirstStep, LoopLagMonitor, first_step_timed
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

_Event = tuple[bytes, bytes, Headers | None]
# What waits in memory: the event, and whether the journal holds it too (False only when the
# journal refused it while Kafka kept up: then memory is its only copy).
_Queued = tuple[bytes, bytes, Headers | None, bool]
# Events a dead run left unfinished, turned into the events that end them (proxy/recovery.py).
Recovery = Callable[[Iterable[JournalRecord]], list[_Event]]
_CURSOR_SAVE_INTERVAL_S = 1.0
# Publish-to-acknowledgement latencies kept between two metric flushes: a bounded sample, so a
# busy proxy spends nothing more on it than an idle one.
_LATENCY_SAMPLES_MAX = 1024
# The replay reads the journal this much at a time (at least one record): one read of 16 large
# request events (480 MB) held the event loop for seconds, long enough to time out the upstream
# connects of the exchanges it served meanwhile (docs/decisions/0018-…).
_REPLAY_READ_BYTES = 4 * 1024 * 1024
_WRITE_THROUGH_NOTED_S = 100e-6  # the loop-lag monitor's first bucket bound
# The hand-over builds batches a slice at a time, yielding the loop between slices: a linger's
# events at 1,000 exchanges/s held it 0.4 to 0.8 ms at once
# (docs/decisions/0030-compression-off-the-loop.md).
_HAND_OVER_SLICE_S = 100e-6
# Up to this many bytes of records a linger's batches are compressed on the loop (zstd: ~1 µs per
# KiB here, so ≤ ~30 µs); above, in a worker thread.
_COMPRESS_ON_LOOP_BYTES = 32 * 1024
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
    dropped_exchanges: int = 0  # distinct exchanges named in the drop log
    recovered: int = 0  # exchanges an earlier run left open, ended as proxy_died
    send_failures: int = 0  # sends that failed or timed out and were journaled or retried
    resent: int = 0  # sent twice: journaled after a missed deadline yet acknowledged later, or
    # acknowledged as part of a drain Kafka did not take whole, so replayed with the rest
    spills: int = 0  # times the publisher switched from memory to the journal
    producer_restarts: int = 0  # the producer process exited and was started again

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
        drop_log: DropLog | None = None,
        recovery: Recovery | None = None,
        loop_monitor: LoopLagMonitor | None = None,
    ) -> None:
        self.topic = topic
        # The produce cycle's steps on the loop are timed into it (proxy/looplag.py).
        self.loop_monitor = loop_monitor if loop_monitor is not None else LoopLagMonitor(None)
        self.journal = journal
        self.drop_log = drop_log if drop_log is not None else DropLog(journal.directory)
        self.stats = PublishStats()
        self._recovery = recovery
        self._dropped_keys = self.drop_log.recent  # the drop log's own dict: no call per event
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._queue: collections.deque[_Queued] = collections.deque()
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
        # Handed to aiokafka, not yet acknowledged, in send order: one entry per batch, with its
        # events, in order, when it was sent, and the drain it belongs to.
        self._in_flight: dict[asyncio.Future[object], tuple[list[_Queued], float, _Drain]] = {}
        self._in_flight_events = 0
        # Batches in flight when the publisher spilled, and their event counts: one Kafka takes
        # after all is sent twice (counted in ``resent``). Forgotten at the next spill, so a
        # future the dropped producer never settles is not kept for ever.
        self._abandoned: dict[asyncio.Future[object], int] = {}
        # Drains of the queue not yet wholly acknowledged, oldest first: the journal is
        # acknowledged up to the end of each, in order, once all its batches are.
        self._drains: collections.deque[_Drain] = collections.deque()
        # The drain being handed over: events taken off the queue, not yet in a batch, and the
        # batches not yet handed to aiokafka. A spill meanwhile accounts for both.
        self._taking: collections.deque[_Queued] = collections.deque()
        self._handing_over: Batches[_Queued] | None = None
        self._handing_over_events = 0
        self._partition_count = 0
        self._partition_of: dict[bytes, int] = {}
        self._producer_broken = False
        self._connected = False
        self._spilling = False
        self._started = False
        self._cursor_saved = 0.0

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
        return len(self._queue) + self._in_flight_events + self._handing_over_events

    @property
    def idle(self) -> bool:
        """Everything published so far is acknowledged by Kafka (or dropped)."""
        return (
            not self._spilling
            and not self._queue
            and not self._in_flight
            and not self._handing_over_events
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def drain_latency_samples(self) -> list[float]:
        """Milliseconds from handing events to Kafka to their acknowledgement, since last asked."""
        samples, self._latency_samples_ms = self._latency_samples_ms, []
        return samples

    def _open_journal(self) -> None:
        """Open the journal and end the exchanges a dead run left open (as ``proxy_died``)."""
        self.journal.open()
        if self._recovery is not None:
            ended = self._recovery(self.journal.leftover_records())
            self.stats.recovered += len(ended)
            for event in ended:
                self._append(event)

    async def _flush_within_stop_budget(self) -> None:
        """Let Kafka take what it can within the stop budget; the rest stays for the next start."""
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

    async def start(self) -> None:
        if self._started:
            return
        # Until Kafka answers, events are safest on disk (anything queued before start goes first).
        self._spilling = True
        self._open_journal()
        while self._queue:
            key, value, headers, journaled = self._queue.popleft()
            if not journaled:
                self._append((key, value, headers))
        self.journal.flush()
        self._started = True
        for name, coro in (("kafka-publisher", self._run()), ("journal-sync", self._sync_loop())):
            task = asyncio.create_task(coro, name=name)
            self._tasks.add(task)

    async def stop(self) -> None:
        """Deliver what we can within the stop budget; everything else ends up in the journal."""
        if not self._started:
            return
        await self._flush_within_stop_budget()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._close_producer(flush=True)
        # What Kafka did not acknowledge stays in the journal: at worst re-sent once, never lost.
        for future in self._in_flight:
            future.remove_done_callback(self._on_delivery)  # settled here, once
        for future, (events, _, drain) in self._in_flight.items():
            if _succeeded(future):
                self.stats.delivered += len(events)
                drain.delivered += len(events)
                drain.batches -= 1
        self._ack_drains()
        self._in_flight.clear()
        self._in_flight_events = 0
        if self._queue or self._drains or self._handing_over_events:
            self._spill("shutting down before Kafka acknowledged everything")
        self.journal.close()
        self.drop_log.close()
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
        if self._dropped_keys and key in self._dropped_keys:
            # An exchange that lost an event cannot be whole: its rest would only take room
            # from whole exchanges, and it is named in the drop log already.
            self._dropped(key, "exchange_incomplete")
            return
        if self._spilling:
            self._append((key, value, headers))
            return
        journaled = self.journal.append(key, value, headers)
        if self.in_memory < self._queue_max:
            if not self._queue:  # the pump waits for events only while the queue is empty
                self._queued_since = time.monotonic()
                self._wakeup.set()
            self._queue.append((key, value, headers, journaled))
            return
        self._queue.append((key, value, headers, journaled))
        self._spill(f"{self._queue_max} events wait for Kafka")

    def write_through(self) -> None:
        """Hand every event published so far to the kernel (one ``write``, no fsync): from here
        on a killed proxy cannot lose them. Cheap when nothing new was published."""
        started = time.perf_counter()
        self.journal.flush()
        self._held_by_write_through(started)

    def _held_by_write_through(self, started: float) -> None:
        """Name a write-through that held the loop for long (a slow disk) in the loop-lag monitor.
        Only runs over the first bucket are recorded: two clock reads are all a request pays."""
        held = time.perf_counter() - started
        if held >= _WRITE_THROUGH_NOTED_S:
            self.loop_monitor.record("journal_write_through", held)

    def _append(self, event: _Event) -> None:
        if self.journal.append(*event):
            self.stats.journaled += 1
        else:
            self._dropped(event[0], "journal_full" if self.journal.healthy else "journal_io_error")

    def _dropped(self, key: bytes, reason: str) -> None:
        self.stats.dropped += 1
        if key not in self.drop_log:
            self.drop_log.record(key, reason)
            self.stats.dropped_exchanges = self.drop_log.exchanges
        if self.stats.dropped == 1 or self.stats.dropped % 10_000 == 0:
            log.error(
                "journal cannot take more events (%d bytes used, healthy=%s): %d dropped, "
                "%d exchanges named in %s",
                self.journal.size_bytes,
                self.journal.healthy,
                self.stats.dropped,
                self.drop_log.exchanges,
                self.drop_log.path,
            )

    def record_drop(self, key: bytes, reason: str) -> None:
        """An event of exchange ``key`` was lost before reaching the publisher (say, encoding)."""
        self._dropped(key, reason)

    def _spill(self, reason: str) -> None:
        """Switch to the journal. What waits in memory is forgotten (the journal holds it: the
        replay starts at the last acknowledged record), except events the journal refused while
        Kafka kept up, which are appended now; a disk that failed and a Kafka that failed at
        once is the one case where such an event may land behind a later one of its exchange."""
        if not self._spilling:
            self._spilling = True
            self._idle.clear()
            self.stats.spills += 1
            log.warning("Kafka is not keeping up (%s): journaling events to disk", reason)
        # Batches Kafka took of a drain it did not take whole: the journal is acknowledged a whole
        # drain at a time, so the replay sends them again. Counted as journaled (and resent), not
        # as delivered from memory, so that journaled == replayed once the journal is empty.
        again = sum(drain.delivered for drain in self._drains)
        self.stats.delivered -= again
        self.stats.journaled += again
        self.stats.resent += again
        self._abandoned = {future: len(batch[0]) for future, batch in self._in_flight.items()}
        held = [e for events, _, _ in self._in_flight.values() for e in events]
        held += self._queue
        held += self._taking
        if self._handing_over is not None:
            held += self._handing_over.tags()
        self._taking.clear()
        self._handing_over = None
        self._handing_over_events = 0
        self._in_flight.clear()
        self._in_flight_events = 0
        self._drains.clear()
        self._queue.clear()
        self.journal.rewind()
        self.stats.journaled += sum(1 for *_, journaled in held if journaled)
        for key, value, headers, journaled in held:
            if not journaled:
                self._append((key, value, headers))
        self._wakeup.set()

    def _abandon_in_flight(self, reason: str) -> None:
        """Kafka did not confirm in time: replay every unconfirmed event from the journal and
        drop the producer, so its buffered batches are not sent a second time."""
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
                max_batch_size=UNCOMPRESSED_ABOVE,  # a larger event goes alone in its own batch
                max_request_size=KAFKA_MAX_MESSAGE_BYTES,
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
                self._time_produce_requests(producer)
                self._producer = producer
                self._producer_broken = False
                self._partition_count = len(partitions)
                # The producer fetched metadata from a live broker: connected, until a send or an
                # acknowledgement says otherwise.
                self._connected = True
                log.info("publishing to Kafka %s topic %s", self._bootstrap, self.topic)
                return

    def _time_produce_requests(self, producer: AIOKafkaProducer) -> None:
        """Name aiokafka's produce request in the loop-lag monitor: its sender builds, compresses,
        encodes and writes each request in one loop callback, the first step of
        ``_send_produce_req``. A private name: an aiokafka release without it goes untimed."""
        sender = getattr(producer, "_sender", None)
        send_request = getattr(sender, "_send_produce_req", None)
        if sender is None or send_request is None:
            log.info("aiokafka's produce requests cannot be timed in this version; not timing them")
            return
        sender._send_produce_req = first_step_timed(
            self.loop_monitor, "kafka_produce_request", send_request
        )

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
        # future per batch instead of per event (docs/decisions/0007-own-linger-and-partitioner.md).
        # Whatever Kafka gets is in the kernel first, so a dead run's journal is a superset of
        # what reached Kafka (proxy/recovery.py counts the chunks there).
        self.journal.flush()
        end = self.journal.tail
        self._taking, self._queue = self._queue, collections.deque()
        self._handing_over_events = len(self._taking)
        batches = await self._build_batches()
        if batches is None:
            return True  # spilled meanwhile; the spill took every event over
        drain = _Drain(end, len(batches.built), batches.events)
        self._drains.append(drain)
        started = time.perf_counter()
        while batches.built:
            if time.perf_counter() - started > _HAND_OVER_SLICE_S:
                if not await self._end_slice(started):
                    return True
                started = time.perf_counter()
            partition, batch, events = batches.built[0]
            try:
                async with asyncio.timeout(self._kafka_timeout_s):
                    # aiokafka waits here while an earlier batch of the partition is unsent:
                    # that wait is not the loop held, so the slice ends where it suspends.
                    sending = FirstStep(
                        self._producer_or_raise().send_batch(batch, self.topic, partition=partition)
                    )
                    future: asyncio.Future[object] = await sending
            except (KafkaError, TimeoutError) as exc:
                # The spill takes the batches not handed over, this one included.
                self._abandon_in_flight(f"send failed: {exc!r}")
                return False
            if sending.suspended_at is not None:
                self.loop_monitor.record("produce_hand_over", sending.suspended_at - started)
                started = time.perf_counter()
            if self._spilling:
                # Spilled while aiokafka waited (metadata, the partition): the replay sends the
                # journal; a copy aiokafka still delivers is absorbed by the replacing keys.
                return True
            del batches.built[0]
            self._handing_over_events -= len(events)
            self._in_flight[future] = (events, time.monotonic(), drain)
            self._in_flight_events += len(events)
            future.add_done_callback(self._on_delivery)
        self._handing_over = None
        self.loop_monitor.record("produce_hand_over", time.perf_counter() - started)
        return True

    def _producer_or_raise(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise KafkaError("the producer is not connected")
        return self._producer

    async def _build_batches(self) -> Batches[_Queued] | None:
        """The events taken off the queue as aiokafka batches, one open batch per partition, in
        order (proxy/batching.py), built a slice at a time so no step holds the loop long, then
        compressed in a worker thread (``PrecompressedBatch``). None if the publisher spilled
        meanwhile. Once an event is in a batch, the batch's copy is the one kept until Kafka
        acknowledges it; ours is dropped unless the journal refused it (a spill re-appends
        those)."""
        producer = self._producer_or_raise()
        codec = self._compression
        new_batch = producer.create_batch if codec is None else lambda: PrecompressedBatch(codec)
        batches: Batches[_Queued] = Batches(new_batch, self._partition)
        self._handing_over = batches
        taking = self._taking
        started = time.perf_counter()
        while taking:
            event = taking.popleft()
            key, value, headers, journaled = event
            batches.add(key, value, headers, event if not journaled else (key, b"", None, True))
            if taking and time.perf_counter() - started > _HAND_OVER_SLICE_S:
                if not await self._end_slice(started):
                    return None
                started = time.perf_counter()
        batches.finish()
        self.loop_monitor.record("produce_hand_over", time.perf_counter() - started)
        if codec is not None:
            if sum(batch.size() for _, batch, _ in batches.built) <= _COMPRESS_ON_LOOP_BYTES:
                # A low-load linger's few events: compressing them takes less than the worker
                # thread's round trip, which wakes the loop once more.
                compress_all(batches.built)
            else:
                await asyncio.to_thread(compress_all, batches.built)
                if self._spilling:
                    return None
        return batches

    async def _end_slice(self, started: float) -> bool:
        """End a slice of the hand-over begun at ``started``: record it, let the loop run what
        waits. False if the publisher spilled meanwhile (the spill took the hand-over's events)."""
        self.loop_monitor.record("produce_hand_over", time.perf_counter() - started)
        await asyncio.sleep(0)
        return not self._spilling

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
        started = time.perf_counter()
        self._acknowledged(future)
        self.loop_monitor.record("produce_acknowledge", time.perf_counter() - started)

    def _acknowledged(self, future: asyncio.Future[object]) -> None:
        if future not in self._in_flight:
            abandoned = self._abandoned.pop(future, 0)
            if _succeeded(future):
                # Journaled when its deadline passed, yet Kafka took it after all: the replay
                # will send it again (the raw tables' replacing keys absorb the copy).
                self.stats.resent += abandoned
            return
        if not _succeeded(future):
            self._abandon_in_flight(f"delivery failed: {_failure(future)!r}")
            return
        events, sent_at, drain = self._in_flight.pop(future)
        self._in_flight_events -= len(events)
        if len(self._latency_samples_ms) < _LATENCY_SAMPLES_MAX:
            self._latency_samples_ms.append((time.monotonic() - sent_at) * 1000)
        self.stats.delivered += len(events)
        drain.delivered += len(events)
        drain.batches -= 1
        if drain is self._drains[0]:
            self._ack_drains()
        self._connected = True
        if self.idle:
            self._idle.set()

    def _ack_drains(self) -> None:
        """Acknowledge the journal up to the end of the oldest drains Kafka took whole."""
        drains = self._drains
        while drains and drains[0].batches == 0:
            drain = drains.popleft()
            self.journal.ack(drain.end, drain.events)

    async def _replay(self) -> bool:
        """Send the journal to Kafka in order; stop spilling once all of it is acknowledged.

        Returns False after a failure (the caller backs off); the journal is rewound to the last
        acknowledged record, so nothing is skipped (a record may be sent twice, never lost).
        """
        sent: collections.deque[tuple[Position, bytes, float, asyncio.Future[object]]] = (
            collections.deque()
        )
        cursor_saved = time.monotonic()
        try:
            while True:
                while sent and sent[0][3].done():
                    position, key, _, future = sent.popleft()
                    if isinstance(_failure(future), MessageSizeTooLargeError):
                        self._refused_as_too_large(key)
                    elif not _succeeded(future):
                        raise _ReplayFailed(_failure(future))
                    self.journal.ack(position, 1)
                    if _succeeded(future):
                        self.stats.replayed += 1
                        self.stats.delivered += 1
                    self._connected = True
                if time.monotonic() - cursor_saved > _CURSOR_SAVE_INTERVAL_S:
                    self.journal.save_cursor()
                    cursor_saved = time.monotonic()
                # After a failure, one record probes the broker before a whole window follows.
                window = self._replay_window if self._connected else 1
                batch = (
                    self.journal.read(window - len(sent), _REPLAY_READ_BYTES)
                    if len(sent) < window
                    else []
                )
                for position, record in batch:
                    future = await self._send((record.key, record.value, record.headers))
                    sent.append((position, record.key, time.monotonic(), future))
                if batch:
                    # Reading, checking and handing over a journal of large events is all
                    # synchronous: let the exchanges in flight run between two reads.
                    await asyncio.sleep(0)
                if sent:
                    if not batch or len(sent) >= window:
                        overdue_in = sent[0][2] + self._kafka_timeout_s - time.monotonic()
                        if overdue_in <= 0:
                            raise _ReplayFailed(TimeoutError("no acknowledgement in time"))
                        await asyncio.wait({sent[0][3]}, timeout=overdue_in)
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

    def _refused_as_too_large(self, key: bytes) -> None:
        """Kafka refused one replayed event for its size: a broker or topic configured below
        the limit the proxy's events are made for (schemas/limits.py). Sending it again cannot
        succeed and would hold every later event back, so it is dropped, counted and its
        exchange named in the drop log."""
        log.error(
            "Kafka refused an event of exchange %s as too large: raise the topic's "
            "max.message.bytes (or the broker's message.max.bytes) to %d, or lower "
            "max_event_bytes; the event is dropped",
            key.decode(errors="replace"),
            KAFKA_MAX_MESSAGE_BYTES,
        )
        self._dropped(key, "too_large")

    async def _sync_loop(self) -> None:
        """fsync the journal every interval, off the event loop, when records wait for Kafka
        longer than that: while spilling, or while an acknowledgement is overdue. While Kafka
        keeps up, its acknowledgement comes first and the fsync is skipped (a killed process
        loses nothing either way: the records are in the page cache). The acknowledged position
        is remembered at the same pace, so a restart re-sends little of what Kafka has."""
        acked_saved: Position | None = None
        while True:
            await asyncio.sleep(self._fsync_interval_s)
            if self.journal.acked != acked_saved and time.monotonic() - self._cursor_saved > 1.0:
                acked_saved = self.journal.acked
                # A file created and renamed: off the loop, where a busy disk stalled it for
                # milliseconds (docs/decisions/0019-the-loops-stalls-measured.md).
                await asyncio.to_thread(self.journal.save_cursor_at, acked_saved)
                self._cursor_saved = time.monotonic()
            oldest = next(iter(self._in_flight.values()), None)
            overdue = oldest is not None and time.monotonic() - oldest[1] > self._fsync_interval_s
            if not (self.journal.needs_sync and (self._spilling or overdue)):
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


@dataclass(slots=True)
class _Drain:
    """One drain of the memory queue: where the journal stood when it began, and how many of its
    batches Kafka has not acknowledged yet."""

    end: Position
    batches: int = 0
    events: int = 0
    delivered: int = 0  # events of its batches Kafka acknowledged so far


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
