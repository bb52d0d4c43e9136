"""Which exchanges a dataset is made of, as one ClickHouse query: the filter, then the folding.

Pure: builds SQL text and its parameters. Chats resend their whole history with every turn, so
the exchange of turn 3 holds turns 1 and 2 again. An exchange whose request plus answer is a
prefix of another exchange's request is *folded*: it is not a record of its own, the longer
exchange carries its turns (and its timing, looked up by the same prefix hash). What is left are
the *leaves*, one per conversation; two leaves that share a beginning (a regenerated answer, a
branch) are two conversations.

The prefix hash is ``sipHash64(system_prompt, messages[1..i])`` over the parsed (role, text)
pairs the loader stored; an exchange's own key adds its answer as an ``assistant`` message, which
is what the next turn's request resends.
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
        clauses = ["request_json_valid", "NOT request_body_truncated", "length(messages) > 0"]
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


def _base(selection: Selection) -> tuple[str, dict[str, Any]]:
    where, params = selection.where()
    sql = f"""
    base AS (
        SELECT {", ".join(LEAF_COLUMNS)}, loaded_at, messages, system_prompt,
            sipHash64(system_prompt,
                arrayPushBack(CAST(messages, 'Array(Tuple(String, String))'),
                              ('assistant', response_text))) AS own_key
        FROM exchanges FINAL
        WHERE {where}
    ),
    prefixes AS (
        SELECT DISTINCT arrayJoin(arrayMap(
            i -> sipHash64(system_prompt,
                           arraySlice(CAST(messages, 'Array(Tuple(String, String))'), 1, i)),
            range(1, length(messages) + 1))) AS h
        FROM base
    )"""  # noqa: S608 (the filter's values are query parameters)
    return sql, params


def count_sql(selection: Selection) -> tuple[str, dict[str, Any]]:
    """Exchanges matching the filter, how many fold into a longer one, and what identifies the
    snapshot they were read from (the newest row's request id and load time)."""
    base, params = _base(selection)
    sql = f"""WITH {base}
    SELECT count(), countIf(own_key IN (SELECT h FROM prefixes)),
           max(request_id), toString(max(loaded_at))
    FROM base"""  # noqa: S608
    return sql, params


def leaves_sql(selection: Selection) -> tuple[str, dict[str, Any]]:
    """One row per conversation (its leaf exchange), ordered by request id, with per-turn timing.

    ``turn_timing`` holds, for each assistant message of the conversation (the leaf's answer
    last), the TTFT and chunk offsets (ms) of the exchange that produced it, when it was
    captured; ``chunk_offsets_ms`` are the leaf's own chunks.
    """
    base, params = _base(selection)
    columns = ", ".join(f"l.{c} AS {c}" for c in LEAF_COLUMNS)
    sql = f"""WITH {base},
    leaves AS (
        SELECT * FROM base
        WHERE own_key NOT IN (SELECT h FROM prefixes)
          AND length(arrayFilter(m -> m.1 = 'user', messages)) >= {{min_turns:UInt32}}
    ),
    offsets AS (
        SELECT request_id, arraySort(x -> x.1, groupArray((seq, offset_ns / 1e6))) AS chunks
        FROM chunks_raw FINAL
        WHERE request_id IN (SELECT request_id FROM base)
        GROUP BY request_id
    ),
    timed AS (
        SELECT b.own_key AS h, any(b.ttft_ms) AS ttft, any(b.stream) AS streamed,
               any(arrayMap(x -> x.2, o.chunks)) AS chunk_ms
        FROM base AS b LEFT JOIN offsets AS o ON o.request_id = b.request_id
        GROUP BY h
    ),
    earlier AS (
        SELECT request_id, pos, sipHash64(system_prompt,
            arraySlice(CAST(messages, 'Array(Tuple(String, String))'), 1, pos)) AS h
        FROM leaves
        ARRAY JOIN arrayFilter(i -> messages[i].1 = 'assistant',
                               range(1, length(messages) + 1)) AS pos
    ),
    turns AS (
        SELECT e.request_id AS request_id,
               arraySort(x -> x.1, groupArray((e.pos, t.h != 0, t.streamed, t.ttft, t.chunk_ms)))
                   AS turn_timing
        FROM earlier AS e LEFT JOIN timed AS t ON t.h = e.h
        GROUP BY e.request_id
    )
    SELECT {columns},
           arrayMap(x -> x.2, o.chunks) AS chunk_offsets_ms,
           t.turn_timing AS turn_timing
    FROM leaves AS l
    LEFT JOIN offsets AS o ON o.request_id = l.request_id
    LEFT JOIN turns AS t ON t.request_id = l.request_id
    ORDER BY l.request_id
    SETTINGS join_use_nulls = 0"""  # noqa: S608
    params["min_turns"] = selection.min_turns
    return sql, params
