"""Runs the registry built by ``build.py`` as a child process on a loopback port."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from deploy.local.kafka.ports import free_ports
from deploy.local.registry.build import RegistrySetupError, ensure_registry_app, runner_jar

__all__ = ["RegistryServer"]

_HOST = "127.0.0.1"
CCOMPAT_PATH = "/apis/ccompat/v7"


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise RegistrySetupError(
            "No `java` on PATH (and JAVA_HOME unset): the schema registry needs a Java 17+ "
            "runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`)."
        )
    return found


class RegistryServer:
    """Apicurio Registry with in-memory storage, listening on loopback only.

    ``url`` is the Confluent-compatible base URL that Confluent clients, ClickHouse's
    ``format_avro_schema_registry_url`` and ``LOGORHYTHMS_SCHEMA_REGISTRY_URL`` take.
    """

    def __init__(self, work_dir: Path, *, port: int | None = None, heap_mb: int = 256) -> None:
        self.work_dir = work_dir
        self.port = port if port is not None else free_ports(1)[0]
        self.heap_mb = heap_mb
        self.log_path = work_dir / "registry.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}{CCOMPAT_PATH}"

    def start(self, timeout_s: float = 120) -> None:
        app = ensure_registry_app()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        command = [
            _java(),
            f"-Xmx{self.heap_mb}m",
            # The cheapest collector and C1 only: it starts faster on a shared 2-core machine,
            # and a registry serves a few look-ups per consumer start, not a hot path.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            f"-Dquarkus.http.host={_HOST}",
            f"-Dquarkus.http.port={self.port}",
            "-jar",
            str(runner_jar(app)),
        ]
        self._process = subprocess.Popen(
            command,
            cwd=self.work_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_ready(timeout_s)

    def _wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                self._reap()
                raise RegistrySetupError(
                    f"The schema registry exited during start-up; see {self.log_path}:\n"
                    + self._tail()
                )
            try:
                probe = f"{self.url}/subjects"  # http on loopback, built above
                with urllib.request.urlopen(probe, timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RegistrySetupError(
            f"The schema registry did not answer on {self.url} within {timeout_s:.0f} s; "
            f"see {self.log_path}:\n" + self._tail()
        )

    def _tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 20) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reap()

    def _reap(self) -> None:
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
