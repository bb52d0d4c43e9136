"""`logorhythms up`: the whole pipeline on one machine, started in order and kept running.

Start: Kafka broker → topic → (fake upstream when no provider is configured) → loader → Datadog
forwarder → proxy. A service that fails to come up at this first start stops everything (a
misconfiguration is not fixed by restarting it), with the end of its log on the terminal.

Then it supervises (docs/OPERATIONS.md, "Supervision"):
- a service that exits is restarted on its own, after a backoff of 0.5 s doubling to 30 s (back
  to 0.5 s once it has run for 30 s), with one line naming the service, how it ended and its
  log. Nothing else is stopped: the proxy keeps serving while a consumer restarts, and journals
  while the broker does;
- the broker is restarted when its JVM exits, and also when it stops answering (a hung or
  stopped JVM): a metadata probe every 5 s, killed and restarted after 30 s without an answer;
- ``<data dir>/status.json`` says how each part is doing (`logorhythms status` reads it).

Stop (Ctrl-C or SIGTERM): proxy first (it drains in-flight exchanges and flushes its events to
Kafka), then the consumers (they finish and commit their batch), then the broker. Every child
runs in its own session, so a terminal's Ctrl-C reaches only this supervisor, which keeps the
order.

Each service gets only its own environment (deploy/local/environment.py) and logs to
``<data dir>/logs/<service>.log``; everything under the data dir is private to the user (0700
directories, 0600 files).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from deploy.local.environment import consumer_env, loader_env, process_env, proxy_env
from deploy.local.kafka import (
    KafkaBroker,
    KafkaSetupError,
    create_topic,
    ensure_kafka_jars,
    probe_metadata,
)
from deploy.local.status import STATUS_FILE, ServiceStatus, write_status

TOPIC = "logorhythms.exchanges"
DEFAULT_SQL_PORT = 8124

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # up this long: the next exit restarts fast again
BROKER_PROBE_EVERY_S = 5.0
BROKER_HUNG_AFTER_S = 30.0  # no metadata answer for this long: the JVM is killed and restarted
STATUS_EVERY_S = 2.0
# What each service is given to stop before it is killed: the proxy drains streams (its own
# budget is LOGORHYTHMS_SHUTDOWN_TIMEOUT_S + the publish flush), the consumers stop within 10 s.
PROXY_STOP_S = 45.0
CONSUMER_STOP_S = 15.0


class StartError(Exception):
    """A service did not come up at the first start; the message says which and why."""


def _say(message: str) -> None:
    print(f"[logorhythms up] {message}", flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-returncode).name}"
        return f"signal {-returncode}"
    return f"exit code {returncode}"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def make_private(root: Path) -> None:
    """The data dir and everything already in it readable by its owner only (prompts, keys and
    responses live there). New files are private through the umask every service sets."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for directory, subdirs, files in os.walk(root):
        for name in (directory, *(os.path.join(directory, n) for n in (*subdirs, *files))):
            with contextlib.suppress(FileNotFoundError):
                mode = os.lstat(name).st_mode
                if mode & 0o077 and not os.path.islink(name):
                    os.chmod(name, mode & 0o700)


def _fingerprint_key(data_dir: Path) -> str:
    """A persistent key, so fingerprints of the same credential stay equal across restarts."""
    path = data_dir / "fingerprint.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()


