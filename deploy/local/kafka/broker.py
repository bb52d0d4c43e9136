"""The broker process: one local Kafka node (KRaft, broker+controller in one JVM).

:meth:`KafkaBroker.start` formats the log dir on first use, launches ``java`` and returns only
once the broker answers a Metadata request that lists this node as a live broker (``probe.py``
says why a TCP connect is not enough); on a clean start Kafka opens its PLAINTEXT port only
once the node is unfenced, so the stricter check costs nothing. A cluster's nodes
(``cluster.py``) are each launched, then waited for: none is ready before the controller
quorum has a majority. Stop, kill, pause and resume exist for shutdown and for fault tests.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from deploy.local.kafka.brokerlog import failure_hint, log_tail
from deploy.local.kafka.class_data import ArchiveDump, class_data_args
from deploy.local.kafka.errors import KafkaSetupError
from deploy.local.kafka.jars import ensure_kafka_jars
from deploy.local.kafka.java import find_java, java_command
from deploy.local.kafka.ports import HOST, free_ports, port_in_use
from deploy.local.kafka.probe import probe_metadata
from deploy.local.kafka.properties import (
    NODE_ID,
    Quorum,
    new_cluster_id,
    render_server_properties,
)

__all__ = ["KafkaBroker"]

_LIVE_BROKERS: set[KafkaBroker] = set()
PROGRESS_EVERY_S = 15.0  # how often a slow start says what it is waiting for


@atexit.register
def _stop_leftover_brokers() -> None:
    # The JVM runs in its own session (so a Ctrl-C is not delivered twice), which also means
    # it would outlive us. Catch the "forgot to stop()" / uncaught-exception cases here.
    # (A SIGKILLed Python process still leaks its broker; its pid is in <data_dir>/broker.pid.)
    for broker in list(_LIVE_BROKERS):
        broker.stop(timeout_s=10)


def _wait_for_process_state(pid: int, state: str, timeout_s: float) -> None:
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            # The state is the first field after the parenthesised command name.
            if stat.read_text().rpartition(")")[2].split()[0] == state:
                return
        except (OSError, IndexError):
            return  # no procfs (or the process is gone): nothing more to wait for
        time.sleep(0.01)
    raise KafkaSetupError(f"process {pid} did not reach state {state!r} within {timeout_s}s")


class KafkaBroker:
    """One local Kafka node (combined broker + KRaft controller) in a child JVM.

    ``data_dir`` holds ``server.properties``, the log dir (``data/``), ``broker.log`` and
    ``broker.pid``; it survives :meth:`stop`, :meth:`kill` and :meth:`restart`, so data
    written before a crash is readable afterwards. Ports are fixed at construction (free
    ones are picked when not given), so restarts keep the same bootstrap address.

    ``quick_jit`` (default off; the test fixtures turn it on): C1-only JIT, faster
    start, lower peak throughput -- not what a long-lived ``make up`` broker wants.
    ``class_data_sharing`` (default on): start from the AppCDS archive the first gracefully
    stopped broker leaves behind (``class_data.py``).

    ``node_id`` and ``quorum`` make it one node of a cluster (``cluster.py``): formatted with
    the quorum's cluster id and initial controllers, its metadata in ``metadata/`` apart from
    the partitions in ``data/``.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap_mb: int = 384,
        log_file: Path | None = None,
        libs_dir: Path | None = None,
        properties: Mapping[str, str] | None = None,
        quick_jit: bool = False,
        class_data_sharing: bool = True,
        extra_jvm_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        node_id: int = NODE_ID,
        quorum: Quorum | None = None,
    ) -> None:
        self._env = dict(env) if env is not None else None  # None: this process's environment
        self.data_dir = Path(data_dir).resolve()
        # 0/None = pick a free port. Three candidates: at most one can clash with a given port.
        spare = iter([] if port and controller_port else free_ports(3))
        self.port: int = port or next(p for p in spare if p != controller_port)
        self.controller_port: int = controller_port or next(p for p in spare if p != self.port)
        if self.port == self.controller_port:
            raise ValueError("port and controller_port must differ")
        self.heap_mb = heap_mb
        self.log_file = (log_file or self.data_dir / "broker.log").resolve()
        self.log_dir = self.data_dir / "data"
        self.node_id = node_id
        self.quorum = quorum
        # A cluster node's metadata lives apart from its partitions (properties.py says why).
        self.metadata_log_dir = self.data_dir / "metadata" if quorum is not None else None
        self.properties_file = self.data_dir / "server.properties"
        self.pid_file = self.data_dir / "broker.pid"
        self._libs_dir = libs_dir
        self._overrides = dict(properties or {})
        self.quick_jit = quick_jit
        self.class_data_sharing = class_data_sharing
        self._extra_jvm_args = tuple(extra_jvm_args)
        self._cds_dump: ArchiveDump | None = None  # while the running JVM will dump one
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._log_offset = 0
        self._paused = False
        self._lock = threading.RLock()
        self.last_start_seconds: float | None = None
        self._last_returncode: int | None = None

    # -- introspection ------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs (also while paused), else ``None``."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def last_returncode(self) -> int | None:
        """How the JVM ended (negative: the signal), once it has; ``None`` while it runs."""
        proc = self._proc
        if proc is not None:
            return proc.poll()
        return self._last_returncode

    @property
    def is_running(self) -> bool:
        """The JVM is alive (it may be paused)."""
        return self.pid is not None

    @property
    def is_paused(self) -> bool:
        return self._paused and self.is_running

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.is_running else "stopped")
        return f"<KafkaBroker {self.bootstrap_servers} {state} data_dir={self.data_dir}>"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the broker wrote since its latest start."""
        return log_tail(self.log_file, self._log_offset, lines)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout_s: float = 60, progress: Callable[[str], None] | None = None) -> None:
        """Format the log dir on first use, launch the JVM, wait until it serves requests.

        No-op if already running. Raises :class:`KafkaSetupError` (with the tail of the
        broker log) if the JVM exits early or is not ready within ``timeout_s``; ``progress``
        hears, every :data:`PROGRESS_EVERY_S`, that it is still being waited for and why.
        """
        with self._lock:
            if self.is_running:
                return
            began = time.monotonic()
            self.launch(timeout_s)
            try:
                self.wait_until_ready(
                    timeout_s - (time.monotonic() - began), progress=progress, began=began
                )
            except KafkaSetupError:
                self.kill()  # no half-started JVM left behind; no-op if it already exited
                raise
            self.last_start_seconds = time.monotonic() - began

    def launch(self, timeout_s: float = 60) -> None:
        """Check the ports, format what is not formatted yet, start the JVM; do not wait.
        No-op if already running. :class:`KafkaSetupError`: a port is taken, format failed."""
        with self._lock:
            if self.is_running:
                return
            self._reap()
            java = find_java()
            libs = self._libs_dir or ensure_kafka_jars()
            # Private: the log dir holds every captured prompt and response.
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.properties_file.write_text(
                render_server_properties(
                    port=self.port,
                    controller_port=self.controller_port,
                    log_dir=self.log_dir,
                    node_id=self.node_id,
                    quorum=self.quorum,
                    metadata_log_dir=self.metadata_log_dir,
                    overrides=self._overrides,
                ),
                encoding="utf-8",
            )
            for name, port in (("port", self.port), ("controller port", self.controller_port)):
                if port_in_use(port):
                    raise KafkaSetupError(
                        f"Kafka {name} {HOST}:{port} is already in use (another broker still "
                        f"running? see {self.pid_file}); stop it or choose another port."
                    )
            self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            dirs = [self.log_dir, *([self.metadata_log_dir] if self.metadata_log_dir else [])]
            if not all((d / "meta.properties").exists() for d in dirs):
                self._format(java, libs, timeout_s)
            self._launch(java, libs)

    def _format_args(self) -> list[str]:
        quorum, metadata = self.quorum, self.metadata_log_dir
        if quorum is None or metadata is None:
            return ["-t", new_cluster_id()]
        if (metadata / "meta.properties").exists():
            # Only the partitions' log dir is new (lost or wiped): format it for the same
            # cluster and leave the metadata, and with it the node's place in the quorum, alone.
            return ["-t", quorum.cluster_id, "--ignore-formatted", "--no-initial-controllers"]
        return ["-t", quorum.cluster_id, "--initial-controllers", quorum.initial_controllers]

    def _format(self, java: str, libs: Path, timeout_s: float) -> None:
        cmd = java_command(
            java=java,
            libs=libs,
            main_class="kafka.tools.StorageTool",
            args=["format", *self._format_args(), "-c", str(self.properties_file)],
            heap_mb=min(self.heap_mb, 256),
            quick_jit=True,  # a one-shot tool: C2 would never kick in anyway
            extra_jvm_args=self._jvm_args(java, libs, dump=False),
        )
        with self.log_file.open("ab") as log:
            log.write(b"=== logorhythms: formatting KRaft storage ===\n")
            log.flush()
            try:
                result = subprocess.run(
                    cmd,
                    cwd=self.data_dir,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise KafkaSetupError(
                    f"`kafka-storage format` timed out after {timeout_s:.0f}s:\n" + self.log_tail()
                ) from exc
        if result.returncode != 0:
            tail = self.log_tail()
            raise KafkaSetupError(
                f"`kafka-storage format` of {self.log_dir} failed (exit {result.returncode})."
                f"{failure_hint(tail)}\n{tail}"
            )

    def _launch(self, java: str, libs: Path) -> None:
        cmd = java_command(
            java=java,
            libs=libs,
            main_class="kafka.Kafka",
            args=[str(self.properties_file)],
            heap_mb=self.heap_mb,
            quick_jit=self.quick_jit,
            extra_jvm_args=self._jvm_args(java, libs, dump=True),
        )
        log = self.log_file.open("ab")
        log.write(f"=== logorhythms: starting broker on {self.bootstrap_servers} ===\n".encode())
        log.flush()
        try:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the parent's terminal reaches only the parent,
                # which then stops the broker exactly once (SIGTERM, controlled shutdown).
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        self._log_handle = log
        self._paused = False
        self.pid_file.write_text(f"{self._proc.pid}\n", encoding="utf-8")
        _LIVE_BROKERS.add(self)

    def _jvm_args(self, java: str, libs: Path, *, dump: bool) -> list[str]:
        if not self.class_data_sharing:
            return list(self._extra_jvm_args)
        flags, pending = class_data_args(java, libs, dump=dump)
        if pending is not None:
            self._cds_dump = pending
        return [*flags, *self._extra_jvm_args]

    def wait_until_ready(
        self,
        timeout_s: float = 30,
        *,
        progress: Callable[[str], None] | None = None,
        began: float | None = None,
    ) -> None:
        """Block until the broker answers Metadata with this node listed as a live broker.

        Used by :meth:`start`; call it directly after :meth:`resume` (a paused node may
        briefly fence itself once continued) or from fault tests. Raises
        :class:`KafkaSetupError` with the broker log tail if the JVM exits or time runs out.
        ``progress`` hears of a slow start (timed from ``began``) with the probe's last answer.
        """
        now = time.monotonic()
        deadline = now + max(timeout_s, 0.0)
        began = now if began is None else began
        next_report = began + PROGRESS_EVERY_S
        last_error: Exception | None = None
        while True:
            proc = self._proc
            if proc is None:
                raise KafkaSetupError(f"Kafka broker on {self.bootstrap_servers} is not started")
            code = proc.poll()
            if code is not None:
                tail = self.log_tail()
                raise KafkaSetupError(
                    f"Kafka broker on {self.bootstrap_servers} exited with code {code}."
                    f"{failure_hint(tail)}\nLast lines of {self.log_file}:\n{tail}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaSetupError(
                    f"Kafka broker on {self.bootstrap_servers} was not ready after "
                    f"{timeout_s:.0f}s (last probe error: {last_error!r}).\n"
                    f"Last lines of {self.log_file}:\n{self.log_tail()}"
                )
            try:
                live = probe_metadata(HOST, self.port, timeout_s=min(2.0, remaining))
                if any(b.node_id == self.node_id for b in live):
                    return
                last_error = ValueError(f"Metadata does not list node {self.node_id} yet")
            except (OSError, ValueError) as exc:
                last_error = exc
            now = time.monotonic()
            if progress is not None and now >= next_report:
                next_report = now + PROGRESS_EVERY_S
                progress(
                    f"Kafka node {self.node_id} on {self.bootstrap_servers} not ready after "
                    f"{now - began:.0f}s (last answer: {last_error}); waiting up to "
                    f"{deadline - now:.0f}s more (log: {self.log_file})"
                )
            time.sleep(0.1)

    def stop(self, timeout_s: float = 20) -> None:
        """Graceful shutdown (SIGTERM), SIGKILL after ``timeout_s``. Idempotent."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.terminate()
                if self._paused:  # a stopped process only acts on SIGTERM once continued
                    proc.send_signal(signal.SIGCONT)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
            self._reap(graceful=True)

    def kill(self) -> None:
        """SIGKILL the JVM (a crash, for fault tests); data on disk is kept. Idempotent."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                proc.kill()
            self._reap()

    def pause(self) -> None:
        """SIGSTOP the JVM: sockets stay open but nothing answers (a hung broker)."""
        with self._lock:
            process = self._require_running("pause")
            process.send_signal(signal.SIGSTOP)
            self._paused = True
            # SIGSTOP is delivered asynchronously; on a busy machine the JVM can still answer a
            # request or two. Return only once the kernel reports the process stopped.
            _wait_for_process_state(process.pid, "T", timeout_s=10)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        with self._lock:
            self._require_running("resume").send_signal(signal.SIGCONT)
            self._paused = False

    def restart(self, timeout_s: float = 60) -> None:
        """Stop if running, then start again on the same ports and data dir."""
        with self._lock:
            self.stop()
            self.start(timeout_s=timeout_s)

    def _require_running(self, action: str) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise KafkaSetupError(f"cannot {action}: broker {self.bootstrap_servers} not running")
        return proc

    def _reap(self, *, graceful: bool = False) -> None:
        """Collect an exited JVM and release its resources (no ResourceWarning later)."""
        proc = self._proc
        if proc is not None:
            returncode = proc.wait()  # callers ensure it has exited or was just killed
            self._last_returncode = returncode
            if self._cds_dump is not None:
                # Keep only the dump of a JVM that ran and was stopped by us.
                self._cds_dump.finish(complete=graceful and returncode >= 0)
                self._cds_dump = None
            self._proc = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        self._paused = False
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        _LIVE_BROKERS.discard(self)

    # -- context manager ------------------------------------------------------------------

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
