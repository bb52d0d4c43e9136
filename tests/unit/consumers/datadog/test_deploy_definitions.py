"""The dashboard and monitors in deploy/datadog only use metrics and tags the code emits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from consumers.datadog.metrics import METRICS, TAG_KEYS
from proxy.telemetry import PROXY_METRICS

DEPLOY = Path(__file__).resolve().parents[4] / "deploy" / "datadog"
EMITTED = set(METRICS) | set(PROXY_METRICS)
# Tags every point carries from the DogStatsD client (DD_ENV, DD_SERVICE, DD_VERSION).
CLIENT_TAGS = {"env", "service", "version"}
_METRIC = re.compile(r"\b(logorhythms\.[a-z0-9_.]+[a-z0-9_])")
_BY = re.compile(r"by \{([^}]*)\}")


def _queries(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [q for k, v in node.items() for q in ([v] if k == "query" else _queries(v))]
    if isinstance(node, list):
        return [q for item in node for q in _queries(item)]
    return []


@pytest.fixture(params=["dashboard.json", "monitors.json"])
def definition(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    name: str = request.param
    queries = _queries(json.loads((DEPLOY / name).read_text()))
    assert queries, f"{name} has no queries"
    return name, queries


def test_every_metric_referenced_is_emitted(definition: tuple[str, list[str]]) -> None:
    name, queries = definition
    referenced = {m for q in queries for m in _METRIC.findall(q)}
    assert referenced, name
    assert referenced <= EMITTED, f"{name} uses metrics nothing emits: {referenced - EMITTED}"


def test_every_tag_grouped_by_is_one_the_metric_carries(definition: tuple[str, list[str]]) -> None:
    name, queries = definition
    for query in queries:
        for metric in _METRIC.findall(query):
            carried = set(METRICS[metric].tags) if metric in METRICS else set()
            for group in _BY.findall(query):
                keys = {k.strip() for k in group.split(",")}
                assert keys <= carried | CLIENT_TAGS, f"{name}: {query!r} groups by {keys}"
                assert keys <= TAG_KEYS | CLIENT_TAGS


def test_the_dashboard_covers_traffic_latency_tokens_errors_and_lag() -> None:
    dashboard = json.loads((DEPLOY / "dashboard.json").read_text())
    assert dashboard["layout_type"] == "ordered"
    groups = {w["definition"]["title"] for w in dashboard["widgets"]}
    assert groups == {"Traffic", "Latency", "Tokens", "Errors", "Pipeline"}
    referenced = {m for q in _queries(dashboard) for m in _METRIC.findall(q)}
    assert {
        "logorhythms.exchange.count", "logorhythms.exchange.ttft_ms",
        "logorhythms.exchange.duration_ms", "logorhythms.exchange.tokens_in",
        "logorhythms.exchange.errors", "logorhythms.consumer.lag_records",
        "logorhythms.proxy.served",
    } <= referenced  # fmt: skip


def test_monitors_cover_error_rate_latency_lag_and_capture_gap() -> None:
    monitors = json.loads((DEPLOY / "monitors.json").read_text())
    for monitor in monitors:
        assert {"name", "type", "query", "message", "options"} <= set(monitor)
        assert monitor["type"] == "query alert"
        critical = monitor["options"]["thresholds"]["critical"]
        assert re.search(rf"[<>]=? ?{re.escape(str(critical))}$", monitor["query"]), monitor
    queries = " ".join(m["query"] for m in monitors)
    assert "logorhythms.exchange.errors" in queries
    assert "p95:logorhythms.exchange.ttft_ms" in queries
    assert "logorhythms.consumer.lag_records" in queries
    assert "logorhythms.proxy.served{*}.as_count() - sum:logorhythms.exchange.count" in queries


def test_every_metric_is_documented() -> None:
    from proxy.telemetry import RESERVED_PROXY_METRICS

    doc = (DEPLOY.parents[1] / "docs" / "OPERATIONS.md").read_text()
    missing = {m for m in EMITTED | set(RESERVED_PROXY_METRICS) if f"`{m}`" not in doc}
    assert not missing, f"document these metrics in docs/OPERATIONS.md: {sorted(missing)}"
