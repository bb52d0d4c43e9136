"""The registry's runnable jar: ``deploy/registry/pom.xml`` built once by Maven and cached.

Apicurio Registry is published as a library jar; the Quarkus build in that pom turns it into
``registry-runtime-<version>-runner.jar`` plus ``lib/``. The result is kept in
``$LOGORHYTHMS_CACHE_DIR`` or ``~/.cache/logorhythms`` under ``registry-<version>/app``, with a
marker holding the hash of the build inputs, like the Kafka jars (``deploy/local/kafka/jars.py``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["REGISTRY_VERSION", "RegistrySetupError", "ensure_registry_app", "runner_jar"]

REGISTRY_VERSION = "2.4.2.Final"  # keep equal to <version> in deploy/registry/pom.xml
PROJECT_DIR = Path(__file__).resolve().parents[2] / "registry"
_MARKER = ".logorhythms-complete"
_RUNNER = f"registry-runtime-{REGISTRY_VERSION}-runner.jar"
_BUILD_TIMEOUT_S = 1200


class RegistrySetupError(RuntimeError):
    """The registry could not be built or started; the message says what to do."""


def registry_cache_dir() -> Path:
    root = os.environ.get("LOGORHYTHMS_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "logorhythms"
    return base / f"registry-{REGISTRY_VERSION}"


def _inputs_digest() -> str:
    """Hash of every file of the build project, so editing any of them rebuilds the cache."""
    digest = hashlib.sha256()
    for path in sorted(p for p in PROJECT_DIR.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(PROJECT_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def runner_jar(app_dir: Path) -> Path:
    return app_dir / _RUNNER


def ensure_registry_app(
    cache_dir: Path | None = None, *, progress: Callable[[str], None] = print
) -> Path:
    """The directory holding the runnable registry, building it on first use (a few minutes:
    ~210 MB from Maven Central, then the Quarkus build). Cheap once done.

    Raises :class:`RegistrySetupError` if Maven is missing or the build fails.
    """
    cache_dir = registry_cache_dir() if cache_dir is None else cache_dir
    app = cache_dir / "app"
    marker = f"registry={REGISTRY_VERSION}\ninputs-sha256={_inputs_digest()}\n"
    if _complete(app, marker):
        return app
    cache_dir.mkdir(parents=True, exist_ok=True)
    with (cache_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (pytest workers, `make`)
        if _complete(app, marker):
            return app
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RegistrySetupError(
                "Apache Maven (`mvn`) is not on PATH; it is needed once to build the schema "
                f"registry (Apicurio Registry {REGISTRY_VERSION}) into {app}. Install Maven 3.6+ "
                "and a JDK 17+ (Debian/Ubuntu: `apt-get install maven openjdk-17-jdk-headless`) "
                "and retry, or point LOGORHYTHMS_SCHEMA_REGISTRY_URL at an existing registry."
            )
        progress(f"Building Apicurio Registry {REGISTRY_VERSION} (first run only) into {app} ...")
        with tempfile.TemporaryDirectory(prefix="logorhythms-registry-build-") as scratch:
            build = Path(scratch) / "registry"
            shutil.copytree(PROJECT_DIR, build)
            _run_maven(mvn, build)
            staging = Path(tempfile.mkdtemp(prefix="app.partial-", dir=cache_dir))
            shutil.copyfile(build / "target" / _RUNNER, staging / _RUNNER)
            shutil.copytree(build / "target" / "lib", staging / "lib")
            (staging / _MARKER).write_text(marker, encoding="utf-8")
            if app.exists():
                shutil.rmtree(app)
            staging.rename(app)
    progress(f"Apicurio Registry {REGISTRY_VERSION} ready in {app}")
    return app


def _complete(app: Path, marker: str) -> bool:
    try:
        return (app / _MARKER).read_text(encoding="utf-8") == marker
    except OSError:
        return False


def _run_maven(mvn: str, build: Path) -> None:
    log = build / "maven.log"
    with log.open("w", encoding="utf-8") as out:
        try:
            done = subprocess.run(
                [mvn, "-B", "-Dstyle.color=never", "-DskipTests", "package"],
                cwd=build,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=_BUILD_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RegistrySetupError(
                f"Could not build the schema registry with {mvn}: {exc}"
            ) from exc
    if done.returncode != 0 or not (build / "target" / _RUNNER).is_file():
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-25:])
        raise RegistrySetupError(
            f"`mvn package` of {PROJECT_DIR / 'pom.xml'} failed (exit {done.returncode}). Check "
            "access to Maven Central (proxy settings go in ~/.m2/settings.xml) and that "
            "`mvn -v` shows a JDK 17+. Last Maven output:\n" + tail
        )
