"""APM in the consumers (ddtrace): the trace context the proxy put in the Kafka headers is picked
up again, so one trace spans proxy → Kafka → consumer.

Best effort by design: these spans ride ddtrace's background writer and are not part of the
delivery guarantee (the LLM Observability spans of the Datadog forwarder are, see llmobs.py).
ddtrace is imported lazily, so the environment can be prepared first (llmobs.prepare_environment).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from consumers.sink import Record
from schemas import EventType


def trace_headers(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """The trace-context headers among a Kafka record's headers."""
    return {
        name: value.decode("latin-1")
        for name, value in headers
        if name.startswith(("x-datadog-", "traceparent", "tracestate"))
    }


class ConsumerTracing:
    """The runner's tracing hook: one ``kafka.consume`` span per delivered exchange (its completed
    event), a child of the proxy's request span, covering fetch to commit."""

    def __init__(self, *, service: str) -> None:
        self._service = service

    def delivered(
        self, *, consumer: str, records: Sequence[Record], started_ns: int, finished_ns: int
    ) -> None:
        from ddtrace.propagation.http import HTTPPropagator
        from ddtrace.trace import tracer

        for record in records:
            if record.event.type is not EventType.COMPLETED:
                continue
            headers = trace_headers(record.headers)
            if not headers:
                continue
            parent = HTTPPropagator.extract(headers)  # type: ignore[no-untyped-call]
            span = tracer.start_span(
                "kafka.consume",
                child_of=parent,
                service=self._service,
                resource=f"{consumer} {record.topic}",
                span_type="worker",
                activate=False,
            )
            span.start_ns = started_ns
            span.set_tag("span.kind", "consumer")
            span.set_tag("messaging.system", "kafka")
            span.set_tag("messaging.destination.name", record.topic)
            span.set_tag("kafka.partition", str(record.partition))
            span.set_metric("kafka.offset", record.offset)
            span.set_tag("logorhythms.consumer", consumer)
            span.finish(finish_time=finished_ns / 1e9)
