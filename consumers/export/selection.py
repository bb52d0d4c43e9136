"""Which exchanges a dataset is made of: the filter, and the SQL of the fold's two passes.

Pure: builds SQL text and its parameters. Chats resend their whole history with every turn, so
the exchange of turn 3 holds turns 1 and 2 again. An exchange whose request plus answer is a
prefix of another exchange's request is *folded*: it is not a record of its own, the longer
exchange carries its turns (and its timing, looked up by the same prefix hash). What is left are
the *leaves*, one per conversation; two leaves that share a beginning (a regenerated answer, a
branch) are two conversations.

The prefix hash is ``sipHash64(system_prompt, messages[1..i])`` over the parsed (role, text)
pairs the loader stored; an exchange's own key adds its answer as an ``assistant`` message, which
is what the next turn's request resends. The engine computes the hashes; the set operations run
in ``fold.py`` over narrow rows (pass A, ``fold_sql``), and the leaves' bodies and chunks are
read afterwards by request id (pass B, ``leaves_sql``, ``chunks_sql``): no join and no sort over
whole rows, so memory is bounded by a batch, not by the selection (``leaves.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Columns of a leaf exchange the dataset records are built from (``conversations.py``).
LEAF_COLUMNS = (
    "request_id",
    "received_at",
    "completed_at",
    "endpoint",
    "dialect",
    "provider",
    "model_requested",
    "model_responded",
    "stream",
    "client_ip",
    "user_agent",
    "request_body",
    "request_body_truncated",
    "response_text",
    "tool_calls",
    "finish_reason",
    "temperature",
    "top_p",
    "max_tokens",
    "n",
    "request_params",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "usage_estimated",
    "status",
    "outcome",
    "ttft_ms",
    "duration_ms",
)


COUNT_TOKENS_SUFFIX = "/count_tokens"


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """The filter of a dataset. Empty tuples mean "any"; times are UTC, ``until`` exclusive."""

    since: datetime | None = None
    until: datetime | None = None
    models: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ("ok",)
    min_turns: int = 1

    def __post_init__(self) -> None:
        if self.min_turns < 1:
            raise ValueError("--min-turns must be at least 1 (a conversation has a user message)")

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "models": list(self.models),
            "providers": list(self.providers),
            "endpoints": list(self.endpoints),
            "outcomes": list(self.outcomes),
            "min_turns": self.min_turns,
        }

    def where(self) -> tuple[str, dict[str, Any]]:
        """The WHERE clause over ``exchanges`` and its parameters."""
        # A token count (Anthropic's /v1/messages/count_tokens) carries a conversation's
        # messages but generates nothing: it is a question about a conversation, not one.
        clauses = [
            "request_json_valid",
            "NOT request_body_truncated",
            "length(messages) > 0",
            f"NOT endsWith(endpoint, '{COUNT_TOKENS_SUFFIX}')",
        ]
        params: dict[str, Any] = {}
        if self.since is not None:
            clauses.append("received_at >= {since:DateTime64(6, 'UTC')}")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("received_at < {until:DateTime64(6, 'UTC')}")
            params["until"] = self.until
        for column, values, name in (
            ("model", self.models, "models"),
            ("provider", self.providers, "providers"),
            ("endpoint", self.endpoints, "endpoints"),
            ("outcome", self.outcomes, "outcomes"),
        ):
            if values:
                clauses.append(f"{column} IN {{{name}:Array(String)}}")
                params[name] = list(values)
        return " AND ".join(clauses), params


_MESSAGES = "CAST(messages, 'Array(Tuple(String, String))')"
# The hash of the system prompt and the first ``i`` messages (the ``i``-th prefix).
_PREFIX = f"sipHash64(system_prompt, arraySlice({_MESSAGES}, 1, {{i}}))"


def fold_sql(selection: Selection, *, after: str | None = None) -> tuple[str, dict[str, Any]]:
    """Pass A of the fold: a page of matching exchanges (``{page:UInt64}`` of them, the first or
    those after the request id ``after``), narrow, in request-id order (the table's sorting key:
    the engine reads in order, sorts nothing and stops at the page's end).

    Per exchange: its own key (request plus answer), the hash of each prefix of its request, its
    user turns, the size of its request body and answer (to size pass B's batches; the body's
    length is read from its size subcolumn, not its bytes), the timing its answer lends to a
    longer conversation, and its load time (for the snapshot's identity). ``fold.Fold`` decides
    the leaves from these with numpy. Pages, not one query: the embedded engine keeps memory for a
    streamed result until it ends.
    """
    where, params = selection.where()
    if after is not None:
        where += " AND request_id > {after:String}"
        params["after"] = after
    sql = f"""SELECT request_id,
        sipHash64(system_prompt,
                  arrayPushBack({_MESSAGES}, ('assistant', response_text))) AS own_key,
        arrayMap(i -> {_PREFIX.format(i="i")}, range(1, length(messages) + 1)) AS prefixes,
        toUInt32(length(arrayFilter(m -> m.1 = 'user', messages))) AS user_turns,
        toUInt32(least(length(request_body) + length(response_text), 4294967295)) AS body_bytes,
        ttft_ms, stream, toUnixTimestamp64Milli(loaded_at) AS loaded_ms
    FROM exchanges FINAL
    WHERE {where}
    ORDER BY request_id
    LIMIT {{page:UInt64}}"""  # noqa: S608 (the filter's values are query parameters)
    return sql, params


def leaves_sql() -> str:
    """Pass B: the leaves of one batch (``{ids:Array(String)}``, a primary-key lookup), with the
    position and prefix hash of each assistant message, which name the folded exchange that
    produced it (its own key)."""
    columns = ", ".join(LEAF_COLUMNS)
    positions = "arrayFilter(i -> messages[i].1 = 'assistant', range(1, length(messages) + 1))"
    return f"""SELECT {columns},
        {positions} AS assistant_positions,
        arrayMap(i -> {_PREFIX.format(i="i")}, assistant_positions) AS assistant_prefixes
    FROM exchanges FINAL
    WHERE request_id IN {{ids:Array(String)}}
    ORDER BY request_id"""  # noqa: S608


def chunks_sql() -> str:
    """Pass B: the chunk offsets (ms, in sequence order) of the exchanges ``{ids:Array(String)}``:
    a batch's leaves and the folded exchanges that produced their earlier answers."""
    return """SELECT request_id,
        arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((seq, offset_ns / 1e6)))) AS chunks
    FROM chunks_raw FINAL
    WHERE request_id IN {ids:Array(String)}
    GROUP BY request_id"""
