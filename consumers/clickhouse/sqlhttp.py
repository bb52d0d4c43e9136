"""ClickHouse's HTTP interface, the parts that are pure: reading a request, shaping errors.

Follows the server's own behaviour (src/Server/HTTPHandler.cpp and
src/Server/HTTP/exceptionCodeToHTTPStatus.cpp in ClickHouse 26.9) so that clickhouse-connect,
@clickhouse/client, JDBC and curl work unchanged: the query comes from the ``query`` parameter
and the body (concatenated, parameter first, with a newline between), ``param_x`` binds
``{x:Type}``, every other unreserved parameter is a setting, and errors are
``Code: N. DB::Exception: message. (NAME) (version V)`` with ClickHouse's HTTP status for the
code and an ``X-ClickHouse-Exception-Code`` header.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from consumers.clickhouse.sqlpolicy import READONLY, QueryRefusedError

ENGINE_VERSION = "26.9.2.1"  # chdb 4.4's engine; the version in error messages
DEFAULT_FORMAT = "TabSeparated"  # the HTTP interface's default, as on a server

# Parameters the HTTP layer consumes itself; ClickHouse treats them the same way.
_TRANSPORT = frozenset(
    {
        "query",
        "database",
        "default_format",
        "user",
        "password",
        "quota_key",
        "query_id",
        "session_id",
        "session_timeout",
        "session_check",
        "compress",
        "decompress",
        "buffer_size",
        "wait_end_of_query",
        "role",
        "stacktrace",
        "client_protocol_version",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "enable_http_compression",
        "http_zlib_compression_level",
        "http_wait_end_of_query",
        "http_response_buffer_size",
        "http_native_compression_disable_checksumming_on_decompress",
        "cancel_http_readonly_queries_on_client_close",
        "add_http_cors_header",
        "readonly",  # clients ask for 1 or 2; every analyst session is readonly=1 anyway
    }
)
# Settings an analyst may pass: how results are written, and lower limits than the configured
# ones. Anything else is refused as ClickHouse refuses settings in a readonly session.
ALLOWED_SETTING_PREFIXES = ("output_format_", "format_")
ALLOWED_SETTINGS = frozenset(
    {
        "date_time_output_format",
        "date_time_input_format",
        "session_timezone",
        "log_comment",
        "extremes",
        "max_block_size",
        "max_threads",
        "join_use_nulls",
        "aggregate_functions_null_for_empty",
    }
)
# Settings of the allowed prefixes whose type is String (or URI) name files, schemas or servers
# (format_schema, format_template_row, output_format_schema writes a file, an Avro schema
# registry's URL): only these, which hold delimiters and labels, are accepted.
SAFE_STRING_SETTINGS = frozenset(
    {
        "format_csv_null_representation",
        "format_tsv_null_representation",
        "format_custom_field_delimiter",
        "format_custom_result_after_delimiter",
        "format_custom_result_before_delimiter",
        "format_custom_row_after_delimiter",
        "format_custom_row_before_delimiter",
        "format_custom_row_between_delimiter",
        "format_template_rows_between_delimiter",
        "format_json_object_each_row_column_for_object_name",
        "output_format_avro_codec",
        "output_format_pretty_grid_charset",
        "output_format_sql_insert_table_name",
        "output_format_orc_writer_time_zone_name",
    }
)
_FREE_TEXT_TYPES = frozenset({"String", "URI"})
# Limits an analyst may lower, never raise.
LOWERABLE_LIMITS = frozenset(
    {"max_execution_time", "max_memory_usage", "max_result_rows", "max_result_bytes"}
)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUERY_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")

# ClickHouse's exceptionCodeToHTTPStatus, by code.
_STATUS_BY_CODE: dict[int, int] = {
    194: 401,  # REQUIRED_PASSWORD
    192: 403,  # UNKNOWN_USER
    193: 403,  # WRONG_PASSWORD
    516: 403,  # AUTHENTICATION_FAILED
    512: 403,  # SET_NON_GRANTED_ROLE
    **dict.fromkeys(
        # BAD_ARGUMENTS, CANNOT_COMPILE_REGEXP, CANNOT_PARSE_* , DUPLICATE_COLUMN,
        # ILLEGAL_COLUMN, UNKNOWN_ELEMENT_IN_AST, UNKNOWN_TYPE_OF_AST_NODE, THERE_IS_NO_COLUMN,
        # TOO_DEEP_AST, TOO_BIG_AST, UNEXPECTED_AST_STRUCTURE, SYNTAX_ERROR, INCORRECT_DATA,
        # TYPE_MISMATCH, VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        (
            36,
            427,
            6,
            25,
            26,
            38,
            41,
            72,
            441,
            675,
            676,
            27,
            376,
            15,
            44,
            37,
            123,
            8,
            167,
            168,
            223,
            62,
            117,
            53,
            321,
        ),
        400,
    ),
    **dict.fromkeys(
        # UNKNOWN_TABLE, UNKNOWN_FUNCTION, UNKNOWN_IDENTIFIER, UNKNOWN_TYPE, UNKNOWN_STORAGE,
        # UNKNOWN_DATABASE, UNKNOWN_SETTING, UNKNOWN_DIRECTION_OF_SORTING,
        # UNKNOWN_AGGREGATE_FUNCTION, UNKNOWN_FORMAT, UNKNOWN_DATABASE_ENGINE,
        # UNKNOWN_TYPE_OF_QUERY, UNKNOWN_ROLE
        (60, 46, 47, 50, 56, 81, 115, 152, 63, 73, 336, 78, 511),
        404,
    ),
    229: 413,  # QUERY_IS_TOO_LARGE
    48: 501,  # NOT_IMPLEMENTED
    209: 503,  # SOCKET_TIMEOUT
    76: 503,  # CANNOT_OPEN_FILE
    381: 411,  # HTTP_LENGTH_REQUIRED
    159: 408,  # TIMEOUT_EXCEEDED
    439: 503,  # CANNOT_SCHEDULE_TASK
}

# Content-Type by output format, as the server's formats declare it.
_CONTENT_TYPES: dict[str, str] = {
    "JSON": "application/json; charset=UTF-8",
    "JSONCompact": "application/json; charset=UTF-8",
    "JSONStrings": "application/json; charset=UTF-8",
    "JSONColumns": "application/json; charset=UTF-8",
    "JSONEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONCompactEachRow": "application/x-ndjson; charset=UTF-8",
    "JSONStringsEachRow": "application/x-ndjson; charset=UTF-8",
    "NDJSON": "application/x-ndjson; charset=UTF-8",
    "CSV": "text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": "text/csv; charset=UTF-8; header=present",
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "TSV": "text/tab-separated-values; charset=UTF-8",
    "XML": "application/xml; charset=UTF-8",
    "Parquet": "application/octet-stream",
    "Arrow": "application/octet-stream",
    "ArrowStream": "application/octet-stream",
    "Native": "application/octet-stream",
    "RowBinary": "application/octet-stream",
    "RowBinaryWithNamesAndTypes": "application/octet-stream",
    "ORC": "application/octet-stream",
    "Avro": "application/octet-stream",
}


class RequestError(Exception):
    """A request ClickHouse would refuse, with the code it would use."""

    retriable = False

    def __init__(self, message: str, *, code: int, name: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    user: str | None
    password: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryRequest:
    sql: str
    default_format: str
    database: str | None
    query_id: str | None
    params: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)
    http_compression: bool = False
    native_compression: bool = False


def parse_request(
    query: Mapping[str, str], body: str, headers: Mapping[str, str] | None = None
) -> QueryRequest:
    """Build a query from URL parameters, headers and the body, as ClickHouse's handler does.

    The ``X-ClickHouse-Database`` and ``X-ClickHouse-Format`` headers win over the ``database``
    and ``default_format`` parameters, as on a server (JDBC sends the headers).
    """
    headers = headers or {}
    text = query.get("query", "")
    if body:
        text = f"{text}\n{body}" if text else body
    if not text.strip():
        raise RequestError("Empty query", code=62, name="SYNTAX_ERROR")
    params: dict[str, str] = {}
    settings: dict[str, str] = {}
    for key, value in query.items():
        if key.startswith("param_"):
            params[key[len("param_") :]] = value
        elif key not in _TRANSPORT:
            settings[key] = value
    database = headers.get("X-ClickHouse-Database") or query.get("database") or None
    if database is not None and not _IDENTIFIER.match(database):
        raise RequestError(f"Database {database!r} is not a name", code=81, name="UNKNOWN_DATABASE")
    query_id = query.get("query_id") or None
    if query_id is not None and not _QUERY_ID.match(query_id):
        raise RequestError(
            "query_id may hold letters, digits and _.:- (1-128 of them)",
            code=36,
            name="BAD_ARGUMENTS",
        )
    default_format = (
        headers.get("X-ClickHouse-Format") or query.get("default_format") or DEFAULT_FORMAT
    )
    if not _IDENTIFIER.match(default_format):
        raise RequestError(f"Unknown format {default_format}", code=73, name="UNKNOWN_FORMAT")
    return QueryRequest(
        sql=text,
        default_format=default_format,
        database=database,
        query_id=query_id,
        params=params,
        settings=settings,
        http_compression=query.get("enable_http_compression", "0") not in {"0", ""},
        native_compression=query.get("compress", "0") not in {"0", ""},
    )


def check_settings(
    settings: Mapping[str, str], limits: Mapping[str, int], types: Mapping[str, str]
) -> dict[str, str]:
    """The settings of a request that may be applied; refuses the rest like a readonly session.

    ``limits`` are the configured ceilings (max_execution_time, ...); a request may lower them.
    ``types`` are the engine's settings and their types: a setting it does not know is refused,
    and so is a free-text one outside SAFE_STRING_SETTINGS (such values can be paths).
    """
    accepted: dict[str, str] = {}
    for name, value in settings.items():
        if not _SETTING_NAME.match(name):
            raise RequestError(f"Unknown setting '{name}'", code=115, name="UNKNOWN_SETTING")
        if name in LOWERABLE_LIMITS:
            ceiling = limits[name]
            try:
                number = int(float(value))
            except ValueError:
                raise RequestError(
                    f"Setting {name} needs a number, not {value!r}",
                    code=72,
                    name="CANNOT_PARSE_NUMBER",
                ) from None
            if number <= 0 or number > ceiling:
                raise QueryRefusedError(
                    f"Cannot raise '{name}' above {ceiling} here (0 means unlimited, so it "
                    "cannot be set either)",
                    code=READONLY[0],
                    name=READONLY[1],
                )
            accepted[name] = str(number)
        elif name not in types:
            raise RequestError(f"Unknown setting '{name}'", code=115, name="UNKNOWN_SETTING")
        elif name in ALLOWED_SETTINGS or (
            name.startswith(ALLOWED_SETTING_PREFIXES)
            and (types[name] not in _FREE_TEXT_TYPES or name in SAFE_STRING_SETTINGS)
        ):
            accepted[name] = value
        else:
            raise QueryRefusedError(
                f"Cannot modify '{name}' setting in readonly mode: this endpoint accepts "
                "output_format_* and format_* (no file, schema or URL ones), "
                f"{', '.join(sorted(ALLOWED_SETTINGS))}, and lower "
                f"values of {', '.join(sorted(LOWERABLE_LIMITS))}",
                code=READONLY[0],
                name=READONLY[1],
            )
    return accepted


def credentials(query: Mapping[str, str], headers: Mapping[str, str]) -> Credentials:
    """User and password from, in ClickHouse's order: Basic auth, X-ClickHouse-* headers, params."""
    authorization = headers.get("Authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise RequestError(
                "Invalid Basic authorization header", code=516, name="AUTHENTICATION_FAILED"
            ) from None
        user, _, password = decoded.partition(":")
        return Credentials(user=user, password=password)
    if "X-ClickHouse-User" in headers or "X-ClickHouse-Key" in headers:
        return Credentials(
            user=headers.get("X-ClickHouse-User"), password=headers.get("X-ClickHouse-Key")
        )
    return Credentials(user=query.get("user"), password=query.get("password"))


