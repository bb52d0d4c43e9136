"""`logorhythms export dataset`: conversations out of ClickHouse into a Hugging Face dataset.

The steps, each in its own module: select and fold (``selection``, ``fold``, ``leaves``), build
each conversation's record for the profile (``records``: messages, scrubbing, client fields,
timing), drop duplicates (``dedup``), detect the language (``language``), write shards
(``shards``), the card (``card``), the manifest and the audit row (``manifest``, ``audit``).

Two passes with bounded memory. Pass 1 folds the selection (narrow rows, numpy), reads the leaves
from ClickHouse by request id in Arrow batches, builds records, drops exact duplicates, samples
and splits, and appends the records to a spool (an Arrow IPC stream under ``DEST/.state``). The
near-duplicate decision needs every conversation, and a shard's name needs the shard count, so
pass 2 reads the spool back and writes the shards.
``.state/state.json`` remembers the arguments, the record key and each finished shard: a rerun
with the same arguments resumes (the spool when complete, then shard by shard); ``.state`` is
removed when the export is complete. To a bucket (``upload``), DEST is a local staging directory,
uploaded when complete and then removed.

Reproducible: records are in request-id order, every decision is a pure function of the data and
the arguments, so the same data, arguments and record key give byte-identical shards.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from consumers.clickhouse.client import ClickHouse
from consumers.export import card, language
from consumers.export.audit import AuditEntry, current_operator, record_export
from consumers.export.dedup import ExactDuplicates, NearDuplicates, normalised_hash
from consumers.export.fold import FoldResult
from consumers.export.leaves import fold_exchanges, leaf_batches, release_memory
from consumers.export.manifest import Manifest, describe_file, write_manifest
from consumers.export.progress import Progress
from consumers.export.records import Profile, build_batch
from consumers.export.selection import Selection, chunks_sql, fold_sql, leaves_sql
from consumers.export.shards import FORMATS, SplitShards
from consumers.export.source import ExportError, open_clickhouse, schema_version, tool_version
from consumers.export.spool import SPOOL_SCHEMA, SpoolWriter, read_spool
from consumers.export.upload import Upload

STATE_DIR = ".state"
_FRACTION_SCALE = 1_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetOptions:
    """Everything that decides a dataset's content (and so its reproducibility)."""

    profile: Profile
    selection: Selection = field(default_factory=Selection)
    fmt: str = "parquet"
    recipient: str = ""
    licence: str = ""
    name: str = "Logorhythms conversations"
    near_duplicate_threshold: float | None = 0.85
    sample: float = 1.0
    test_fraction: float = 0.0
    seed: int = 0
    languages: tuple[str, ...] = ()
    detect_language: bool = True
    rows_per_shard: int = 50_000

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ExportError(f"unknown format {self.fmt!r}: choose one of {', '.join(FORMATS)}")
        if not 0.0 < self.sample <= 1.0:
            raise ExportError("--sample must be a fraction in (0, 1], e.g. 0.1 for 10 %")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ExportError("--test-fraction must be in [0, 1), e.g. 0.05")
        if self.rows_per_shard < 1:
            raise ExportError("--rows-per-shard must be at least 1")
        if self.near_duplicate_threshold is not None and not 0 < self.near_duplicate_threshold < 1:
            raise ExportError("--near-dup-threshold must be in (0, 1), e.g. 0.85 (the default)")
        if self.languages and not self.detect_language:
            raise ExportError("--language filters need language detection; drop --no-language")

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile.name,
            "timestamp_precision": self.profile.precision,
            "filter": self.selection.to_json(),
            "format": self.fmt,
            "recipient": self.recipient,
            "licence": self.licence,
            "name": self.name,
            "near_duplicate_threshold": self.near_duplicate_threshold,
            "sample": self.sample,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "languages": list(self.languages),
            "detect_language": self.detect_language,
            "rows_per_shard": self.rows_per_shard,
        }


