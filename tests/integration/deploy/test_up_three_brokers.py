"""`logorhythms up --brokers 3` as an operator runs it: a real subprocess starting a three-node
KRaft cluster (brokers on port..port+2, controllers on port+3..port+5), the consumers and the
proxy on it; traffic is captured, every partition of both topics has three in-sync replicas, and
SIGTERM stops every node."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.local.kafka import free_ports
from deploy.local.kafka.topics import describe_partitions
from tests.integration.deploy.test_up_supervision import (
    ROOT,
    Stack,
    _burst,
    _wait_rows,
    up_environment,
)

NODES = ("kafka-1", "kafka-2", "kafka-3")
SERVICES = (*NODES, "fake-upstream", "loader", "forwarder", "proxy")
TOPIC = "logorhythms.exchanges"

pytestmark = pytest.mark.slow


def _six_free_ports() -> int:
    """A base port with it and the next five free (the cluster's fixed layout)."""
    for _ in range(50):
        [base] = free_ports(1)
        if base + 5 > 65535:
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + 6):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no six consecutive free ports on loopback")


def test_up_with_three_brokers_captures_on_a_replicated_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("up3")
    proxy_port, sql_port = free_ports(2)
    kafka_port = _six_free_ports()
    env = up_environment(proxy_port, sql_port, kafka_port)
    output = base / "up.out"
    data_dir = base / "data"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "deploy.cli",
                "up",
                "--brokers",
                "3",
                "--data-dir",
                str(data_dir),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stack = Stack(process, data_dir, output, f"http://127.0.0.1:{proxy_port}", sql_port, env)
    pids: list[int] = []
    try:
        stack.wait_status(
            lambda s: all(s[name]["state"] == "up" for name in SERVICES),
            what="three Kafka nodes and every part up",
            timeout_s=330.0,  # up gives Kafka 240 s on a busy host, then starts the rest
        )
        pids = [s["pid"] for s in stack.status().values() if s["pid"]]
        served = asyncio.run(_burst(stack.proxy_url, 12))
        _wait_rows(stack, served)

        bootstrap = ",".join(f"127.0.0.1:{kafka_port + i}" for i in range(3))
        for topic, partitions in ((TOPIC, 3), (f"{TOPIC}.deadletter", 1)):
            states = asyncio.run(describe_partitions(bootstrap, topic, timeout_s=30))
            assert len(states) == partitions, (topic, states)
            for state in states.values():
                assert len(state.replicas) == 3, (topic, state)
                assert sorted(state.isr) == sorted(state.replicas), (topic, state)
        shown = stack.cli("status", "--data-dir", str(data_dir))
        assert shown.returncode == 0, shown.stdout
        for name in NODES:
            assert f"{name}" in shown.stdout, shown.stdout
        logs = {p.name for p in Path(data_dir).rglob("kafka-*.log")}
        assert {f"{name}.log" for name in NODES} <= logs, logs  # each node's log kept
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    for pid in pids:  # no node outlives the supervisor
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert code == 0, output.read_text()[-3000:]
