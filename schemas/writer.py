"""A fast Avro binary writer for our event schemas, byte for byte what fastavro writes.

fastavro's ``schemaless_writer`` spends most of its time interpreting the schema on every call
(the largest share of the capture's CPU cost). Here a schema is compiled once into the source of
one straight-line Python function that appends every field's bytes to a list: no call per
field, nested records inlined (figures: docs/decisions/0006-compiled-avro-codec.md).

Only the types our schemas use are supported: null, boolean, int, long (with or without a logical
type, given as an int), string, bytes, records, arrays and unions of null with one other type.
``compile_writer`` returns ``None`` for any other schema (and for a recursive record), and the
codec then keeps using fastavro, so a schema change can never break encoding; tests/unit/schemas
prove the output equals fastavro's on random records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.codegen import Source

_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))
_FALSE, _TRUE, _SECOND_BRANCH = b"\x00", b"\x01", b"\x02"


class _Unsupported(Exception):
    """The schema uses a type this writer does not compile; fastavro handles it."""


def zigzag_varint(value: int) -> bytes:
    """Avro's int/long encoding: zig-zag, then little-endian base-128 groups.

    Unrolled up to six bytes (chunk offsets below ~18 minutes): a loop costs twice as much.
    """
    v = (value << 1) ^ (value >> 63)
    if v < 0x80:  # seq, small sizes, array counts: the common case
        return _ONE_BYTE[v]
    if v < 1 << 14:
        return bytes((v & 0x7F | 0x80, v >> 7))
    if v < 1 << 21:
        return bytes((v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14))
    if v < 1 << 28:
        return bytes((v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14 & 0x7F | 0x80, v >> 21))
    if v < 1 << 42:
        head = (v & 0x7F | 0x80, v >> 7 & 0x7F | 0x80, v >> 14 & 0x7F | 0x80, v >> 21 & 0x7F | 0x80)
        if v < 1 << 35:
            return bytes((*head, v >> 28))
        return bytes((*head, v >> 28 & 0x7F | 0x80, v >> 35))
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


# zig-zag bytes of 0..63, a tuple index away: sizes, counts and small numbers (one byte each).
_ZIGZAG_SMALL = tuple(zigzag_varint(i) for i in range(64))


_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "string", "bytes"))
_LOGICAL_LONGS = (None, "timestamp-micros", "timestamp-millis")  # carried as plain integers
_REQUIRED = object()


class _Compiler:
    """Emits the lines that append one value's Avro bytes with ``a`` (the parts list's append).

    Sizes and small integers below 64 (their zig-zag form is one byte) come from the table ``Z``;
    anything else goes through ``zz``. Nested records are inlined; a recursive one is refused.
    """

    def __init__(self) -> None:
        self.src = Source()
        self.constants: dict[str, Any] = {}
        self.named: dict[str, Mapping[str, Any]] = {}
        self.open_records: set[str] = set()

    def value(self, schema: Any, indent: int, var: str) -> None:
        if isinstance(schema, list):
            self.union(schema, indent, var)
        elif isinstance(schema, str):
            if schema in _PRIMITIVES:
                self.primitive(schema, indent, var)
            elif schema in self.named:
                self.record(self.named[schema], indent, var)
            else:
                raise _Unsupported(schema)
        elif schema.get("type") == "record":
            self.record(schema, indent, var)
        elif schema.get("type") == "array":
            self.array(schema, indent, var)
        elif schema.get("type") in ("int", "long") and schema.get("logicalType") in _LOGICAL_LONGS:
            self.primitive("long", indent, var)
        elif schema.get("type") in _PRIMITIVES and "logicalType" not in schema:
            self.primitive(schema["type"], indent, var)
        else:
            raise _Unsupported(repr(schema)[:80])

    def primitive(self, kind: str, indent: int, var: str) -> None:
        add = self.src.add
        if kind == "boolean":
            add(indent, f"a(TRUE if {var} else FALSE)")
        elif kind in ("int", "long"):  # Avro ints and longs share one encoding
            add(indent, f"a(Z[{var}] if 0 <= {var} < 64 else zz({var}))")
        elif kind == "string":
            add(indent, f"{var} = {var}.encode()")
            add(indent, f"n = len({var})")
            add(indent, "a(Z[n] if n < 64 else zz(n))")
            add(indent, f"a({var})")
        elif kind == "bytes":
            add(indent, f"n = len({var})")
            add(indent, "a(Z[n] if n < 64 else zz(n))")
            add(indent, f"a({var})")
        # null: nothing to write

    def union(self, branches: list[Any], indent: int, var: str) -> None:
        if len(branches) != 2 or branches[0] != "null":
            raise _Unsupported(f"union {branches!r}")
        self.src.add(indent, f"if {var} is None:")
        self.src.add(indent + 1, "a(FALSE)")  # branch 0
        self.src.add(indent, "else:")
        self.src.add(indent + 1, "a(SECOND_BRANCH)")
        self.value(branches[1], indent + 1, var)

    def array(self, schema: Mapping[str, Any], indent: int, var: str) -> None:
        item = self.src.name("x")
        self.src.add(indent, f"if {var}:")  # one block with every item, then the empty block
        self.src.add(indent + 1, f"a(zz(len({var})))")
        self.src.add(indent + 1, f"for {item} in {var}:")
        self.value(schema["items"], indent + 2, item)
        self.src.add(indent, "a(FALSE)")

    def record(self, schema: Mapping[str, Any], indent: int, var: str) -> None:
        full_name = schema["name"]
        if "." not in full_name and schema.get("namespace"):
            full_name = f"{schema['namespace']}.{full_name}"
        if full_name in self.open_records:
            raise _Unsupported(f"recursive record {full_name}")
        self.named[full_name] = self.named[schema["name"]] = schema
        self.open_records.add(full_name)
        for field in schema["fields"]:
            local = self.src.name("v")
            default = field.get("default", _REQUIRED)
            if default is _REQUIRED:
                # A KeyError here becomes the "missing and has no default" error in encode().
                self.src.add(indent, f"{local} = {var}[{field['name']!r}]")
            else:
                constant = self.src.name("D")
                self.constants[constant] = default
                self.src.add(indent, f"{local} = {var}.get({field['name']!r}, {constant})")
            self.value(field["type"], indent, local)
        self.open_records.discard(full_name)


def compile_writer(
    schema: Mapping[str, Any],
) -> Callable[[Mapping[str, Any], bytes], bytes] | None:
    """A function from a record (and bytes to put in front of it) to its Avro binary body, or
    None if the schema needs fastavro.

    The bytes in front are the single-object header: joined in the one ``join`` that makes the
    body, so a 30 MB request body is copied once into its event, not twice.
    """
    compiler = _Compiler()
    try:
        if not isinstance(schema, Mapping) or schema.get("type") != "record":
            raise _Unsupported("top level is not a record")
        compiler.record(schema, 2, "r")
    except _Unsupported:
        return None
    source = "\n".join(
        [
            "def encode(r, head=b''):",
            "    p = [head]",
            "    a = p.append",
            "    try:",
            *compiler.src.lines,
            "    except KeyError as exc:",
            "        raise ValueError(",
            "            f'field {exc.args[0]!r} is missing and has no default'",
            "        ) from None",
            "    return b''.join(p)",
        ]
    )
    namespace: dict[str, Any] = {
        **compiler.constants,
        "Z": _ZIGZAG_SMALL,
        "zz": zigzag_varint,
        "TRUE": _TRUE,
        "FALSE": _FALSE,
        "SECOND_BRANCH": _SECOND_BRANCH,
    }
    exec(compile(source, f"<avro writer {schema['name']}>", "exec"), namespace)  # noqa: S102 (source generated from our own schemas, no outside text but quoted names)
    encode: Callable[[Mapping[str, Any], bytes], bytes] = namespace["encode"]
    return encode
