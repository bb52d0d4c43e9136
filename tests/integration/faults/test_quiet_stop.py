"""With Kafka dead, the consumers stay quiet and stop within their budget; a configuration
error is one line, not a traceback."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.local.kafka import KafkaBroker, create_topic, free_ports
from tests.integration.faults.processes import ROOT, spawn, wait_for_log

SHUTDOWN_BUDGET_S = 10.0  # ConsumerSettings.shutdown_timeout_s, docs/OPERATIONS.md
MARGIN_S = 3.0  # interpreter exit, on a shared machine


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", ["load-clickhouse", "forward-datadog"])
async def test_stops_within_budget_and_quietly_with_kafka_dead(
    command: str, tmp_path: Path
) -> None:
    broker = KafkaBroker(tmp_path / "kafka", quick_jit=True)
    broker.start()
    try:
        await create_topic(broker.bootstrap_servers, "logorhythms.exchanges", partitions=3)
        sql, trace, statsd = free_ports(3)
        service = spawn(
            command,
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
                "LOGORHYTHMS_SQL_PORT": str(sql),
                # No Datadog agent listens here.
                "DD_AGENT_HOST": "127.0.0.1",
                "DD_TRACE_AGENT_PORT": str(trace),
                "DD_DOGSTATSD_PORT": str(statsd),
            },
            tmp_path / f"{command}.log",
        )
        try:
            wait_for_log(service, "consuming logorhythms.exchanges")
            broker.kill()
            wait_for_log(service, "aiokafka")  # the client noticed
            # Lines over 5 s with Kafka down: each kind said once, not ~70 a second.
            before = len(service.log().splitlines())
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                assert service.process.poll() is None
                await asyncio.sleep(0.1)
            lines = len(service.log().splitlines()) - before
            assert lines <= 15, service.log()[-3000:]
            started = time.monotonic()
            service.signal(signal.SIGTERM)
            code = service.wait(timeout_s=SHUTDOWN_BUDGET_S + MARGIN_S + 20)
            took = time.monotonic() - started
        finally:
            service.stop()
        assert took <= SHUTDOWN_BUDGET_S + MARGIN_S, (took, service.log()[-3000:])
        assert code == 0, service.log()[-3000:]
        assert "Traceback" not in service.log()
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("command", "key", "value"),
    [
        (["proxy"], "LOGORHYTHMS_PORT", "eighty"),
        (["proxy"], "LOGORHYTHMS_CONFIG", "/nonexistent/proxy.toml"),
        (["load-clickhouse"], "LOGORHYTHMS_BATCH_MAX_AGE_S", "soon"),
        (["load-clickhouse"], "LOGORHYTHMS_SQL_PORT", "x"),
        (["forward-datadog"], "DD_DOGSTATSD_PORT", "x"),
        (["up", "--data-dir", "DATA"], "LOGORHYTHMS_KAFKA_PORT", "99999"),
        (["sql", "SELECT 1"], "LOGORHYTHMS_SQL_PORT", "x"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(
    command: list[str], key: str, value: str, tmp_path: Path
) -> None:
    args = [str(tmp_path / "data") if a == "DATA" else a for a in command]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), key: value}
    done = subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert key in line or value in line  # the setting, or the file it names
    assert "configuration error" in line
    assert not (tmp_path / "data" / "kafka").exists()  # nothing was started
