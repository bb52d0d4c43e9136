"""ClickHouse's HTTP interface, the pure parts: requests, settings, credentials, error shapes."""

from __future__ import annotations

import base64

import pytest

from consumers.clickhouse.sqlhttp import (
    DEFAULT_FORMAT,
    ENGINE_VERSION,
    RequestError,
    check_settings,
    choose_encoding,
    content_type,
    credentials,
    engine_exception,
    exception_text,
    http_status,
    parse_request,
)
from consumers.clickhouse.sqlpolicy import QueryRefusedError

LIMITS = {
    "max_execution_time": 60,
    "max_memory_usage": 2 * 1024**3,
    "max_result_rows": 1000,
    "max_result_bytes": 10_000,
}


def test_query_parameter_and_body_are_joined_parameter_first() -> None:
    request = parse_request({"query": "SELECT"}, "1")
    assert request.sql == "SELECT\n1"
    assert parse_request({}, "SELECT 2").sql == "SELECT 2"
    assert parse_request({"query": "SELECT 3"}, "").sql == "SELECT 3"


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_an_empty_query_is_a_syntax_error(text: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request({"query": text}, "")
    assert (caught.value.code, caught.value.name) == (62, "SYNTAX_ERROR")


def test_params_settings_and_transport_parameters_are_told_apart() -> None:
    request = parse_request(
        {
            "query": "SELECT {x:UInt8}",
            "param_x": "1",
            "param_": "empty name",
            "max_result_rows": "10",
            "output_format_json_quote_64bit_integers": "0",
            "database": "logorhythms",
            "default_format": "JSONEachRow",
            "query_id": "q-1.a:b",
            "user": "u",
            "password": "p",
            "session_id": "ignored",
            "readonly": "1",
            "add_http_cors_header": "1",
            "wait_end_of_query": "1",
        },
        "",
    )
    assert request.params == {"x": "1", "": "empty name"}
    assert request.settings == {
        "max_result_rows": "10",
        "output_format_json_quote_64bit_integers": "0",
    }
    assert (request.database, request.default_format, request.query_id) == (
        "logorhythms",
        "JSONEachRow",
        "q-1.a:b",
    )
    assert not request.native_compression
    assert not request.http_compression


def test_defaults_are_the_servers() -> None:
    request = parse_request({}, "SELECT 1")
    assert request.default_format == DEFAULT_FORMAT == "TabSeparated"
    assert (request.database, request.query_id) == (None, None)


@pytest.mark.parametrize(
    ("query", "native", "http"),
    [
        ({"compress": "1"}, True, False),
        ({"compress": "0"}, False, False),
        ({"enable_http_compression": "1"}, False, True),
        ({"compress": "1", "enable_http_compression": "1"}, True, True),
    ],
)
def test_compression_flags(query: dict[str, str], native: bool, http: bool) -> None:
    request = parse_request(query, "SELECT 1")
    assert (request.native_compression, request.http_compression) == (native, http)


def test_headers_name_the_format_and_database_over_the_parameters() -> None:
    request = parse_request(
        {"default_format": "CSV", "database": "a"},
        "SELECT 1",
        {"X-ClickHouse-Format": "RowBinaryWithNamesAndTypes", "X-ClickHouse-Database": "b"},
    )
    assert (request.default_format, request.database) == ("RowBinaryWithNamesAndTypes", "b")


@pytest.mark.parametrize(
    ("query", "headers", "code"),
    [
        ({"database": "x`; DROP"}, {}, 81),
        ({}, {"X-ClickHouse-Database": "a.b"}, 81),
        ({"default_format": "JSON Each"}, {}, 73),
        ({}, {"X-ClickHouse-Format": "CSV\r\nX: y"}, 73),
        ({"query_id": "a b"}, {}, 36),
        ({"query_id": "x" * 129}, {}, 36),
    ],
)
def test_names_that_are_not_names_are_refused(
    query: dict[str, str], headers: dict[str, str], code: int
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(query, "SELECT 1", headers)
    assert caught.value.code == code


# Settings as the engine lists them (name -> type), for the ones these tests send.
TYPES = {
    "output_format_json_quote_64bit_integers": "Bool",
    "format_csv_delimiter": "Char",
    "format_csv_null_representation": "String",
    "format_template_resultset": "String",
    "format_schema": "String",
    "output_format_schema": "String",
    "format_avro_schema_registry_url": "URI",
    "session_timezone": "Timezone",
    "allow_introspection_functions": "Bool",
    "allow_ddl": "Bool",
    "result_overflow_mode": "OverflowMode",
    "max_threads": "MaxThreads",
}


def test_allowed_settings_pass_and_limits_may_be_lowered() -> None:
    accepted = check_settings(
        {
            "output_format_json_quote_64bit_integers": "0",
            "format_csv_delimiter": ";",
            "session_timezone": "UTC",
            "max_result_rows": "10",
            "max_execution_time": "2.5",
            "format_csv_null_representation": "nil",
        },
        LIMITS,
        TYPES,
    )
    assert accepted == {
        "output_format_json_quote_64bit_integers": "0",
        "format_csv_delimiter": ";",
        "session_timezone": "UTC",
        "max_result_rows": "10",
        "max_execution_time": "2",
        "format_csv_null_representation": "nil",
    }


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("max_result_rows", "1001", 164),  # above the ceiling
        ("max_result_rows", "0", 164),  # 0 is "unlimited" to ClickHouse
        ("max_execution_time", "-1", 164),
        ("max_memory_usage", "lots", 72),
        ("readonly_x", "1", 115),  # no such setting
        ("format_template_resultset", "/etc/passwd", 164),  # reads a file
        ("format_schema", "/tmp/x.proto:M", 164),
        ("output_format_schema", "/tmp/written.proto", 164),  # writes a file
        ("format_avro_schema_registry_url", "http://127.0.0.1:9/", 164),  # calls out
        ("allow_introspection_functions", "1", 164),
        ("allow_ddl", "1", 164),
        ("max_threads; DROP", "1", 115),
        ("result_overflow_mode", "break", 164),
    ],
)
def test_other_settings_are_refused_as_a_readonly_session_refuses_them(
    name: str, value: str, code: int
) -> None:
    with pytest.raises((QueryRefusedError, RequestError)) as caught:
        check_settings({name: value}, LIMITS, TYPES)
    assert caught.value.code == code  # type: ignore[union-attr]


