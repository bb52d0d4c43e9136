"""The audit trail of exports: one row in ``export_audit`` per export (migration 0006)."""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from consumers.clickhouse.client import ClickHouse

AUDIT_COLUMNS = (
    "export_id",
    "kind",
    "exported_at",
    "operator",
    "recipient",
    "licence",
    "profile",
    "case_reference",
    "destination",
    "filter",
    "manifest_sha256",
    "record_key",
    "rows",
    "request_ids",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One export as the audit table records it. ``filter`` is the export's filter as JSON text."""

    export_id: str
    kind: str
    exported_at: datetime
    operator: str
    destination: str
    manifest_sha256: str
    rows: int
    request_ids: Sequence[str] = ()
    recipient: str = ""
    licence: str = ""
    profile: str = ""
    case_reference: str = ""
    filter: str = ""
    record_key: str = ""

    def row(self) -> list[object]:
        return [
            self.export_id,
            self.kind,
            self.exported_at,
            self.operator,
            self.recipient,
            self.licence,
            self.profile,
            self.case_reference,
            self.destination,
            self.filter,
            self.manifest_sha256,
            self.record_key,
            self.rows,
            list(self.request_ids),
        ]


def current_operator() -> str:
    """Who ran the export: ``LOGORHYTHMS_OPERATOR`` when set (a named person behind a shared
    service account), else the login name of the process."""
    named = os.environ.get("LOGORHYTHMS_OPERATOR", "").strip()
    if named:
        return named
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


async def record_export(clickhouse: ClickHouse, entry: AuditEntry) -> None:
    """Insert the audit row; a retry of the same export id is deduplicated by the server."""
    await clickhouse.insert(
        "export_audit", [entry.row()], AUDIT_COLUMNS, dedup_token=f"export_audit:{entry.export_id}"
    )
