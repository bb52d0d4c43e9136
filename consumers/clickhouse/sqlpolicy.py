"""What an analyst's query may do, judged on ClickHouse's own parse of it (pure, no I/O).

The embedded engine has no usable access control (chdb's only user cannot ``CREATE USER``), and
a ``readonly=1`` session still lets a query read any file with the scalar ``file()``, write one
with ``INTO OUTFILE``, or call out with AI functions. So every query is first parsed by the
engine (``EXPLAIN AST`` of its ``formatQuery`` form, see ``consumers/clickhouse/analyst.py``)
and the dump of that tree is checked here. Everything fails closed: an unknown statement or
node shape, a table function or system table not on the allow-list, a settings clause.

The dump is one node per line, indented one space per level, with ``(children N)`` on nodes that
have children. An alias or identifier may contain a newline and so forge lines; the parser below
insists that every node has exactly the children it announces and that there is one root, so a
forged line makes the tree inconsistent and the query is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

# Codes and names as ClickHouse reports them (src/Common/ErrorCodes.cpp).
READONLY = (164, "READONLY")
ACCESS_DENIED = (497, "ACCESS_DENIED")
SYNTAX_ERROR = (62, "SYNTAX_ERROR")


class QueryRefusedError(Exception):
    """The query is outside what an analyst may run; ``code``/``name`` are ClickHouse's."""

    retriable = False

    def __init__(self, message: str, *, code: int = ACCESS_DENIED[0], name: str = ACCESS_DENIED[1]):
        super().__init__(message)
        self.code = code
        self.name = name


# Statements an analyst may run, by the node name at the root of ClickHouse's AST dump.
# SHOW TABLES/DATABASES/SETTINGS/DICTIONARIES all dump as ShowTables; SHOW PROCESSLIST, GRANTS,
# USERS, ... have their own node names and are therefore refused.
ALLOWED_STATEMENTS = frozenset(
    {
        "SelectWithUnionQuery",
        "ShowTables",
        "ShowColumns",
        "ShowIndexes",
        "ShowCreateTableQuery",
        "ShowFunctions",
        "ShowEngineQuery",
        "DescribeQuery",
        "ExistsTableQuery",
        "Explain",
    }
)

# Table functions that only compute rows from their arguments. Everything else that
# system.table_functions lists (file, url, s3, remote, mysql, python, executable, merge, view,
# input, dictionary, loop, ... and whatever a later engine adds) is refused.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateSeries",
        "generateRandom",
        "primes",
        "values",
        "null",
        "format",
    }
)

# Scalar functions that reach outside the query: files, external models and services,
# dictionaries (whose sources may be anything), the server's own configuration and logs.
DENIED_FUNCTIONS = frozenset(
    {
        "file",
        "joinGet",
        "joinGetOrNull",
        "showCertificate",
        "getServerSetting",
        "getClientHTTPHeader",
        "getMacro",
        "logTrace",
        "catboostEvaluate",
        "evalMLMethod",
    }
)
# Whole categories of system.functions refused, so new members are refused too.
DENIED_FUNCTION_CATEGORIES = frozenset(
    {"AI", "Dictionary", "Embedded Dictionary", "Introspection", "Machine Learning"}
)
# Scalar functions that share a name with a table function and are pure as scalars.
PURE_SCALAR_NAMESAKES = frozenset({"format"})

# Tables of our database that are not analysts' data: the record of exports holds legal case
# references, recipients and the keys that trace a dataset back to the buyer who received it
# (docs/DATASETS.md). Only operators read it, with the exporter's access (exporter.sql).
DENIED_TABLES = frozenset({"export_audit"})

