"""The broker's class path: Kafka's jars fetched once from Maven Central and cached.

No Docker and no Kafka tarball: ``deploy/kafka/pom.xml`` names the broker's runtime
dependencies and ``mvn dependency:copy-dependencies`` copies them into
``$LOGORHYTHMS_CACHE_DIR`` or ``~/.cache/logorhythms``. A file lock serialises concurrent first
downloads; a completion marker holding the pom's hash makes later calls free.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from deploy.local.kafka.errors import KafkaSetupError

__all__ = [
    "KAFKA_VERSION",
    "MARKER_NAME",
    "POM_PATH",
    "ensure_kafka_jars",
    "kafka_cache_dir",
    "libs_complete",
    "marker_text",
]

KAFKA_VERSION = "4.4.0"

POM_PATH = Path(__file__).resolve().parents[2] / "kafka" / "pom.xml"
MARKER_NAME = ".logorhythms-complete"
_MAIN_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DOWNLOADED = re.compile(r"Downloaded from [^:]+: (?P<url>\S+) \((?P<stats>[^)]*)\)")


def kafka_cache_dir() -> Path:
    """``$LOGORHYTHMS_CACHE_DIR/kafka-<version>`` or ``~/.cache/logorhythms/kafka-<version>``."""
    root = os.environ.get("LOGORHYTHMS_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "logorhythms"
    return base / f"kafka-{KAFKA_VERSION}"


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def marker_text() -> str:
    return f"kafka={KAFKA_VERSION}\npom-sha256={_pom_digest()}\n"


def libs_complete(libs: Path) -> bool:
    marker = libs / MARKER_NAME
    try:
        return marker.read_text(encoding="utf-8") == marker_text()
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
    if libs_complete(libs):
        return libs

    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_dir / ".lock"):
        if libs_complete(libs):  # another process finished while we waited
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
            (staging / MARKER_NAME).write_text(marker_text(), encoding="utf-8")
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
