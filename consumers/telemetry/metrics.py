"""Metric points, and the consumer runner's own metrics (``logorhythms.consumer.*``).

A point's tags are exactly its metric's tag keys, checked when the point is made; values come
from bounded sets, so nothing that identifies a caller or a request can become a tag. The
Datadog forwarder's exchange metrics build on the same types (``consumers/datadog/metrics.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    COUNT = "count"
    GAUGE = "gauge"
    DISTRIBUTION = "distribution"


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    name: str
    kind: Kind
    tags: tuple[str, ...]
    doc: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    name: str
    kind: Kind
    value: float
    tags: tuple[str, ...]  # "key:value", sorted


def make_point(metric: Metric, value: float, tag_values: Mapping[str, str]) -> Point:
    """A point of ``metric``; its tag keys must be exactly the metric's."""
    if set(tag_values) != set(metric.tags):
        raise ValueError(f"{metric.name} takes tags {metric.tags}, got {sorted(tag_values)}")
    tags = tuple(sorted(f"{k}:{v}" for k, v in tag_values.items()))
    return Point(name=metric.name, kind=metric.kind, value=value, tags=tags)


_CONSUMER_TAGS = ("consumer",)

RUNNER_METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(name="logorhythms.consumer.lag_records", kind=Kind.GAUGE,
               tags=(*_CONSUMER_TAGS, "partition"),
               doc="Records between the committed offset and the partition's end."),
        Metric(name="logorhythms.consumer.batch.size_records", kind=Kind.DISTRIBUTION,
               tags=_CONSUMER_TAGS, doc="Records per delivered batch."),
        Metric(name="logorhythms.consumer.write.latency_ms", kind=Kind.DISTRIBUTION,
               tags=_CONSUMER_TAGS,
               doc="Time the sink took to write one batch (the ClickHouse insert for "
               "consumer:clickhouse), retries included."),
        Metric(name="logorhythms.consumer.write.retries", kind=Kind.COUNT, tags=_CONSUMER_TAGS,
               doc="Retriable sink failures (the batch is retried, nothing committed)."),
        Metric(name="logorhythms.consumer.deadletter.count", kind=Kind.COUNT,
               tags=_CONSUMER_TAGS, doc="Records sent to the dead-letter topic."),
    )
}  # fmt: skip


def consumer_batch_points(
    *, consumer: str, records: int, write_ms: float, retries: int, deadlettered: int
) -> list[Point]:
    tag = {"consumer": consumer}
    m = RUNNER_METRICS
    points = [
        make_point(m["logorhythms.consumer.batch.size_records"], records, tag),
        make_point(m["logorhythms.consumer.write.latency_ms"], write_ms, tag),
    ]
    if retries:
        points.append(make_point(m["logorhythms.consumer.write.retries"], retries, tag))
    if deadlettered:
        points.append(make_point(m["logorhythms.consumer.deadletter.count"], deadlettered, tag))
    return points


def consumer_lag_points(*, consumer: str, lag_by_partition: Mapping[int, int]) -> list[Point]:
    return [
        make_point(
            RUNNER_METRICS["logorhythms.consumer.lag_records"],
            lag,
            {"consumer": consumer, "partition": str(partition)},
        )
        for partition, lag in sorted(lag_by_partition.items())
    ]
