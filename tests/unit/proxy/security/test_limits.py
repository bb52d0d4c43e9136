"""Token buckets per client and the in-flight cap, on a fake clock."""

from __future__ import annotations

import pytest

from proxy.limits import InFlight, InFlightPerKey, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0


def test_clients_have_separate_buckets() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, clock=Clock())
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0.0


def test_a_refused_request_does_not_dig_the_bucket_deeper() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, clock=clock)
    buckets.take("a")
    for _ in range(100):
        buckets.take("a")
    clock.now += 1.0
    assert buckets.take("a") == 0.0


def test_memory_is_bounded_by_max_keys() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, max_keys=10, clock=Clock())
    for i in range(1000):
        buckets.take(f"10.0.{i // 256}.{i % 256}")
    assert len(buckets) == 10


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBuckets(rate_per_s=0, burst=1)


def test_in_flight_cap() -> None:
    cap = InFlight(2)
    assert cap.try_enter()
    assert cap.try_enter()
    assert not cap.try_enter()
    cap.leave()
    assert cap.try_enter()
    unlimited = InFlight(0)
    assert all(unlimited.try_enter() for _ in range(10_000))


def test_in_flight_per_key_caps_each_key_alone() -> None:
    cap = InFlightPerKey(2)
    assert cap.try_enter("198.51.100.1")
    assert cap.try_enter("198.51.100.1")
    assert not cap.try_enter("198.51.100.1")  # this key is at its cap...
    assert cap.try_enter("198.51.100.2")  # ...which does not touch another
    cap.leave("198.51.100.1")
    assert cap.try_enter("198.51.100.1")
    assert cap.count("198.51.100.1") == 2


def test_in_flight_per_key_holds_only_keys_with_something_in_flight() -> None:
    cap = InFlightPerKey(1)
    for i in range(1000):
        key = f"203.0.113.{i}"
        assert cap.try_enter(key)
        cap.leave(key)
    assert len(cap) == 0
    unlimited = InFlightPerKey(0)
    assert all(unlimited.try_enter("one") for _ in range(10_000))
    assert unlimited.count("one") == 10_000
