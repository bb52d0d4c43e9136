"""The only module that talks to ddtrace in the consumers: LLM Observability spans, the trace
context carried in Kafka headers, and the hand-over check that guards committed offsets.

Hand-over guarantee (what ``flush()`` returning means): every span submitted since the last
flush was accepted into ddtrace's trace buffer (none dropped for a full buffer) *and* the Datadog
agent answered the payload with a success status. ddtrace raises some failures from a flush with
``raise_exc=True`` (a connection error after its retries, an error status in 4.x) but reports
others only as a warning or error on its ``ddtrace.internal.writer`` logger (a span dropped for a
full buffer, a send failed on its background thread), so we do both: flush the writer ourselves
with ``raise_exc=True`` and count the records that logger emits (with ddtrace's log rate limiting
switched off, see ``prepare_environment``). tests/integration/datadog/test_handover.py provokes
each case. A fault in the window turns the batch into a
retriable failure: the runner retries it and commits nothing meanwhile. What the agent does
after accepting a payload (its own forwarding to Datadog) is outside what a client can observe.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any

from consumers.datadog.view import ExchangeView

log = logging.getLogger(__name__)

_WRITER_LOGGER = "ddtrace.internal.writer"
# Content sent with a span is bounded, so every span stays far below ddtrace's 20 MiB trace
# buffer: a span that can never fit would otherwise fail its batch forever. The full text is in
# ClickHouse.
MAX_TEXT_CHARS = 256 * 1024
MAX_MESSAGES = 64  # the latest ones: the tail of a conversation is what the model answered
_CUT = "…[truncated by logorhythms]"


def _capped(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + _CUT


def prepare_environment(env: MutableMapping[str, str] | None = None) -> None:
    """ddtrace configures itself from the environment when first imported: call this before.

    Log rate limiting would hide repeated hand-over failures from ``_FaultCounter``; the other
    settings keep an agent-less start quiet and quick.
    """
    env = os.environ if env is None else env
    env["DD_TRACE_LOGGING_RATE"] = "0"
    env.setdefault("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false")
    env.setdefault("DD_REMOTE_CONFIGURATION_ENABLED", "false")


class HandoverError(Exception):
    """Spans were not handed over to the agent; the same batch may succeed later."""

    retriable = True


class _FaultCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._lock_faults = threading.Lock()
        self.faults = 0
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_faults:
            self.faults += 1
            self.last = record.getMessage()[:300]


class LLMObsExporter:
    """Turns finished exchanges into LLM Observability spans (kind ``llm``) on their original
    timeline, parented to the proxy's trace when the Kafka headers carry its context."""

    def __init__(self, *, ml_app: str, service: str) -> None:
        self._ml_app = ml_app
        self._service = service
        self._faults = _FaultCounter()
        self._flushed_faults = 0
        self._started = False

    def start(self) -> None:
        if self._started:
            return
        from ddtrace.llmobs import LLMObs

        logging.getLogger(_WRITER_LOGGER).addHandler(self._faults)
        # Spans travel with the APM trace payload to the local agent (no API key here).
        LLMObs.enable(
            ml_app=self._ml_app,
            service=self._service,
            agentless_enabled=False,
            integrations_enabled=False,
        )
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        from ddtrace.llmobs import LLMObs

        LLMObs.disable()
        logging.getLogger(_WRITER_LOGGER).removeHandler(self._faults)
        self._started = False

    def submit(self, view: ExchangeView, trace_headers: Mapping[str, str]) -> None:
        from ddtrace.llmobs import LLMObs
        from ddtrace.propagation.http import HTTPPropagator
        from ddtrace.trace import tracer

        if trace_headers:
            context = HTTPPropagator.extract(dict(trace_headers))  # type: ignore[no-untyped-call]
            tracer.context_provider.activate(context)
        else:
            tracer.context_provider.activate(None)
        span = LLMObs.llm(
            model_name=view.model or None,
            model_provider=view.provider or None,
            name=f"{view.provider or 'llm'}.request",
        )
        span.start_ns = view.started_at_ns
        counts = {
            "input_tokens": view.prompt_tokens,
            "output_tokens": view.completion_tokens,
            "total_tokens": view.total_tokens,
        }
        metrics: dict[str, float] = {k: v for k, v in counts.items() if v is not None}
        if view.ttft_ns is not None:
            metrics["time_to_first_token"] = view.ttft_ns / 1e9  # seconds, as ddtrace reports it
        LLMObs.annotate(
            span=span,
            input_data=[
                {"role": role or "user", "content": _capped(text)}
                for role, text in view.input_messages[-MAX_MESSAGES:]
            ],
            output_data=[{"role": "assistant", "content": _capped(view.output_text)}],
            metadata={
                **view.parameters,
                "finish_reason": view.finish_reason,
                "stream": view.stream,
                "tool_calls": view.tool_calls,
                # False when the request or some chunks were never seen (lost or given up on).
                "content_complete": view.complete,
            },
            metrics=metrics,
            tags={
                "request_id": view.request_id,
                "endpoint": view.endpoint,
                "outcome": view.outcome,
                "status": str(view.status),
            },
        )
        if view.outcome != "ok":
            span.error = 1
            span.set_tag("error.type", view.error_type or view.outcome)
            span.set_tag("error.message", view.error_message or view.outcome)
        span.finish(finish_time=(view.started_at_ns + view.duration_ns) / 1e9)
        tracer.context_provider.activate(None)

    def flush(self) -> None:
        """Hand every submitted span to the agent, or raise ``HandoverError``."""
        from ddtrace.trace import tracer

        # ddtrace recreates its writer at times (fork, reconfiguration): look it up each time.
        writer: Any = tracer._span_aggregator.writer
        try:
            writer.flush_queue(raise_exc=True)
        except Exception as exc:  # whatever the HTTP client raised, after ddtrace's retries
            self._flushed_faults = self._faults.faults
            raise HandoverError(f"the Datadog agent did not take the spans: {exc!r}") from exc
        faults = self._faults.faults
        if faults != self._flushed_faults:
            self._flushed_faults = faults
            raise HandoverError(f"ddtrace dropped or failed to send spans: {self._faults.last}")