# System tables an analyst reads. Refused among others: processes and the query logs (in embedded
# mode every caller is the same ClickHouse user, so "their own queries" cannot be told apart
# from the loader's or another analyst's), errors (messages quote other queries), server
# settings, disks and paths, named collections and dictionaries (source credentials),
# certificates, users and grants, stack traces and allocator dumps.
ALLOWED_SYSTEM_TABLES = frozenset(
    {
        "aggregate_function_combinators",
        "build_options",
        "codecs",
        "collations",
        "columns",
        "constraints",
        "contributors",
        "data_skipping_index_types",
        "data_skipping_indices",
        "data_type_families",
        "database_engines",
        "databases",
        "documentation",
        "events",
        "formats",
        "functions",
        "keywords",
        "licenses",
        "merge_tree_settings",
        "merges",
        "metrics",
        "mutations",
        "numbers",
        "numbers_mt",
        "one",
        "parts",
        "parts_columns",
        "primes",
        "projection_parts",
        "projections",
        "settings",
        "settings_changes",
        "table_engines",
        "table_functions",
        "tables",
        "time_zones",
        "tokenizers",
        "unicode",
        "zeros",
        "zeros_mt",
    }
)
SYSTEM_DATABASE = "system"

_LINE = re.compile(r"^( *)(\S.*?)(?: \(children (\d+)\))?$")


