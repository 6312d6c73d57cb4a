"""tests/waiting.py: the one waiting helper returns as soon as the condition holds and fails
with what it waited for and what it last saw."""

from __future__ import annotations

import pytest

from tests.waiting import NotYet, eventually, eventually_blocking


async def test_returns_the_first_truthy_value_of_a_sync_or_async_condition() -> None:
    seen = iter([None, 0, "", "ready", "later"])
    assert await eventually(lambda: next(seen), what="ready", interval=0) == "ready"

    answers = iter([[], [], [1, 2]])

    async def rows() -> list[int]:
        return next(answers)

    assert await eventually(rows, what="rows", interval=0) == [1, 2]


async def test_gives_up_after_the_deadline_naming_what_and_the_last_value() -> None:
    states = iter(["QUEUED", "BUILT", "SUBMITTED"] + [""] * 1000)
    with pytest.raises(NotYet, match=r"not within 0\.05 s: the payout CONFIRMED \(last seen: ''\)"):
        await eventually(lambda: next(states) == "CONFIRMED" or "",
                         what="the payout CONFIRMED", within=0.05, interval=0.01)


async def test_ignored_exceptions_mean_not_yet_and_others_propagate() -> None:
    attempts = iter([ConnectionError("refused"), ConnectionError("refused"), "up"])

    def connect() -> str:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert await eventually(connect, what="up", interval=0, ignoring=(ConnectionError,)) == "up"
    with pytest.raises(KeyError):
        await eventually(lambda: {}["missing"], what="never ignored", interval=0)

    def refused() -> str:
        raise ConnectionError("refused")

    with pytest.raises(NotYet, match="ConnectionError"):
        await eventually(refused, what="down", within=0.02, interval=0.01,
                         ignoring=(ConnectionError,))


def test_the_blocking_form_behaves_the_same() -> None:
    values = iter([False, False, True])
    assert eventually_blocking(lambda: next(values), what="true", interval=0) is True
    with pytest.raises(NotYet, match="never"):
        eventually_blocking(lambda: False, what="never", within=0.02, interval=0.01)
