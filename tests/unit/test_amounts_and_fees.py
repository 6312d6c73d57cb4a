"""Amounts are integer stroops; parsing never goes through floats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payout_service.core.amounts import AmountError, format_amount, parse_amount
from payout_service.core.fees import split_fee


@pytest.mark.parametrize(
    ("text", "stroops"),
    [("100.5", 1_005_000_000), ("0.0000001", 1), ("1", 10_000_000), ("100.5000000", 1_005_000_000),
     ("922337203685.4775807", 2**63 - 1)],
)
def test_decimal_strings_parse_to_exact_stroops(text, stroops):
    assert parse_amount(text) == stroops


@pytest.mark.parametrize(
    "text",
    ["", "1.", ".5", "1.12345678", "-1", "+1", "1e3", "NaN", "inf", "01", "1,5", "0x10",
     " 1 2", "922337203685.4775808", "１"],
)
def test_malformed_amounts_are_refused(text):
    with pytest.raises(AmountError):
        parse_amount(text)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_format_then_parse_round_trips(stroops):
    assert parse_amount(format_amount(stroops)) == stroops


@given(st.integers(min_value=1, max_value=2**63 - 1), st.integers(min_value=0, max_value=9999))
def test_fee_split_never_loses_or_creates_a_stroop(gross, bps):
    split = split_fee(gross, bps)
    assert split.fee + split.net == gross
    assert 0 <= split.fee <= gross * bps / 10_000 + 1e-9 * gross
    assert split.fee == gross * bps // 10_000


def test_fee_rounds_in_favour_of_the_payee():
    assert split_fee(3, 5000).fee == 1


def test_fee_of_100_percent_is_refused():
    with pytest.raises(ValueError):
        split_fee(100, 10_000)


def test_inclusion_fee_bid_starts_at_the_network_p90_doubles_per_attempt_and_is_capped():
    from payout_service.core.transactions import BASE_INCLUSION_FEE, inclusion_fee_bid

    assert inclusion_fee_bid(1, None, 10_000) == BASE_INCLUSION_FEE
    assert inclusion_fee_bid(1, 50, 10_000) == BASE_INCLUSION_FEE, "never below the minimum"
    assert [inclusion_fee_bid(n, 300, 10_000) for n in (1, 2, 3, 4)] == [300, 600, 1200, 2400]
    assert inclusion_fee_bid(10, 300, 5_000) == 5_000
    assert inclusion_fee_bid(3, None, 50) == BASE_INCLUSION_FEE, "a cap below it is ignored"


@pytest.mark.parametrize(("text", "says"), [
    ("-1", "must be positive"),
    ("+5", "must be positive"),
    ("1.12345678", "more than 7 decimal places"),
    ("9223372036854", "exceeds the largest Stellar amount"),
    ("922337203685.4775808", "exceeds the largest Stellar amount"),
    ("1e5", "decimal string like '100.5'"),
])
def test_refused_amounts_say_what_is_wrong(text, says):
    with pytest.raises(AmountError) as caught:
        parse_amount(text)
    assert says in str(caught.value)
