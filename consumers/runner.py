"""The consumer loop shared by every sink: fetch, decode, batch, write, commit.

Order per batch (written down because it is the whole delivery guarantee):
1. decode every record (into columns, for the events a ``ColumnarSink`` takes as columns);
   undecodable ones are dead-lettered (original bytes + reason);
2. the sink writes the batch (idempotent: a retry carries the same deduplication token);
3. records the sink rejected are dead-lettered, and the dead-letter producer is flushed;
4. only then are the offsets committed (a stateful sink may commit less, see
   ``WriteResult.commit``: what it still needs is re-read after a restart).
A retriable sink failure pauses every partition, backs off and retries the *same* batch, so the
boundaries and tokens never change; nothing is committed until it succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata

from consumers.cyclegc import CycleCollectionPause
from consumers.deadletter import DeadLetterProducer, as_consumer_record
from consumers.decode import decode_batch
from consumers.faultpoint import fault_point
from consumers.schema_ids import SchemaIdLearner
from consumers.settings import ConsumerSettings
from consumers.sink import (
    Batch,
    ColumnarSink,
    Committed,
    Record,
    Rejected,
    Sink,
    SinkError,
    StatefulSink,
    WriteResult,
)
from schemas import Codec, EventType
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunnerStats:
    batches: int = 0
    records: int = 0
    deadlettered: int = 0
    retries: int = 0
    last_batch_size: int = 0


class RunnerMetrics(Protocol):
    """Where the runner reports its health (Datadog in production); optional."""

    def batch(
        self, *, consumer: str, records: int, write_ms: float, retries: int, deadlettered: int
    ) -> None: ...

    def lag(self, *, consumer: str, lag_by_partition: dict[int, int]) -> None: ...


class RunnerTracing(Protocol):
    """Continues the producer's traces for delivered records (APM in production); optional."""

    def delivered(
        self, *, consumer: str, records: Sequence[Record], started_ns: int, finished_ns: int
    ) -> None:
        """``records``: the batch's ``Record``s (the events a sink took as columns are not
        among them)."""
        ...


