"""The capacity calculator's arithmetic, and docs/SCALING.md's tables equal its output."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from deploy.capacity import Measured, Plan, main, render, size

SCALING = Path(__file__).resolve().parents[3] / "docs" / "SCALING.md"
_EXAMPLE = re.compile(
    r"```\n\$ python -m deploy\.capacity (?P<args>[^\n]+)\n(?P<table>.*?)\n```", re.DOTALL
)


def test_one_request_without_chunks_costs_what_was_measured() -> None:
    measured = Measured(proxy_requests_per_cpu_s=1000.0)
    plan = Plan(target_cpu_utilisation=1.0)
    sizing = size(1000, 1, measured, plan)
    assert sizing.proxy_cores == 1  # 1,000 requests of 1 ms each: one core, no chunk cost
    assert sizing.events_per_s == 3000  # request, one chunk, completed


def test_each_chunk_adds_its_cpu_and_its_events() -> None:
    measured = Measured(proxy_requests_per_cpu_s=1000.0, proxy_us_per_chunk=100.0)
    plan = Plan(target_cpu_utilisation=0.5)
    sizing = size(1000, 11, measured, plan)
    # (1 ms + 10 x 0.1 ms) x 1,000/s = 2 cores, at 50 % = 4.
    assert sizing.proxy_cores == 4
    assert sizing.events_per_s == 13_000


def test_loaders_follow_events_and_partitions_cover_them_twice_on_every_broker() -> None:
    measured = Measured(loader_events_per_cpu_s=10_000.0)
    plan = Plan(target_cpu_utilisation=1.0, partitions_per_consumer=2)
    sizing = size(10_000, 8, measured, plan)  # 100,000 events/s
    assert sizing.loader_cores == 10
    assert sizing.partitions == 21  # 20, rounded up to a multiple of 3 brokers
    assert sizing.partitions % sizing.brokers == 0
    assert sizing.partitions >= sizing.loader_cores


def test_brokers_never_fall_below_the_replication_factor_and_grow_with_disk() -> None:
    small = size(1, 80, Measured(), Plan())
    assert small.brokers == 3
    # 1 MB per exchange x 1,000/s x 3 copies x 1 day = 259 TB: 65 brokers of 4 TB.
    measured = Measured(kafka_bytes_per_exchange_80=1e6)
    plan = Plan(kafka_retention_days=1, kafka_broker_write_mb_s=1e9, kafka_broker_disk_tb=4)
    assert size(1000, 80, measured, plan).brokers == 65


def test_clickhouse_disk_per_day_and_shards_follow_the_measured_bytes() -> None:
    measured = Measured(clickhouse_bytes_per_exchange_80=1000.0)
    plan = Plan(clickhouse_retention_days=10, clickhouse_node_disk_tb=1)
    sizing = size(1000, 80, measured, plan)
    assert sizing.clickhouse_gb_per_day == pytest.approx(86.4)
    assert sizing.clickhouse_shards == 1  # 0.864 TB in 10 days
    assert size(2000, 80, measured, plan).clickhouse_shards == 2
    assert sizing.clickhouse_replicas == 3


def test_bad_input_is_refused_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rps", "0"]) == 2
    assert "--rps must be above 0" in capsys.readouterr().err


def test_the_scaling_guides_tables_are_the_calculators_output(
    capsys: pytest.CaptureFixture[str],
) -> None:
    examples = list(_EXAMPLE.finditer(SCALING.read_text(encoding="utf-8")))
    assert [m.group("args").split()[1] for m in examples] == ["1000", "10000", "100000"]
    for example in examples:
        assert main(shlex.split(example.group("args"))) == 0
        assert capsys.readouterr().out.strip() == example.group("table").strip()


def test_the_production_overlay_is_the_guides_1k_row() -> None:
    sizing = size(1000, 80, Measured(), Plan())
    overlay = Path(__file__).resolve().parents[3] / "deploy/kubernetes/overlays/production"
    text = (overlay / "kustomization.yaml").read_text(encoding="utf-8")
    patches = {
        p["target"]["kind"] + "/" + p["target"]["name"]: yaml.safe_load(p["patch"])
        for p in yaml.safe_load(text)["patches"]
    }
    values = {(k, op["path"]): op["value"] for k, ops in patches.items() for op in ops}
    assert values[("Deployment/loader", "/spec/replicas")] == sizing.loader_cores
    assert values[("KafkaTopic/logorhythms.exchanges", "/spec/partitions")] >= sizing.partitions
    assert values[("HorizontalPodAutoscaler/proxy", "/spec/minReplicas")] == sizing.proxy_cores
    assert sizing.brokers == 3  # the base's shape
    assert sizing.clickhouse_shards == 1


def test_render_names_every_quantity() -> None:
    table = render(size(10_000, 80, Measured(), Plan()), Plan())
    for name in (
        "proxy cores",
        "loader cores",
        "partitions",
        "Kafka brokers",
        "shards",
        "disk per day",
    ):
        assert name in table
