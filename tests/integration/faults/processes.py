"""Our services as real subprocesses (``python -m deploy.cli ...``), so tests can signal them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.local.kafka import free_ports
from tests.integration.conftest import SERVICE_KEY
from tests.integration.faults.traffic import wait_http_ok

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Test teardown: make sure nothing outlives the test."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def spawn(command: str, env: dict[str, str], log_path: Path) -> Service:
    # LOGORHYTHMS_PRODUCER passes through: the fault tests run with either producer
    # (tests/README.md, "The producer process").
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOGORHYTHMS_") or k == "LOGORHYTHMS_PRODUCER"
    }
    full_env.update(env)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", command],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Service(process, log_path)


async def start_proxy(
    *,
    upstream_url: str,
    bootstrap: str,
    topic: str,
    journal_dir: Path,
    log_path: Path,
    **env: str,
) -> Service:
    port = free_ports(1)[0]
    service = spawn(
        "proxy",
        {
            "OPENAI_BASE_URL": f"{upstream_url}/v1",
            "OPENAI_API_KEY": SERVICE_KEY,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LOGORHYTHMS_TOPIC": topic,
            "LOGORHYTHMS_PORT": str(port),
            "LOGORHYTHMS_JOURNAL_DIR": str(journal_dir),
            "LOGORHYTHMS_FINGERPRINT_KEY": "test-fingerprint-key",
            **env,
        },
        log_path,
    )
    service.url = f"http://127.0.0.1:{port}"
    try:
        await wait_http_ok(f"{service.url}/healthz")
    except TimeoutError:
        service.stop()
        raise AssertionError(f"proxy did not start; its log:\n{service.log()[-3000:]}") from None
    return service


def wait_for_log(service: Service, marker: str, *, timeout_s: float = 60.0) -> None:
    """Block until ``marker`` appears in the service's log (or it exits, or the deadline)."""
    deadline = time.monotonic() + timeout_s
    while marker not in service.log():
        if service.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{marker!r} never appeared; log:\n{service.log()[-3000:]}")
        time.sleep(0.05)
