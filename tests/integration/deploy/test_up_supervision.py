"""`logorhythms up` as an operator runs it: a real subprocess with its own Kafka broker, the
built-in fake upstream, real ports. One stack for the module; the killing test runs last."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from deploy.local.kafka import free_ports
from tests.integration.faults.traffic import call

ROOT = Path(__file__).resolve().parents[3]
FINGERPRINT_CANARY = "fp-canary-5d1e0b7a93"
ANTHROPIC_CANARY = "sk-ant-canary-0c4f2e8b61"
STRAY_CANARY = "gsk_stray-canary-9a7e3d"  # a secret no service names
SERVICES = ("kafka", "fake-upstream", "loader", "forwarder", "proxy")
_ID = re.compile(r"^[A-Za-z0-9_-]+$")

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    data_dir: Path
    output: Path
    proxy_url: str
    sql_port: int
    env: dict[str, str]

    def status(self) -> dict[str, dict[str, Any]]:
        document = json.loads((self.data_dir / "status.json").read_text())
        return {s["name"]: s for s in document["services"]}

    def wait_status(self, ready: Any, *, what: str, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"up exited: {self.told()}")
            try:
                if ready(self.status()):
                    return
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not within {timeout_s}s: {self.output.read_text()}")
            time.sleep(0.1)

    def told(self) -> str:
        """What `up` said itself (why it stopped is there, ahead of any log tail it quoted),
        then the end of everything it printed."""
        text = self.output.read_text(errors="replace")
        own = [line for line in text.splitlines() if line.startswith("[logorhythms up]")]
        return "\n".join(own[-15:]) + "\n--- end of its output ---\n" + text[-3000:]

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in self.env.items() if not k.startswith("LOGORHYTHMS_")}
        env["LOGORHYTHMS_SQL_PORT"] = str(self.sql_port)
        return subprocess.run(
            [sys.executable, "-m", "deploy.cli", *args],
            cwd=ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def up_environment(proxy_port: int, sql_port: int, kafka_port: int) -> dict[str, str]:
    """This process's environment without our settings or any key, and the stack's ports."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LOGORHYTHMS_", "OPENAI_", "ANTHROPIC_", "KAFKA_", "CLICKHOUSE_"))
    }
    env.update(
        LOGORHYTHMS_PORT=str(proxy_port),
        LOGORHYTHMS_SQL_PORT=str(sql_port),
        LOGORHYTHMS_KAFKA_PORT=str(kafka_port),
    )
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("up")
    proxy_port, sql_port, kafka_port = free_ports(3)
    env = up_environment(proxy_port, sql_port, kafka_port)
    env.update(
        LOGORHYTHMS_FINGERPRINT_KEY=FINGERPRINT_CANARY,
        ANTHROPIC_API_KEY=ANTHROPIC_CANARY,
        ANTHROPIC_BASE_URL="http://127.0.0.1:9",  # never called; keeps every target on loopback
        GROQ_API_KEY=STRAY_CANARY,
    )
    output = base / "up.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "up", "--data-dir", str(base / "data")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Stack(process, base / "data", output, f"http://127.0.0.1:{proxy_port}", sql_port, env)
    try:
        running.wait_status(
            lambda s: all(s[name]["state"] == "up" for name in SERVICES), what="every part up"
        )
        yield running
    finally:
        pids = []
        with_status = (running.data_dir / "status.json").exists()
        if with_status:
            pids = [s["pid"] for s in running.status().values() if s["pid"]]
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        for pid in pids:  # nothing outlives the supervisor
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert code == 0, output.read_text()[-3000:]