@dataclass(slots=True)
class Node:
    """One line of ``EXPLAIN AST``: the node name, the rest of the line, and its children."""

    kind: str
    detail: str
    children: list[Node] = field(default_factory=list)
    declared: int = 0

    def walk(self, parent: Node | None = None) -> Iterator[tuple[Node, Node | None]]:
        yield self, parent
        for child in self.children:
            yield from child.walk(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """The lists above, completed at start-up with what the running engine knows."""

    table_functions: frozenset[str]
    denied_functions: frozenset[str]
    # Databases a request may make current (the `database` parameter): never `system`, where an
    # unqualified table name would reach past the system-table allow-list.
    databases: frozenset[str] = frozenset({"default"})
    # Every setting the engine knows, with its type (what `check_settings` judges values by).
    setting_types: Mapping[str, str] = field(default_factory=dict)
    allowed_table_functions: frozenset[str] = ALLOWED_TABLE_FUNCTIONS
    allowed_system_tables: frozenset[str] = ALLOWED_SYSTEM_TABLES
    denied_tables: frozenset[str] = DENIED_TABLES

    @classmethod
    def from_engine(
        cls,
        *,
        table_functions: set[str],
        functions_by_category: dict[str, set[str]],
        databases: set[str] | None = None,
        setting_types: Mapping[str, str] | None = None,
    ) -> Policy:
        denied = set(DENIED_FUNCTIONS)
        for category, names in functions_by_category.items():
            if category in DENIED_FUNCTION_CATEGORIES:
                denied |= names
        # A scalar that shares a table function's name (file) is as dangerous as the table
        # function, unless it is known to be pure.
        all_scalars = (
            set().union(*functions_by_category.values()) if functions_by_category else set()
        )
        denied |= (table_functions & all_scalars) - PURE_SCALAR_NAMESAKES
        # Compared in lower case: some functions are case-insensitive (FILE would be file if
        # a later engine registered it so); refusing a harmless namesake is the safe mistake.
        return cls(
            table_functions=frozenset(table_functions),
            denied_functions=frozenset(name.lower() for name in denied),
            databases=frozenset((databases or {"default"}) - {SYSTEM_DATABASE}),
            setting_types=dict(setting_types or {}),
        )

    def check_database(self, database: str | None) -> None:
        if database is not None and database not in self.databases:
            raise QueryRefusedError(
                f"Database {database!r} cannot be the current database here; name its tables "
                f"instead (system.tables, ...). Databases: {', '.join(sorted(self.databases))}",
                code=81,
                name="UNKNOWN_DATABASE",
            )


@dataclass(frozen=True, slots=True)
class Verdict:
    statement: str
    # The format a ``FORMAT`` clause in the query names, if any: it wins over default_format.
    output_format: str | None


def parse_dump(dump: str) -> Node:
    """Rebuild the tree from an ``EXPLAIN AST`` dump; anything inconsistent is refused."""
    lines = [line for line in dump.split("\n") if line != ""]
    if not lines:
        raise QueryRefusedError(
            "the query parsed to nothing", code=SYNTAX_ERROR[0], name=SYNTAX_ERROR[1]
        )
    stack: list[tuple[int, Node]] = []
    root: Node | None = None
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            raise _unrecognised()
        depth = len(match.group(1))
        text = match.group(2)
        kind, _, detail = text.partition(" ")
        node = Node(kind=kind, detail=detail, declared=int(match.group(3) or 0))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if not stack:
            if root is not None or depth != 0:
                raise _unrecognised()
            root = node
        else:
            parent_depth, parent = stack[-1]
            if depth != parent_depth + 1:
                raise _unrecognised()
            parent.children.append(node)
        stack.append((depth, node))
    assert root is not None
    for node, _ in root.walk():
        if len(node.children) != node.declared:
            raise _unrecognised()
    return root


def check(root: Node, policy: Policy) -> Verdict:
    """Refuse anything an analyst may not run; say what the query is otherwise."""
    if root.kind not in ALLOWED_STATEMENTS:
        raise QueryRefusedError(
            f"{_statement_name(root)} is not allowed here: this endpoint runs read-only "
            "queries (SELECT, SHOW, DESCRIBE, EXISTS, EXPLAIN)",
            code=READONLY[0],
            name=READONLY[1],
        )
    output_format = None
    for child in root.children:
        # Statement-level clauses hang directly under the root: INTO OUTFILE (and its
        # compression) are literals, FORMAT is an identifier, SETTINGS is a Set node.
        if child.kind == "Literal":
            raise QueryRefusedError(
                "INTO OUTFILE is not allowed: results are returned over HTTP only"
            )
        if child.kind == "Identifier" and root.kind == "SelectWithUnionQuery":
            output_format = child.detail
    for node, parent in root.walk():
        _check_node(node, parent, policy)
    return Verdict(statement=root.kind, output_format=output_format)


def _check_node(node: Node, parent: Node | None, policy: Policy) -> None:
    if node.kind == "Set":
        raise QueryRefusedError(
            "a SETTINGS clause is not allowed in the query: pass settings as URL parameters "
            "(only the documented allow-list is accepted)",
            code=READONLY[0],
            name=READONLY[1],
        )
    if node.kind in {"Function", "TableFunction"}:
        name = _name(node.detail)
        in_from = parent is not None and parent.kind == "TableExpression"
        if in_from or (name in policy.table_functions and name not in PURE_SCALAR_NAMESAKES):
            if name not in policy.allowed_table_functions:
                raise QueryRefusedError(
                    f"table function {name}() is not allowed: it reaches outside the "
                    f"database. Allowed: {', '.join(sorted(policy.allowed_table_functions))}"
                )
        elif name.lower() in policy.denied_functions:
            raise QueryRefusedError(
                f"function {name}() is not allowed: it reaches files, services or "
                "configuration outside the database"
            )
    if node.kind in {"Identifier", "TableIdentifier"}:
        parts = _name(node.detail).split(".")
        # Compared in lower case and wherever the name stands (FROM, IN, a column of that name):
        # refusing a harmless namesake is the safe mistake.
        if parts[-1].lower() in policy.denied_tables:
            raise QueryRefusedError(
                f"{parts[-1]} is not readable here: it is the operators' record of exports "
                "(recipients, case references, tracing keys), read with the exporter's access"
            )
        if len(parts) >= 2 and parts[0].lower() == SYSTEM_DATABASE:
            table = parts[1]
            if table.lower() not in policy.allowed_system_tables:
                raise QueryRefusedError(
                    f"system.{table} is not readable here. Readable system tables: "
                    f"{', '.join(sorted(policy.allowed_system_tables))}"
                )


def _name(detail: str) -> str:
    """The name in ``Function name (alias x)`` or ``Identifier db.table``."""
    return detail.split(" (alias ", 1)[0].strip()


def _statement_name(root: Node) -> str:
    kind = root.kind
    for suffix in ("Query", "query"):
        kind = kind.removesuffix(suffix)
    return kind.upper() if kind else "this statement"


def _unrecognised() -> QueryRefusedError:
    return QueryRefusedError(
        "the query's parse tree has a shape this endpoint does not recognise (an identifier "
        "or alias with a line break?), so it is refused"
    )
