"""The progress line: drawn on a terminal with rows (or files), bytes, rates and ETA; silent
otherwise."""

from __future__ import annotations

import io

from consumers.export.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_rows_bytes_rate_and_eta() -> None:
    out = _Terminal()
    progress = Progress("reading", total=1000, out=out)
    progress.advance(250, 3 * 1024 * 1024)
    progress.close()
    text = out.getvalue()
    assert "reading: 250/1,000 (25%) rows, 3.0 MB" in text
    assert "rows/s" in text
    assert "ETA " in text
    assert text.endswith("\n")


def test_an_upload_shows_files_bytes_and_the_byte_rate() -> None:
    out = _Terminal()
    progress = Progress("uploading", total=4, unit="files", out=out)
    progress.advance(0, 5 * 1024 * 1024)  # a part of the first file sent
    progress.advance(1)
    progress.close()
    text = out.getvalue()
    assert "uploading: 1/4 (25%) files, 5.0 MB (" in text
    assert "B/s)" in text
    assert "files/s" in text


def test_a_pipe_or_file_sees_nothing() -> None:
    out = io.StringIO()
    progress = Progress("reading", total=10, out=out)
    progress.advance(10, 100)
    progress.close()
    assert out.getvalue() == ""
