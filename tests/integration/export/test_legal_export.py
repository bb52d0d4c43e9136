"""`logorhythms export legal`: exchanges selected by IP/CIDR (v4, v6), key fingerprint, request
ids and time, written byte-for-byte as the client sent and received them and as the raw tables
hold them; the manifest verifies, a tampered file is named, the audit table has the export."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.export.legal import LegalQuery, export_legal
from consumers.export.manifest import read_manifest, verify
from consumers.export.source import ExportError
from tests.integration.conftest import Pipeline, ProxyFactory
from tests.integration.export.captured_traffic import KEY_A, KEY_B, capture, private_database


@pytest.fixture
async def clickhouse_url(clickhouse_url: str) -> str:
    return await private_database(clickhouse_url)


async def _export(
    pipeline: Pipeline, url: str, destination: Path, case: str = "CASE-1", **selectors: object
) -> set[str]:
    query = LegalQuery.from_arguments(**selectors)  # type: ignore[arg-type]
    await export_legal(url, destination, query=query, case_reference=case, recipient="court")
    return set(read_manifest(destination).metadata["request_ids"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "LOGORHYTHMS_OPERATOR": "test-operator"},
    )


async def _fingerprint(pipeline: Pipeline, request_id: str) -> str:
    rows = await pipeline.clickhouse.rows(
        "SELECT client_key_fingerprint FROM requests_raw WHERE request_id = {id:String}",
        {"id": request_id},
    )
    return str(rows[0][0])


async def test_selectors_pick_exactly_the_matching_exchanges(
    pipeline_factory: ProxyFactory, clickhouse_url: str, tmp_path: Path
) -> None:
    pipeline, sent = await capture(pipeline_factory)
    ids = {name: s.request_id for name, s in sent.items()}
    fp_a = await _fingerprint(pipeline, ids["a"])
    assert fp_a.startswith("fp:")

    async def pick(name: str, **selectors: object) -> set[str]:
        return await _export(pipeline, clickhouse_url, tmp_path / name, **selectors)

    assert await pick("v4net", client_ips=["203.0.113.0/24"]) == {ids["a"], ids["b"]}
    assert await pick("v4one", client_ips=["203.0.113.7"]) == {ids["a"]}
    assert await pick("v6net", client_ips=["2001:db8::/32"]) == {ids["c"]}
    assert await pick("both", client_ips=["2001:db8::/32", "198.51.100.1"]) == {ids["c"], ids["d"]}
    assert await pick("key", key_fingerprints=[fp_a]) == {ids["a"], ids["c"]}
    assert await pick("key_and_net", key_fingerprints=[fp_a], client_ips=["203.0.113.0/24"]) == {
        ids["a"]
    }
    missing = "01930000-0000-7000-8000-000000000000"
    assert await pick("ids", request_ids=[ids["d"], ids["e"], missing]) == {ids["d"], ids["e"]}
    not_exported = read_manifest(tmp_path / "ids").metadata["request_ids_not_exported"]
    assert not_exported == [missing]
    now = datetime.now(UTC)
    window = {"since": (now - timedelta(hours=1)).isoformat(), "until": now.isoformat()}
    assert await pick("time", **window) == set(ids.values())
    assert await pick("future", since=(now + timedelta(hours=1)).isoformat()) == set()
    # A request event whose client_ip is no address (empty for some refusals) matches no
    # network and does not fail the query.
    await pipeline.clickhouse.command(
        "INSERT INTO requests_raw (request_id, received_at, client_ip) "
        "VALUES (toString(generateUUIDv7()), now64(6), '')"
    )
    assert await pick("v4net_again", client_ips=["203.0.113.0/24"]) == {ids["a"], ids["b"]}
    assert await pick("everything", client_ips=["0.0.0.0/0", "::/0"]) == set(ids.values())

    audit = await pipeline.clickhouse.rows(
        "SELECT kind, case_reference, recipient, profile, request_ids, manifest_sha256, "
        "destination FROM export_audit WHERE destination = {d:String}",
        {"d": str(tmp_path / "v4net")},
    )
    manifest_sha256 = hashlib.sha256((tmp_path / "v4net" / "manifest.json").read_bytes())
    assert audit == [
        (
            "legal",
            "CASE-1",
            "court",
            "legal",
            sorted([ids["a"], ids["b"]]),
            manifest_sha256.hexdigest(),
            str(tmp_path / "v4net"),
        )
    ]
    whom = await pipeline.clickhouse.rows(
        "SELECT count() FROM export_audit WHERE has(request_ids, {id:String})", {"id": ids["c"]}
    )
    assert whom == [(5,)]  # v6net, both, key, time, everything


async def test_exchanges_are_written_exactly_as_captured(
    pipeline_factory: ProxyFactory,
    clickhouse_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGORHYTHMS_OPERATOR", "test-operator")
    pipeline, sent = await capture(pipeline_factory)
    destination = tmp_path / "all"
    await _export(
        pipeline, clickhouse_url, destination, request_ids=[s.request_id for s in sent.values()]
    )
    assert verify(destination).ok
    for s in sent.values():
        folder = destination / "exchanges" / s.request_id
        document = json.loads((folder / "exchange.json").read_bytes())
        # As the client sent and received it.
        assert (folder / "request.body").read_bytes() == s.body
        assert (folder / "response.body").read_bytes() == s.received
        # As the raw tables hold it.
        raw = await pipeline.clickhouse.rows(
            "SELECT body, headers, client_ip FROM requests_raw FINAL "
            "WHERE request_id = {id:String}",
            {"id": s.request_id},
            binary_columns=("body",),
        )
        assert (folder / "request.body").read_bytes() == raw[0][0]
        assert [(h["name"], h["value"]) for h in document["request"]["headers"]] == [
            (h["name"], h["value"]) for h in raw[0][1]
        ]
        assert document["request"]["client_ip"] == raw[0][2] == s.client_ip
        chunks = await pipeline.clickhouse.rows(
            "SELECT seq, offset_ns, data FROM chunks_raw FINAL WHERE request_id = {id:String} "
            "ORDER BY seq",
            {"id": s.request_id},
            binary_columns=("data",),
        )
        assert [(c["seq"], c["offset_ns"]) for c in document["chunks"]] == [
            (seq, offset) for seq, offset, _ in chunks
        ]
        for listed, (_, _, data) in zip(document["chunks"], chunks, strict=True):
            assert (destination / listed["file"]).read_bytes() == data
            assert listed["sha256"] == hashlib.sha256(data).hexdigest()
        if s.stream:
            assert len(chunks) > 2  # a real stream, read by read, with its timing
            assert [c["offset_ns"] for c in document["chunks"]] == sorted(
                c["offset_ns"] for c in document["chunks"]
            )
        assert document["completed"]["status"] == 200
        assert document["completed"]["chunk_count"] == len(chunks)
    metadata = read_manifest(destination).metadata
    assert metadata["operator"] == "test-operator"
    assert metadata["case_reference"] == "CASE-1"
    assert metadata["operator"]
    assert "toIPv6OrNull" not in metadata["sql"]  # no --ip: no address condition
    assert metadata["sql"].startswith(
        "SELECT request_id FROM requests_raw FINAL WHERE request_id IN"
    )

    # Keys were fingerprinted at capture: no file of the export holds one.
    everything = b"".join(p.read_bytes() for p in destination.rglob("*") if p.is_file())
    assert KEY_A.encode() not in everything
    assert KEY_B.encode() not in everything
    assert b"fp:" in everything

    # The export as handed over verifies; one changed byte or a planted file is named.
    clean = _cli("export", "verify", str(destination))
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.startswith("OK:")
    chunk = destination / "exchanges" / sent["b"].request_id / "chunks" / "000002.bin"
    chunk.write_bytes(chunk.read_bytes().replace(b"data:", b"DATA:", 1))
    (destination / "exchanges" / "extra.json").write_text("{}")
    tampered = _cli("export", "verify", str(destination))
    assert tampered.returncode == 1
    relative = chunk.relative_to(destination).as_posix()
    assert f"{relative}: sha256" in tampered.stdout
    assert "exchanges/extra.json: not in the manifest" in tampered.stdout
    assert "FAILED: 2 problem(s)" in tampered.stderr


async def test_an_embedded_directory_held_by_another_process_is_refused_in_one_line(
    clickhouse_url: str, tmp_path: Path
) -> None:
    # This test process holds the session's engine directory open, as a loader would.
    async with ClickHouse(clickhouse_url) as clickhouse:
        await clickhouse.rows("SELECT 1")
        held = _cli(
            "export", "legal", str(tmp_path / "out"), "--case", "X", "--ip", "10.0.0.1",
            "--clickhouse", clickhouse_url,
        )  # fmt: skip
    assert held.returncode == 2
    lines = held.stderr.strip().splitlines()
    assert len(lines) == 1, held.stderr
    assert lines[0].startswith("logorhythms export legal: the loader holds ")
    assert f"(pid {os.getpid()})" in lines[0]
    assert "point --clickhouse at a ClickHouse server" in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


async def test_bad_selectors_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="at least one selector"):
        LegalQuery.from_arguments()
    with pytest.raises(ExportError, match="not an IP address or network"):
        LegalQuery.from_arguments(client_ips=["203.0.113.300"])
    with pytest.raises(ExportError, match="not a request id"):
        LegalQuery.from_arguments(request_ids=["1; DROP TABLE x"])
    with pytest.raises(ExportError, match="--since must be before --until"):
        LegalQuery.from_arguments(since="2026-12-02", until="2026-12-01")
