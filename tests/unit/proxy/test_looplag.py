"""The loop-lag monitor: a callback that holds the loop shows as scheduling delay of its own
length; sections keep their longest run; the metrics window starts afresh after each read."""

from __future__ import annotations

import asyncio
import time

import pytest

from proxy.looplag import (
    BUCKET_BOUNDS_US,
    FirstStep,
    Histogram,
    LoopLagMonitor,
    bucket_names,
    first_step_timed,
)


async def _probes_seen(monitor: LoopLagMonitor, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while monitor.lag.count < count:
        assert time.monotonic() < deadline, f"only {monitor.lag.count} probes ran"
        await asyncio.sleep(monitor.interval_s or 0.01)


async def test_a_blocking_callback_shows_as_its_own_length() -> None:
    monitor = LoopLagMonitor(0.005)
    monitor.start()
    try:
        await _probes_seen(monitor, 3)
        asyncio.get_running_loop().call_soon(time.sleep, 0.3)
        before = monitor.lag.count
        await _probes_seen(monitor, before + 3)
    finally:
        monitor.stop()
    # The probe fell due within the 300 ms block (it fires every 5 ms): it ran at least 295 ms
    # late, in the bucket up to 500 ms; the upper bound rules out a made-up figure.
    assert monitor.lag.max_s >= 0.295, monitor.lag.report()
    assert monitor.lag.max_s < 0.3 + 1.0
    report = monitor.report()
    lag = report["lag"]
    assert isinstance(lag, dict)
    assert lag["buckets"]["le_500000us"] >= 1
    assert lag["max_ms"] >= 295
    assert not monitor.running


async def test_sections_keep_their_longest_run_and_the_window_resets() -> None:
    monitor = LoopLagMonitor(None)  # no probe: sections alone
    monitor.start()
    assert not monitor.running
    monitor.record("produce_hand_over", 0.000_150)
    monitor.record("produce_hand_over", 0.003)
    monitor.record("produce_acknowledge", 0.000_020)
    window = monitor.take_window()
    assert window.section_max_ms == {"produce_hand_over": 3.0, "produce_acknowledge": 0.02}
    assert window.lag_max_ms == 0.0
    assert monitor.take_window().section_max_ms == {}  # a new window
    sections = monitor.report()["sections"]
    assert isinstance(sections, dict)
    assert sections["produce_hand_over"]["count"] == 2
    assert sections["produce_hand_over"]["max_ms"] == 3.0
    assert sections["produce_hand_over"]["buckets"]["le_5000us"] == 1


def test_quantiles_are_bucket_bounds_never_above_the_longest() -> None:
    histogram = Histogram()
    for _ in range(990):
        histogram.add(0.000_050)
    for _ in range(10):
        histogram.add(0.004)
    assert histogram.quantile_us(0.5) == 100.0  # the bound of the bucket it falls in
    assert histogram.quantile_us(0.99) == 100.0
    assert histogram.quantile_us(0.999) == 4000.0  # bucket 5 ms, capped by the longest, 4 ms
    assert Histogram().quantile_us(0.99) == 0.0
    assert len(bucket_names()) == len(BUCKET_BOUNDS_US) + 1


def test_a_probe_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopLagMonitor(0)


async def test_the_first_step_of_library_coroutines_is_timed_and_nothing_else_changes() -> None:
    monitor = LoopLagMonitor(None)

    async def work(hold_s: float, result: str) -> str:
        time.sleep(hold_s)  # noqa: ASYNC251 - the first step holds the loop, as measured
        await asyncio.sleep(0.5)  # suspended: not counted
        return result

    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("after the first step")

    timed = first_step_timed(monitor, "work", work)
    assert await asyncio.create_task(timed(0.03, "done")) == "done"  # create_task takes it
    recorded = monitor.sections["work"]
    assert recorded.count == 1
    # The 30 ms hold (longer on a busy host), never the 500 ms suspension after it.
    assert 0.03 <= recorded.max_s < 0.5
    with pytest.raises(RuntimeError, match="after the first step"):
        await first_step_timed(monitor, "fails", fails)()
    assert monitor.sections["fails"].count == 1
    cancelled = asyncio.create_task(timed(0.0, "never"))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert recorded.count == 2


async def test_first_step_notes_whether_and_when_the_coroutine_suspended() -> None:
    async def finishes() -> str:
        return "at once"

    async def waits() -> str:
        await asyncio.sleep(0)
        return "later"

    straight = FirstStep(finishes())
    assert await straight == "at once"
    assert straight.suspended_at is None  # the loop was never released
    before = time.perf_counter()
    suspending = FirstStep(waits())
    assert await suspending == "later"
    assert suspending.suspended_at is not None
    assert before <= suspending.suspended_at <= time.perf_counter()
