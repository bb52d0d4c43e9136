"""Where the export commands write, and how: every file a legal export or an archive writes is
private to its owner (0600, directories 0700: they hold raw captured data), and a destination
that is a link, a file, or overlaps the embedded engine's directory is refused in one line with
exit 2, nothing written (row E23 of tests/README.md)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from consumers.clickhouse.client import ClickHouse
from consumers.clickhouse.migrate import migrate
from deploy.cli import build_parser
from tests.integration.export.captured_traffic import private_database
from tests.integration.export.s3_server import free_port


@pytest.fixture
async def clickhouse_url(clickhouse_url: str) -> str:
    url = await private_database(clickhouse_url)
    async with ClickHouse(url) as clickhouse:
        await migrate(clickhouse)
        await clickhouse.command(
            "INSERT INTO requests_raw (request_id, received_at, body) "
            "SELECT toString(generateUUIDv7(number)), now64(6), 'raw body' FROM numbers(3)"
        )
        await clickhouse.command(
            "INSERT INTO chunks_raw (request_id, seq, data) "
            "SELECT request_id, 1, 'raw chunk' FROM requests_raw"
        )
    return url


def _command(*args: str) -> int:
    parsed = build_parser().parse_args(list(args))
    return int(parsed.func(parsed))


def _modes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix() or ".": stat.S_IMODE(p.lstat().st_mode)
        for p in [root, *root.rglob("*")]
    }


def test_what_the_export_commands_write_is_private(clickhouse_url: str, tmp_path: Path) -> None:
    """Without the commands' umask, Arrow, gzip and the engine write 0644 files (umask 022)."""
    legal, archived = tmp_path / "legal", tmp_path / "archive"
    assert _command(
        "export", "legal", str(legal), "--case", "C-1", "--since", "2000-01-01",
        "--clickhouse", clickhouse_url,
    ) == 0  # fmt: skip
    assert _command("archive", str(archived), "--clickhouse", clickhouse_url) == 0
    for root in (legal, archived):
        modes = _modes(root)
        assert len(modes) > 5, modes
        for name, mode in modes.items():
            wanted = 0o700 if (root / name).is_dir() else 0o600
            assert mode == wanted, f"{root.name}/{name}: {oct(mode)}"
    assert "exchanges" in {p.name for p in legal.iterdir()}


# Every command that writes a destination; ``{dest}`` is replaced by the path under test.
WRITING_COMMANDS = [
    ("export", "legal", "{dest}", "--case", "C-1", "--since", "2000-01-01"),
    ("export", "dataset", "{dest}"),
    ("archive", "{dest}"),
]


@pytest.mark.parametrize("command", WRITING_COMMANDS)
def test_a_destination_that_is_a_link_a_file_or_in_the_engine_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    engine = tmp_path / "engine"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    (tmp_path / "file").write_text("mine")
    cases = {
        "link": "is a symbolic link",
        "file": "exists and is not a directory",
        "engine/exports": "overlaps the ClickHouse directory",
    }
    for dest, said in cases.items():
        args = [a.replace("{dest}", str(tmp_path / dest)) for a in command]
        assert _command(*args, "--clickhouse", f"chdb://{engine}") == 2, dest
        err = capsys.readouterr().err
        assert said in err, (dest, err)
        assert err.count("\n") == 1, err
    assert list(elsewhere.iterdir()) == []
    assert (tmp_path / "file").read_text() == "mine"
    assert not engine.exists()


def test_a_restore_into_an_engine_inside_the_archive_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archived = tmp_path / "archive"
    archived.mkdir()
    (archived / "manifest.json").write_text("{}")
    assert _command("restore", str(archived), "--clickhouse", f"chdb://{archived}/db") == 2
    err = capsys.readouterr().err
    assert "overlaps the ClickHouse directory" in err
    assert err.count("\n") == 1
    assert [p.name for p in archived.iterdir()] == ["manifest.json"]


@pytest.mark.parametrize("command", WRITING_COMMANDS)
def test_an_unreachable_server_is_one_line_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    secret = "planted-dsn-password-4c1e"
    dsn = f"http://exporter:{secret}@127.0.0.1:{free_port()}/logorhythms"
    args = [a.replace("{dest}", str(tmp_path / "out")) for a in command]
    assert _command(*args, "--clickhouse", dsn) == 2
    captured = capsys.readouterr()
    assert "ClickHouse unavailable" in captured.err
    assert "check --clickhouse (or CLICKHOUSE_URL)" in captured.err
    assert captured.err.count("\n") == 1, captured.err  # not the driver's own line too
    assert secret not in captured.err + captured.out


def test_the_driver_adds_no_line_of_its_own(tmp_path: Path) -> None:
    """In its own process (pytest's log capture would hide it): Python's last-resort handler
    printed the driver's "Unexpected Http Driver Exception" before our line."""
    dsn = f"http://exporter:pw@127.0.0.1:{free_port()}/logorhythms"
    done = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "archive", str(tmp_path / "a"), "--clickhouse", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("logorhythms archive: ClickHouse unavailable"), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
