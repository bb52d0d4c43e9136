from __future__ import annotations

import itertools
import random

import pytest

from consumers.exchange.sse import SseParser, data_events


def parse_all(chunks: list[bytes]) -> list[tuple[str, str]]:
    parser = SseParser()
    events = []
    for i, chunk in enumerate(chunks):
        events.extend(parser.feed(chunk, i))
    events.extend(parser.finish(len(chunks)))
    return [(e.event, e.data) for e in events]


STREAM = b'data: {"a":1}\n\nevent: ping\ndata: x\ndata: y\n\n: keepalive\n\ndata: [DONE]\n\n'
EXPECTED = [("message", '{"a":1}'), ("ping", "x\ny"), ("message", "[DONE]")]


def test_whole_stream() -> None:
    assert parse_all([STREAM]) == EXPECTED


def test_one_byte_reads_give_the_same_events() -> None:
    assert parse_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_endings(newline: bytes) -> None:
    assert parse_all([STREAM.replace(b"\n", newline)]) == EXPECTED


def test_crlf_split_between_reads() -> None:
    assert parse_all([b"data: a\r", b"\n\r\n"]) == [("message", "a")]


def test_multibyte_utf8_split_across_reads_is_not_mangled() -> None:
    data = 'data: {"t":"é😀"}\n\n'.encode()
    cut = data.index("😀".encode()) + 2
    assert parse_all([data[:cut], data[cut:]]) == [("message", '{"t":"é😀"}')]


def test_missing_final_blank_line_still_dispatches() -> None:
    assert parse_all([b"data: last"]) == [("message", "last")]


def test_event_index_is_the_chunk_that_completed_it() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a", 0) == []
    (event,) = parser.feed(b"\n\n", 1)
    assert event.index == 1


def test_oversized_event_is_counted_not_buffered() -> None:
    parser = SseParser(max_event_bytes=10)
    events = parser.feed(b"data: " + b"x" * 100 + b"\n\ndata: ok\n\n")
    assert [e.data for e in events] == ["ok"]
    assert parser.oversized == 1


def random_stream(rng: random.Random) -> bytes:
    """Lines of every kind the parser distinguishes, UTF-8 and invalid bytes included."""
    pieces = [
        b"data: ", b"data:", b"data", b"event: ", b"event:x", b": comment", b"id: 7", b"retry: 1",
        b"datax: y", b"data:  two spaces", b'{"a":"\xc3\xa9\xf0\x9f\x98\x80"}', b"\xff\xfe",
        b"[DONE]", b" ", b":", b"",
    ]  # fmt: skip
    lines = [b"".join(rng.choices(pieces, k=rng.randrange(0, 4))) for _ in range(rng.randrange(30))]
    return b"\n".join(lines) + rng.choice((b"", b"\n", b"\n\n"))


def test_the_lf_fast_path_gives_what_the_general_path_gives() -> None:
    """LF-only input takes a fast path; the same stream with CRLF line ends takes the general
    one. Both must produce the same events from any split into reads."""
    rng = random.Random("sse")
    for _ in range(500):
        stream = random_stream(rng)
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randrange(4))))
        reads = [stream[a:b] for a, b in itertools.pairwise([0, *cuts, len(stream)])]
        crlf = [r.replace(b"\n", b"\r\n") for r in reads]
        assert parse_all(reads) == parse_all(crlf), stream


def test_oversized_and_counted_alike_on_both_paths() -> None:
    for newline in (b"\n", b"\r\n"):
        parser = SseParser(max_event_bytes=10)
        events = parser.feed(newline.join([b"data: " + b"x" * 20, b"", b"data: ok", b"", b""]))
        assert [e.data for e in events] == ["ok"]
        assert parser.oversized == 1


def parse_with_index(
    reads: list[bytes], max_event_bytes: int = 16 * 1024 * 1024
) -> list[tuple[str, str, int]]:
    parser = SseParser(max_event_bytes=max_event_bytes)
    events = []
    for i, read in enumerate(reads):
        events.extend(parser.feed(read, i))
    events.extend(parser.finish(len(reads) - 1))
    return [(e.event, e.data, e.index) for e in events]


def common_stream(rng: random.Random) -> tuple[bytes, bool]:
    """Mostly the shape providers send (one data line, one blank line per event), sometimes
    bent out of it in one of the ways the general parser handles differently; says which."""
    values = [b'{"a":"\xc3\xa9\xf0\x9f\x98\x80"}', b"\xff\xfe", b"[DONE]", b"", b" x ", b"{}"]
    events = [b"data: " + rng.choice(values) + b"\n\n" for _ in range(rng.randrange(1, 25))]
    bends = [
        b"data: cut",  # no final blank line
        b"data: last\n",
        b": keep-alive\n\n",
        b"event: ping\ndata: x\n\n",
        b"\n",  # an extra blank line
        b"data:x\n\n",  # no space after the colon
        b"data: a\ndata: b\n\n",
        b"data: \r\n\r\n",
    ]
    bend = rng.randrange(len(bends) * 2)
    if bend < len(bends):
        at = len(events) if bend < 2 else rng.randrange(len(events) + 1)
        events.insert(at, bends[bend])
    return b"".join(events), bend < len(bends)


def assert_like_the_parser(reads: list[bytes], bent: bool) -> None:
    """``data_events`` declines a bent stream and gives the parser's events for any other."""
    fast = data_events(reads, 16 * 1024 * 1024)
    if bent:
        assert fast is None, reads
    else:
        assert fast is not None, reads
        assert [("message", d, i) for d, i in fast] == parse_with_index(reads), reads


def test_data_events_equal_the_parser_events_or_decline() -> None:
    """``data_events`` gives exactly the parser's events (data and completing read, for any
    split into reads, empty reads included) for the common shape, and None for any other."""
    rng = random.Random("data-events")
    for _ in range(2000):
        stream, bent = common_stream(rng)
        cuts = sorted(rng.choices(range(len(stream) + 1), k=rng.randrange(6)))
        reads = [stream[a:b] for a, b in itertools.pairwise([0, *cuts, len(stream)])]
        assert_like_the_parser(reads, bent)


def test_data_events_decline_streams_over_the_event_size_cap() -> None:
    assert data_events([b"data: " + b"x" * 20 + b"\n\n"], max_event_bytes=10) is None
    assert data_events([b"data: ok\n", b"\n"], max_event_bytes=10) == [("ok", 1)]


def test_data_events_of_one_event_per_read_equal_the_parser_events_or_decline() -> None:
    """The usual split: each read one whole event (sometimes bent, or with a read cut in two
    or an empty read), where ``data_events`` takes its shortcut for the read indexes."""
    rng = random.Random("one-event-per-read")
    for _ in range(2000):
        stream, bent = common_stream(rng)
        reads = [block + b"\n\n" for block in stream.split(b"\n\n")]
        reads[-1] = reads[-1][:-2]  # what followed the last blank line (usually nothing)
        if rng.random() < 0.2:
            at = rng.randrange(len(reads))
            cut = rng.randrange(len(reads[at]) + 1)
            reads[at : at + 1] = [reads[at][:cut], reads[at][cut:]]
        if not reads[-1]:
            reads.pop()
        assert b"".join(reads) == stream
        assert_like_the_parser(reads, bent)