def _basic(text: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}


@pytest.mark.parametrize(
    ("query", "headers", "user", "password"),
    [
        ({}, _basic("ann:pw:with:colons"), "ann", "pw:with:colons"),
        ({}, _basic("ann"), "ann", ""),
        ({}, {"X-ClickHouse-User": "bob", "X-ClickHouse-Key": "k"}, "bob", "k"),
        ({}, {"X-ClickHouse-Key": "k"}, None, "k"),
        ({"user": "cid", "password": "p"}, {}, "cid", "p"),
        ({}, {}, None, None),
        # Basic wins over headers, headers over parameters (the server's order).
        (
            {"user": "cid", "password": "p"},
            {**_basic("ann:a"), "X-ClickHouse-User": "bob", "X-ClickHouse-Key": "k"},
            "ann",
            "a",
        ),
        ({"user": "cid", "password": "p"}, {"X-ClickHouse-User": "bob"}, "bob", None),
    ],
)
def test_credentials_in_the_servers_order(
    query: dict[str, str], headers: dict[str, str], user: str | None, password: str | None
) -> None:
    given = credentials(query, headers)
    assert (given.user, given.password) == (user, password)


@pytest.mark.parametrize("value", ["Basic !!!", "Basic " + base64.b64encode(b"\xff\xfe").decode()])
def test_a_malformed_basic_header_is_an_authentication_failure(value: str) -> None:
    with pytest.raises(RequestError) as caught:
        credentials({}, {"Authorization": value})
    assert (caught.value.code, caught.value.name) == (516, "AUTHENTICATION_FAILED")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (194, 401),
        (516, 403),
        (192, 403),
        (62, 400),
        (60, 404),
        (46, 404),
        (73, 404),
        (159, 408),
        (497, 500),  # ACCESS_DENIED has no mapping on the server either
        (164, 500),
        (241, 500),
        (229, 413),
    ],
)
def test_http_status_is_the_servers_for_each_code(code: int, status: int) -> None:
    assert http_status(code) == status


def test_exception_text_has_the_form_clients_parse() -> None:
    text = exception_text(164, "READONLY", "Cannot modify 'x' setting in readonly mode.")
    assert text == (
        f"Code: 164. DB::Exception: Cannot modify 'x' setting in readonly mode. (READONLY) "
        f"(version {ENGINE_VERSION})\n"
    )


@pytest.mark.parametrize(
    ("raw", "code", "name"),
    [
        (
            "Code: 60. DB::Exception: Unknown table expression identifier 'nope'. (UNKNOWN_TABLE)",
            60,
            "UNKNOWN_TABLE",
        ),
        (
            "chdb error: Code: 159. DB::Exception: Timeout exceeded. (TIMEOUT_EXCEEDED) "
            "(version 26.9.2.1)",
            159,
            "TIMEOUT_EXCEEDED",
        ),
        ("something went wrong without a code", 1002, "UNKNOWN_EXCEPTION"),
        (  # the embedded engine's own re-wrapping (an unknown output format)
            "Code: 73. DB::Exception: Code: 73. DB::Exception: Code: 73. DB::Exception: Unknown "
            "format Nope. Maybe you meant: ['One','Npy']. (UNKNOWN_FORMAT) (version 26.9.2.1). "
            "(UNKNOWN_FORMAT) (version 26.9.2.1). (UNKNOWN_FORMAT)",
            73,
            "UNKNOWN_FORMAT",
        ),
    ],
)
def test_engine_errors_are_reshaped_with_code_name_and_version(
    raw: str, code: int, name: str
) -> None:
    got_code, got_name, text = engine_exception(raw)
    assert (got_code, got_name) == (code, name)
    assert text.startswith(f"Code: {code}. DB::Exception: ")
    assert text.endswith(f"({name}) (version {ENGINE_VERSION})\n")
    assert text.count("(version ") == 1
    assert text.count("DB::Exception") == 1, text
    assert text.count(f"({name})") == 1, text


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("JSONEachRow", "application/x-ndjson; charset=UTF-8"),
        ("CSVWithNames", "text/csv; charset=UTF-8; header=present"),
        ("PrettyCompactMonoBlock", "text/plain; charset=UTF-8"),
        ("Native", "application/octet-stream"),
        ("SomethingElse", "text/plain; charset=UTF-8"),
    ],
)
def test_content_type_by_format(fmt: str, expected: str) -> None:
    assert content_type(fmt) == expected


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip, deflate, br", "gzip"),
        ("br, zstd", "zstd"),
        ("br", None),
        ("gzip;q=0, lz4", "lz4"),
        ("gzip;q=0.5", "gzip"),
        ("", None),
    ],
)
def test_the_first_acceptable_encoding_we_can_produce(accept: str, chosen: str | None) -> None:
    assert choose_encoding(accept, frozenset({"gzip", "deflate", "zstd", "lz4"})) == chosen