@dataclass(slots=True)
class Counts:
    """What the export saw and did, for the manifest and the card."""

    exchanges: int = 0
    folded: int = 0
    conversations: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    sampled_out: int = 0
    language_filtered: int = 0
    written: dict[str, int] = field(default_factory=dict)
    scrubbed: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "exchanges_matched": self.exchanges,
            "exchanges_folded": self.folded,
            "conversations": self.conversations,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "sampled_out": self.sampled_out,
            "language_filtered": self.language_filtered,
            "rows_by_split": dict(sorted(self.written.items())),
            "scrubbed": dict(sorted(self.scrubbed.items())),
            "languages": dict(sorted(self.languages.items())),
            "models": dict(sorted(self.models.items())),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Counts:
        return cls(
            exchanges=raw["exchanges_matched"],
            folded=raw["exchanges_folded"],
            conversations=raw["conversations"],
            exact_duplicates=raw["exact_duplicates"],
            near_duplicates=raw["near_duplicates"],
            sampled_out=raw["sampled_out"],
            language_filtered=raw["language_filtered"],
            written=dict(raw["rows_by_split"]),
            scrubbed=Counter(raw["scrubbed"]),
            languages=Counter(raw["languages"]),
            models=Counter(raw["models"]),
        )


@dataclass(frozen=True, slots=True)
class DatasetResult:
    export_id: str
    destination: str  # the directory, or the s3:// URL
    manifest_sha256: str
    counts: Counts
    record_key: str


def _fraction(seed: int, purpose: bytes, key: bytes) -> int:
    digest = hashlib.blake2b(key, digest_size=8, key=f"{seed}".encode(), person=purpose[:16])
    return int.from_bytes(digest.digest()) % _FRACTION_SCALE


class _State:
    """``DEST/.state``: the arguments, the key, the spool and the shards done so far."""

    def __init__(self, destination: Path, options: DatasetOptions, record_key: bytes | None):
        self.root = destination / STATE_DIR
        self.path = self.root / "state.json"
        self.spool = self.root / "spool.arrows"
        self.near = self.root / "near.npy"
        self.arguments = options.to_json()
        if self.path.exists():
            self.data = json.loads(self.path.read_text())
            if self.data["arguments"] != self.arguments:
                raise ExportError(
                    f"{destination} holds an unfinished export with other arguments; rerun it "
                    f"with the same arguments to resume, or choose a new directory"
                )
            if record_key is not None and record_key.hex() != self.data["record_key"]:
                raise ExportError(
                    f"{destination} holds an unfinished export with another --record-key: "
                    "rerun it with that key (or none) to resume, or choose a new directory"
                )
        else:
            if destination.exists() and any(destination.iterdir()):
                raise ExportError(f"{destination} is not empty: choose a new or empty directory")
            self.root.mkdir(parents=True, exist_ok=True)
            key = record_key or secrets.token_bytes(32)
            # One id per export run (a resumed run keeps it): the audit row's identity.
            export_id = f"dataset-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"
            self.data = {
                "arguments": self.arguments,
                "record_key": key.hex(),
                "export_id": export_id,
                "shards": {},
            }
            self.save()

    @property
    def record_key(self) -> bytes:
        return bytes.fromhex(self.data["record_key"])

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, sort_keys=True))
        temporary.replace(self.path)


