"""`logorhythms up`'s arguments: one broker by default, three for a replicated cluster."""

from __future__ import annotations

import pytest

from deploy.cli import build_parser


def test_up_runs_one_broker_unless_asked_for_three() -> None:
    assert build_parser().parse_args(["up"]).brokers == 1
    assert build_parser().parse_args(["up", "--brokers", "3"]).brokers == 3


@pytest.mark.parametrize("count", ["2", "0", "many"])
def test_other_broker_counts_are_refused_saying_why(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["up", "--brokers", count])
    assert exited.value.code == 2
    assert "3 nodes are the smallest cluster that survives losing one" in capsys.readouterr().err
