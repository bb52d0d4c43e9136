"""Start the benchmark's services as pinned subprocesses on 127.0.0.1 and tear them down.

Kafka (a private broker in a temp dir), the ClickHouse loader (embedded chdb, SQL endpoint),
the fast fake upstream, our proxy with capture on and with capture off (and with capture on as
N processes, ``logorhythms proxy --workers N``), and LiteLLM's proxy
(from the separate virtualenv ``.bench-venv``) with logging off.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.local.kafka import KafkaBroker, create_topic, ensure_kafka_jars, free_ports

ROOT = Path(__file__).resolve().parents[3]
BENCH_VENV = ROOT / ".bench-venv"
TOPIC = "bench.exchanges"
PROXY_CPU = "0"  # the proxy under test gets core 0 ...
# ... the load generator, the upstream, Kafka and the loader share core 1: left to float, the
# broker and the loader ran on the proxy's core too and were charged to the capture (its share
# of the core, its cache) as if it were the capture's own work.
LOAD_CPU = "1"
CLIENT_KEY = "sk-bench-client-key"  # what the load generators send; LiteLLM's master key


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """One more proxy target: extra environment, and optionally another source tree (``root``),
    e.g. an exported older commit for a before/after comparison in the same rounds."""

    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    root: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    name: str
    url: str
    pid: int


def _wait_http(
    url: str,
    proc: subprocess.Popen[bytes],
    timeout_s: float,
    method: str = "GET",
    body: bytes | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}; see its log")
        try:
            request = urllib.request.Request(url, data=body, method=method)  # noqa: S310
            request.add_header("Content-Type", "application/json")
            request.add_header("Authorization", f"Bearer {CLIENT_KEY}")
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                if response.status < 300:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout_s}s: {last!r}")


def _process_stats() -> dict[int, list[str]]:
    """``/proc/<pid>/stat`` of every process, fields after the command name."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                text = (entry / "stat").read_text()
                stats[int(entry.name)] = text[text.rindex(")") + 2 :].split()
    return stats


def process_tree(pid: int, stats: dict[int, list[str]] | None = None) -> list[int]:
    """``pid`` and all its descendants (LiteLLM and ``proxy --workers`` fork workers)."""
    stats = _process_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = _process_stats()
    return (
        sum(int(stats[p][11]) + int(stats[p][12]) for p in process_tree(pid, stats) if p in stats)
        / ticks
    )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process alone (not its children)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


