"""`logorhythms up`: the whole pipeline on one machine, started and stopped in the right order.

Start: Kafka broker → topic → (fake upstream when no provider is configured) → loader → Datadog
forwarder → proxy.
Stop (Ctrl-C or SIGTERM): proxy first (it drains in-flight exchanges and flushes its events to
Kafka), then the consumers (they finish and commit their batch), then the broker. Every child
runs in its own session, so a terminal's Ctrl-C reaches only this supervisor, which keeps the
order.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from deploy.local.kafka import KafkaBroker, KafkaSetupError, create_topic, ensure_kafka_jars

TOPIC = "logorhythms.exchanges"


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]


def _say(message: str) -> None:
    print(f"[logorhythms up] {message}", flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, child: _Child, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {child.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{child.name} did not listen on port {port} within {timeout_s:.0f}s")


def _fingerprint_key(data_dir: Path) -> str:
    """A persistent key, so fingerprints of the same credential stay equal across restarts."""
    path = data_dir / "fingerprint.key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _spawn(name: str, args: list[str], env: dict[str, str]) -> _Child:
    command = [sys.executable, "-m", "deploy.cli", *args]
    return _Child(name, subprocess.Popen(command, env=env, start_new_session=True))


def _stop(child: _Child, timeout_s: float) -> None:
    if child.process.poll() is not None:
        return
    child.process.send_signal(signal.SIGTERM)
    try:
        child.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        _say(f"{child.name} did not stop within {timeout_s:.0f}s; killing it")
        child.process.kill()
        child.process.wait()


def up(*, data_dir: str = "data") -> int:
    root = Path(data_dir).resolve()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    env = dict(os.environ)
    broker: KafkaBroker | None = None
    children: list[_Child] = []
    try:
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            _say(f"using the Kafka broker at {bootstrap}")
        else:
            ensure_kafka_jars(progress=_say)
            port = int(env.get("LOGORHYTHMS_KAFKA_PORT", "9092"))
            broker = KafkaBroker(root / "kafka", port=port, log_file=root / "logs" / "kafka.log")
            _say(f"starting Kafka on 127.0.0.1:{port} (log: {broker.log_file})")
            broker.start()
            bootstrap = broker.bootstrap_servers
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
            fake = _spawn("fake upstream", ["fake-upstream", "--port", str(fake_port)], env)
            children.append(fake)
            _wait_port(fake_port, fake)
            env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{fake_port}/v1"
            env["OPENAI_API_KEY"] = "sk-demo-not-a-real-key"
            if not env.get("ANTHROPIC_API_KEY") and not env.get("ANTHROPIC_BASE_URL"):
                env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{fake_port}"
                env["ANTHROPIC_API_KEY"] = "sk-ant-demo-not-a-real-key"
            _say(
                "OPENAI_API_KEY is not set: answering with the built-in fake upstream "
                f"(speaks OpenAI and Anthropic, echoes your last message) on port {fake_port}"
            )

        sql_port = int(env.setdefault("LOGORHYTHMS_SQL_PORT", "8124"))
        loader = _spawn("clickhouse loader", ["load-clickhouse"], env)
        children.append(loader)
        _wait_port(sql_port, loader)
        # Runs with or without a Datadog agent (it says once when none is reachable).
        children.append(_spawn("datadog forwarder", ["forward-datadog"], env))
        proxy_port = int(env.setdefault("LOGORHYTHMS_PORT", "8080"))
        # One proxy process unless LOGORHYTHMS_WORKERS asks for more (docs/OPERATIONS.md#processes).
        proxy = _spawn("proxy", ["proxy"], env)
        children.append(proxy)
        _wait_port(proxy_port, proxy)

        base = f"http://127.0.0.1:{proxy_port}"
        banner = (
            "",
            "Logorhythms is up.",
            f"  Point any OpenAI SDK at it:  OPENAI_BASE_URL={base}/v1",
            f"  or any Anthropic SDK:        ANTHROPIC_BASE_URL={base}   (docs/CLIENTS.md)",
            f"  Or curl:  curl {base}/v1/chat/completions -H 'Content-Type: application/json' \\",
            """    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'""",
            "  Query what was captured:",
            '    .venv/bin/logorhythms sql "SELECT request_id, model_requested, response_text',
            '      FROM exchanges ORDER BY received_at DESC LIMIT 5"',
            f"  Kafka's log: {root / 'logs'}; the services log below.  Stop everything: Ctrl-C",
            "",
        )
        print("\n".join(banner), flush=True)
        while not stopping:
            for child in children:
                if child.process.poll() is not None:
                    _say(f"{child.name} exited with code {child.process.returncode}; stopping")
                    stopping = True
            time.sleep(0.3)
        return 0 if all(c.process.poll() is None for c in children) else 1
    except (KafkaSetupError, RuntimeError, OSError) as exc:
        _say(f"could not start: {exc}")
        return 1
    finally:
        _say("stopping: proxy first, then consumers, then Kafka")
        for child in reversed(children):
            _stop(child, timeout_s=45)
        if broker is not None:
            broker.stop()
        _say("stopped")