async def export_dataset(
    clickhouse_url: str,
    destination: Path,
    options: DatasetOptions,
    *,
    record_key: bytes | None = None,
    upload: Upload | None = None,
) -> DatasetResult:
    if upload is not None:
        upload.begin(destination, resuming=(destination / STATE_DIR).exists())
    state = _State(destination, options, record_key)
    key = state.record_key
    async with open_clickhouse(clickhouse_url) as clickhouse:
        if "counts" not in state.data:
            fold = await fold_exchanges(clickhouse, options.selection)
            identity = f"{fold.matched}|{fold.newest_request_id}|{fold.newest_load}"
            counts = Counts(exchanges=fold.matched, folded=fold.folded)
            await _spool(clickhouse, options, state, key, counts, fold)
            del fold  # its arrays (~40 B an exchange) are not needed past pass 1
            state.data["counts"] = counts.to_json()
            state.data["snapshot_id"] = hashlib.sha256(identity.encode()).hexdigest()
            state.save()
        counts = Counts.from_json(state.data["counts"])
        files = _write_shards(destination, options, state, counts)
        (destination / "README.md").write_bytes(
            card.render(options=options.to_json(), counts=counts.to_json(), files=files)
        )
        entries = [describe_file(destination, f) for f in [*files, "README.md"]]
        export_id = state.data["export_id"]
        created = datetime.now(UTC)
        metadata = {
            **options.to_json(),
            "sql": {
                "fold": fold_sql(options.selection, after="")[0],
                "leaves": leaves_sql(),
                "chunks": chunks_sql(),
            },
            "counts": counts.to_json(),
            "record_key_sha256": hashlib.sha256(key).hexdigest(),
        }
        manifest = Manifest(
            kind="dataset",
            export_id=export_id,
            created_at=created.isoformat(),
            tool_version=tool_version(),
            schema_version=schema_version(),
            snapshot_id=state.data["snapshot_id"],
            files=tuple(entries),
            metadata=metadata,
        )
        finish = write_manifest if upload is None else upload.finish
        manifest_sha256 = finish(destination, manifest)
        location = upload.location if upload else str(destination.resolve())  # noqa: ASYNC240
        await release_memory(clickhouse)  # the audit row's insert is the export's last peak
        await record_export(
            clickhouse,
            AuditEntry(
                export_id=export_id,
                kind="dataset",
                exported_at=created,
                operator=current_operator(),
                destination=location,
                manifest_sha256=manifest_sha256,
                rows=sum(counts.written.values()),
                request_ids=_exported_request_ids(state),
                recipient=options.recipient,
                licence=options.licence,
                profile=options.profile.name,
                filter=json.dumps(options.to_json(), sort_keys=True),
                record_key=key.hex(),
            ),
        )
    shutil.rmtree(state.root if upload is None else destination)
    return DatasetResult(export_id, location, manifest_sha256, counts, key.hex())


async def _spool(
    clickhouse: ClickHouse,
    options: DatasetOptions,
    state: _State,
    key: bytes,
    counts: Counts,
    fold: FoldResult,
) -> None:
    """Pass 1: every leaf → a record, exact duplicates dropped, sampled, split, spooled."""
    ip_key = hmac.new(key, b"client-ip", hashlib.sha256).digest()
    exact = ExactDuplicates()
    near = (
        NearDuplicates(threshold=options.near_duplicate_threshold)
        if options.near_duplicate_threshold is not None
        else None
    )
    progress = Progress("reading conversations", total=len(fold.leaves))
    sample_cut = int(options.sample * _FRACTION_SCALE)
    test_cut = int(options.test_fraction * _FRACTION_SCALE)
    with SpoolWriter(state.spool) as spool:

        def on_batch(batch: pa.RecordBatch) -> None:
            progress.advance(batch.num_rows, batch.nbytes)
            built = build_batch(batch, profile=options.profile, record_key=key, ip_key=ip_key)
            kept: list[int] = []
            digests: list[bytes] = []
            for i, texts in enumerate(built.texts):
                counts.conversations += 1
                digest = normalised_hash(texts)
                if exact.seen(digest):
                    counts.exact_duplicates += 1
                elif _fraction(options.seed, b"sample", digest) >= sample_cut:
                    counts.sampled_out += 1
                else:
                    kept.append(i)
                    digests.append(digest)
            # Languages of the whole batch at once: lingua spreads them over the cores.
            languages = (
                language.detect_many([built.first_user[i] for i in kept])
                if options.detect_language
                else [""] * len(kept)
            )
            rows: list[int] = []
            hashes: list[str] = []
            splits: list[str] = []
            found_languages: list[str] = []
            for i, digest, found in zip(kept, digests, languages, strict=True):
                if options.languages and found not in options.languages:
                    counts.language_filtered += 1
                    continue
                rows.append(i)
                hashes.append(digest.hex())
                splits.append(
                    "test" if _fraction(options.seed, b"split", digest) < test_cut else "train"
                )
                found_languages.append(found)
                counts.scrubbed.update(built.scrubbed[i])
                if near is not None:
                    near.add("\n".join(built.texts[i]))
            if not rows:
                return
            take = pa.array(rows, pa.int64())
            decided = {
                "conversation_hash": pa.array(hashes, pa.string()),
                "split": pa.array(splits, pa.string()),
                "language": pa.array(found_languages, pa.string()),
                "source_request_id": batch.column("request_id").take(take),
            }
            arrays = [
                decided[name] if name in decided else built.columns[name].take(take)
                for name in SPOOL_SCHEMA.names
            ]
            spool.append(pa.RecordBatch.from_arrays(arrays, schema=SPOOL_SCHEMA))

        async for batch in leaf_batches(clickhouse, fold):
            on_batch(batch)
    progress.close()
    duplicate = near.duplicates() if near is not None else np.zeros(0, dtype=bool)
    counts.near_duplicates = int(duplicate.sum())
    np.save(state.near, duplicate)


