"""`logorhythms export legal`: every matching exchange exactly as captured, for legal process.

Selectors (``LegalQuery``): client IPs or networks (v4 and v6), key fingerprints, request ids
and a time range. Values of one selector are alternatives; different selectors must all match.
Each matching exchange becomes a directory ``exchanges/<request_id>/`` of:

- ``exchange.json``: the request event (every column of ``requests_raw`` but the body), every
  chunk event (sequence, offset from the start in ns, size, truncated, delivered, its file and
  sha256) and the completed event (or null while the exchange is open), all from the raw
  tables (``FINAL``: each event once);
- ``request.body``: the request body bytes exactly as received;
- ``chunks/<seq>.bin``: each read from the upstream, exactly as forwarded;
- ``response.body``: the delivered chunks concatenated, the bytes the client received.

The manifest records the chain of custody: who ran it, when, the case reference, the selectors,
the SQL that selected the exchanges with its parameters, and every file's sha256; the audit table
records the export with every request id. The destination is a new or empty directory or
``s3://BUCKET/PREFIX`` (``consumers.export.store``): each file is put as it is written, the
manifest last.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.rows import CHUNK_COLUMNS, COMPLETED_COLUMNS, REQUEST_COLUMNS
from consumers.export.audit import AuditEntry, current_operator, record_export
from consumers.export.manifest import FileEntry, Manifest, describe_file, write_manifest
from consumers.export.source import (
    ExportError,
    check_apart,
    open_clickhouse,
    schema_version,
    shown_dsn,
    tool_version,
)
from consumers.export.store import DirectoryStore, ExportStore, as_store

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_BATCH = 256  # exchanges read per query: bounds memory to a few hundred exchanges' bytes


def _instant(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(
            f"{option} {text!r} is not an ISO 8601 time, e.g. 2026-12-01T00:00:00Z"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class LegalQuery:
    """What a legal request asks for; validated when built."""

    networks: tuple[str, ...] = ()  # CIDR text; a single address is a /32 or /128
    key_fingerprints: tuple[str, ...] = ()
    request_ids: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def from_arguments(
        cls,
        *,
        client_ips: Sequence[str] = (),
        key_fingerprints: Sequence[str] = (),
        request_ids: Sequence[str] = (),
        since: str | None = None,
        until: str | None = None,
    ) -> LegalQuery:
        networks = []
        for value in client_ips:
            try:
                networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
            except ValueError:
                raise ExportError(
                    f"--ip {value!r} is not an IP address or network (e.g. 203.0.113.7, "
                    "203.0.113.0/24, 2001:db8::/32)"
                ) from None
        for value in request_ids:
            if not _UUID.match(value.strip().lower()):
                raise ExportError(f"--request-id {value!r} is not a request id (a UUID)")
        query = cls(
            networks=tuple(networks),
            key_fingerprints=tuple(v.strip() for v in key_fingerprints),
            request_ids=tuple(v.strip().lower() for v in request_ids),
            since=_instant(since, "--since") if since else None,
            until=_instant(until, "--until") if until else None,
        )
        selectors = (query.networks, query.key_fingerprints, query.request_ids)
        if not any(selectors) and query.since is None and query.until is None:
            raise ExportError(
                "give at least one selector: --ip, --key-fingerprint, --request-id, "
                "--since or --until"
            )
        if query.since and query.until and query.since >= query.until:
            raise ExportError("--since must be before --until")
        return query

    def sql(self) -> tuple[str, dict[str, Any]]:
        """The selecting query and its parameters (values are bound, never spliced)."""
        conditions: list[str] = []
        parameters: dict[str, Any] = {}
        if self.networks:
            # As IPv6 ranges (IPv4 mapped into ::ffff:0:0/96): a client_ip that is no address
            # (empty for some refusals) is NULL and matches nothing, where isIPAddressInRange
            # would fail the whole query.
            ranges = []
            for i, network in enumerate(self.networks):
                first, last = _ipv6_bounds(network)
                parameters[f"first{i}"], parameters[f"last{i}"] = first, last
                ranges.append(
                    f"toIPv6OrNull(client_ip) BETWEEN toIPv6({{first{i}:String}}) "
                    f"AND toIPv6({{last{i}:String}})"
                )
            conditions.append("(" + " OR ".join(ranges) + ")")
        if self.key_fingerprints:
            parameters["fingerprints"] = list(self.key_fingerprints)
            conditions.append("client_key_fingerprint IN {fingerprints:Array(String)}")
        if self.request_ids:
            parameters["ids"] = list(self.request_ids)
            conditions.append("request_id IN {ids:Array(String)}")
        if self.since is not None:
            parameters["since"] = self.since
            conditions.append("received_at >= {since:DateTime64(6, 'UTC')}")
        if self.until is not None:
            parameters["until"] = self.until
            conditions.append("received_at < {until:DateTime64(6, 'UTC')}")
        where = " AND ".join(conditions)
        sql = f"SELECT request_id FROM requests_raw FINAL WHERE {where} ORDER BY request_id"  # noqa: S608
        return sql, parameters

    def to_json(self) -> dict[str, Any]:
        return {
            "client_ip_networks": list(self.networks),
            "key_fingerprints": list(self.key_fingerprints),
            "request_ids": list(self.request_ids),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def _ipv6_bounds(text: str) -> tuple[str, str]:
    """The first and last address of a network, as IPv6 text (IPv4 as IPv4-mapped)."""
    network = ipaddress.ip_network(text)
    first, last = network.network_address, network.broadcast_address
    if network.version == 4:
        return f"::ffff:{first}", f"::ffff:{last}"
    return str(first), str(last)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="backslashreplace")
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def _columns(names: Sequence[str], row: Sequence[Any], *, skip: str = "") -> dict[str, Any]:
    return {n: _json_value(v) for n, v in zip(names, row, strict=True) if n != skip}


_REQUEST_READ = (*REQUEST_COLUMNS, "inserted_at")
_CHUNK_READ = (*CHUNK_COLUMNS, "inserted_at")
_COMPLETED_READ = (*COMPLETED_COLUMNS, "inserted_at")


async def _read_batch(
    clickhouse: ClickHouse, ids: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    where = {"ids": ids}
    requests = await clickhouse.rows(
        f"SELECT {', '.join(_REQUEST_READ)} FROM requests_raw FINAL "  # noqa: S608 (constants)
        "WHERE request_id IN {ids:Array(String)} ORDER BY request_id",
        where,
        binary_columns=("body",),
    )
    chunks = await clickhouse.rows(
        f"SELECT {', '.join(_CHUNK_READ)} FROM chunks_raw FINAL "  # noqa: S608 (constants)
        "WHERE request_id IN {ids:Array(String)} ORDER BY request_id, seq",
        where,
        binary_columns=("data",),
    )
    completions = await clickhouse.rows(
        f"SELECT {', '.join(_COMPLETED_READ)} FROM completions_raw FINAL "  # noqa: S608
        "WHERE request_id IN {ids:Array(String)} ORDER BY request_id",
        where,
    )
    return requests, chunks, completions


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _write_exchange(
    root: Path,
    request: tuple[Any, ...],
    chunks: list[tuple[Any, ...]],
    completed: tuple[Any, ...] | None,
) -> list[str]:
    """Write one exchange's files; return their paths relative to ``root``."""
    request_id = request[0]
    folder = f"exchanges/{request_id}"
    body = request[_REQUEST_READ.index("body")]
    _write(root / folder / "request.body", body)
    written = [f"{folder}/request.body"]
    listed, received = [], bytearray()
    for chunk in chunks:
        fields = _columns(_CHUNK_READ, chunk, skip="data")
        data: bytes = chunk[_CHUNK_READ.index("data")]
        relative = f"{folder}/chunks/{fields['seq']:06d}.bin"
        _write(root / relative, data)
        written.append(relative)
        listed.append({**fields, "file": relative, "sha256": hashlib.sha256(data).hexdigest()})
        if fields["delivered"]:
            received += data
    _write(root / folder / "response.body", bytes(received))
    written.append(f"{folder}/response.body")
    document = {
        "request_id": request_id,
        "request": {
            **_columns(_REQUEST_READ, request, skip="body"),
            "body_file": f"{folder}/request.body",
        },
        "chunks": listed,
        "response_body_file": f"{folder}/response.body",
        "completed": _columns(_COMPLETED_READ, completed) if completed else None,
    }
    text = json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    _write(root / folder / "exchange.json", text.encode())
    written.append(f"{folder}/exchange.json")
    return written


