"""How long the proxy's event loop is kept from running what is ready: a loop-lag monitor cheap
enough to leave on in production.

Two measures, both kept as histograms with their maximum:

- **Scheduling delay.** A probe timer falls due every ``interval_s`` (20 ms by default) and notes
  how late it runs. Whatever holds the loop when the probe falls due delays it by the rest of its
  run, so the longest delay is the longest stall a probe met, and the histogram is the wait of a
  timer (or of a socket that became readable) at a random moment. A stall longer than the interval
  is always met; a shorter one with probability length / interval, so over a minute every
  recurring stall shows. On uvloop, timers are kept to the millisecond: delays below ~1 ms are the
  timer's own rounding there, not stalls; the sections below are exact.
- **Sections.** Code that may run long on the loop (the produce cycle's steps in
  ``proxy/publisher.py``) times each run of itself with ``record()``; the longest run of each
  section names where a stall comes from, to the microsecond.

The probe costs one timer callback per interval: 50 wake-ups a second on an idle loop, nothing
extra on a busy one (docs/OPERATIONS.md, "The event loop").
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

_T = TypeVar("_T")

# Upper bounds of the histogram's buckets, in microseconds; the last bucket is everything above.
BUCKET_BOUNDS_US = (
    100,
    200,
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
)
DEFAULT_INTERVAL_S = 0.02


def bucket_names() -> list[str]:
    """The buckets' names as ``/statsz`` reports them: ``le_<bound>us``, then ``gt_<last>us``."""
    return [f"le_{bound}us" for bound in BUCKET_BOUNDS_US] + [f"gt_{BUCKET_BOUNDS_US[-1]}us"]


