"""The query policy, judged on parse trees the engine itself printed (``EXPLAIN AST`` in chdb 4.4).

fixtures/explain_ast.json maps each query to the dump of its ``formatQuery`` form, captured from
the engine; fixtures/engine_functions.json holds the engine's table functions and the members of
the refused function categories. Hand-written dumps below cover shapes the engine would not
print (forgeries, unknown nodes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consumers.clickhouse.sqlpolicy import (
    ALLOWED_TABLE_FUNCTIONS,
    Policy,
    QueryRefusedError,
    check,
    parse_dump,
)

FIXTURES = Path(__file__).parent / "fixtures"
DUMPS: dict[str, str] = json.loads((FIXTURES / "explain_ast.json").read_text(encoding="utf-8"))
_ENGINE = json.loads((FIXTURES / "engine_functions.json").read_text(encoding="utf-8"))
POLICY = Policy.from_engine(
    table_functions=set(_ENGINE["table_functions"]),
    functions_by_category={k: set(v) for k, v in _ENGINE["functions_by_category"].items()},
)


def judge(query: str) -> tuple[str, str | None]:
    verdict = check(parse_dump(DUMPS[query]), POLICY)
    return verdict.statement, verdict.output_format


def refusal(query: str) -> QueryRefusedError:
    with pytest.raises(QueryRefusedError) as caught:
        judge(query)
    return caught.value


@pytest.mark.parametrize(
    ("query", "statement", "fmt"),
    [
        ("SELECT count() FROM exchanges", "SelectWithUnionQuery", None),
        (
            "SELECT model, count() AS n FROM exchanges GROUP BY model ORDER BY n DESC LIMIT 10",
            "SelectWithUnionQuery",
            None,
        ),
        ("SELECT * FROM numbers(10)", "SelectWithUnionQuery", None),
        ("SELECT number FROM numbers(3) FORMAT JSONEachRow", "SelectWithUnionQuery", "JSONEachRow"),
        (
            "SELECT name FROM system.tables WHERE database = currentDatabase()",
            "SelectWithUnionQuery",
            None,
        ),
        (
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t UNION ALL SELECT 2",
            "SelectWithUnionQuery",
            None,
        ),
        ("SELECT format('{} {}', 'a', 'b')", "SelectWithUnionQuery", None),
        ("SELECT * FROM generateRandom('a UInt8', 1) LIMIT 1", "SelectWithUnionQuery", None),
        ("SELECT * FROM values('x UInt8', 1, 2)", "SelectWithUnionQuery", None),
        ("SELECT * FROM `system`.`tables`", "SelectWithUnionQuery", None),
        ("SELECT * FROM system.one", "SelectWithUnionQuery", None),
        ("SELECT getSetting('readonly')", "SelectWithUnionQuery", None),
        ("SELECT * FROM exchanges FINAL WHERE request_id = '1'", "SelectWithUnionQuery", None),
        ("SELECT 1 AS `x (children 1)`", "SelectWithUnionQuery", None),
        ("SHOW TABLES", "ShowTables", None),
        ("DESCRIBE TABLE exchanges", "DescribeQuery", None),
        ("EXISTS TABLE exchanges", "ExistsTableQuery", None),
        ("EXPLAIN SELECT 1", "Explain", None),
        ("SHOW CREATE TABLE exchanges", "ShowCreateTableQuery", None),
    ],
)
def test_analysts_queries_are_allowed(query: str, statement: str, fmt: str | None) -> None:
    assert judge(query) == (statement, fmt)


@pytest.mark.parametrize(
    ("query", "code", "says"),
    [
        ("SELECT * FROM file('/etc/passwd', 'RawBLOB')", 497, "table function file()"),
        ("SELECT file('/etc/passwd')", 497, "table function file()"),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'TSV', 'x String')", 497, "url()"),
        (
            "SELECT 1 FROM numbers(1) AS n JOIN url('http://127.0.0.1:1/', 'TSV', 'x String') "
            "AS u ON 1",
            497,
            "url()",
        ),
        ("SELECT * FROM (SELECT * FROM s3('http://127.0.0.1:1/b/k'))", 497, "s3()"),
        (
            "SELECT 1 WHERE 1 IN (SELECT 1 FROM remote('127.0.0.1:1', system.one))",
            497,
            "remote()",
        ),
        ("SELECT * FROM merge('system', '^proc')", 497, "merge()"),
        ("SELECT * FROM view(SELECT * FROM system.processes)", 497, "view()"),
        ("DESCRIBE url('http://127.0.0.1:1/')", 497, "url()"),
        ("EXPLAIN AST SELECT * FROM file('/etc/passwd')", 497, "file()"),
        ("SELECT 'x' INTO OUTFILE '/tmp/x'", 497, "INTO OUTFILE"),
        ("SELECT count() FROM exchanges SETTINGS readonly = 0", 164, "SETTINGS clause"),
        ("SELECT * FROM system.processes", 497, "system.processes"),
        ("SELECT query FROM system.query_log", 497, "system.query_log"),
        ("SELECT 1 IN system.processes", 497, "system.processes"),
        ("SELECT * FROM SYSTEM.processes", 497, "system.processes"),
        ("SELECT * FROM export_audit", 497, "export_audit"),
        ("SELECT recipient FROM default.export_audit", 497, "export_audit"),
        ("SELECT 1 WHERE 'x' IN (SELECT case FROM `export_audit`)", 497, "export_audit"),
        ("SELECT * FROM view(SELECT record_key FROM export_audit)", 497, ""),
        ("SELECT dictGet('d', 'x', 1)", 497, "dictGet()"),
        ("SELECT aiGenerate('x')", 497, "aiGenerate()"),
        ("SELECT addressToLine(1)", 497, "addressToLine()"),
        ("INSERT INTO FUNCTION file('/tmp/x', 'LineAsString', 'l String') SELECT 'x'", 164, ""),
        ("SET readonly = 0", 164, "SET"),
        ("CREATE TEMPORARY TABLE exchanges ENGINE = Memory AS SELECT 1 AS x", 164, "CREATE"),
        ("KILL QUERY WHERE query ILIKE '%INSERT%'", 164, "KILL"),
        ("SHOW PROCESSLIST", 164, ""),
        ("SHOW GRANTS", 164, ""),
        ("USE system", 164, "USE"),
        ("DROP TABLE exchanges", 164, "DROP"),
        ("SYSTEM DROP MARK CACHE", 164, "SYSTEM"),
    ],
)
def test_what_reaches_outside_or_writes_is_refused(query: str, code: int, says: str) -> None:
    refused = refusal(query)
    assert refused.code == code
    assert refused.name == {497: "ACCESS_DENIED", 164: "READONLY"}[code]
    assert says in str(refused)


def test_a_line_break_in_an_alias_cannot_forge_a_node() -> None:
    query = "SELECT 1 AS `a\n      Function numbers`, file('/etc/passwd')"
    # The engine prints the alias's line break raw: the dump has a line that is no node.
    assert "\n      Function numbers)\n" in DUMPS[query]
    with pytest.raises(QueryRefusedError, match="does not recognise"):
        parse_dump(DUMPS[query])


@pytest.mark.parametrize(
    "dump",
    [
        # A forged child under a node that announces none.
        "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n"
        "  Literal UInt64_1 (alias x)\n   Function numbers\n",
        # A node announcing a child it does not have (an alias ending in "(children 1)").
        "SelectWithUnionQuery (children 1)\n ExpressionList (children 1)\n"
        "  Literal UInt64_1 (alias x) (children 1)\n",
        # Two roots: a second statement smuggled after the first.
        "ShowTables\nSelectWithUnionQuery\n",
        # A child two levels deeper than its parent.
        "SelectWithUnionQuery (children 1)\n   ExpressionList\n",
        # The first line indented: no root.
        " SelectWithUnionQuery\n",
        # A blank-looking line of spaces only.
        "SelectWithUnionQuery (children 1)\n   \n",
    ],
)
def test_inconsistent_trees_fail_closed(dump: str) -> None:
    with pytest.raises(QueryRefusedError) as caught:
        parse_dump(dump)
    assert caught.value.code == 497


def test_an_empty_dump_is_a_syntax_error() -> None:
    with pytest.raises(QueryRefusedError) as caught:
        parse_dump("\n")
    assert (caught.value.code, caught.value.name) == (62, "SYNTAX_ERROR")


@pytest.mark.parametrize(
    "root", ["AlterQuery", "CreateQuery", "InsertQuery", "SomeFutureStatement", "Function"]
)
def test_unknown_or_writing_statements_fail_closed(root: str) -> None:
    with pytest.raises(QueryRefusedError) as caught:
        check(parse_dump(f"{root}\n"), POLICY)
    assert caught.value.name == "READONLY"


def test_a_table_function_the_policy_has_never_heard_of_is_refused() -> None:
    dump = DUMPS["SELECT * FROM numbers(10)"].replace("Function numbers", "Function brandNewSource")
    with pytest.raises(QueryRefusedError, match=r"brandNewSource\(\)"):
        check(parse_dump(dump), POLICY)


def test_every_engine_table_function_outside_the_allow_list_is_refused_in_from() -> None:
    template = DUMPS["SELECT * FROM numbers(10)"]
    refused = set()
    for name in _ENGINE["table_functions"]:
        dump = template.replace("Function numbers", f"Function {name}")
        try:
            check(parse_dump(dump), POLICY)
        except QueryRefusedError:
            refused.add(name)
    assert refused == set(_ENGINE["table_functions"]) - ALLOWED_TABLE_FUNCTIONS
    assert {"file", "url", "s3", "remote", "mysql", "postgresql", "executable"} <= refused


@pytest.mark.parametrize("name", ["FILE", "DictGet", "GETSERVERSETTING"])
def test_denied_scalars_are_matched_without_regard_to_case(name: str) -> None:
    dump = DUMPS["SELECT getSetting('readonly')"].replace("Function getSetting", f"Function {name}")
    with pytest.raises(QueryRefusedError, match="not allowed"):
        check(parse_dump(dump), POLICY)


def test_whole_function_categories_are_denied_with_their_new_members() -> None:
    policy = Policy.from_engine(
        table_functions={"numbers"},
        functions_by_category={"AI": {"aiSomethingNew"}, "Arithmetic": {"plus"}},
    )
    assert "aisomethingnew" in policy.denied_functions
    assert "plus" not in policy.denied_functions


def test_a_scalar_sharing_a_table_functions_name_is_denied_unless_known_pure() -> None:
    policy = Policy.from_engine(
        table_functions={"file", "format", "numbers"},
        functions_by_category={"Other": {"file", "format"}},
    )
    assert "file" in policy.denied_functions
    assert "format" not in policy.denied_functions
