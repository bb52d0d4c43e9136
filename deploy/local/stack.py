"""`logorhythms up`: the whole pipeline on one machine, started in order and kept running.

Start: Kafka broker (or, with ``--brokers 3``, a replicated cluster) → topics → (fake upstream
when no provider is configured) → loader → Datadog forwarder → proxy. A service that fails to
come up at this first start stops everything (a misconfiguration is not fixed by restarting
it), with the end of its log on the terminal.

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
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from deploy.local.banner import DEFAULT_SQL_PORT, banner
from deploy.local.broker_watch import BrokerWatch
from deploy.local.child import ServiceProcess, StartError
from deploy.local.datadir import fingerprint_key, make_private
from deploy.local.environment import consumer_env, loader_env, process_env, proxy_env
from deploy.local.kafka import (
    KafkaBroker,
    KafkaCluster,
    KafkaSetupError,
    create_topic,
    ensure_kafka_jars,
    free_ports,
)
from deploy.local.status import STATUS_FILE, ServiceStatus, write_status
from deploy.local.supervision import say
from schemas.limits import KAFKA_MAX_MESSAGE_BYTES

__all__ = ["check_settings", "up"]

TOPIC = "logorhythms.exchanges"
STATUS_EVERY_S = 2.0
# What each service is given to stop before it is killed: the proxy drains streams (its own
# budget is LOGORHYTHMS_SHUTDOWN_TIMEOUT_S + the publish flush), the consumers stop within 10 s.
PROXY_STOP_S = 45.0
CONSUMER_STOP_S = 15.0
# A first start formats each node's log dir and boots its JVM: ~15 s for three nodes on a quiet
# two-core host, several times that while the host is busy. Slow is reported, not fatal.
KAFKA_START_S = 240.0


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


class _Stack:
    """The services `up` runs, in start order, and what it knows about each."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.logs = root / "logs"
        self.logs.mkdir(exist_ok=True, mode=0o700)
        self.stopping = False
        self.brokers: list[KafkaBroker] = []
        self.cluster: KafkaCluster | None = None
        self.watches: list[BrokerWatch] = []
        self.children: list[ServiceProcess] = []
        self.statuses: list[ServiceStatus] = []
        self.changed = threading.Event()  # the broker watch moved

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def start_kafka(self, kafka_port: int, brokers: int) -> None:
        """The broker or cluster (unless KAFKA_BOOTSTRAP_SERVERS names one) and the two topics."""
        env = self.env
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")
        replicas = brokers
        if bootstrap:
            say(f"using the Kafka broker at {bootstrap}")
            replicas = 1  # a broker configured elsewhere brings its own replication defaults
        elif brokers == 1:
            ensure_kafka_jars(progress=say)
            broker = KafkaBroker(
                self.root / "kafka",
                port=kafka_port,
                log_file=self.logs / "kafka.log",
                env=process_env(env),
            )
            say(f"starting Kafka on 127.0.0.1:{kafka_port} (log: {broker.log_file})")
            broker.start(timeout_s=KAFKA_START_S, progress=say)
            bootstrap = broker.bootstrap_servers
            self._watch(broker, "kafka")
        else:
            ensure_kafka_jars(progress=say)
            cluster = self.cluster = KafkaCluster(
                self.root / "kafka-cluster",
                nodes=brokers,
                port=kafka_port,
                logs_dir=self.logs,
                env=process_env(env),
            )
            say(
                f"starting a {brokers}-node Kafka cluster on {cluster.bootstrap_servers} "
                f"(logs: {self.logs}/kafka-<node>.log)"
            )
            cluster.start(timeout_s=KAFKA_START_S, progress=say)
            say(f"Kafka cluster ready in {cluster.last_start_seconds or 0:.1f}s")
            bootstrap = cluster.bootstrap_servers
            for node in cluster.nodes:
                self._watch(node, f"kafka-{node.node_id}")
        topic = env.get("LOGORHYTHMS_TOPIC", TOPIC)
        # Set on the topics too, so a broker configured elsewhere (KAFKA_BOOTSTRAP_SERVERS)
        # takes the events as large as the proxy makes them.
        sized = {"max.message.bytes": str(KAFKA_MAX_MESSAGE_BYTES)}
        for name, partitions in ((topic, 3), (f"{topic}.deadletter", 1)):
            asyncio.run(
                create_topic(
                    bootstrap, name, partitions=partitions, replication_factor=replicas,
                    configs=sized,
                )
            )  # fmt: skip
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap

    def _watch(self, broker: KafkaBroker, name: str) -> None:
        """Report one Kafka node in status.json and restart it when it dies or hangs."""
        status = ServiceStatus(
            name, state="up", pid=broker.pid, ports=[broker.port], log=str(broker.log_file)
        )
        self.statuses.append(status)
        self.brokers.append(broker)
        watch = BrokerWatch(broker, status, self.changed)
        self.watches.append(watch)
        watch.start()

    def start_fake_upstream(self) -> None:
        """The built-in fake provider, when no real one is configured."""
        env = self.env
        configured = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LOGORHYTHMS_CONFIG")
        if any(env.get(name) for name in configured):
            return
        fake_port = free_ports()[0]
        fake = self._spawn(
            "fake-upstream",
            ["fake-upstream", "--port", str(fake_port)],
            process_env(env),
            ports=(fake_port,),
            stop_timeout_s=CONSUMER_STOP_S,
        )
        fake.wait_ready(60, lambda: self.stopping)
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{fake_port}/v1"
        env["OPENAI_API_KEY"] = "sk-demo-not-a-real-key"
        if not env.get("ANTHROPIC_API_KEY") and not env.get("ANTHROPIC_BASE_URL"):
            env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{fake_port}"
            env["ANTHROPIC_API_KEY"] = "sk-ant-demo-not-a-real-key"
        say(
            "OPENAI_API_KEY is not set: answering with the built-in fake upstream "
            f"(speaks OpenAI and Anthropic, echoes your last message) on port {fake_port}"
        )

    def start_services(self, proxy_port: int, sql_port: int) -> None:
        """Loader, Datadog forwarder, proxy: consumers first, so nothing waits on them."""
        env = self.env
        loader = self._spawn(
            "loader",
            ["load-clickhouse"],
            loader_env(env),
            ports=(sql_port,),
            stop_timeout_s=CONSUMER_STOP_S,
        )
        loader.wait_ready(120, lambda: self.stopping)
        # Runs with or without a Datadog agent (it says once when none is reachable).
        self._spawn(
            "forwarder", ["forward-datadog"], consumer_env(env), stop_timeout_s=CONSUMER_STOP_S
        )
        # One proxy process unless LOGORHYTHMS_WORKERS asks for more (docs/OPERATIONS.md#processes).
        proxy = self._spawn(
            "proxy", ["proxy"], proxy_env(env), ports=(proxy_port,), stop_timeout_s=PROXY_STOP_S
        )
        proxy.wait_ready(120, lambda: self.stopping)

    def supervise(self) -> None:
        """Restart what ends and keep status.json fresh, until a signal asks to stop."""
        self.publish()
        last_published = time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            moved = any([c.watch(now) for c in self.children])
            if moved or self.changed.is_set() or now - last_published >= STATUS_EVERY_S:
                self.changed.clear()
                self.publish()
                last_published = now
            time.sleep(0.2)

    def stop(self) -> None:
        """Proxy first (it flushes its events to Kafka), then the consumers, then Kafka."""
        say("stopping: proxy first, then consumers, then Kafka")
        self.stopping = True
        for watch in self.watches:
            watch.join()
        for running in reversed(self.children):
            running.stop()
            with contextlib.suppress(OSError):
                self.publish()
        if self.cluster is not None:
            self.cluster.stop()
        for broker in self.brokers:
            broker.stop()  # a no-op for the cluster's nodes, stopped together above
        for status in self.statuses:
            if status.name.startswith("kafka"):
                status.state, status.pid = "stopped", None
        with contextlib.suppress(OSError):
            self.publish()
        say("stopped")

    def publish(self) -> None:
        write_status(
            self.root / STATUS_FILE,
            self.statuses,
            supervisor_pid=os.getpid(),
            stopping=self.stopping,
        )

    def _spawn(
        self,
        name: str,
        command: list[str],
        child_env: dict[str, str],
        *,
        stop_timeout_s: float,
        ports: tuple[int, ...] = (),
    ) -> ServiceProcess:
        log_path = self.logs / f"{name}.log"
        status = ServiceStatus(name, ports=list(ports), log=str(log_path))
        self.statuses.append(status)
        made = ServiceProcess(command, child_env, status, log_path, stop_timeout_s)
        self.children.append(made)
        made.spawn()
        return made


