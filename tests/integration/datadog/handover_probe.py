"""Run by test_handover.py in a fresh process (ddtrace configures itself from the environment):
submit one span and flush; print HANDED_OVER or NOT_HANDED_OVER <reason>."""

from __future__ import annotations

from consumers.datadog.llmobs import prepare_environment

prepare_environment()

from consumers.datadog.llmobs import HandoverError, LLMObsExporter  # noqa: E402
from consumers.datadog.view import ExchangeView  # noqa: E402


def main() -> None:
    exporter = LLMObsExporter(ml_app="probe", service="probe")
    exporter.start()
    view = ExchangeView(
        request_id="probe", started_at_ns=1_700_000_000_000_000_000, duration_ns=5_000_000,
        endpoint="/v1/chat/completions", provider="openai", model="gpt-4o", stream=False,
        status=200, outcome="ok", error_type="", error_message="", bytes_in=1, bytes_out=1,
        ttfb_ns=1, ttft_ns=1, prompt_tokens=1, completion_tokens=1, total_tokens=2,
        input_messages=(("user", "x" * 20_000),), output_text="y" * 20_000, tool_calls=0,
        finish_reason="stop", parameters={}, complete=True,
    )  # fmt: skip
    exporter.submit(view, {})
    try:
        exporter.flush()
    except HandoverError as exc:
        print("NOT_HANDED_OVER", exc, flush=True)
    else:
        print("HANDED_OVER", flush=True)
    exporter.stop()


if __name__ == "__main__":
    main()