def _write_shards(
    destination: Path, options: DatasetOptions, state: _State, counts: Counts
) -> list[str]:
    """Pass 2: the kept records of each split into ``rows_per_shard``-row shards."""
    duplicate = np.load(state.near)
    # Count what each split keeps, to name the shards "-of-N" (from scratch on a rerun).
    counts.models, counts.languages = Counter(), Counter()
    kept: Counter[str] = Counter()
    offset = 0
    for batch in read_spool(state.spool):
        splits = batch.column("split").to_pylist()
        for i, split in enumerate(splits):
            if not (duplicate.size and duplicate[offset + i]):
                kept[split] += 1
                counts.models[batch.column("model")[i].as_py()] += 1
                counts.languages[batch.column("language")[i].as_py() or "unknown"] += 1
        offset += len(splits)
    counts.written = dict(kept)
    files: list[str] = []
    progress = Progress("writing shards", total=sum(kept.values()))

    def done(name: str) -> None:
        state.data["shards"][name] = "done"
        state.save()

    for split in sorted(kept):
        shards = SplitShards(
            destination,
            split,
            kept[split],
            rows_per_shard=options.rows_per_shard,
            fmt=options.fmt,
            finished=lambda name: state.data["shards"].get(name) == "done",
            done=done,
        )
        offset = 0
        try:
            for batch in read_spool(state.spool):
                size = batch.num_rows
                mask = np.array(batch.column("split").to_pylist()) == split
                if duplicate.size:
                    mask &= ~duplicate[offset : offset + size]
                offset += size
                if not mask.any():
                    continue
                table = pa.Table.from_batches([batch]).filter(pa.array(mask))
                table = table.drop_columns(["source_request_id"])
                progress.advance(table.num_rows, table.nbytes)
                shards.write(table)
            shards.finish()
        finally:
            shards.abort()
        files.extend(shards.names)
    progress.close()
    counts.models = Counter(dict(counts.models.most_common()))
    state.data["counts"] = counts.to_json()
    state.save()
    return files


def _exported_request_ids(state: _State) -> pa.Array:
    """The leaves' request ids of the records written, as one Arrow array (for the audit row)."""
    duplicate = np.load(state.near)
    kept: list[pa.Array] = []
    offset = 0
    for batch in read_spool(state.spool):
        keep = (
            ~duplicate[offset : offset + batch.num_rows]
            if duplicate.size
            else np.ones(batch.num_rows, dtype=bool)
        )
        # Filtered even when all are kept: a copy, so the batch read (every record) is freed.
        kept.append(batch.column("source_request_id").filter(pa.array(keep)))
        offset += batch.num_rows
    return pa.concat_arrays(kept) if kept else pa.array([], pa.string())