def up(*, data_dir: str = "data", brokers: int = 1) -> int:
    root = Path(data_dir).resolve()
    env = dict(os.environ)
    check_settings(env)
    proxy_port = _port(env, "LOGORHYTHMS_PORT", 8080)
    sql_port = _port(env, "LOGORHYTHMS_SQL_PORT", DEFAULT_SQL_PORT)
    kafka_port = _port(env, "LOGORHYTHMS_KAFKA_PORT", 9092)
    env["LOGORHYTHMS_PORT"], env["LOGORHYTHMS_SQL_PORT"] = str(proxy_port), str(sql_port)
    make_private(root)
    stack = _Stack(root, env)
    signal.signal(signal.SIGINT, stack.on_signal)
    signal.signal(signal.SIGTERM, stack.on_signal)
    try:
        stack.start_kafka(kafka_port, brokers)
        env.setdefault("CLICKHOUSE_URL", f"chdb://{root / 'clickhouse'}")
        env.setdefault("LOGORHYTHMS_JOURNAL_DIR", str(root / "journal"))
        env.setdefault("LOGORHYTHMS_FINGERPRINT_KEY", fingerprint_key(root))
        stack.start_fake_upstream()
        stack.start_services(proxy_port, sql_port)
        if not stack.stopping:
            print(banner(proxy_port, sql_port, root), flush=True)
        stack.supervise()
        return 0
    except (StartError, KafkaSetupError, RuntimeError, OSError) as exc:
        say(f"could not start: {exc}")
        return 1
    finally:
        stack.stop()