def _environ(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")


def test_secrets_reach_only_the_proxy(stack: Stack) -> None:
    status = stack.status()
    environs = {name: _environ(status[name]["pid"]) for name in SERVICES}
    for secret in (FINGERPRINT_CANARY, ANTHROPIC_CANARY, "sk-demo-not-a-real-key"):
        holders = [name for name, text in environs.items() if secret in text]
        assert holders == ["proxy"], (secret, holders)
    assert not [name for name, text in environs.items() if STRAY_CANARY in text]
    # The consumers still get what they read.
    assert "KAFKA_BOOTSTRAP_SERVERS=" in environs["loader"]
    assert f"LOGORHYTHMS_SQL_PORT={stack.sql_port}" in environs["loader"]


def test_banner_sql_hint_reaches_the_custom_port(stack: Stack) -> None:
    [request_id] = asyncio.run(_burst(stack.proxy_url, 1))
    _wait_rows(stack, [request_id])
    banner = stack.output.read_text()
    start = banner.index("logorhythms sql")
    line_start = banner.rindex("\n", 0, start) + 1
    hint = " ".join(banner[line_start : banner.index('"\n', start) + 1].split())
    assert f"LOGORHYTHMS_SQL_PORT={stack.sql_port}" in hint
    env = {k: v for k, v in stack.env.items() if not k.startswith("LOGORHYTHMS_")}
    shown = subprocess.run(  # the hint exactly as printed, from a shell without our settings
        ["bash", "-c", hint],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert request_id in shown.stdout


def test_status_shows_each_part(stack: Stack) -> None:
    shown = stack.cli("status", "--data-dir", str(stack.data_dir))
    assert shown.returncode == 0, shown.stdout
    for name in SERVICES:
        assert re.search(rf"^\s+{name}\s+up\s+\d+", shown.stdout, re.M), shown.stdout
    mode = (stack.data_dir / "status.json").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_data_dir_is_private_after_traffic(stack: Stack) -> None:
    served = asyncio.run(_burst(stack.proxy_url, 30))
    _wait_rows(stack, served)
    loose = []
    for directory, subdirs, files in os.walk(stack.data_dir):
        for name in [directory, *(os.path.join(directory, n) for n in (*subdirs, *files))]:
            mode = os.lstat(name).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                loose.append((name, oct(stat.S_IMODE(mode))))
    assert not loose
    # The places that hold prompts are there and were walked.
    assert (stack.data_dir / "kafka" / "data").is_dir()
    assert (stack.data_dir / "clickhouse").is_dir()
    assert (stack.data_dir / "journal").is_dir()


async def _burst(url: str, count: int) -> list[str]:
    async with aiohttp.ClientSession() as session:
        results = [await call(session, url, stream=i % 2 == 0) for i in range(count)]
    assert all(r.status == 200 for r in results)
    return [r.request_id for r in results]


def _wait_rows(stack: Stack, ids: list[str], *, timeout_s: float = 120.0) -> None:
    """Every id is one exchange row (queried through `logorhythms sql`, as an analyst would)."""
    assert all(_ID.match(i) for i in ids)
    deadline = time.monotonic() + timeout_s
    for start in range(0, len(ids), 2000):  # under ClickHouse's max_query_size
        part = ids[start : start + 2000]
        listed = ",".join(f"'{i}'" for i in part)
        query = (
            "SELECT count(), uniqExact(request_id) FROM exchanges FINAL "  # noqa: S608
            f"WHERE request_id IN ({listed})"
        )
        last = ""
        while True:
            shown = stack.cli("sql", "--format", "TSV", "-", stdin=query)
            last = shown.stdout.strip() + shown.stderr.strip()[-300:]
            if shown.returncode == 0 and last == f"{len(part)}\t{len(part)}":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {len(part)} rows once each; last answer {last!r}")
            time.sleep(0.5)


def _missing_rows(stack: Stack, ids: list[str], *, timeout_s: float) -> list[str]:
    """The ids that are not (yet) exactly one exchange row when the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing: list[str] = []
        for start in range(0, len(ids), 2000):  # under ClickHouse's max_query_size
            part = ids[start : start + 2000]
            listed = ",".join(f"'{i}'" for i in part)
            query = (
                "SELECT request_id FROM exchanges FINAL "  # noqa: S608
                f"WHERE request_id IN ({listed}) GROUP BY request_id HAVING count() = 1"
            )
            shown = stack.cli("sql", "--format", "TSV", "-", stdin=query)
            assert shown.returncode == 0, shown.stderr
            found = set(shown.stdout.split())
            missing += [i for i in part if i not in found]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(1)


@dataclass
class Load:
    served: list[str] = field(default_factory=list)
    served_at: dict[str, float] = field(default_factory=dict)
    errors: list[tuple[float, str]] = field(default_factory=list)
    bad_status: list[int] = field(default_factory=list)


async def _steady_load(url: str, stop: asyncio.Event, load: Load, workers: int = 3) -> None:
    async def worker(index: int) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            n = 0
            while not stop.is_set():
                n += 1
                stream = (n + index) % 2 == 0
                try:
                    served = await call(session, url, stream=stream)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # The client retries (after the proxy's restart window, when it was killed).
                    load.errors.append((time.monotonic(), repr(exc)[:200]))
                    await asyncio.sleep(0.05)
                    continue
                complete = (
                    served.body.rstrip().endswith(b"data: [DONE]")
                    if stream
                    else (served.status == 200 and b'"finish_reason"' in served.body)
                )
                if served.status == 200 and complete:
                    load.served.append(served.request_id)
                    load.served_at[served.request_id] = time.monotonic()
                else:
                    load.bad_status.append(served.status)

    await asyncio.gather(*(worker(i) for i in range(workers)))


def _kill_and_wait_back(stack: Stack, name: str, load: Load) -> tuple[float, float]:
    """SIGKILL one part, wait until it is back and serving; returns (killed at, back at)."""
    before = stack.status()[name]
    killed_at = time.monotonic()
    os.kill(before["pid"], signal.SIGKILL)
    stack.wait_status(
        lambda s: (
            s[name]["state"] == "up"
            and s[name]["restarts"] == before["restarts"] + 1
            and s[name]["pid"] != before["pid"]
        ),
        what=f"{name} restarted",
    )
    assert stack.status()[name]["last_exit"] == "signal SIGKILL"
    # Served again after the restart, and the others untouched.
    served = len(load.served)
    deadline = time.monotonic() + 60
    while len(load.served) < served + 20:
        assert time.monotonic() < deadline, f"no traffic served after {name} came back"
        time.sleep(0.05)
    for other in SERVICES:
        if other != name:
            assert stack.status()[other]["state"] == "up", (name, other, stack.status())
    return killed_at, time.monotonic()


@pytest.mark.timeout(900)
async def test_each_part_killed_under_load_comes_back_and_nothing_is_lost(stack: Stack) -> None:
    load = Load()
    stop = asyncio.Event()
    traffic = asyncio.create_task(_steady_load(stack.proxy_url, stop, load))
    try:
        await asyncio.to_thread(_wait_served, load, 30)
        proxy_log = stack.data_dir / "logs" / "proxy.log"
        outages: dict[str, int] = {}
        windows: dict[str, tuple[float, float]] = {}
        for name in ("loader", "forwarder", "proxy", "kafka"):
            errors_before = len(load.errors)
            log_before = proxy_log.read_text().count(" aiokafka")
            windows[name] = await asyncio.to_thread(_kill_and_wait_back, stack, name, load)
            outages[name] = len(load.errors) - errors_before
            if name == "kafka":
                # The Kafka client's complaints while the broker was away, summarised.
                kafka_lines = proxy_log.read_text().count(" aiokafka") - log_before
                assert kafka_lines <= 30, kafka_lines
        # Clients were served throughout; only the proxy's own restart window made them retry.
        assert outages["loader"] == outages["forwarder"] == outages["kafka"] == 0, load.errors
        assert outages["proxy"] <= 200, load.errors[-5:]
    finally:
        stop.set()
        await traffic
    assert not load.bad_status, load.bad_status[:10]
    assert len(load.served) > 100
    print(f"served {len(load.served)}; client retries per killed part: {outages}")
    missing = await asyncio.to_thread(_missing_rows, stack, load.served, timeout_s=180)
    by_phase: dict[str, int] = {}
    for request_id in missing:
        at = load.served_at[request_id]
        # The latest fault whose window (from 5 s before the kill) holds the exchange.
        phase = next((n for n, (a, b) in reversed(windows.items()) if a - 5 <= at <= b), "steady")
        by_phase[phase] = by_phase.get(phase, 0) + 1
    assert not missing, f"{len(missing)} served exchanges are not rows, by fault: {by_phase}"
    shown = stack.output.read_text()
    for name in ("loader", "forwarder", "proxy"):
        assert re.search(rf"{name} \(pid \d+\) ended with signal SIGKILL; restarting in", shown)
    assert "Kafka broker ended with signal SIGKILL; restarting" in shown


def _wait_served(load: Load, count: int) -> None:
    deadline = time.monotonic() + 60
    while len(load.served) < count:
        assert time.monotonic() < deadline, (load.errors[-3:], load.bad_status[-3:])
        time.sleep(0.05)
