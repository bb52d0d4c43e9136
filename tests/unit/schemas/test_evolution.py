"""Every writer schema ever released stays readable by the current reader schemas.

``schemas/history/released.json`` lists every released fingerprint per event type; each one is
either the current schema's or kept as ``schemas/history/<name>.<fingerprint>.avsc``. A message
written by any of them decodes with ``Codec()`` into the fields it wrote plus the reader's
defaults, which only holds while fields are added with a default (the negative cases below).
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
from collections.abc import Mapping
from typing import Any

import fastavro
import pytest

from schemas import Codec, CodecError, EventType
from schemas.codec import MAGIC, SCHEMA_DIR, load_schema, schema_fingerprint
from schemas.reader import compile_reader

HISTORY = SCHEMA_DIR / "history"


def _released() -> dict[str, list[str]]:
    released: dict[str, list[str]] = json.loads((HISTORY / "released.json").read_text())
    return released


def _current() -> dict[str, dict[str, Any]]:
    return {t.value: load_schema(SCHEMA_DIR / f"{t.value}.avsc") for t in EventType}


def _retired() -> dict[str, dict[str, Any]]:
    """The kept texts of released versions that are no longer current, by file name."""
    return {path.name: load_schema(path) for path in sorted(HISTORY.glob("*.avsc"))}


def _every_released_writer() -> list[Any]:
    current = {schema_fingerprint(s).hex(): s for s in _current().values()}
    retired = {schema_fingerprint(s).hex(): s for s in _retired().values()}
    kept = {**retired, **current}
    # A released version kept nowhere fails test_every_released_fingerprint_is_current_or_kept.
    return [
        pytest.param(name, kept[fp], id=f"{name}.{fp}")
        for name, fps in sorted(_released().items())
        for fp in fps
        if fp in kept
    ]


def _sample(schema: Any, named: dict[str, Any]) -> Any:
    """A value of ``schema`` with something in every field (the non-null branch of unions)."""
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return _sample(branches[0], named) if branches else None
    if isinstance(schema, str):
        if schema in named:
            return _sample(named[schema], named)
        primitive = {"string": "s", "bytes": b"\x00\xff", "int": 7, "long": 7_000_000_000,
                     "boolean": True, "float": 1.5, "double": 2.5, "null": None}  # fmt: skip
        return primitive[schema]
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return {f["name"]: _sample(f["type"], named) for f in schema["fields"]}
    if kind == "array":
        return [_sample(schema["items"], named)]
    if kind == "map":
        return {"k": _sample(schema["values"], named)}
    if kind == "enum":
        return schema["symbols"][0]
    return _sample(kind, named)  # a primitive with a logical type: its plain value


def _as_read(field_type: Any, value: Any) -> Any:
    """``value`` as the reader returns it (logical types become their Python type)."""
    if isinstance(field_type, dict) and field_type.get("logicalType") == "timestamp-micros":
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=value)
    return value


def _message(writer: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """A single-object message written by ``writer``, and the record it holds."""
    record = _sample(dict(writer), {})
    buffer = io.BytesIO()
    buffer.write(MAGIC + schema_fingerprint(writer))
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(copy.deepcopy(dict(writer))), record)
    return buffer.getvalue(), record


def _fields_without_default(writer: Mapping[str, Any], reader: Mapping[str, Any]) -> list[str]:
    """The reader's fields that the writer lacks and that have no default: unreadable."""
    written = {f["name"] for f in writer["fields"]}
    return [f["name"] for f in reader["fields"] if f["name"] not in written and "default" not in f]


def _resolve(writer: Mapping[str, Any], reader: Mapping[str, Any]) -> dict[str, Any]:
    """The record a writer's message becomes under ``reader``, by fastavro and, where the pair
    compiles, by the compiled reader too (they must agree)."""
    data, _ = _message(writer)
    body = io.BytesIO(data[10:])
    parsed_writer = fastavro.parse_schema(copy.deepcopy(dict(writer)))
    parsed_reader = fastavro.parse_schema(copy.deepcopy(dict(reader)))
    resolved: dict[str, Any] = fastavro.schemaless_reader(body, parsed_writer, parsed_reader)
    compiled = compile_reader(writer, reader)
    if compiled is not None:
        assert compiled(data, 10) == resolved
    return resolved


def test_every_released_fingerprint_is_current_or_kept() -> None:
    released = _released()
    assert sorted(released) == sorted(t.value for t in EventType)
    kept = {schema_fingerprint(s).hex() for s in [*_current().values(), *_retired().values()]}
    for name, fingerprints in released.items():
        assert fingerprints, f"{name}: no released version listed"
        missing = [fp for fp in fingerprints if fp not in kept]
        assert not missing, (
            f"{name} {missing} were released but are neither current nor in schemas/history/: "
            f"copy the previous text there as {name}.<fingerprint>.avsc"
        )


def test_every_current_schema_is_listed_as_released() -> None:
    released = _released()
    for name, schema in _current().items():
        fp = schema_fingerprint(schema).hex()
        assert fp in released[name], f"add {fp} to schemas/history/released.json[{name!r}]"


def test_kept_files_are_named_after_their_schema_and_fingerprint() -> None:
    released = {fp for fps in _released().values() for fp in fps}
    current = {schema_fingerprint(s).hex() for s in _current().values()}
    for file_name, schema in _retired().items():
        fp = schema_fingerprint(schema).hex()
        assert file_name == f"{schema['name'].lower()}.{fp}.avsc"
        assert fp in released, f"{file_name} is not a released version"
        assert fp not in current, f"{file_name} is the current schema, not a retired one"


@pytest.mark.parametrize(("name", "writer"), _every_released_writer())
def test_every_released_writer_is_read_by_the_current_reader(
    name: str, writer: dict[str, Any]
) -> None:
    reader = _current()[name]
    assert _fields_without_default(writer, reader) == []
    data, written = _message(writer)
    decoded = Codec().decode(data).record
    for field in reader["fields"]:
        key = field["name"]
        expected = _as_read(field["type"], written[key]) if key in written else field["default"]
        assert decoded[key] == expected, f"{name}: {key}"
    assert _resolve(writer, reader) == decoded


def test_a_field_added_with_a_default_reads_older_messages() -> None:
    older = _current()["chunk"]
    newer = copy.deepcopy(older)
    newer["fields"].append({"name": "shard", "type": "int", "default": 3, "doc": "test"})
    assert _fields_without_default(older, newer) == []
    assert _resolve(older, newer)["shard"] == 3


def test_a_field_added_without_a_default_cannot_read_older_messages() -> None:
    older = _current()["chunk"]
    newer = copy.deepcopy(older)
    newer["fields"].append({"name": "shard", "type": "int", "doc": "test"})
    assert _fields_without_default(older, newer) == ["shard"]
    with pytest.raises(fastavro.read.SchemaResolutionError, match="shard"):
        _resolve(older, newer)


def test_a_released_writer_missing_from_history_is_unreadable() -> None:
    # What the kept files are for: drop a field (as an older writer would lack it) and the
    # codec, without that writer schema, refuses its messages as written by an unknown schema.
    retired = copy.deepcopy(_current()["chunk"])
    retired["fields"] = [f for f in retired["fields"] if f["name"] != "delivered"]
    data, written = _message(retired)
    with pytest.raises(CodecError, match="unknown writer schema"):
        Codec().decode(data)
    decoded = Codec(extra_writer_schemas=[retired]).decode(data).record
    assert decoded["delivered"] is True  # the current reader's default
    assert decoded["seq"] == written["seq"]
