"""A fast Avro binary reader for our event schemas: what fastavro's ``schemaless_reader`` returns.

fastavro interprets the (writer, reader) schema pair on every call, the largest single share of
the loader's CPU. Here each pair is compiled once into the source of one straight-line Python
function (varints, strings and dicts built inline, no call per field); what that saves is in
docs/decisions/0006-compiled-avro-codec.md.

Only what our schemas use is compiled: null, boolean, int, long (plain or timestamp-micros),
string, bytes, records, arrays and unions of null with one other type, with the schema resolution
our history needs (fields added with a primitive default, fields removed, int promoted to long).
``compile_reader`` returns ``None`` for anything else, and the codec keeps using fastavro.

On malformed input the compiled function raises ``MalformedError`` (or whatever the slice,
index or UTF-8 decoding raised); the codec then decodes the same bytes with fastavro, whose
answer stands. So corrupt events fail exactly as before (same errors, same dead-letter reasons),
and the rare inputs fastavro accepts but this reader does not (a varint written with more bytes
than needed) still load. tests/unit/schemas/test_reader.py proves the results equal fastavro's.

``compile_column_reader`` compiles the same code for a consumer that wants a few fields of many
events as columns (the ClickHouse loader's chunk events): it appends each field to its own list
instead of building a dict, which the caller would only take apart again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from schemas.codegen import Source

Reader = Callable[[bytes, int], dict[str, Any]]
ColumnReader = Callable[[bytes, int], None]
ColumnBinder = Callable[[Sequence[list[Any]]], ColumnReader]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "string", "bytes"))
_MISSING = object()


class MalformedError(ValueError):
    """The bytes do not decode with the compiled reader (truncated, out of range, bad branch)."""


class _Unsupported(Exception):
    """The schema pair uses something this reader does not compile; fastavro handles it."""


def varint_tail(data: bytes, pos: int, value: int, shift: int) -> tuple[int, int]:
    """The rest of a varint whose first ``shift // 7`` bytes (``value``) were already read,
    the last of them saying more follow.

    Refuses more than 64 bits: fastavro's C reader wraps them around silently, so such input
    goes to fastavro rather than being read differently here.
    """
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise MalformedError("varint longer than 10 bytes")
    if value >> 64:
        raise MalformedError("varint over 64 bits")
    return value, pos


_INLINE_BYTES = 5  # up to 2**35: sizes, counts, and nanosecond offsets up to ~17 s


def _long(src: Source, indent: int, target: str) -> None:
    """Read one zig-zag varint into ``target``: up to _INLINE_BYTES bytes inline (a call and a
    loop cost more than the varint), longer ones (timestamps) in varint_tail."""
    src.add(indent, "b = d[p]")
    src.add(indent, "p += 1")
    depth = indent
    for position in range(1, _INLINE_BYTES):
        src.add(depth, "if b & 0x80:" if position == 1 else "if c & 0x80:")
        depth += 1
        src.add(depth, "c = d[p]")
        src.add(depth, "p += 1")
        first = "(b & 0x7F)" if position == 1 else "b"
        src.add(depth, f"b = {first} | (c & 0x7F) << {7 * position}")
    src.add(depth, "if c & 0x80:")
    src.add(depth + 1, f"b, p = varint_tail(d, p, b, {7 * _INLINE_BYTES})")
    src.add(indent, f"{target} = (b >> 1) ^ -(b & 1)")


def _sized(src: Source, indent: int, target: str, *, text: bool) -> None:
    _long(src, indent, "n")
    src.add(indent, "e = p + n")
    src.add(indent, "if n < 0 or e > size:")
    src.add(indent + 1, "raise MalformedError('truncated')")
    src.add(indent, f"{target} = d[p:e]{'.decode()' if text else ''}")
    src.add(indent, "p = e")


class _Compiler:
    def __init__(self) -> None:
        self.src = Source()
        self.writer_named: dict[str, Any] = {}
        self.reader_named: dict[str, Any] = {}
        self.open_records: set[str] = set()  # straight-line code cannot unroll a recursive type

    def resolve(self, schema: Any, named: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            if schema not in named:
                raise _Unsupported(f"unknown type {schema}")
            return named[schema]
        return schema

    def register(self, schema: Mapping[str, Any], named: dict[str, Any]) -> None:
        name = schema["name"]
        named[name] = schema
        if "." not in name and schema.get("namespace"):
            named[f"{schema['namespace']}.{name}"] = schema

    def read(self, writer: Any, reader: Any, indent: int, target: str) -> None:
        """Code that reads a ``writer`` value from the bytes as a ``reader`` value."""
        writer = self.resolve(writer, self.writer_named)
        reader = self.resolve(reader, self.reader_named)
        w_kind, r_kind = _kind(writer), _kind(reader)
        if w_kind == "union" or r_kind == "union":
            if w_kind != r_kind:
                raise _Unsupported("union against a non-union")
            self.union(writer, reader, indent, target)
        elif w_kind == "record" and r_kind == "record":
            self.record(writer, reader, indent, target)
        elif w_kind == "array" and r_kind == "array":
            self.array(writer, reader, indent, target)
        else:
            self.primitive(writer, reader, indent, target)

    def primitive(self, writer: Any, reader: Any, indent: int, target: str) -> None:
        w_kind, r_kind = _kind(writer), _kind(reader)
        logical = _logical(writer)
        if logical != _logical(reader) or logical not in (None, "timestamp-micros"):
            raise _Unsupported(f"logical type {logical!r} / {_logical(reader)!r}")
        if w_kind != r_kind and (w_kind, r_kind) != ("int", "long"):
            raise _Unsupported(f"{w_kind} read as {r_kind}")
        if w_kind == "null":
            self.src.add(indent, f"{target} = None")
        elif w_kind == "boolean":
            self.src.add(indent, f"{target} = d[p] != 0")  # any non-zero byte, as fastavro
            self.src.add(indent, "p += 1")
        elif w_kind in ("int", "long"):
            if logical is None:
                _long(self.src, indent, target)
            else:
                _long(self.src, indent, "n")
                self.src.add(indent, f"{target} = EPOCH + timedelta(0, 0, n)")
        elif w_kind in ("string", "bytes"):
            _sized(self.src, indent, target, text=w_kind == "string")
        else:
            raise _Unsupported(w_kind)

    def union(self, writer: Any, reader: Any, indent: int, target: str) -> None:
        if len(writer) != 2 or len(reader) != 2 or writer[0] != "null" or reader[0] != "null":
            raise _Unsupported("only unions of null and one type are compiled")
        # The branch index is one byte in everything a writer produces (0 or 2); anything else
        # is left to fastavro.
        self.src.add(indent, "b = d[p]")
        self.src.add(indent, "p += 1")
        self.src.add(indent, "if b == 0:")
        self.src.add(indent + 1, f"{target} = None")
        self.src.add(indent, "elif b == 2:")
        self.read(writer[1], reader[1], indent + 1, target)
        self.src.add(indent, "else:")
        self.src.add(indent + 1, "raise MalformedError('union branch')")

    def array(self, writer: Any, reader: Any, indent: int, target: str) -> None:
        items, count, item = self.src.name("items"), self.src.name("count"), self.src.name("item")
        self.src.add(indent, f"{items} = []")
        self.src.add(indent, "while True:")
        _long(self.src, indent + 1, count)
        self.src.add(indent + 1, f"if {count} == 0:")
        self.src.add(indent + 2, "break")
        self.src.add(indent + 1, f"if {count} < 0:")  # a block that also gives its byte size
        self.src.add(indent + 2, f"{count} = -{count}")
        _long(self.src, indent + 2, "n")
        self.src.add(indent + 1, f"for _ in range({count}):")
        self.read(writer["items"], reader["items"], indent + 2, item)
        self.src.add(indent + 2, f"{items}.append({item})")
        self.src.add(indent, f"{target} = {items}")

    def record(self, writer: Mapping[str, Any], reader: Mapping[str, Any], indent: int,
               target: str) -> None:  # fmt: skip
        items = [f"{name!r}: {value}" for name, value in self.fields(writer, reader, indent)]
        self.src.add(indent, f"{target} = {{{', '.join(items)}}}")

    def fields(self, writer: Mapping[str, Any], reader: Mapping[str, Any],
               indent: int) -> list[tuple[str, str]]:  # fmt: skip
        """Code that reads every field of a record; returns (name, expression) of the reader's
        fields, in fastavro's key order: the fields read, as written, then the defaults."""
        if writer["name"].rsplit(".", 1)[-1] != reader["name"].rsplit(".", 1)[-1]:
            raise _Unsupported("record names differ")
        if writer["name"] in self.open_records:
            raise _Unsupported(f"recursive record {writer['name']}")
        self.open_records.add(writer["name"])
        self.register(writer, self.writer_named)
        self.register(reader, self.reader_named)
        reader_fields = {f["name"]: f for f in reader["fields"]}
        if any("aliases" in f for f in reader["fields"]):
            raise _Unsupported("field aliases")
        values: dict[str, str] = {}
        for field in writer["fields"]:
            local = self.src.name("v")
            match = reader_fields.get(field["name"])
            # A field the reader dropped is still read (and checked), as fastavro does.
            self.read(field["type"], field["type"] if match is None else match["type"],
                      indent, local)  # fmt: skip
            if match is not None:
                values[field["name"]] = local
        items = list(values.items())
        items.extend(
            (name, repr(_default(field)))
            for name, field in reader_fields.items()
            if name not in values
        )
        self.open_records.discard(writer["name"])
        return items


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    kind = schema["type"]
    if not isinstance(kind, str):
        raise _Unsupported(f"nested type {kind!r}")
    return kind


