"""`logorhythms export legal`: every matching exchange exactly as captured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from consumers.export.source import ExportError


@dataclass(frozen=True, slots=True, kw_only=True)
class LegalQuery:
    client_ips: tuple[str, ...] = ()
    key_fingerprints: tuple[str, ...] = ()
    request_ids: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None

    @classmethod
    def from_arguments(
        cls,
        *,
        client_ips: Sequence[str],
        key_fingerprints: Sequence[str],
        request_ids: Sequence[str],
        since: str | None,
        until: str | None,
    ) -> LegalQuery:
        return cls(
            client_ips=tuple(client_ips),
            key_fingerprints=tuple(key_fingerprints),
            request_ids=tuple(request_ids),
            since=since,
            until=until,
        )


async def export_legal(
    clickhouse_url: str, destination: Path, *, query: LegalQuery, case_reference: str
) -> int:
    raise ExportError("export legal is not available in this build")
