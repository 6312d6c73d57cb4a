"""The balance-awareness decision (core/funds.py): exact boundaries, order, no overtaking."""

from __future__ import annotations

from uuid import UUID

import pytest

from payout_service.core.funds import (
    Claim,
    decide_funds,
    native_spendable,
    trustline_spendable,
)
from payout_service.core.health import AlertKind, AlertThresholds, HealthMetrics, conditions

USDC = "USDC:GA5ZSEJYB37JRC5AVCIA5MOP4RHTM335X2KGX3IHOJAPP5RE34K4KZVN"


def ids(n: int) -> list[UUID]:
    return [UUID(int=i + 1) for i in range(n)]


def test_native_spendable_subtracts_reserve_and_liabilities() -> None:
    # 2 base entries + 3 subentries at 0.5 XLM, 1 XLM selling in offers.
    assert native_spendable(100_000_000, base_reserve=5_000_000, subentries=3,
                            selling_liabilities=10_000_000) == 100_000_000 - 25_000_000 - 10_000_000
    assert native_spendable(10_000_000, base_reserve=5_000_000, subentries=0,
                            selling_liabilities=0) == 0
    assert native_spendable(9_999_999, base_reserve=5_000_000, subentries=0,
                            selling_liabilities=0) == 0
    assert native_spendable(40_000_000, base_reserve=5_000_000, subentries=1,
                            selling_liabilities=0, sponsoring=1, sponsored=2) == 30_000_000
    assert trustline_spendable(500, selling_liabilities=200) == 300
    assert trustline_spendable(100, selling_liabilities=200) == 0


def test_exact_boundary_goes_one_stroop_more_waits() -> None:
    a, b = ids(2)
    at = decide_funds({USDC: 1000}, [Claim(a, USDC, 1000)], in_flight={}, in_flight_fees=0,
                      fee_each=0)
    assert at.go == [a] and at.wait == []
    over = decide_funds({USDC: 1000}, [Claim(a, USDC, 1001)], in_flight={}, in_flight_fees=0,
                        fee_each=0)
    assert over.go == [] and over.wait == [a] and over.short == {USDC: (1001, 1000)}
    # XLM: amount plus fee must fit exactly.
    xlm = decide_funds({"XLM": 1100}, [Claim(a, "XLM", 1000), Claim(b, "XLM", 1)],
                       in_flight={}, in_flight_fees=0, fee_each=100)
    assert xlm.go == [a] and xlm.wait == [b]


def test_in_flight_amounts_and_fees_are_taken_first() -> None:
    a, b = ids(2)
    d = decide_funds({USDC: 1000, "XLM": 300}, [Claim(a, USDC, 400), Claim(b, USDC, 1)],
                     in_flight={USDC: 600}, in_flight_fees=200, fee_each=100)
    assert d.go == [a] and d.wait == [b]  # USDC left 0 after a; XLM 300-200-100 = 0
    fees_short = decide_funds({USDC: 1000, "XLM": 299}, [Claim(a, USDC, 1)], in_flight={},
                              in_flight_fees=200, fee_each=100)
    assert fees_short.wait == [a]


def test_no_overtaking_within_an_asset_but_others_go() -> None:
    a, b, c = ids(3)
    d = decide_funds({USDC: 100, "XLM": 10_000}, [
        Claim(a, USDC, 150), Claim(b, USDC, 50), Claim(c, "XLM", 10),
    ], in_flight={}, in_flight_fees=0, fee_each=100)
    assert d.wait == [a, b] and d.go == [c]


def test_retries_always_go_and_count_first() -> None:
    a, b = ids(2)
    d = decide_funds({USDC: 100}, [Claim(a, USDC, 150, holdable=False), Claim(b, USDC, 1)],
                     in_flight={}, in_flight_fees=0, fee_each=0)
    assert d.go == [a] and d.wait == [b]


def test_unread_or_issued_assets_are_not_limited() -> None:
    a, b = ids(2)
    d = decide_funds({USDC: None}, [Claim(a, USDC, 10**15), Claim(b, "XLM", 10**15)],
                     in_flight={}, in_flight_fees=0, fee_each=100)
    assert d.go == [a, b]


def test_a_missing_trustline_is_a_zero_balance() -> None:
    [a] = ids(1)
    assert decide_funds({USDC: 0}, [Claim(a, USDC, 1)], in_flight={}, in_flight_fees=0,
                        fee_each=0).wait == [a]


def test_rejects_non_positive_amounts() -> None:
    [a] = ids(1)
    with pytest.raises(ValueError):
        decide_funds({}, [Claim(a, USDC, 0)], in_flight={}, in_flight_fees=0, fee_each=0)


def test_the_alert_holds_while_any_payout_awaits_funds() -> None:
    def kinds(waiting: int) -> list[AlertKind]:
        metrics = HealthMetrics(0, 0, 0, 0, 0, awaiting_funds=waiting)
        return [c.kind for c in conditions(metrics, AlertThresholds())]

    assert kinds(1) == [AlertKind.AWAITING_FUNDS]
    assert kinds(0) == []
