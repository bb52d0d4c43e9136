"""The audit trail of exports: one row in ``export_audit`` per export (migration 0006)."""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

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
    """One export as the audit table records it. ``filter`` is the export's filter as JSON text;
    ``request_ids`` may be an Arrow string array (a dataset's hundreds of thousands)."""

    export_id: str
    kind: str
    exported_at: datetime
    operator: str
    destination: str
    manifest_sha256: str
    rows: int
    request_ids: Sequence[str] | pa.Array = ()
    recipient: str = ""
    licence: str = ""
    profile: str = ""
    case_reference: str = ""
    filter: str = ""
    record_key: str = ""

    def table(self) -> pa.Table:
        """The audit row as a one-row Arrow table."""
        ids = self.request_ids
        if not isinstance(ids, pa.Array):
            ids = pa.array(list(ids), pa.string())
        scalars: dict[str, tuple[object, pa.DataType]] = {
            "export_id": (self.export_id, pa.string()),
            "kind": (self.kind, pa.string()),
            "exported_at": (self.exported_at, pa.timestamp("us", tz="UTC")),
            "operator": (self.operator, pa.string()),
            "recipient": (self.recipient, pa.string()),
            "licence": (self.licence, pa.string()),
            "profile": (self.profile, pa.string()),
            "case_reference": (self.case_reference, pa.string()),
            "destination": (self.destination, pa.string()),
            "filter": (self.filter, pa.string()),
            "manifest_sha256": (self.manifest_sha256, pa.string()),
            "record_key": (self.record_key, pa.string()),
            "rows": (self.rows, pa.uint64()),
        }
        columns = {name: pa.array([value], kind) for name, (value, kind) in scalars.items()}
        columns["request_ids"] = pa.ListArray.from_arrays(
            pa.array([0, len(ids)], pa.int32()), ids.cast(pa.string())
        )
        return pa.table({name: columns[name] for name in AUDIT_COLUMNS})


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
    await clickhouse.insert_arrow(
        "export_audit", entry.table(), dedup_token=f"export_audit:{entry.export_id}"
    )