def _logical(schema: Any) -> str | None:
    return schema.get("logicalType") if isinstance(schema, Mapping) else None


def _default(field: Mapping[str, Any]) -> Any:
    """The default of a reader field the writer lacks, if it is one we can inline as a literal."""
    default = field.get("default", _MISSING)
    kind = field["type"]
    if isinstance(kind, list) and default is None and kind[:1] == ["null"]:
        return None
    simple = {"boolean": bool, "int": int, "long": int, "string": str}
    if isinstance(kind, str) and kind in simple and type(default) is simple[kind]:
        return default
    raise _Unsupported(f"default of field {field['name']!r}")


def compile_reader(writer: Mapping[str, Any], reader: Mapping[str, Any]) -> Reader | None:
    """``read(data, start)``: the record whose Avro body starts at ``data[start]``, or None if
    this schema pair needs fastavro. Bytes after the record are ignored, as fastavro does."""
    compiler = _Compiler()
    try:
        if _kind(writer) != "record":
            raise _Unsupported("top level is not a record")
        compiler.record(writer, reader, 1, "record")
    except _Unsupported:
        return None
    source = ["def read(d, p):", "    size = len(d)", *compiler.src.lines, "    return record"]
    read: Reader = _define(source, "read", writer["name"])
    return read


def compile_column_reader(
    writer: Mapping[str, Any], reader: Mapping[str, Any], fields: Sequence[str]
) -> ColumnBinder | None:
    """``bind(columns)``: a ``read(data, start)`` that appends the record's ``fields`` (as the
    reader schema names them) to ``columns``, one list per field, instead of returning a dict.
    None if this schema pair needs fastavro.

    Every field is read before anything is appended, so an input that fails leaves the columns
    as they were (the caller then decodes it the slow way, see ``Codec.columns``).
    """
    compiler = _Compiler()
    try:
        if _kind(writer) != "record":
            raise _Unsupported("top level is not a record")
        values = dict(compiler.fields(writer, reader, 2))
    except _Unsupported:
        return None
    unknown = [name for name in fields if name not in values]
    if unknown:
        raise ValueError(f"{reader['name']} has no fields {unknown}")
    source = [
        "def bind(columns):",
        *(f"    a{i} = columns[{i}].append" for i in range(len(fields))),
        "    def read(d, p):",
        "        size = len(d)",
        *compiler.src.lines,
        *(f"        a{i}({values[name]})" for i, name in enumerate(fields)),
        "    return read",
    ]
    bind: ColumnBinder = _define(source, "bind", writer["name"])
    return bind


def _define(lines: list[str], name: str, schema_name: str) -> Any:
    namespace: dict[str, Any] = {
        "varint_tail": varint_tail,
        "MalformedError": MalformedError,
        "EPOCH": _EPOCH,
        "timedelta": dt.timedelta,
    }
    exec(compile("\n".join(lines), f"<avro reader {schema_name}>", "exec"), namespace)  # noqa: S102 (source generated from our own schemas, no outside text but quoted names)
    return namespace[name]
