"""The AppCDS class-data archive that makes the broker's JVM start faster.

The first broker that stops gracefully dumps an archive of the classes it loaded
(``-XX:ArchiveClassesAtExit``, ~50 MB, next to the jars cache); later starts map it
(``-XX:SharedArchiveFile``). Java 17 has no ``-XX:+AutoCreateSharedArchive`` (JDK 19+), hence
the dump is driven by hand: written under a unique partial name, renamed into place only when
the JVM exited cleanly.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from deploy.local.kafka.jars import MARKER_NAME

__all__ = ["ArchiveDump", "cds_archive_path", "class_data_args"]


def cds_archive_path(java: str, libs: Path) -> Path:
    """Where the AppCDS archive for this JVM binary and this jar set lives.

    ``<libs>/../cds/kafka-<key>.jsa``; the key covers the java binary (path, size, mtime)
    and the jar set, so a JDK upgrade or a pom change simply uses a new archive. The JVM
    validates the archive as well and ignores (with a log warning) one that does not match.
    """
    binary = Path(java).resolve()
    stat = binary.stat()
    marker = libs / MARKER_NAME
    jars = marker.read_text(encoding="utf-8") if marker.is_file() else ""
    if not jars:
        jars = ",".join(sorted(p.name for p in libs.glob("*.jar")))
    ident = f"{binary}|{stat.st_size}|{stat.st_mtime_ns}|{libs.resolve()}|{jars}"
    key = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:16]
    return libs.parent / "cds" / f"kafka-{key}.jsa"


@dataclass(frozen=True, slots=True)
class ArchiveDump:
    """An archive the running JVM will write at exit: ``partial`` until :meth:`finish`."""

    partial: Path
    archive: Path

    def finish(self, *, complete: bool) -> None:
        """Keep the dump as the archive only if ``complete`` (the JVM ran and was stopped by
        us: one killed by a signal may have left a truncated file, a failed start a thin one);
        either way no partial file is left behind."""
        if complete and self.partial.is_file() and self.partial.stat().st_size > 0:
            os.replace(self.partial, self.archive)
            for old in self.archive.parent.glob("kafka-*.jsa"):
                if old != self.archive:  # archives of a replaced JDK or jar set
                    old.unlink(missing_ok=True)
        self.partial.unlink(missing_ok=True)


def class_data_args(java: str, libs: Path, *, dump: bool) -> tuple[list[str], ArchiveDump | None]:
    """JVM flags that map the archive if there is one, else (when ``dump``) write it at exit.

    Returns the flags and the dump to :meth:`ArchiveDump.finish` once the JVM has exited.
    """
    archive = cds_archive_path(java, libs)
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}"], None
    if not dump:
        return [], None
    # Unique name: two brokers may dump at once; the rename in ArchiveDump.finish is atomic.
    partial = archive.with_name(f"{archive.name}.{uuid.uuid4().hex[:8]}.partial")
    archive.parent.mkdir(parents=True, exist_ok=True)
    # -Xlog: the dump lists every class it skips (hundreds of warning lines).
    flags = [f"-XX:ArchiveClassesAtExit={partial}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]
    return flags, ArchiveDump(partial, archive)
