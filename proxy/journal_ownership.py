"""Which journal directory each proxy process owns, and replaying the ones nobody owns any more.

A journal takes a lock, so two processes never write one journal: with ``workers = 1`` the proxy
uses ``journal_dir`` itself (as it always did); with N workers, worker *i* uses
``journal_dir/worker-<i>``. When the worker count changes between runs, some journals lose their
owner: going down from N to M leaves ``worker-<j>`` for j >= M, and going from 1 to N leaves the
single proxy's journal in ``journal_dir``. Worker 0 (or the single proxy) adopts those: it replays
each into Kafka with a publisher of its own, in the background, and leaves the directory empty.
An adopted journal never takes new events, so its order is simply its own. A journal that
cannot be opened (locked by a process still running, bound to another topic) stays on disk,
logged, for a later start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path

from aiohttp import web

from proxy.journal import Journal, JournalError
from proxy.journal_record import Headers, JournalRecord
from proxy.looplag import LoopLagMonitor
from proxy.process_publisher import ProcessPublisher
from proxy.publisher import Publisher
from proxy.recovery import died_completions
from proxy.settings import ProxySettings
from schemas import Codec

log = logging.getLogger(__name__)

_WORKER_PREFIX = "worker-"


def journal_dir(settings: ProxySettings, worker: int) -> Path:
    """The journal directory worker ``worker`` (0-based) owns."""
    base = Path(settings.journal_dir)
    return base if settings.workers == 1 else base / f"{_WORKER_PREFIX}{worker}"


def orphaned_journals(settings: ProxySettings) -> list[Path]:
    """Journal directories holding segments that no worker of this run owns, oldest layout first."""
    base = Path(settings.journal_dir)
    candidates = [base] if settings.workers > 1 else []
    for path in sorted(base.glob(f"{_WORKER_PREFIX}*")):
        index = path.name.removeprefix(_WORKER_PREFIX)
        if (
            path.is_dir()
            and index.isdigit()
            and (settings.workers == 1 or int(index) >= settings.workers)
        ):
            candidates.append(path)
    return [path for path in candidates if any(path.glob("*.seg"))]


def publisher_for(
    settings: ProxySettings,
    directory: Path,
    *,
    client_id: str = "logorhythms-proxy",
    stop_timeout_s: float | None = None,
    loop_monitor: LoopLagMonitor | None = None,
) -> Publisher:
    """A publisher with its journal in ``directory``, configured from the proxy's settings."""
    journal = Journal(
        directory,
        max_bytes=settings.journal_max_bytes,
        segment_bytes=settings.journal_segment_bytes,
        topic=settings.topic,
    )
    publisher_class = ProcessPublisher if settings.producer == "process" else Publisher
    return publisher_class(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic=settings.topic,
        journal=journal,
        queue_max=settings.publish_queue_max,
        kafka_timeout_s=settings.kafka_timeout_s,
        linger_ms=settings.kafka_linger_ms,
        compression=settings.kafka_compression,
        stop_timeout_s=(
            settings.publish_shutdown_timeout_s if stop_timeout_s is None else stop_timeout_s
        ),
        fsync_interval_s=settings.journal_fsync_interval_ms / 1000,
        client_id=client_id,
        recovery=_recovery,
        loop_monitor=loop_monitor,
    )


def _recovery(records: Iterable[JournalRecord]) -> list[tuple[bytes, bytes, Headers | None]]:
    return died_completions(records, Codec())


def adoption_context(
    settings: ProxySettings, journals: Sequence[Path]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context replaying ``journals`` in the background while the app runs. At shutdown
    whatever Kafka has not acknowledged stays in its directory, to be adopted again next start."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        tasks = {
            asyncio.create_task(_replay(settings, journal), name=f"replay-{journal.name}")
            for journal in journals
        }
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context


async def _replay(settings: ProxySettings, journal: Path) -> None:
    # Its events are all in its journal, none in memory: at shutdown there is nothing to wait for,
    # so it stops at once and leaves the whole flush budget to the worker's own publisher.
    publisher = publisher_for(
        settings, journal, client_id="logorhythms-proxy-adopted", stop_timeout_s=0.0
    )
    try:
        await publisher.start()  # opens the journal: takes its lock, finds its segments
    except JournalError as exc:
        log.error("cannot replay the orphaned journal %s: %s; it stays on disk", journal, exc)
        return
    log.warning("replaying the journal %s, which no worker of this run owns", journal)
    try:
        await publisher.flush()  # returns once Kafka acknowledged every record of it
        log.info(
            "orphaned journal %s replayed into Kafka (%d events)", journal, publisher.stats.replayed
        )
    except Exception:  # the task's boundary: the journal stays on disk for the next start
        log.exception("replaying the orphaned journal %s failed; it stays on disk", journal)
    finally:
        await publisher.stop()
