"""The JVM: which ``java`` to run and the small-footprint command line the broker runs with."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from deploy.local.kafka.errors import KafkaSetupError
from deploy.local.kafka.jars import KAFKA_VERSION

__all__ = ["LOG4J2_CONFIG", "find_java", "java_command"]

LOG4J2_CONFIG = Path(__file__).resolve().parents[2] / "kafka" / "log4j2.properties"


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

    Why each flag, with start-up figures: docs/decisions/0013-local-kafka-broker.md.

    * ``-Xmx`` small, ``-Xms`` up to 128 MB: the broker idles well below 200 MB of heap.
    * SerialGC: cheapest collector on 2 cores; G1's concurrent threads only compete with the
      broker (and the tests) for CPU at this heap size, and it started no faster.
    * ``quick_jit`` adds ``-XX:TieredStopAtLevel=1`` (C1 only): faster start-up but lower
      peak throughput, so it is for tests, not for the long-lived ``make up`` broker.
    * ``-XX:+ExitOnOutOfMemoryError``: die loudly instead of limping along half-broken.
    * AppCDS flags, if any, come in through ``extra_jvm_args`` (``class_data.py``).
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