@dataclass(slots=True)
class Histogram:
    """Counts of durations by bucket, their sum and the longest one, since start."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKET_BOUNDS_US) + 1))
    total_s: float = 0.0
    max_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKET_BOUNDS_US, seconds * 1e6)] += 1
        self.total_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def quantile_us(self, q: float) -> float:
        """The upper bound of the bucket holding quantile ``q`` (a conservative estimate); the
        longest duration itself for the open last bucket. 0 when empty."""
        return quantile_us(self.counts, q, self.max_s)

    def report(self) -> dict[str, object]:
        return {
            "count": self.count,
            "max_ms": round(self.max_s * 1e3, 3),
            "mean_ms": round(self.total_s / self.count * 1e3, 3) if self.count else 0.0,
            "p50_ms": self.quantile_us(0.5) / 1e3,
            "p99_ms": self.quantile_us(0.99) / 1e3,
            "p999_ms": self.quantile_us(0.999) / 1e3,
            "buckets": dict(zip(bucket_names(), self.counts, strict=True)),
        }


def quantile_us(counts: list[int], q: float, max_s: float) -> float:
    """The upper bound (µs) of the bucket of ``counts`` holding quantile ``q``, never above the
    longest duration seen."""
    total = sum(counts)
    if not total:
        return 0.0
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            if index < len(BUCKET_BOUNDS_US):
                return min(float(BUCKET_BOUNDS_US[index]), max_s * 1e6)
            return max_s * 1e6
    return max_s * 1e6


@dataclass(slots=True)
class Window:
    """What happened since the last metrics flush: the longest scheduling delay, its p99, and the
    longest run of each section."""

    lag_max_ms: float
    lag_p99_ms: float
    section_max_ms: dict[str, float]


class LoopLagMonitor:
    """The probe and the sections of one event loop. ``start()`` on the loop; ``stop()`` at the end.
    With ``interval_s`` None there is no probe; sections are still recorded."""

    def __init__(self, interval_s: float | None = DEFAULT_INTERVAL_S) -> None:
        if interval_s is not None and interval_s <= 0:
            raise ValueError("the loop-lag probe interval must be positive (or None: no probe)")
        self.interval_s = interval_s
        self.lag = Histogram()
        self.sections: dict[str, Histogram] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        # Since the last window was taken (the metrics flush).
        self._window_counts = [0] * (len(BUCKET_BOUNDS_US) + 1)
        self._window_max_s = 0.0
        self._window_sections: dict[str, float] = {}

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self.interval_s is None or self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._arm(time.perf_counter())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, now: float) -> None:
        assert self._loop is not None
        assert self.interval_s is not None
        self._due = now + self.interval_s
        self._handle = self._loop.call_later(self.interval_s, self._probe)

    def _probe(self) -> None:
        now = time.perf_counter()
        delay = max(0.0, now - self._due)
        self.lag.add(delay)
        self._window_counts[bisect.bisect_left(BUCKET_BOUNDS_US, delay * 1e6)] += 1
        if delay > self._window_max_s:
            self._window_max_s = delay
        self._arm(now)

    def record(self, section: str, seconds: float) -> None:
        """One run of ``section`` held the loop for ``seconds`` (``time.perf_counter`` deltas)."""
        histogram = self.sections.get(section)
        if histogram is None:
            histogram = self.sections[section] = Histogram()
        histogram.add(seconds)
        if seconds > self._window_sections.get(section, 0.0):
            self._window_sections[section] = seconds

    def take_window(self) -> Window:
        """The window since the last call, and start a new one (one reader: the metrics flush)."""
        window = Window(
            lag_max_ms=self._window_max_s * 1e3,
            lag_p99_ms=quantile_us(self._window_counts, 0.99, self._window_max_s) / 1e3,
            section_max_ms={name: s * 1e3 for name, s in self._window_sections.items()},
        )
        self._window_counts = [0] * (len(BUCKET_BOUNDS_US) + 1)
        self._window_max_s = 0.0
        self._window_sections = {}
        return window

    def report(self) -> dict[str, object]:
        """What ``/statsz`` shows under ``loop``: totals since start (readers take differences)."""
        return {
            "probe_interval_ms": (self.interval_s or 0.0) * 1e3,
            "lag": self.lag.report(),
            "sections": {name: h.report() for name, h in sorted(self.sections.items())},
        }


def first_step_timed(
    monitor: LoopLagMonitor, section: str, function: Callable[..., Coroutine[Any, Any, _T]]
) -> Callable[..., Coroutine[Any, Any, _T]]:
    """``function`` with the first step of each of its coroutines (up to its first suspension:
    one loop callback) recorded as a run of ``section``. For library code that we do not own but
    whose first step is where its work is done (aiokafka's produce request: compression, encoding,
    the socket write), so that it can be named without changing it."""

    async def timed(*args: Any, **kwargs: Any) -> _T:  # a coroutine, as create_task wants
        return await FirstStep(function(*args, **kwargs), monitor, section)

    return timed


class FirstStep(Awaitable[_T]):
    """Awaits ``coroutine``, noting when its first step ended by suspending (``suspended_at``,
    ``time.perf_counter()``; None if it finished without suspending) and, with a ``monitor``,
    recording that first step as a run of ``section``. Lets a caller time how long it held the
    loop across an await that may or may not suspend."""

    __slots__ = ("_coroutine", "_monitor", "_section", "suspended_at")

    def __init__(
        self,
        coroutine: Coroutine[Any, Any, _T],
        monitor: LoopLagMonitor | None = None,
        section: str = "",
    ) -> None:
        self._coroutine = coroutine
        self._monitor = monitor
        self._section = section
        self.suspended_at: float | None = None

    def __await__(self) -> Generator[Any, Any, _T]:
        steps = self._coroutine.__await__()
        started = time.perf_counter()
        try:
            suspended_on = next(steps)
        except StopIteration as finished:
            if self._monitor is not None:
                self._monitor.record(self._section, time.perf_counter() - started)
            return finished.value  # type: ignore[no-any-return]
        self.suspended_at = time.perf_counter()
        if self._monitor is not None:
            self._monitor.record(self._section, self.suspended_at - started)
        # From here on, a plain delegation: every later step and exception passes through.
        while True:
            try:
                sent = yield suspended_on
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # thrown in by the task: pass it on
                try:
                    suspended_on = steps.throw(exc)
                except StopIteration as finished:
                    return finished.value  # type: ignore[no-any-return]
            else:
                try:
                    suspended_on = steps.send(sent)
                except StopIteration as finished:
                    return finished.value  # type: ignore[no-any-return]
