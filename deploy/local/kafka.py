"""A real single-node Apache Kafka broker (KRaft, broker+controller in one JVM), run from Python.

No Docker and no Kafka tarball: the broker's class path is fetched once from Maven Central
(``deploy/kafka/pom.xml`` via ``mvn dependency:copy-dependencies``) into
``$LOGORHYTHMS_CACHE_DIR`` or ``~/.cache/logorhythms`` and started with plain ``java``.

Used by ``make up`` (through ``deploy/local/stack.py``), by the test fixtures in
``tests/conftest.py``, and standalone: ``python -m deploy.local.kafka --data-dir ./data/kafka``.

Readiness: :meth:`KafkaBroker.start` returns only once the broker answers a Kafka Metadata
request that lists at least one live broker, i.e. this node is registered with its own
controller and unfenced, so produce/consume/create-topic work from the first request. A bare
TCP connect is not enough as a general check: a paused (SIGSTOP) or wedged JVM still
completes TCP handshakes (the kernel fills the listen backlog), and a foreign process on the
port would pass too. On a clean start of Kafka 4.4 the two signals happen to be ~50 ms apart
(the PLAINTEXT acceptor is enabled right after unfencing), so the stricter check costs
nothing. The probe is a tiny hand-rolled Metadata v4 request over a blocking socket, so
``start()`` neither needs nor disturbs an asyncio event loop: it works from sync fixtures,
threads (``asyncio.to_thread``) and, blocking briefly, from async code.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, NamedTuple, Self

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

__all__ = [
    "KAFKA_VERSION",
    "LOG4J2_CONFIG",
    "POM_PATH",
    "BrokerAddress",
    "KafkaBroker",
    "KafkaSetupError",
    "create_topic",
    "decode_metadata_response",
    "encode_metadata_request",
    "ensure_kafka_jars",
    "find_java",
    "free_ports",
    "java_command",
    "kafka_cache_dir",
    "main",
    "new_cluster_id",
    "probe_metadata",
    "render_server_properties",
]

KAFKA_VERSION = "4.4.0"

_KAFKA_ASSETS = Path(__file__).resolve().parent.parent / "kafka"
POM_PATH = _KAFKA_ASSETS / "pom.xml"
LOG4J2_CONFIG = _KAFKA_ASSETS / "log4j2.properties"

HOST = "127.0.0.1"
NODE_ID = 1
_MARKER_NAME = ".logorhythms-complete"
_MAIN_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DOWNLOADED = re.compile(r"Downloaded from [^:]+: (?P<url>\S+) \((?P<stats>[^)]*)\)")

# Broker settings that differ from Kafka's defaults, for a one-node dev/test cluster.
_BASE_PROPERTIES: dict[str, str] = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "num.partitions": "3",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    # Kept on for now (producers may publish to a topic nobody created yet); create_topic()
    # exists so callers can create topics explicitly and this can be turned off later.
    "auto.create.topics.enable": "true",
    # Internal topics: replication factor 1 (there is one node) and few partitions. The
    # default 50 partitions for __consumer_offsets make the first consumer-group join on a
    # 2-core machine noticeably slower and buy nothing on a single node.
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "3",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "3",
    "group.initial.rebalance.delay.ms": "0",
    # After a crash (kill -9) the restarted node's controller still holds the dead
    # incarnation's registration and rejects the new one (DUPLICATE_BROKER_REGISTRATION)
    # until that session expires: with the default 9 s timeout / 2 s heartbeat a restart
    # after kill() took ~13 s instead of ~5 s. Both run in the same JVM over loopback.
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
}


class KafkaSetupError(RuntimeError):
    """Kafka could not be fetched, formatted or started; the message says what to do."""


class BrokerAddress(NamedTuple):
    """One entry of the ``brokers`` array of a Metadata response."""

    node_id: int
    host: str
    port: int


# --------------------------------------------------------------------------------------------
# Jars
# --------------------------------------------------------------------------------------------


def kafka_cache_dir() -> Path:
    """``$LOGORHYTHMS_CACHE_DIR/kafka-<version>`` or ``~/.cache/logorhythms/kafka-<version>``."""
    root = os.environ.get("LOGORHYTHMS_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "logorhythms"
    return base / f"kafka-{KAFKA_VERSION}"


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def _marker_text() -> str:
    return f"kafka={KAFKA_VERSION}\npom-sha256={_pom_digest()}\n"


def _libs_complete(libs: Path) -> bool:
    marker = libs / _MARKER_NAME
    try:
        return marker.read_text(encoding="utf-8") == _marker_text()
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise concurrent first-time downloads (pytest workers, `make up` + tests)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_kafka_jars(
    cache_dir: Path | None = None, *, progress: Callable[[str], None] = print
) -> Path:
    """Return a directory holding the broker's jars, downloading them on first use.

    Idempotent and cheap once done: if ``<cache_dir>/libs`` carries the completion marker
    (which records the pom's hash, so editing the pom refreshes the cache) it is returned
    at once. Otherwise Maven copies the runtime dependencies of ``deploy/kafka/pom.xml``
    into a scratch directory next to ``libs``, which is then renamed into place, so a
    crashed or interrupted download never leaves a half-filled ``libs``.

    Raises :class:`KafkaSetupError` if Maven is missing or fails.
    """
    cache_dir = kafka_cache_dir() if cache_dir is None else cache_dir
    libs = cache_dir / "libs"
    if _libs_complete(libs):
        return libs

    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_dir / ".lock"):
        if _libs_complete(libs):  # another process finished while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaSetupError(
                "Apache Maven (`mvn`) is not on PATH; it is needed once to download the Kafka "
                f"{KAFKA_VERSION} jars from Maven Central into {libs}. Install Maven 3.6+ and "
                "a JDK 17+ (Debian/Ubuntu: `apt-get install maven openjdk-17-jdk-headless`; "
                "macOS: `brew install maven openjdk@17`) and retry, or point "
                "KAFKA_BOOTSTRAP_SERVERS at an existing broker."
            )
        progress(
            f"Downloading Kafka {KAFKA_VERSION} jars from Maven Central "
            f"(first run only, ~45 MB) into {libs} ..."
        )
        staging = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=cache_dir))
        try:
            _run_maven(mvn, staging, progress)
            if not (staging / _MAIN_JAR).is_file():
                raise KafkaSetupError(
                    f"Maven finished but {_MAIN_JAR} is missing from {staging}; check {POM_PATH}."
                )
            (staging / _MARKER_NAME).write_text(_marker_text(), encoding="utf-8")
            if libs.exists():  # stale (older pom): move aside, then swap in the new one
                stale = Path(tempfile.mkdtemp(prefix="libs.stale-", dir=cache_dir))
                libs.rename(stale / "libs")
                shutil.rmtree(stale, ignore_errors=True)
            staging.rename(libs)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    jars = sum(1 for _ in libs.glob("*.jar"))
    progress(f"Kafka {KAFKA_VERSION}: {jars} jars ready in {libs}")
    return libs


def _run_maven(mvn: str, out_dir: Path, progress: Callable[[str], None]) -> None:
    tail: deque[str] = deque(maxlen=25)
    with tempfile.TemporaryDirectory(prefix="logorhythms-kafka-pom-") as build:
        shutil.copyfile(POM_PATH, Path(build) / "pom.xml")
        cmd = [
            mvn,
            "-B",
            "-Dstyle.color=never",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={out_dir}",
        ]
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=build,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as exc:
            raise KafkaSetupError(f"Could not run {mvn}: {exc}") from exc
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = _ANSI.sub("", raw).rstrip()
                if not line:
                    continue
                tail.append(line)
                # Jar downloads are the slow part and the only progress worth showing.
                if (done := _DOWNLOADED.search(line)) and done["url"].endswith(".jar"):
                    progress(f"  fetched {done['url'].rsplit('/', 1)[-1]} ({done['stats']})")
                elif line.startswith("[ERROR]"):
                    progress(f"  mvn: {line}")
            returncode = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C, timeout): don't leave mvn behind
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    if returncode != 0:
        raise KafkaSetupError(
            f"`mvn dependency:copy-dependencies` failed (exit {returncode}) while fetching "
            f"Kafka {KAFKA_VERSION} from Maven Central. Check network access to "
            "https://repo.maven.apache.org (proxy settings go in ~/.m2/settings.xml) and that "
            "`mvn -v` works with a JDK 17+. Last Maven output:\n" + "\n".join(tail)
        )


# --------------------------------------------------------------------------------------------
# Pure helpers (unit-tested)
# --------------------------------------------------------------------------------------------


def free_ports(count: int = 1, host: str = HOST) -> list[int]:
    """Return ``count`` distinct TCP ports that were free on ``host`` a moment ago.

    All sockets are held open until every port is chosen, so the ports are distinct. As
    with any "find a free port" helper, another process may grab one before the broker
    binds it; :meth:`KafkaBroker.start` then fails with a clear "address in use" error.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the JVM sets on its server sockets: TIME_WAIT leftovers of a killed
        # broker's connections must not count as "in use", a live listener must.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def new_cluster_id() -> str:
    """A KRaft cluster id, same format as ``kafka-storage.sh random-uuid`` (saves a JVM run).

    That is a random v4 UUID as unpadded URL-safe base64 (22 chars); like Kafka's
    ``Uuid.randomUuid()`` it never starts with '-' (it would parse as a CLI flag).
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def render_server_properties(
    *,
    port: int,
    controller_port: int,
    log_dir: Path,
    node_id: int = NODE_ID,
    host: str = HOST,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """The broker's ``server.properties`` text (single combined broker+controller node)."""
    props = dict(_BASE_PROPERTIES)
    props.update(
        {
            "node.id": str(node_id),
            "controller.quorum.voters": f"{node_id}@{host}:{controller_port}",
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "log.dirs": str(log_dir),
        }
    )
    props.update(overrides or {})
    lines = ["# Written by deploy/local/kafka.py on every start; edits are overwritten."]
    lines += [f"{key}={_escape_property(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _escape_property(value: str) -> str:
    # java.util.Properties treats backslash as an escape; paths on Windows would need it.
    return value.replace("\\", "\\\\")


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` if set, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaSetupError(
            f"No `java` on PATH (and JAVA_HOME unset): Kafka {KAFKA_VERSION} needs a Java 17+ "
            "runtime (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; macOS: "
            "`brew install openjdk@17`)."
        )
    return found


def java_command(
    *,
    java: str,
    libs: Path,
    main_class: str,
    args: Sequence[str],
    heap_mb: int,
    quick_jit: bool = False,
    extra_jvm_args: Sequence[str] = (),
) -> list[str]:
    """The JVM command line for ``main_class`` with a small-footprint profile.

    Measured on the 2-core dev box (restart of an existing data dir, median of 3):
    SerialGC 3.9 s, + C1-only 2.7 s, + AppCDS 2.2 s, + both 1.7 s; G1 + C1-only 2.9 s.

    * ``-Xmx`` small, ``-Xms`` up to 128 MB: the broker idles well below 200 MB of heap.
    * SerialGC: cheapest collector on 2 cores; G1's concurrent threads only compete with the
      broker (and the tests) for CPU at this heap size, and it started no faster.
    * ``quick_jit`` adds ``-XX:TieredStopAtLevel=1`` (C1 only): ~1 s faster start-up but
      lower peak throughput, so it is for tests, not for the long-lived ``make up`` broker.
    * ``-XX:+ExitOnOutOfMemoryError``: die loudly instead of limping along half-broken.
    * AppCDS flags, if any, come in through ``extra_jvm_args`` (see :class:`KafkaBroker`).
    """
    return [
        java,
        f"-Xmx{heap_mb}m",
        f"-Xms{min(128, heap_mb)}m",
        "-XX:+UseSerialGC",
        *(["-XX:TieredStopAtLevel=1"] if quick_jit else []),
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        *extra_jvm_args,
        "-cp",
        str(libs / "*"),
        main_class,
        *args,
    ]


def cds_archive_path(java: str, libs: Path) -> Path:
    """Where the AppCDS archive for this JVM binary and this jar set lives.

    ``<libs>/../cds/kafka-<key>.jsa``; the key covers the java binary (path, size, mtime)
    and the jar set, so a JDK upgrade or a pom change simply uses a new archive. The JVM
    validates the archive as well and ignores (with a log warning) one that does not match.
    """
    binary = Path(java).resolve()
    stat = binary.stat()
    marker = libs / _MARKER_NAME
    jars = marker.read_text(encoding="utf-8") if marker.is_file() else ""
    if not jars:
        jars = ",".join(sorted(p.name for p in libs.glob("*.jar")))
    ident = f"{binary}|{stat.st_size}|{stat.st_mtime_ns}|{libs.resolve()}|{jars}"
    key = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:16]
    return libs.parent / "cds" / f"kafka-{key}.jsa"


# --------------------------------------------------------------------------------------------
# Readiness probe: Metadata v4 over a plain socket
# --------------------------------------------------------------------------------------------

_METADATA_API_KEY = 3
# Kafka 4.0 dropped Metadata v0-v3 (KIP-896); v4 is the oldest version 4.x still accepts and
# is non-flexible (no tagged fields), which keeps this encoder tiny.
_METADATA_API_VERSION = 4
_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def encode_metadata_request(correlation_id: int, client_id: str = "logorhythms-probe") -> bytes:
    """A size-prefixed Metadata v4 request for no topics (just brokers and controller)."""
    client = client_id.encode("utf-8")
    header = struct.pack(
        ">hhih", _METADATA_API_KEY, _METADATA_API_VERSION, correlation_id, len(client)
    )
    # topics: empty array (not null = "all topics"); allow_auto_topic_creation: false
    body = struct.pack(">ib", 0, 0)
    payload = header + client + body
    return struct.pack(">i", len(payload)) + payload


def decode_metadata_response(payload: bytes, correlation_id: int) -> list[BrokerAddress]:
    """Brokers listed in a Metadata v4 response (``payload`` without its size prefix)."""
    try:
        got_id, _throttle_ms, count = struct.unpack_from(">iii", payload, 0)
        if got_id != correlation_id:
            raise ValueError(f"correlation id {got_id} != {correlation_id}")
        offset = 12
        brokers: list[BrokerAddress] = []
        for _ in range(count):
            node_id, host_len = struct.unpack_from(">ih", payload, offset)
            offset += 6
            host = payload[offset : offset + host_len].decode("utf-8")
            offset += host_len
            port, rack_len = struct.unpack_from(">ih", payload, offset)
            offset += 6 + max(rack_len, 0)
            if offset > len(payload):
                raise ValueError("truncated broker entry")
            brokers.append(BrokerAddress(node_id, host, port))
    except struct.error as exc:
        raise ValueError(f"malformed Metadata response: {exc}") from exc
    return brokers


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def probe_metadata(host: str, port: int, timeout_s: float = 2.0) -> list[BrokerAddress]:
    """Send one Metadata request; return the live brokers it lists.

    Raises ``OSError`` (not reachable / timed out / closed) or ``ValueError`` (bad reply).
    """
    correlation_id = int.from_bytes(os.urandom(3), "big")
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(encode_metadata_request(correlation_id))
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 0 < size <= _MAX_RESPONSE_BYTES:
            raise ValueError(f"implausible response size {size}")
        return decode_metadata_response(_recv_exact(sock, size), correlation_id)


# --------------------------------------------------------------------------------------------
# The broker process
# --------------------------------------------------------------------------------------------

_LIVE_BROKERS: set[KafkaBroker] = set()


@atexit.register
def _stop_leftover_brokers() -> None:
    # The JVM runs in its own session (so a Ctrl-C is not delivered twice), which also means
    # it would outlive us. Catch the "forgot to stop()" / uncaught-exception cases here.
    # (A SIGKILLed Python process still leaks its broker; its pid is in <data_dir>/broker.pid.)
    for broker in list(_LIVE_BROKERS):
        broker.stop(timeout_s=10)


def _tail(path: Path, start: int = 0, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
    except OSError:
        return "(no broker log)"
    text = data.decode("utf-8", errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) or "(broker log is empty)"


def _hint(log_text: str) -> str:
    if "UnsupportedClassVersionError" in log_text:
        return f" Kafka {KAFKA_VERSION} needs Java 17 or newer (see `java -version`)."
    if "Address already in use" in log_text:
        return " A port is taken: another broker running? Pass a different port."
    if "Failed to acquire lock" in log_text or "may be in use by another" in log_text:
        return " The data dir is locked by another broker process (see broker.pid)."
    return ""


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

    ``quick_jit`` (default off; the test fixtures turn it on): C1-only JIT, ~1 s faster
    start, lower peak throughput -- not what a long-lived ``make up`` broker wants.
    ``class_data_sharing`` (default on): the first broker that stops gracefully dumps an
    AppCDS archive of the classes it loaded (``-XX:ArchiveClassesAtExit``, ~50 MB, next to
    the jars cache); later starts map it (``-XX:SharedArchiveFile``) and start ~1.5 s faster.
    Java 17 has no ``-XX:+AutoCreateSharedArchive`` (JDK 19+), hence the manual dance.
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
        self.properties_file = self.data_dir / "server.properties"
        self.pid_file = self.data_dir / "broker.pid"
        self._libs_dir = libs_dir
        self._overrides = dict(properties or {})
        self.quick_jit = quick_jit
        self.class_data_sharing = class_data_sharing
        self._extra_jvm_args = tuple(extra_jvm_args)
        self._cds_dump: tuple[Path, Path] | None = None  # (partial, final) while dumping
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
        return _tail(self.log_file, self._log_offset, lines)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout_s: float = 60) -> None:
        """Format the log dir on first use, launch the JVM, wait until it serves requests.

        No-op if already running. Raises :class:`KafkaSetupError` (with the tail of the
        broker log) if the JVM exits early or is not ready within ``timeout_s``.
        """
        with self._lock:
            if self.is_running:
                return
            self._reap()
            began = time.monotonic()
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
                    overrides=self._overrides,
                ),
                encoding="utf-8",
            )
            for name, port in (("port", self.port), ("controller port", self.controller_port)):
                if _port_in_use(port):
                    raise KafkaSetupError(
                        f"Kafka {name} {HOST}:{port} is already in use (another broker still "
                        f"running? see {self.pid_file}); stop it or choose another port."
                    )
            self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            if not (self.log_dir / "meta.properties").exists():
                self._format(java, libs, timeout_s)
            self._launch(java, libs)
            try:
                self.wait_until_ready(timeout_s - (time.monotonic() - began))
            except KafkaSetupError:
                self.kill()  # no half-started JVM left behind; no-op if it already exited
                raise
            self.last_start_seconds = time.monotonic() - began

    def _format(self, java: str, libs: Path, timeout_s: float) -> None:
        cmd = java_command(
            java=java,
            libs=libs,
            main_class="kafka.tools.StorageTool",
            args=[
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(self.properties_file),
            ],
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
                f"{_hint(tail)}\n{tail}"
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
        args: list[str] = []
        if self.class_data_sharing:
            archive = cds_archive_path(java, libs)
            if archive.is_file():
                args.append(f"-XX:SharedArchiveFile={archive}")
            elif dump:
                # Unique name: two brokers may dump at once; the rename in _reap is atomic.
                partial = archive.with_name(f"{archive.name}.{uuid.uuid4().hex[:8]}.partial")
                archive.parent.mkdir(parents=True, exist_ok=True)
                self._cds_dump = (partial, archive)
                # -Xlog: the dump lists every class it skips (hundreds of warning lines).
                args += [
                    f"-XX:ArchiveClassesAtExit={partial}",
                    "-Xlog:cds=off",
                    "-Xlog:cds+dynamic=off",
                ]
        return [*args, *self._extra_jvm_args]

    def _finish_cds_dump(self, returncode: int, *, graceful: bool) -> None:
        if self._cds_dump is None:
            return
        partial, archive = self._cds_dump
        self._cds_dump = None
        # Keep only dumps of a broker that ran and was stopped by us: a JVM killed by a
        # signal (returncode < 0) may have left a truncated file, a failed start a thin one.
        complete = graceful and returncode >= 0
        if complete and partial.is_file() and partial.stat().st_size > 0:
            os.replace(partial, archive)
            for old in archive.parent.glob("kafka-*.jsa"):
                if old != archive:  # archives of a replaced JDK or jar set
                    old.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)

    def wait_until_ready(self, timeout_s: float = 30) -> None:
        """Block until the broker answers Metadata with itself listed as a live broker.

        Used by :meth:`start`; call it directly after :meth:`resume` (a paused node may
        briefly fence itself once continued) or from fault tests. Raises
        :class:`KafkaSetupError` with the broker log tail if the JVM exits or time runs out.
        """
        deadline = time.monotonic() + max(timeout_s, 0.0)
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
                    f"{_hint(tail)}\nLast lines of {self.log_file}:\n{tail}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaSetupError(
                    f"Kafka broker on {self.bootstrap_servers} was not ready after "
                    f"{timeout_s:.0f}s (last probe error: {last_error!r}).\n"
                    f"Last lines of {self.log_file}:\n{self.log_tail()}"
                )
            try:
                if probe_metadata(HOST, self.port, timeout_s=min(2.0, remaining)):
                    return
                last_error = ValueError("Metadata lists no live broker yet")
            except (OSError, ValueError) as exc:
                last_error = exc
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
            self._finish_cds_dump(returncode, graceful=graceful)
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


# --------------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------------


async def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 3,
    *,
    replication_factor: int = 1,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30,
) -> None:
    """Create ``name`` unless it exists, then wait until every partition has a leader.

    Idempotent: an existing topic (whatever its partition count) is left as is.
    """
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            topic = NewTopic(
                name, partitions, replication_factor, topic_configs=dict(configs or {})
            )
            response = await admin.create_topics([topic])
            for entry in response.topic_errors:  # (topic, error_code[, error_message])
                code = entry[1]
                if code and code != TopicAlreadyExistsError.errno:
                    detail = entry[2] if len(entry) > 2 else ""
                    raise for_code(code)(f"create topic {entry[0]!r}: {detail}")
            # The controller has committed the topic; wait until this broker serves it too,
            # so a producer started right after us does not begin with metadata retries.
            while True:
                if _all_partitions_led(await admin.describe_topics([name]), name):
                    return
                await asyncio.sleep(0.05)
    finally:
        await admin.close()


def _all_partitions_led(described: list[dict[str, object]], name: str) -> bool:
    for topic in described:
        if topic.get("topic") != name or topic.get("error_code"):
            continue
        parts = topic.get("partitions")
        if isinstance(parts, list) and parts:
            return all(
                isinstance(p, dict) and not p.get("error_code") and p.get("leader", -1) >= 0
                for p in parts
            )
    return False


# --------------------------------------------------------------------------------------------
# CLI: python -m deploy.local.kafka --data-dir ./data/kafka [--port 9092]
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.kafka",
        description=f"Run a single-node Kafka {KAFKA_VERSION} (KRaft) broker in the foreground.",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data/kafka"))
    parser.add_argument(
        "--port", type=int, default=9092, help="PLAINTEXT port (default 9092; 0 = any free)"
    )
    parser.add_argument(
        "--controller-port", type=int, default=None, help="KRaft port (default PORT+1)"
    )
    parser.add_argument("--heap-mb", type=int, default=384)
    parser.add_argument(
        "--quick-jit",
        action="store_true",
        help="C1-only JIT: ~1 s faster start, lower throughput (for throwaway brokers)",
    )
    parser.add_argument("--log-file", type=Path, default=None, help="default DATA_DIR/broker.log")
    parser.add_argument("--timeout", type=float, default=90, help="start-up timeout, seconds")
    parser.add_argument(
        "--fetch-only", action="store_true", help="only download the jars (CI cache warm-up)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        libs = ensure_kafka_jars(progress=say)
        if args.fetch_only:
            return 0
        port: int | None = args.port or None
        controller_port: int | None = args.controller_port
        if controller_port is None and port is not None:
            controller_port = port + 1
        broker = KafkaBroker(
            args.data_dir,
            port=port,
            controller_port=controller_port,
            heap_mb=args.heap_mb,
            log_file=args.log_file,
            libs_dir=libs,
            quick_jit=args.quick_jit,
        )
        stop_requested = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            stop_requested.set()

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, on_signal)
        say(f"Starting Kafka {KAFKA_VERSION} (log: {broker.log_file}) ...")
        broker.start(timeout_s=args.timeout)
    except KafkaSetupError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1

    try:
        say(
            f"Kafka ready in {broker.last_start_seconds or 0:.1f}s, pid {broker.pid}, "
            f"data {broker.data_dir}"
        )
        say(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
        say("Press Ctrl-C to stop.")
        while not stop_requested.wait(0.5):
            if not broker.is_running:
                print(
                    f"error: the broker exited unexpectedly.\n{broker.log_tail()}",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
        say("Stopping Kafka ...")
    finally:
        broker.stop()
    say("Kafka stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
