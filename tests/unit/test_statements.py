"""Round and run statements: the scope asked for and the lines in order with their totals."""

from __future__ import annotations

import pytest

from payout_service.core.errors import ValidationFailed
from payout_service.core.statements import StatementLine, build_statement, statement_scope
from payout_service.core.states import PayoutState

USDC = "USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"


def line(state, asset="XLM", count=1, gross=10, fees=1, network=0, known=0):
    return StatementLine(state, asset, count, gross, fees, gross - fees, network, known)


def test_lines_go_in_lifecycle_order_and_each_asset_gets_its_own_total():
    built = line(PayoutState.BUILT, count=2, gross=30)
    confirmed = line(PayoutState.CONFIRMED, gross=2**63, network=100, known=1)
    usdc = line(PayoutState.FAILED, USDC, gross=7)
    statement = build_statement([usdc, confirmed, built])
    assert statement.lines == [built, confirmed, usdc]
    assert statement.count == 4
    assert statement.totals == [
        StatementLine(None, USDC, 1, 7, 1, 6, 0, 0),
        StatementLine(None, "XLM", 3, 2**63 + 30, 2, 2**63 + 28, 100, 1)]


def test_an_empty_scope_has_no_lines_and_no_totals():
    assert build_statement([]) == build_statement(())
    assert build_statement([]).count == 0 and build_statement([]).totals == []


@pytest.mark.parametrize(("round_id", "run_id", "field"), [
    ("", "", "round_id"), ("r", "x", "run_id"), ("bad id", "", "round_id"),
    ("", "x" * 129, "run_id")])
def test_a_statement_is_of_exactly_one_well_formed_round_or_run(round_id, run_id, field):
    with pytest.raises(ValidationFailed) as caught:
        statement_scope(round_id, run_id)
    assert [v.field for v in caught.value.violations] == [field]


def test_a_statement_scope_keeps_the_one_given():
    assert statement_scope("round-7", "").round_id == "round-7"
    assert statement_scope("", "run-1").run_id == "run-1"
