"""The `logorhythms export …`, `archive` and `restore` commands: arguments and exit statuses.

Exit status 0 when the export (or check) succeeded, 1 when `export verify` found mismatches, 2
when the command could not run (bad arguments, the embedded directory held by the loader, an
unreadable manifest), with one line saying what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consumers.export.objectstore import ObjectStore
    from consumers.export.store import ExportStore


def _clickhouse_argument(parser: argparse.ArgumentParser, *, help_text: str | None = None) -> None:
    # consumers.settings only: building the parser must not load the engine (`export verify`).
    from consumers.settings import DEFAULT_CLICKHOUSE_URL, normalize_clickhouse_url

    parser.add_argument(
        "--clickhouse",
        default=normalize_clickhouse_url(
            os.environ.get("CLICKHOUSE_URL") or DEFAULT_CLICKHOUSE_URL
        ),
        metavar="DSN",
        help=help_text
        or "where to read: chdb://DIR (the embedded engine; the loader must be stopped) or "
        "http(s)://USER:PASSWORD@HOST:PORT/DATABASE (default CLICKHOUSE_URL, else "
        "chdb://data/clickhouse)",
    )


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="for s3:// locations: the S3-compatible service, http(s)://HOST:PORT (default "
        "AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, else AWS S3). Credentials come only from "
        "the AWS environment or profile (AWS_PROFILE, AWS_ACCESS_KEY_ID...)",
    )
    parser.add_argument(
        "--s3-region", metavar="REGION", help="default AWS_REGION, else the profile's"
    )


def _store(args: argparse.Namespace, location: str) -> ExportStore:
    """The directory or ``s3://BUCKET[/PREFIX]`` a command names (``consumers.export.store``)."""
    from consumers.export.store import OBJECT_SCHEME, DirectoryStore

    if not location.startswith(OBJECT_SCHEME):
        return DirectoryStore(Path(location).absolute())
    return _object_store(args, location)


def _object_store(args: argparse.Namespace, location: str) -> ObjectStore:
    from consumers.export.objectstore import ObjectStore  # the S3 client, only when needed
    from consumers.export.store import ObjectStoreSettings

    settings = ObjectStoreSettings.from_environment(
        endpoint_url=args.s3_endpoint, region=args.s3_region
    )
    return ObjectStore(location, settings)


def _say(command: str, problem: object) -> int:
    message = " ".join(str(problem).split())
    print(f"logorhythms {command}: {message}", file=sys.stderr)
    return 2


