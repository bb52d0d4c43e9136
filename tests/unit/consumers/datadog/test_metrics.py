"""Metric mapping: names, kinds, values and bounded tags."""

from __future__ import annotations

import dataclasses

import pytest

from consumers.datadog.metrics import (
    METRICS,
    TAG_KEYS,
    ErrorTypes,
    exchange_points,
    fold_model,
    point,
    status_class,
    tags,
)
from consumers.datadog.view import ExchangeView
from consumers.telemetry.metrics import Kind

VIEW = ExchangeView(
    request_id="0190b6a8-0000-7000-8000-000000000001", started_at_ns=1, duration_ns=250_000_000,
    endpoint="/v1/chat/completions", provider="openai", model="gpt-4o-2024-08-06", stream=True,
    status=200, outcome="ok", error_type="", error_message="", bytes_in=120, bytes_out=900,
    ttfb_ns=30_000_000, ttft_ns=45_000_000, prompt_tokens=12, completion_tokens=7,
    total_tokens=19, input_messages=(("user", "hi"),), output_text="hello", tool_calls=0,
    finish_reason="stop", parameters={}, complete=True,
)  # fmt: skip


@pytest.mark.parametrize(
    ("model", "folded"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4O", "gpt-4o"),
        ("openai/gpt-4.1", "gpt-4.1"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("gpt-4o-audio", "other"),  # another family, not a snapshot
        ("ft:gpt-4o:acme:secret-project", "other"),
        ("my-private-model", "other"),
        ("", "other"),
        ("a" * 500, "other"),
    ],
)
def test_models_fold_into_a_bounded_set(model: str, folded: str) -> None:
    assert fold_model(model) == folded


def test_status_classes() -> None:
    assert [status_class(s) for s in (0, 200, 404, 503, 999)] == [
        "none", "2xx", "4xx", "5xx", "none",
    ]  # fmt: skip


def test_a_successful_exchange_maps_to_counts_and_distributions() -> None:
    points = {p.name: p for p in exchange_points(VIEW, ErrorTypes())}
    expected_tags = (
        "endpoint:/v1/chat/completions", "model:gpt-4o", "outcome:ok", "provider:openai",
        "status_class:2xx", "stream:true",
    )  # fmt: skip
    assert {name: (p.kind, p.value) for name, p in points.items()} == {
        "logorhythms.exchange.count": (Kind.COUNT, 1),
        "logorhythms.exchange.bytes_in": (Kind.COUNT, 120),
        "logorhythms.exchange.bytes_out": (Kind.COUNT, 900),
        "logorhythms.exchange.duration_ms": (Kind.DISTRIBUTION, 250.0),
        "logorhythms.exchange.ttfb_ms": (Kind.DISTRIBUTION, 30.0),
        "logorhythms.exchange.ttft_ms": (Kind.DISTRIBUTION, 45.0),
        "logorhythms.exchange.tokens_in": (Kind.COUNT, 12),
        "logorhythms.exchange.tokens_out": (Kind.COUNT, 7),
    }
    assert all(p.tags == expected_tags for p in points.values())


def test_a_failed_exchange_counts_an_error_and_omits_what_it_lacks() -> None:
    view = dataclasses.replace(
        VIEW, status=502, outcome="connect_error", error_type="ClientConnectorError",
        ttfb_ns=None, ttft_ns=None, prompt_tokens=None, completion_tokens=None,
    )  # fmt: skip
    points = {p.name: p for p in exchange_points(view, ErrorTypes())}
    assert "logorhythms.exchange.ttft_ms" not in points
    assert "logorhythms.exchange.tokens_in" not in points
    error = points["logorhythms.exchange.errors"]
    assert error.value == 1
    assert "error_type:ClientConnectorError" in error.tags
    assert "status_class:5xx" in error.tags


def test_unknown_values_fold_to_other_and_nothing_identifying_becomes_a_tag() -> None:
    view = dataclasses.replace(
        VIEW, endpoint="/v1/../admin?key=sk-live-123", provider="10.0.0.7", outcome="weird",
        model="sk-live-123",
    )  # fmt: skip
    for p in exchange_points(view, ErrorTypes()):
        joined = ",".join(p.tags)
        assert "sk-live" not in joined
        assert "10.0.0.7" not in joined
        assert VIEW.request_id not in joined
        assert {t.split(":", 1)[0] for t in p.tags} <= TAG_KEYS


def test_error_types_are_bounded() -> None:
    folded = ErrorTypes()
    names = {folded.fold(f"Error{i:03d}".replace("0", "o").replace("1", "l")) for i in range(200)}
    assert len(names) <= 65
    assert folded.fold("http_503") in {"http_503", "other"}
    assert ErrorTypes().fold("free text with spaces: and 127.0.0.1") == "other"


def test_tags_outside_the_allow_list_are_refused() -> None:
    with pytest.raises(ValueError, match="allow-list"):
        tags({"peer_ip": "127.0.0.1"})
    with pytest.raises(ValueError, match="takes tags"):
        point("logorhythms.consumer.lag_records", 3, consumer="datadog")


def test_every_metric_name_is_dotted_with_a_unit_or_a_count() -> None:
    for name in METRICS:
        assert name.startswith("logorhythms.")
        assert " " not in name
        assert name == name.lower()
