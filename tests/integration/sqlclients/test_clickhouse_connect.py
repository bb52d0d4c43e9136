"""clickhouse-connect, unchanged, against the SQL endpoint: the Python client pandas and
notebooks use (`get_client(host, port)`, then query, Arrow, DataFrames and streaming)."""

from __future__ import annotations

import asyncio

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.integration.sqlclients.conftest import USER, Endpoint


def _client(endpoint: Endpoint, **auth: str) -> clickhouse_connect.driver.Client:
    return clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port, **auth)


def _session(endpoint: Endpoint) -> dict[str, object]:
    client = _client(endpoint)
    try:
        ids = list(endpoint.request_ids)
        rows = client.query(
            "SELECT request_id, model_requested, status FROM exchanges FINAL "
            "WHERE request_id IN {ids:Array(String)} ORDER BY request_id",
            parameters={"ids": ids},
        ).result_rows
        arrow = client.query_arrow(
            "SELECT request_id, response_text FROM exchanges FINAL "
            "WHERE request_id IN {ids:Array(String)}",
            parameters={"ids": ids},
        )
        frame = client.query_df(
            "SELECT model_requested, count() AS n FROM exchanges FINAL "
            "WHERE request_id IN {ids:Array(String)} GROUP BY model_requested",
            parameters={"ids": ids},
        )
        streamed_rows, streamed_sum = 0, 0
        with client.query_row_block_stream("SELECT number FROM numbers(300000)") as stream:
            for block in stream:
                streamed_rows += len(block)
                streamed_sum += sum(row[0] for row in block)
        with pytest.raises(DatabaseError) as unknown:
            client.query("SELECT * FROM no_such_table")
        with pytest.raises(DatabaseError) as refused:
            client.query("SELECT * FROM file('/etc/passwd', 'LineAsString')")
        return {
            "version": client.server_version,
            "rows": rows,
            "arrow": arrow,
            "frame": frame,
            "streamed": (streamed_rows, streamed_sum),
            "unknown": str(unknown.value),
            "refused": str(refused.value),
        }
    finally:
        client.close()


async def test_query_arrow_dataframe_and_stream(endpoint: Endpoint) -> None:
    got = await asyncio.to_thread(_session, endpoint)
    assert str(got["version"]).startswith("26.")
    rows = got["rows"]
    assert [r[0] for r in rows] == sorted(endpoint.request_ids)  # type: ignore[union-attr]
    assert {(r[1], r[2]) for r in rows} == {("m", 200)}  # type: ignore[union-attr]
    arrow = got["arrow"]
    assert arrow.num_rows == len(endpoint.request_ids)  # type: ignore[attr-defined]
    texts = sorted(arrow.column("response_text").to_pylist())  # type: ignore[attr-defined]
    assert texts == sorted(f"client question {n}" for n in range(len(texts)))
    frame = got["frame"]
    assert frame.to_dict("records") == [  # type: ignore[attr-defined]
        {"model_requested": "m", "n": len(endpoint.request_ids)}
    ]
    assert got["streamed"] == (300_000, 300_000 * 299_999 // 2)
    assert "Code: 60." in str(got["unknown"])  # UNKNOWN_TABLE, raised as the client's own error
    assert "Code: 497." in str(got["refused"])  # ACCESS_DENIED by the endpoint's policy
    assert "root:" not in str(got["refused"])


def _with_password(endpoint: Endpoint) -> tuple[list[tuple[object, ...]], str]:
    assert endpoint.password is not None
    good = _client(endpoint, username=USER, password=endpoint.password)
    try:
        rows = good.query("SELECT count() FROM exchanges FINAL").result_rows
    finally:
        good.close()
    with pytest.raises(DatabaseError) as wrong:
        _client(endpoint, username=USER, password="not-the-password")
    return rows, str(wrong.value)


async def test_user_and_password(guarded_endpoint: Endpoint) -> None:
    rows, wrong = await asyncio.to_thread(_with_password, guarded_endpoint)
    assert rows[0][0] >= len(guarded_endpoint.request_ids)  # type: ignore[operator]
    assert "AUTHENTICATION_FAILED" in wrong