def _run(command: str, work: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run one export coroutine; its expected failures become one line and status 2."""
    from consumers.clickhouse.client import ClickHouseError
    from consumers.export.manifest import ManifestError
    from consumers.export.source import ExportError
    from consumers.export.store import StoreError

    # The ClickHouse driver logs its own line before raising what we translate into ours; with
    # no handler configured, Python would print it to stderr as a second line.
    driver_log = logging.getLogger("clickhouse_connect")
    if not driver_log.handlers:
        driver_log.addHandler(logging.NullHandler())
    # Everything the command writes (datasets, legal exports and archives hold raw captured
    # data; a restored engine directory too) is private to its owner: files 0600, directories
    # 0700, whichever library writes them (Arrow, gzip, the engine, tempfile).
    previous_umask = os.umask(0o077)
    try:
        return asyncio.run(work())
    except (ExportError, ManifestError, StoreError) as exc:
        return _say(command, exc)
    except ClickHouseError as exc:
        return _say(
            command,
            f"{exc}; check --clickhouse (or CLICKHOUSE_URL): the server, its address and the "
            "user's grants",
        )
    except OSError as exc:  # a path that cannot be read or written: which, and why
        where = f" ({exc.filename})" if exc.filename else ""
        return _say(command, f"{exc.strerror or exc}{where}: check the path and its permissions")
    finally:
        os.umask(previous_umask)


def _verify(args: argparse.Namespace) -> int:
    from consumers.export.manifest import ManifestError, verify
    from consumers.export.store import StoreError

    try:
        result = verify(_store(args, args.directory), expected_manifest_sha256=args.manifest_sha256)
    except (ManifestError, StoreError, OSError) as exc:
        return _say("export verify", exc)
    for problem in result.problems:
        print(problem)
    verdict = "OK" if result.ok else f"FAILED: {len(result.problems)} problem(s)"
    print(
        f"{verdict}: {result.files_checked} files, {result.rows_checked} rows checked; "
        f"manifest.json sha256 {result.manifest_sha256}",
        file=sys.stderr if not result.ok else sys.stdout,
    )
    return 0 if result.ok else 1


def _utc(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{flag} {value!r} is not an ISO 8601 time (e.g. 2026-01-31T00:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _dataset(args: argparse.Namespace) -> int:
    from consumers.export.dataset import DatasetOptions, export_dataset
    from consumers.export.records import Profile
    from consumers.export.selection import Selection
    from consumers.export.source import ExportError

    try:
        to_bucket = args.destination.startswith("s3://")
        if args.staging is not None and not to_bucket:
            raise ValueError(
                "--staging is for s3:// destinations: a dataset for a directory is built in "
                "that directory"
            )
        if args.profile == "legal" and not args.raw:
            raise ValueError(
                "the legal profile writes conversations exactly as captured (no scrubbing, "
                "client IPs): add --raw to confirm that is what you mean"
            )
        record_key = bytes.fromhex(args.record_key) if args.record_key else None
        if record_key is not None and len(record_key) < 16:
            raise ValueError("--record-key must be at least 32 hex digits (16 bytes)")
        options = DatasetOptions(
            profile=Profile.named(args.profile, precision=args.timestamp_precision),
            selection=Selection(
                since=_utc(args.since, "--since"),
                until=_utc(args.until, "--until"),
                models=tuple(args.model),
                providers=tuple(args.provider),
                endpoints=tuple(args.endpoint),
                outcomes=tuple(args.outcome or ["ok"]),
                min_turns=args.min_turns,
            ),
            fmt=args.format,
            recipient=args.recipient,
            licence=args.licence,
            name=args.name,
            near_duplicate_threshold=None if args.no_near_dedup else args.near_dup_threshold,
            sample=args.sample,
            test_fraction=args.test_fraction,
            seed=args.seed,
            languages=tuple(args.language),
            detect_language=not args.no_language,
            rows_per_shard=args.rows_per_shard,
        )
    except (ValueError, ExportError) as exc:
        print(f"logorhythms export dataset: {exc}", file=sys.stderr)
        return 2

    async def work() -> int:
        from consumers.export.source import check_destination
        from consumers.export.upload import Upload, default_staging

        destination, upload = Path(args.destination), None
        if to_bucket:  # built in a local staging directory, then uploaded
            upload = Upload(_object_store(args, args.destination))
            destination = Path(args.staging) if args.staging else default_staging(upload.location)
        # A link, a file, or a place inside the engine's directory: refused before anything.
        check_destination(
            args.clickhouse, destination.absolute(), "--staging" if upload else "DEST"
        )
        result = await export_dataset(
            args.clickhouse, destination.absolute(), options, record_key=record_key, upload=upload
        )
        rows = sum(result.counts.written.values())
        print(
            f"wrote {rows:,} conversations to {result.destination} ({result.export_id}); "
            f"manifest.json sha256 {result.manifest_sha256}"
        )
        return 0

    return _run("export dataset", work)


def _legal(args: argparse.Namespace) -> int:
    from consumers.export.legal import LegalQuery, export_legal

    async def work() -> int:
        destination = _store(args, args.destination)
        query = LegalQuery.from_arguments(
            client_ips=args.ip,
            key_fingerprints=args.key_fingerprint,
            request_ids=args.request_id,
            since=args.since,
            until=args.until,
        )
        return await export_legal(
            args.clickhouse,
            destination,
            query=query,
            case_reference=args.case,
            recipient=args.recipient,
        )

    return _run("export legal", work)


def _archive(args: argparse.Namespace) -> int:
    from consumers.export.archive import archive

    return _run("archive", lambda: archive(args.clickhouse, _store(args, args.destination)))


def _restore(args: argparse.Namespace) -> int:
    from consumers.export.restore import restore

    return _run("restore", lambda: restore(_store(args, args.source), args.clickhouse))


def add_export_commands(commands: Any) -> None:
    """Add `export` (dataset, legal, verify), `archive` and `restore` to the top-level parser."""
    export = commands.add_parser(
        "export",
        help="export captured data: datasets, legal requests; verify an export",
        description="Ways out of ClickHouse, each a directory or s3://BUCKET/PREFIX with a "
        "manifest.json of sha256 sums and a row in the export_audit table (docs/DATASETS.md).",
    )
    kinds = export.add_subparsers(dest="export_kind", required=True, metavar="KIND")

    dataset = kinds.add_parser(
        "dataset",
        help="a dataset for researchers or buyers",
        description="One record per conversation (exchanges that are prefixes of a longer one "
        "are folded into it), scrubbed per profile, deduplicated, written as Hugging Face "
        "shards with a dataset card and a manifest, and recorded in export_audit. DEST may be "
        "s3://BUCKET/PREFIX: the dataset is built in a local staging directory, then uploaded, "
        "the manifest last, and checked. Rerun the same command to resume an interrupted "
        "export or upload (docs/DATASETS.md).",
    )
    dataset.add_argument(
        "destination", metavar="DEST", help="a new or empty directory, or s3://BUCKET/PREFIX"
    )
    _clickhouse_argument(dataset)
    _store_arguments(dataset)
    dataset.add_argument(
        "--staging",
        metavar="DIR",
        help="for s3:// destinations: the local directory the dataset is built in before it is "
        "uploaded, removed once the upload is verified (default: one per destination under "
        "$XDG_CACHE_HOME or ~/.cache, in logorhythms/exports/); rerunning the same command "
        "resumes from it",
    )
    dataset.add_argument(
        "--profile", choices=("open", "licensed", "legal"), default="open",
        help="open: scrubbed, no client fields; licensed: scrubbed, keyed IP hash and "
        "user-agent family, images; legal: raw, needs --raw (default open)",
    )  # fmt: skip
    dataset.add_argument("--raw", action="store_true", help="confirm the raw legal profile")
    dataset.add_argument(
        "--format", choices=("parquet", "jsonl", "sharegpt"), default="parquet",
        help="parquet (default), jsonl (OpenAI fine-tuning, gzip) or sharegpt (gzip)",
    )  # fmt: skip
    dataset.add_argument("--recipient", default="", help="who receives it (audited)")
    dataset.add_argument("--licence", default="", help="the licence it is given under")
    dataset.add_argument("--name", default="Logorhythms conversations", help="pretty name")
    dataset.add_argument("--since", help="received at or after (ISO 8601, UTC if no offset)")
    dataset.add_argument("--until", help="received before (ISO 8601, UTC if no offset)")
    for flag, what in (("--model", "model"), ("--provider", "provider"),
                       ("--endpoint", "endpoint, e.g. /v1/chat/completions"),
                       ("--outcome", "outcome (default ok)"),
                       ("--language", "ISO 639-1 language code")):  # fmt: skip
        dataset.add_argument(flag, action="append", default=[], help=f"keep only this {what}")
    dataset.add_argument("--min-turns", type=int, default=1, help="minimum user messages")
    dataset.add_argument("--no-language", action="store_true", help="skip language detection")
    dataset.add_argument(
        "--sample", type=float, default=1.0, help="keep this fraction, by conversation hash"
    )
    dataset.add_argument(
        "--test-fraction", type=float, default=0.0,
        help="fraction in the test split, by conversation hash (default 0: train only)",
    )  # fmt: skip
    dataset.add_argument("--seed", type=int, default=0, help="seed of sampling and the split")
    dataset.add_argument(
        "--near-dup-threshold", type=float, default=0.85,
        help="MinHash Jaccard similarity above which conversations are near duplicates",
    )  # fmt: skip
    dataset.add_argument("--no-near-dedup", action="store_true", help="skip near-dup removal")
    dataset.add_argument(
        "--timestamp-precision", choices=("day", "hour", "second", "microsecond"),
        help="default: day (open), second (licensed), microsecond (legal)",
    )  # fmt: skip
    dataset.add_argument(
        "--rows-per-shard", type=int, default=50_000, help="records per shard file (default 50,000)"
    )
    dataset.add_argument(
        "--record-key", metavar="HEX",
        help="the key conversation ids are keyed with (default: a new random one, recorded in "
        "export_audit); give the same key to reproduce an export byte for byte",
    )  # fmt: skip
    dataset.set_defaults(func=_dataset)

    legal = kinds.add_parser(
        "legal",
        help="every matching exchange exactly as captured, for legal process",
        description="Write every exchange that matches all the given selectors (each may be "
        "repeated; values of one selector are alternatives) exactly as captured: the request "
        "bytes and headers, every chunk with its timing, the completed event. At least one "
        "selector and --case are required.",
    )
    legal.add_argument(
        "destination", metavar="DEST", help="a new or empty directory, or s3://BUCKET/PREFIX"
    )
    legal.add_argument("--case", required=True, help="the case or warrant reference (audited)")
    legal.add_argument("--recipient", default="", help="who receives the export (audited)")
    legal.add_argument(
        "--ip", action="append", default=[], metavar="IP|CIDR", help="client IP or network"
    )
    legal.add_argument(
        "--key-fingerprint", action="append", default=[], metavar="FP", help="fp:… of a key"
    )
    legal.add_argument("--request-id", action="append", default=[], metavar="ID")
    legal.add_argument("--since", help="received at or after (ISO 8601, UTC if no offset)")
    legal.add_argument("--until", help="received before (ISO 8601, UTC if no offset)")
    _clickhouse_argument(legal)
    _store_arguments(legal)
    legal.set_defaults(func=_legal)

    verify = kinds.add_parser(
        "verify",
        help="recompute an export's checksums and row counts against its manifest",
        description="Exit status 0 when every file matches manifest.json, 1 when anything is "
        "missing, changed or unlisted (each problem printed, a manifest other than "
        "--manifest-sha256 included), 2 when there is no manifest or it cannot be read "
        "(malformed, too large, not a regular file).",
    )
    verify.add_argument("directory", metavar="DIR", help="export directory or s3://BUCKET/PREFIX")
    _store_arguments(verify)
    verify.add_argument(
        "--manifest-sha256",
        metavar="HEX",
        help="the manifest's sha256 as the export_audit table recorded it",
    )
    verify.set_defaults(func=_verify)

    archive = commands.add_parser(
        "archive",
        help="write the raw tables and exchanges as day-partitioned Parquet (incremental)",
        description="Write requests_raw, chunks_raw, completions_raw, exchanges and "
        "export_audit to DEST/table=NAME/day=YYYY-MM-DD/part-00000.parquet with a manifest.json "
        "of per-day checksums. Days already archived and unchanged are skipped. DEST may be "
        "s3://BUCKET/PREFIX (docs/DATASETS.md).",
    )
    archive.add_argument(
        "destination", metavar="DEST", help="archive directory or s3://BUCKET/PREFIX"
    )
    _clickhouse_argument(archive)
    _store_arguments(archive)
    archive.set_defaults(func=_archive)

    restore = commands.add_parser(
        "restore",
        help="load an archive into an empty ClickHouse and prove it identical",
        description="Verify SRC, create the schema in an empty database, insert every day, "
        "rebuild the rollups, and compare row counts and checksums per table and day.",
    )
    restore.add_argument("source", metavar="SRC", help="archive directory or s3://BUCKET/PREFIX")
    _store_arguments(restore)
    _clickhouse_argument(
        restore,
        help_text="the empty ClickHouse to restore into: chdb://NEW_DIR or a server DSN "
        "(default CLICKHOUSE_URL, else chdb://data/clickhouse)",
    )
    restore.set_defaults(func=_restore)