def http_status(code: int) -> int:
    return _STATUS_BY_CODE.get(code, 500)


_CODE_PREFIX = re.compile(r"^Code: (\d+)\. ")
# The embedded engine re-raises an error through each layer it crossed, and each puts its own
# "Code: N. DB::Exception: " in front and " (version V). (NAME)" behind: one of each is kept.
_REWRAPPED_HEAD = re.compile(r"^(Code: (\d+)\. DB::Exception: )(?:Code: \2\. DB::Exception: )+")
_REWRAPPED_TAIL = re.compile(r" \(([A-Z_0-9]+)\)(?: \(version [^)]*\)\. \(\1\))+$")
_NAME_SUFFIX = re.compile(r"\(([A-Z_0-9]+)\)(?: \(version [^)]*\))?\s*$")


def exception_text(code: int, name: str, message: str) -> str:
    """ClickHouse's text form of an exception, which every client parses for the code."""
    message = message.strip().rstrip(".")
    return f"Code: {code}. DB::Exception: {message}. ({name}) (version {ENGINE_VERSION})\n"


def engine_exception(text: str) -> tuple[int, str, str]:
    """Code, name and ClickHouse-shaped text of an error the engine raised."""
    text = text.strip()
    start = text.find("Code: ")
    if start > 0:
        text = text[start:]
    text = _REWRAPPED_TAIL.sub(r" (\1)", _REWRAPPED_HEAD.sub(r"\1", text))
    code_match = _CODE_PREFIX.match(text)
    code = int(code_match.group(1)) if code_match else 1002
    name_match = _NAME_SUFFIX.search(text)
    name = name_match.group(1) if name_match else "UNKNOWN_EXCEPTION"
    if code_match is None:
        return code, name, exception_text(code, name, text)
    if "(version " not in text[-40:]:
        text = f"{text} (version {ENGINE_VERSION})"
    return code, name, text + "\n"


def content_type(fmt: str) -> str:
    if fmt.startswith(("Pretty", "Vertical", "Markdown")):
        return "text/plain; charset=UTF-8"
    return _CONTENT_TYPES.get(fmt, "text/plain; charset=UTF-8")


def choose_encoding(accept_encoding: str, available: frozenset[str]) -> str | None:
    """The first encoding the client accepts that we can produce (ClickHouse takes the first)."""
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if "q=0" in params.replace(" ", "") and "q=0." not in params.replace(" ", ""):
            continue
        if name in available:
            return name
    return None