def _prepare(store: ExportStore) -> None:
    if store.files():
        raise ExportError(f"{store.location} is not empty: give a new or empty directory or prefix")
    store.prepare()


async def export_legal(
    clickhouse_url: str,
    destination: Path | ExportStore,
    *,
    query: LegalQuery,
    case_reference: str,
    recipient: str = "",
) -> int:
    """Write every exchange ``query`` selects into ``destination`` (an absolute path or a store,
    new or empty). Files are made in the store's staging directory and put in place, the
    manifest last."""
    if not case_reference.strip():
        raise ExportError("--case must name the case or warrant reference")
    store = as_store(destination)
    if isinstance(store, DirectoryStore):
        check_apart(clickhouse_url, store.root, "DEST")
    _prepare(store)
    with store.staging() as staging:
        return await _export(clickhouse_url, store, staging, query, case_reference, recipient)


async def _export(
    clickhouse_url: str,
    store: ExportStore,
    staging: Path,
    query: LegalQuery,
    case_reference: str,
    recipient: str,
) -> int:
    exported_at = datetime.now(UTC)
    sql, parameters = query.sql()
    files: list[FileEntry] = []
    chunk_total = 0
    async with open_clickhouse(clickhouse_url) as clickhouse:
        ids = [row[0] for row in await clickhouse.rows(sql, parameters)]
        received: list[datetime] = []
        for start in range(0, len(ids), _BATCH):
            requests, chunks, completions = await _read_batch(
                clickhouse, ids[start : start + _BATCH]
            )
            by_id: dict[str, list[tuple[Any, ...]]] = {}
            for chunk in chunks:
                by_id.setdefault(chunk[0], []).append(chunk)
            completed = {row[0]: row for row in completions}
            for request in requests:
                received.append(request[_REQUEST_READ.index("received_at")])
                exchange_chunks = by_id.get(request[0], [])
                chunk_total += len(exchange_chunks)
                written = _write_exchange(
                    staging, request, exchange_chunks, completed.get(request[0])
                )
                for relative in written:
                    files.append(describe_file(staging, relative))
                    store.put(staging / relative, relative)
        not_exported = sorted(set(query.request_ids) - set(ids))
        digest = hashlib.sha256()
        for entry in sorted(files, key=lambda f: f.path):
            digest.update(f"{entry.path}\0{entry.sha256}\n".encode())
        operator = current_operator()
        manifest = Manifest(
            kind="legal",
            export_id=str(uuid.uuid4()),
            created_at=exported_at.isoformat().replace("+00:00", "Z"),
            tool_version=tool_version(),
            schema_version=schema_version(),
            snapshot_id=digest.hexdigest(),
            files=tuple(files),
            metadata={
                "case_reference": case_reference,
                "recipient": recipient,
                "operator": operator,
                "source": shown_dsn(clickhouse_url),
                "selectors": query.to_json(),
                "sql": sql,
                "parameters": {k: _json_value(v) for k, v in parameters.items()},
                "exchanges": len(ids),
                "chunks": chunk_total,
                "request_ids": ids,
                # Asked for by --request-id but not written: no request event with that id
                # (never captured, or its request event was dropped) or another selector
                # excluded it.
                "request_ids_not_exported": not_exported,
                "time_range": {
                    "first_received_at": _json_value(min(received)) if received else None,
                    "last_received_at": _json_value(max(received)) if received else None,
                },
                "layout": "exchanges/<request_id>/{exchange.json,request.body,"
                "chunks/<seq>.bin,response.body}",
            },
        )
        manifest_sha256 = write_manifest(store, manifest)
        await record_export(
            clickhouse,
            AuditEntry(
                export_id=manifest.export_id,
                kind="legal",
                exported_at=exported_at,
                operator=operator,
                recipient=recipient,
                profile="legal",
                case_reference=case_reference,
                destination=store.location,
                manifest_sha256=manifest_sha256,
                rows=len(ids),
                request_ids=ids,
                filter=json.dumps(query.to_json(), sort_keys=True),
            ),
        )
    if not_exported:
        print(
            "not exported (no captured request event with that id, or another selector excluded "
            f"it): {', '.join(not_exported)}"
        )
    print(
        f"exported {len(ids)} exchange(s), {chunk_total} chunk(s) for case {case_reference} into "
        f"{store.location}; manifest sha256 {manifest_sha256} (recorded in export_audit)"
    )
    return 0