@dataclass
class _Child:
    """One Python service (`python -m deploy.cli <command>`) and its restarts."""

    command: list[str]
    env: dict[str, str]
    status: ServiceStatus
    log_path: Path
    stop_timeout_s: float
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = BACKOFF_FIRST_S
    restart_at: float | None = None

    @property
    def name(self) -> str:
        return self.status.name

    def spawn(self) -> None:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deploy.cli", *self.command],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        self.restart_at = None
        self._set("starting", pid=self.process.pid)

    def ready(self) -> bool:
        return all(_accepts(port) for port in self.status.ports)

    def _set(self, state: str, *, pid: int | None = None) -> None:
        if state != self.status.state:
            self.status.since = time.time()
        self.status.state = state
        self.status.pid = pid

    def watch(self, now: float) -> bool:
        """One supervision step; True when the state changed."""
        if self.restart_at is not None:
            if now < self.restart_at:
                return False
            self.status.restarts += 1
            self.spawn()
            return True
        if self.process is None:
            return False
        returncode = self.process.poll()
        if returncode is not None:
            if now - self.started_at >= STABLE_AFTER_S:
                self.backoff_s = BACKOFF_FIRST_S
            self.status.last_exit = _how_it_ended(returncode)
            self.restart_at = now + self.backoff_s
            _say(
                f"{self.name} (pid {self.process.pid}) ended with {self.status.last_exit}; "
                f"restarting in {self.backoff_s:.1f}s (restart #{self.status.restarts + 1}; "
                f"its log: {self.log_path})"
            )
            self.backoff_s = min(self.backoff_s * 2, BACKOFF_MAX_S)
            self._set("restarting")
            return True
        if self.status.state == "starting" and self.ready():
            self._set("up", pid=self.process.pid)
            if self.status.restarts:
                _say(f"{self.name} is back (pid {self.process.pid})")
            return True
        return False

    def wait_ready(self, timeout_s: float, stopping: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout_s
        while not stopping():
            assert self.process is not None
            if self.process.poll() is not None:
                raise StartError(
                    f"{self.name} ended with {_how_it_ended(self.process.returncode)} while "
                    f"starting; the end of {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self.ready():
                self._set("up", pid=self.process.pid)
                return
            if time.monotonic() > deadline:
                raise StartError(
                    f"{self.name} did not listen on {self.status.ports} within {timeout_s:.0f}s; "
                    f"the end of {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        self.restart_at = None
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                _say(f"{self.name} did not stop within {self.stop_timeout_s:.0f}s; killing it")
                process.kill()
                process.wait()
        self._set("stopped")


@dataclass
class _BrokerWatch:
    """Keeps the local broker alive from a thread of its own (a restart takes seconds and a
    probe of a hung JVM blocks until its timeout; neither may hold up the other services)."""

    broker: KafkaBroker
    status: ServiceStatus
    changed: threading.Event
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="broker-watch", daemon=True)
        self.thread.start()

    def _set(self, state: str, pid: int | None) -> None:
        if state != self.status.state:
            self.status.since = time.time()
        self.status.state, self.status.pid = state, pid
        self.changed.set()

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        answered = started = time.monotonic()
        while not self.stop.wait(BROKER_PROBE_EVERY_S):
            pid = self.broker.pid
            now = time.monotonic()
            if pid is not None:
                try:
                    if probe_metadata("127.0.0.1", self.broker.port, timeout_s=3.0):
                        answered = now
                        if now - started >= STABLE_AFTER_S:
                            backoff = BACKOFF_FIRST_S
                        continue
                except (OSError, ValueError):
                    pass
                if now - answered < BROKER_HUNG_AFTER_S or self.stop.is_set():
                    continue
                self.status.last_exit = "hung (killed)"
                _say(
                    f"Kafka broker (pid {pid}) has not answered for {now - answered:.0f}s; "
                    f"killing it and restarting (its log: {self.broker.log_file})"
                )
                self.broker.kill()
            else:
                returncode = self.broker.last_returncode
                ended = "an unknown status" if returncode is None else _how_it_ended(returncode)
                self.status.last_exit = ended
                _say(
                    f"Kafka broker ended with {ended}; restarting in {backoff:.1f}s "
                    f"(restart #{self.status.restarts + 1}; its log: {self.broker.log_file})"
                )
            self._set("restarting", None)
            if self.stop.wait(backoff):
                return
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            self.status.restarts += 1
            try:
                self.broker.start()
            except KafkaSetupError as exc:
                _say(f"Kafka broker did not come back: {str(exc).splitlines()[0]}")
                continue
            answered = started = time.monotonic()
            self._set("up", self.broker.pid)
            _say(f"Kafka broker is back (pid {self.broker.pid})")

    def join(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def _banner(proxy_port: int, sql_port: int, root: Path) -> str:
    base = f"http://127.0.0.1:{proxy_port}"
    # `logorhythms sql` finds a non-default endpoint through the same variable.
    sql_env = "" if sql_port == DEFAULT_SQL_PORT else f"LOGORHYTHMS_SQL_PORT={sql_port} "
    return "\n".join(
        (
            "",
            "Logorhythms is up.",
            f"  Point any OpenAI SDK at it:  OPENAI_BASE_URL={base}/v1",
            f"  or any Anthropic SDK:        ANTHROPIC_BASE_URL={base}   (docs/CLIENTS.md)",
            f"  Or curl:  curl {base}/v1/chat/completions -H 'Content-Type: application/json' \\",
            """    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'""",
            f"  Query what was captured: http://127.0.0.1:{sql_port}/play in a browser, any",
            f"  ClickHouse client on port {sql_port} (docs/ANALYSTS.md), or",
            f'    {sql_env}.venv/bin/logorhythms sql "SELECT request_id, model_requested, '
            "response_text",
            '      FROM exchanges ORDER BY received_at DESC LIMIT 5"',
            f"  Health: .venv/bin/logorhythms status --data-dir {root}",
            f"  Logs: {root / 'logs'}.  Stop everything: Ctrl-C",
            "",
        )
    )


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    from consumers.settings import SettingsError

    raw = env.get(name) or str(default)
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise SettingsError(f"{name}={raw!r} is not a port number; give one from 1 to 65535")
    return port


def check_settings(env: Mapping[str, str]) -> None:
    """Every service's settings, built once here as each service will build them: a bad value
    stops `up` before anything starts, with the one-line error the service itself would give."""
    from consumers.settings import ForwarderSettings, LoaderSettings
    from proxy.settings import ProxySettings

    ProxySettings.from_env(proxy_env(env))
    LoaderSettings.from_env(loader_env(env))
    ForwarderSettings.from_env(consumer_env(env))


def up(*, data_dir: str = "data") -> int:
    root = Path(data_dir).resolve()
    env = dict(os.environ)
    check_settings(env)
    proxy_port = _port(env, "LOGORHYTHMS_PORT", 8080)
    sql_port = _port(env, "LOGORHYTHMS_SQL_PORT", DEFAULT_SQL_PORT)
    kafka_port = _port(env, "LOGORHYTHMS_KAFKA_PORT", 9092)
    env["LOGORHYTHMS_PORT"], env["LOGORHYTHMS_SQL_PORT"] = str(proxy_port), str(sql_port)
    make_private(root)
    logs = root / "logs"
    logs.mkdir(exist_ok=True, mode=0o700)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    broker: KafkaBroker | None = None
    watch: _BrokerWatch | None = None
    children: list[_Child] = []
    changed = threading.Event()
    statuses: list[ServiceStatus] = []

    def child(
        name: str,
        command: list[str],
        child_env: dict[str, str],
        *,
        stop_timeout_s: float,
        ports: tuple[int, ...] = (),
    ) -> _Child:
        log_path = logs / f"{name}.log"
        status = ServiceStatus(name, ports=list(ports), log=str(log_path))
        statuses.append(status)
        made = _Child(command, child_env, status, log_path, stop_timeout_s)
        children.append(made)
        made.spawn()
        return made

    def publish() -> None:
        write_status(root / STATUS_FILE, statuses, supervisor_pid=os.getpid(), stopping=stopping)

    try:
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            _say(f"using the Kafka broker at {bootstrap}")
        else:
            ensure_kafka_jars(progress=_say)
            port = kafka_port
            broker = KafkaBroker(
                root / "kafka", port=port, log_file=logs / "kafka.log", env=process_env(env)
            )
            _say(f"starting Kafka on 127.0.0.1:{port} (log: {broker.log_file})")
            broker.start()
            bootstrap = broker.bootstrap_servers
            broker_status = ServiceStatus(
                "kafka", state="up", pid=broker.pid, ports=[port], log=str(broker.log_file)
            )
            statuses.append(broker_status)
            watch = _BrokerWatch(broker, broker_status, changed)
            watch.start()
        topic = env.get("LOGORHYTHMS_TOPIC", TOPIC)
        asyncio.run(create_topic(bootstrap, topic, partitions=3))
        asyncio.run(create_topic(bootstrap, f"{topic}.deadletter", partitions=1))
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
        env.setdefault("CLICKHOUSE_URL", f"chdb://{root / 'clickhouse'}")
        env.setdefault("LOGORHYTHMS_JOURNAL_DIR", str(root / "journal"))
        env.setdefault("LOGORHYTHMS_FINGERPRINT_KEY", _fingerprint_key(root))

        configured = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LOGORHYTHMS_CONFIG")
        if not any(env.get(name) for name in configured):
            fake_port = _free_port()
            fake = child(
                "fake-upstream",
                ["fake-upstream", "--port", str(fake_port)],
                process_env(env),
                ports=(fake_port,),
                stop_timeout_s=CONSUMER_STOP_S,
            )
            fake.wait_ready(60, lambda: stopping)
            env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{fake_port}/v1"
            env["OPENAI_API_KEY"] = "sk-demo-not-a-real-key"
            if not env.get("ANTHROPIC_API_KEY") and not env.get("ANTHROPIC_BASE_URL"):
                env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{fake_port}"
                env["ANTHROPIC_API_KEY"] = "sk-ant-demo-not-a-real-key"
            _say(
                "OPENAI_API_KEY is not set: answering with the built-in fake upstream "
                f"(speaks OpenAI and Anthropic, echoes your last message) on port {fake_port}"
            )

        loader = child(
            "loader",
            ["load-clickhouse"],
            loader_env(env),
            ports=(sql_port,),
            stop_timeout_s=CONSUMER_STOP_S,
        )
        loader.wait_ready(120, lambda: stopping)
        # Runs with or without a Datadog agent (it says once when none is reachable).
        child("forwarder", ["forward-datadog"], consumer_env(env), stop_timeout_s=CONSUMER_STOP_S)
        # One proxy process unless LOGORHYTHMS_WORKERS asks for more (docs/OPERATIONS.md#processes).
        proxy = child(
            "proxy", ["proxy"], proxy_env(env), ports=(proxy_port,), stop_timeout_s=PROXY_STOP_S
        )
        proxy.wait_ready(120, lambda: stopping)
        if not stopping:
            print(_banner(proxy_port, sql_port, root), flush=True)
        publish()
        last_published = time.monotonic()
        while not stopping:
            now = time.monotonic()
            moved = any([c.watch(now) for c in children])
            if moved or changed.is_set() or now - last_published >= STATUS_EVERY_S:
                changed.clear()
                publish()
                last_published = now
            time.sleep(0.2)
        return 0
    except (StartError, KafkaSetupError, RuntimeError, OSError) as exc:
        _say(f"could not start: {exc}")
        return 1
    finally:
        _say("stopping: proxy first, then consumers, then Kafka")
        stopping = True
        if watch is not None:
            watch.join()
        for running in reversed(children):
            running.stop()
            with contextlib.suppress(OSError):
                publish()
        if broker is not None:
            broker.stop()
            for status in statuses:
                if status.name == "kafka":
                    status.state, status.pid = "stopped", None
        with contextlib.suppress(OSError):
            publish()
        _say("stopped")