class _Revocation(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Deliver and commit what we hold for these partitions while we still own them.
        await self._runner.flush(reason="rebalance")

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("assigned partitions: %s", sorted(tp.partition for tp in assigned))
        await self._runner.tell_assigned(assigned)


class Runner:
    def __init__(
        self,
        *,
        settings: ConsumerSettings,
        sink: Sink,
        codec: Codec | None = None,
        metrics: RunnerMetrics | None = None,
        tracing: RunnerTracing | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._metrics = metrics
        self._tracing = tracing
        self._codec = codec or Codec()
        self._schema_ids = SchemaIdLearner.for_settings(settings, self._codec)
        self._consumer: AIOKafkaConsumer | None = None
        self._deadletter: DeadLetterProducer | None = None
        self._pending: list[ConsumerRecord[bytes, bytes]] = []
        self._pending_bytes = 0
        self._first_pending_at: float | None = None
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._shutdown_deadline: float | None = None
        self._committed: dict[TopicPartition, int] = {}
        self._gc_pause = CycleCollectionPause()
        self._columnar: Mapping[EventType, tuple[str, ...]] = {}
        if hasattr(sink, "columnar"):
            columnar: ColumnarSink = sink  # type: ignore[assignment]
            self._columnar = columnar.columnar
        self.stats = RunnerStats()
        self.ready = asyncio.Event()

    def request_stop(self) -> None:
        if not self._stop.is_set():
            self._shutdown_deadline = time.monotonic() + self._settings.shutdown_timeout_s
        self._stop.set()

    async def run(self) -> None:
        s = self._settings
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id,
            client_id=f"{s.group_id}-runner",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # At least one event of the largest size (schemas/limits.py) per fetch.
            max_partition_fetch_bytes=KAFKA_MAX_MESSAGE_BYTES,
            fetch_max_bytes=max(min(s.batch_max_bytes, 64 * 1024 * 1024), KAFKA_MAX_MESSAGE_BYTES),
            isolation_level="read_committed",
            # The broker may hold a fetch this long waiting for data; keep it well under the
            # batch age so capture lag stays below a second at low traffic.
            fetch_max_wait_ms=100,
        )
        self._deadletter = DeadLetterProducer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=s.group_id,
            topic=s.deadletter_topic,
        )
        async with contextlib.AsyncExitStack() as stack:
            # Every close is bounded by the shutdown budget (see _bounded) and idempotent, so
            # the consumer's is pushed before any step that can fail, the later push stays in
            # charge when all went well.
            stack.push_async_callback(self._bounded(self._consumer.stop, "Kafka consumer"))
            stack.push_async_callback(self._bounded(self._deadletter.stop, "dead-letter producer"))
            if not await self._start_with_retry(self._deadletter.start, "dead-letter producer"):
                return
            await self._sink.start()
            stack.push_async_callback(self._bounded(self._sink.stop, f"{self._sink.name} sink"))
            self._consumer.subscribe([s.topic], listener=_Revocation(self))
            if not await self._start_with_retry(self._consumer.start, "consumer"):
                return
            stack.push_async_callback(self._bounded(self._consumer.stop, "Kafka consumer"))
            self.ready.set()
            log.info("%s consuming %s as group %s", self._sink.name, s.topic, s.group_id)
            await self._loop()
            try:
                async with asyncio.timeout(self._shutdown_remaining()):
                    await self.flush(reason="shutdown")
            except TimeoutError:
                log.warning(
                    "the last batch was not delivered within the %.0fs shutdown budget; it is "
                    "redelivered at the next start (nothing of it was committed)",
                    s.shutdown_timeout_s,
                )

    def _shutdown_remaining(self) -> float:
        """Seconds left of the shutdown budget, which starts when the stop is asked for (or
        when closing starts without one, after an error)."""
        if self._shutdown_deadline is None:
            self._shutdown_deadline = time.monotonic() + self._settings.shutdown_timeout_s
        return max(0.0, self._shutdown_deadline - time.monotonic())

    def _bounded(
        self, close: Callable[[], Awaitable[object]], what: str
    ) -> Callable[[], Awaitable[None]]:
        """``close`` within what is left of the shutdown budget; a close that cannot finish
        (the broker is gone: aiokafka waits on its request timeouts) is abandoned, said once."""

        async def bounded() -> None:
            try:
                async with asyncio.timeout(self._shutdown_remaining()):
                    await close()
            except TimeoutError:
                log.warning("%s did not close within the shutdown budget; abandoned", what)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # aiokafka's consumer re-raises the cancellation of its own fetch tasks from
                # stop(); that is not ours to propagate.
                log.debug("%s: its close re-raised an inner cancellation", what)
            except KafkaError as exc:
                log.warning("%s did not close cleanly: %r", what, exc)

        return bounded

    async def _start_with_retry(self, start: Callable[[], Awaitable[None]], what: str) -> bool:
        """Start ``start`` once Kafka lets it; False when asked to stop first."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                await start()
                return True
            except KafkaError as exc:
                if self._stop.is_set():
                    break
                log.warning("Kafka %s cannot start yet (%s); retrying in %.1fs", what, exc, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                delay = min(delay * 2, 10.0)
        log.info("stopped before the Kafka %s could start", what)
        return False

    async def _loop(self) -> None:
        assert self._consumer is not None
        s = self._settings
        while not self._stop.is_set():
            timeout_ms = 100
            if self._first_pending_at is not None:
                remaining = s.batch_max_age_s - (time.monotonic() - self._first_pending_at)
                timeout_ms = max(0, min(100, int(remaining * 1000)))
            room = max(1, s.batch_max_records - len(self._pending))
            fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=room)
            for records in fetched.values():
                if records and self._first_pending_at is None:
                    self._first_pending_at = time.monotonic()
                self._pending.extend(records)
                self._pending_bytes += sum(len(r.value or b"") for r in records)
            if self._batch_due():
                await self.flush(reason="batch")

    def _batch_due(self) -> bool:
        if not self._pending or self._first_pending_at is None:
            return False
        s = self._settings
        return (
            len(self._pending) >= s.batch_max_records
            or self._pending_bytes >= s.batch_max_bytes
            or time.monotonic() - self._first_pending_at >= s.batch_max_age_s
        )

    async def flush(self, *, reason: str) -> None:
        """Write the pending records to the sink and commit them (one outcome, see above)."""
        async with self._lock:
            if not self._pending:
                return
            pending, self._pending = self._pending, []
            self._pending_bytes = 0
            self._first_pending_at = None
            # What the batch builds is freed when _deliver returns, before the collector resumes.
            with self._gc_pause:
                await self._deliver(pending)

    async def _deliver(self, pending: list[ConsumerRecord[bytes, bytes]]) -> None:
        assert self._consumer is not None
        if self._schema_ids is not None:
            await self._schema_ids.learn(pending, self._stop)
        batch, poison = decode_batch(self._codec, pending, self._columnar)
        retries_before = self.stats.retries
        started = time.monotonic()
        started_ns = time.time_ns()
        await fault_point("before_insert")
        # Written even when empty: a stateful sink then still says what may be committed.
        result = await self._write_with_retry(batch)
        write_ms = (time.monotonic() - started) * 1000
        poison.extend((as_consumer_record(item.record), item.reason) for item in result.rejected)
        if poison:
            assert self._deadletter is not None
            await self._deadletter.send(poison)
            self.stats.deadlettered += len(poison)
        await fault_point("before_commit")
        await self._commit(pending, result.commit)
        if self._tracing is not None:
            self._tracing.delivered(
                consumer=self._sink.name,
                records=batch.records,
                started_ns=started_ns,
                finished_ns=time.time_ns(),
            )
        self.stats.batches += 1
        self.stats.records += len(pending)
        self.stats.last_batch_size = len(pending)
        if self._metrics is not None:
            self._metrics.batch(
                consumer=self._sink.name,
                records=len(pending),
                write_ms=write_ms,
                retries=self.stats.retries - retries_before,
                deadlettered=len(poison),
            )
            self._metrics.lag(consumer=self._sink.name, lag_by_partition=self._lag())

    def _lag(self) -> dict[int, int]:
        """Records between what is committed and the end of each partition, as last fetched."""
        assert self._consumer is not None
        lag: dict[int, int] = {}
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            committed = self._committed.get(tp)
            if end is not None and committed is not None:
                lag[tp.partition] = max(0, end - committed)
        return lag

    async def tell_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """A stateful sink learns what is committed (metadata included) for its new partitions."""
        if not hasattr(self._sink, "assigned") or not assigned:
            return
        sink: StatefulSink = self._sink  # type: ignore[assignment]
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for attempt in range(3):
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self._settings.kafka_bootstrap_servers,
                client_id=f"{self._settings.group_id}-offsets",
            )
            try:
                await admin.start()
                offsets = await admin.list_consumer_group_offsets(
                    self._settings.group_id, partitions=list(assigned)
                )
                break
            except KafkaError as exc:
                # Without the metadata the sink still starts over cleanly; it may only resend
                # what it had already forwarded past the committed offset.
                log.warning("cannot read committed offsets (attempt %d): %s", attempt + 1, exc)
                await asyncio.sleep(0.5 * (attempt + 1))
            finally:
                await admin.close()
        committed: dict[tuple[str, int], Committed] = {}
        for tp, meta in offsets.items():
            if meta.offset >= 0:
                committed[(tp.topic, tp.partition)] = (meta.offset, meta.metadata or "")
                self._committed[tp] = meta.offset
        await sink.assigned(committed)

    async def _write_with_retry(self, batch: Batch) -> WriteResult:
        assert self._consumer is not None
        s = self._settings
        delay = s.retry_initial_backoff_s
        paused = False
        try:
            while True:
                try:
                    result = await self._sink.write(batch)
                    if paused:
                        log.info("%s recovered; the batch is delivered", self._sink.name)
                    return result
                except SinkError as exc:
                    if not exc.retriable:
                        return WriteResult(
                            rejected=[
                                Rejected(r, f"rejected by {self._sink.name}: {exc}")
                                for r in batch.every_record()
                            ]
                        )
                    self.stats.retries += 1
                    self._gc_pause.resume()
                    if self._stop.is_set():
                        raise
                    # Said once per outage; the retries that follow are only debug noise.
                    log.log(
                        logging.DEBUG if paused else logging.WARNING,
                        "%s failed (%s); paused, retrying the same batch of %d in %.1fs",
                        self._sink.name,
                        exc,
                        batch.size(),
                        delay,
                    )
                    if not paused:
                        self._consumer.pause(*self._consumer.assignment())
                        paused = True
                    # Polling while paused keeps us in the group without fetching anything.
                    await self._consumer.getmany(timeout_ms=int(delay * 1000))
                    delay = min(delay * 2, s.retry_max_backoff_s)
        finally:
            if paused:
                self._consumer.resume(*self._consumer.assignment())

    async def _commit(
        self,
        records: list[ConsumerRecord[bytes, bytes]],
        overrides: dict[tuple[str, int], Committed],
    ) -> None:
        assert self._consumer is not None
        # Plain tuples per record, the Kafka structs once per partition (a batch has 50 000
        # records and a handful of partitions).
        last: dict[tuple[str, int], int] = {}
        for r in records:
            key = (r.topic, r.partition)
            if last.get(key, -1) < r.offset:
                last[key] = r.offset
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset + 1, "")
            for (topic, partition), offset in last.items()
        }
        for (topic, partition), (offset, metadata) in overrides.items():
            offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, metadata)
        if not offsets:
            return
        delay = self._settings.retry_initial_backoff_s
        while True:
            try:
                await self._consumer.commit(offsets)
                self._committed.update({tp: meta.offset for tp, meta in offsets.items()})
                return
            except CommitFailedError as exc:
                # We lost these partitions in a rebalance; the new owner re-reads from the last
                # commit and the raw tables' replacing keys absorb the overlap.
                log.warning("commit after a rebalance failed, records will be redelivered: %s", exc)
                return
            except KafkaError as exc:
                # The broker or coordinator is away. The batch is in the sink already: retrying
                # the commit keeps its redelivery (same batch, same insert token) unnecessary.
                if not exc.retriable or self._stop.is_set():
                    log.warning("could not commit (%r); the batch will be redelivered", exc)
                    return
                log.warning("commit failed (%r); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.retry_max_backoff_s)