class Stack:
    """All services of one benchmark run; ``with Stack(...) as stack:`` stops them all."""

    def __init__(
        self,
        workdir: Path,
        *,
        chunks: int,
        delay_ms: float,
        litellm: bool,
        workers: int,
        pin: bool,
        passthrough: tuple[str, ...] = (),
        variants: Mapping[str, Variant] | None = None,
        standard: bool = True,
    ) -> None:
        self.workdir = workdir
        self.workers = workers  # > 1: also run "on-xN", N capture-on proxies on one port
        self.proxy_cpu = PROXY_CPU if pin else None
        self.chunks, self.delay_ms, self.want_litellm = chunks, delay_ms, litellm
        self.passthrough = passthrough  # run tests/bench/proxy/passthrough.py on these loops
        self.variants = dict(variants or {})  # more proxy targets, by name
        self.standard = standard  # the "on" and "off" proxies (False: variants only)
        self.services: dict[str, Service] = {}
        self.sql_url = ""
        self.loader_pid = 0
        self.hold_loader = False  # bench_proxy --hold-loader: stop it while a target is measured
        self.broker: KafkaBroker | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[object] = []

    def _spawn(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        cpu: str | None,
        cwd: Path = ROOT,
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        self._logs.append(log)
        prefix = ["taskset", "-c", cpu] if cpu is not None else []
        proc = subprocess.Popen(
            prefix + argv,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        self._procs.append(proc)
        return proc

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        upstream_port, on_port, off_port, litellm_port, sql_port, multi_port = free_ports(6)
        self.broker = KafkaBroker(self.workdir / "kafka", libs_dir=ensure_kafka_jars())
        support_cpu = LOAD_CPU if self.proxy_cpu is not None else None
        with pinned(support_cpu) if support_cpu else contextlib.nullcontext():
            self.broker.start()  # the JVM's threads inherit the affinity
        bootstrap = self.broker.bootstrap_servers
        asyncio.run(create_topic(bootstrap, TOPIC, partitions=3))
        py = sys.executable
        loader = self._spawn(
            "loader",
            [py, "-m", "deploy.cli", "load-clickhouse"],
            {
                "CLICKHOUSE_URL": f"chdb://{self.workdir / 'clickhouse'}",
                "LOGORHYTHMS_SQL_PORT": str(sql_port),
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "LOGORHYTHMS_TOPIC": TOPIC,
            },
            support_cpu,
        )
        self.sql_url = f"http://127.0.0.1:{sql_port}"
        self.loader_pid = loader.pid
        upstream = self._spawn(
            "upstream",
            [
                py,
                "-m",
                "tests.bench.proxy.upstream",
                "--port",
                str(upstream_port),
                "--chunks",
                str(self.chunks),
                "--delay-ms",
                str(self.delay_ms),
            ],
            {},
            LOAD_CPU,
        )
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        _wait_http(f"{upstream_url}/v1/chat/completions", upstream, 30, "POST", b"{}")
        self.services["direct"] = Service(name="direct", url=upstream_url, pid=upstream.pid)
        for loop in self.passthrough:
            (pass_port,) = free_ports(1)
            name = "passthrough" if loop == "asyncio" else f"passthrough-{loop}"
            proc = self._spawn(
                name,
                [py, "-m", "tests.bench.proxy.passthrough", "--port", str(pass_port),
                 "--upstream", upstream_url, "--loop", loop],
                {},
                self.proxy_cpu,
            )  # fmt: skip
            _wait_http(f"http://127.0.0.1:{pass_port}/v1/chat/completions", proc, 30, "POST", b"{}")
            self.services[name] = Service(
                name=name, url=f"http://127.0.0.1:{pass_port}", pid=proc.pid
            )
        proxies = (
            [
                ("on", on_port, "on", ["deploy.cli", "proxy"]),
                ("off", off_port, "off", ["deploy.cli", "proxy"]),
            ]
            if self.standard
            else []
        )
        if self.workers > 1:
            proxies.append(
                (
                    f"on-x{self.workers}",
                    multi_port,
                    "on",
                    ["deploy.cli", "proxy", "--workers", str(self.workers)],
                )
            )
        for name, port, capture, module in proxies:
            proc = self._spawn(
                f"proxy-{name}",
                [py, "-m", *module],
                {
                    "LOGORHYTHMS_PORT": str(port),
                    "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                    "OPENAI_BASE_URL": f"{upstream_url}/v1",
                    "OPENAI_API_KEY": "sk-bench-service",
                    "LOGORHYTHMS_TOPIC": TOPIC,
                    "LOGORHYTHMS_CAPTURE": capture,
                    "LOGORHYTHMS_JOURNAL_DIR": str(self.workdir / f"journal-{name}"),
                    "LOGORHYTHMS_WORKERS": "1",  # on-xN says --workers, which wins
                    # Every benchmark client is 127.0.0.1: the paced run holds 512 streams.
                    "LOGORHYTHMS_MAX_IN_FLIGHT_PER_CLIENT": "0",
                },
                None if name.startswith("on-x") else self.proxy_cpu,  # N processes: every core
            )
            _wait_http(f"http://127.0.0.1:{port}/readyz", proc, 60)
            self.services[name] = Service(name=name, url=f"http://127.0.0.1:{port}", pid=proc.pid)
        for name, variant in self.variants.items():
            (port,) = free_ports(1)
            proc = self._spawn(
                f"proxy-{name}",
                [py, "-m", "deploy.cli", "proxy"],
                {
                    "LOGORHYTHMS_PORT": str(port),
                    "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                    "OPENAI_BASE_URL": f"{upstream_url}/v1",
                    "OPENAI_API_KEY": "sk-bench-service",
                    "LOGORHYTHMS_TOPIC": TOPIC,
                    "LOGORHYTHMS_JOURNAL_DIR": str(self.workdir / f"journal-{name}"),
                    "LOGORHYTHMS_MAX_IN_FLIGHT_PER_CLIENT": "0",  # as above
                    **variant.env,
                },
                self.proxy_cpu,
                cwd=variant.root or ROOT,
            )
            _wait_http(f"http://127.0.0.1:{port}/readyz", proc, 60)
            self.services[name] = Service(name=name, url=f"http://127.0.0.1:{port}", pid=proc.pid)
        _wait_http(f"{self.sql_url}/healthz", loader, 120)
        if self.want_litellm:
            self._start_litellm(litellm_port, upstream_url)

    def _start_litellm(self, port: int, upstream_url: str) -> None:
        config = self.workdir / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: gpt-4o-mini\n"
            "    litellm_params:\n"
            "      model: openai/gpt-4o-mini\n"
            f"      api_base: {upstream_url}/v1\n"
            "      api_key: sk-bench-service\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
            "  success_callback: []\n"
            "  failure_callback: []\n"
            "  callbacks: []\n"
            "  set_verbose: false\n"
            "  json_logs: false\n"
            "general_settings:\n"
            f"  master_key: {CLIENT_KEY}\n"
            "  disable_spend_logs: true\n"
            "  disable_error_logs: true\n"
        )
        proc = self._spawn(
            "litellm",
            [
                str(BENCH_VENV / "bin" / "litellm"),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
                "--telemetry",
                "False",
            ],
            {
                "LITELLM_LOG": "ERROR",
                "LITELLM_MODE": "PRODUCTION",
                "DISABLE_SCHEMA_UPDATE": "true",
                "LITELLM_TELEMETRY": "False",
                "NO_DOCS": "True",
            },
            self.proxy_cpu,
        )
        url = f"http://127.0.0.1:{port}"
        body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
        _wait_http(f"{url}/v1/chat/completions", proc, 180, "POST", body)
        self.services["litellm"] = Service(name="litellm", url=url, pid=proc.pid)

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.broker is not None:
            self.broker.stop()
        for log in self._logs:
            log.close()  # type: ignore[attr-defined]


@contextlib.contextmanager
def pinned(cpu: str) -> Iterator[None]:
    """Run the calling process (the load generator) on one core, then restore; children started
    meanwhile keep the core."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(cpu)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
