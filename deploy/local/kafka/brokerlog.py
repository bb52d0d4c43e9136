"""A broker's log read back for its operator: the lines since its latest start, and what a
known failure in them means."""

from __future__ import annotations

from pathlib import Path

from deploy.local.kafka.jars import KAFKA_VERSION

__all__ = ["failure_hint", "log_tail"]


def log_tail(path: Path, start: int = 0, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read()
    except OSError:
        return "(no broker log)"
    text = data.decode("utf-8", errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) or "(broker log is empty)"


def failure_hint(log_text: str) -> str:
    if "UnsupportedClassVersionError" in log_text:
        return f" Kafka {KAFKA_VERSION} needs Java 17 or newer (see `java -version`)."
    if "Address already in use" in log_text:
        return " A port is taken: another broker running? Pass a different port."
    if "Failed to acquire lock" in log_text or "may be in use by another" in log_text:
        return " The data dir is locked by another broker process (see broker.pid)."
    return ""
