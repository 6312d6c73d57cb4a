"""A statement of one round or one scheduled run: its payouts counted and summed by state and
asset, and the totals per asset. Pure: the store sums the rows, this orders and totals them.

Amounts of different assets are never added together: a line and a total are of one asset.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from payout_service.core.errors import FieldViolation, ValidationFailed
from payout_service.core.states import PayoutState
from payout_service.core.validation import IDENTIFIER

_LIFECYCLE = list(PayoutState)


@dataclass(frozen=True)
class StatementLine:
    """The payouts of one state (None: of every state) and one asset, amounts in stroops."""

    state: PayoutState | None
    asset: str
    count: int
    gross: int
    fees: int
    net: int
    # Summed over the payouts whose network fee is known (confirmed ones), counted here.
    network_fees: int
    network_fees_known: int


@dataclass(frozen=True)
class Statement:
    lines: list[StatementLine]
    totals: list[StatementLine]
    count: int


@dataclass(frozen=True)
class StatementScope:
    round_id: str | None
    run_id: str | None


def statement_scope(round_id: str, run_id: str) -> StatementScope:
    """Exactly one of the two, well formed, or ValidationFailed naming the field."""
    if round_id and run_id:
        raise ValidationFailed([FieldViolation("run_id", "give round_id or run_id, not both")])
    if not round_id and not run_id:
        raise ValidationFailed([FieldViolation("round_id", "round_id or run_id is required")])
    name, value = ("round_id", round_id) if round_id else ("run_id", run_id)
    if not IDENTIFIER.fullmatch(value):
        raise ValidationFailed([FieldViolation(
            name, "must be 1-128 characters from A-Z a-z 0-9 : _ . -")])
    return StatementScope(round_id or None, run_id or None)


def build_statement(lines: Iterable[StatementLine]) -> Statement:
    """Lines by state in lifecycle order, then asset; one total per asset."""
    ordered = sorted(lines, key=lambda ln: (
        _LIFECYCLE.index(ln.state) if ln.state else len(_LIFECYCLE), ln.asset))
    totals: dict[str, StatementLine] = {}
    for ln in ordered:
        seen = totals.get(ln.asset)
        totals[ln.asset] = ln if seen is None else StatementLine(
            None, ln.asset, seen.count + ln.count, seen.gross + ln.gross, seen.fees + ln.fees,
            seen.net + ln.net, seen.network_fees + ln.network_fees,
            seen.network_fees_known + ln.network_fees_known)
    return Statement(
        lines=ordered,
        totals=[StatementLine(None, *_sums(t)) for _, t in sorted(totals.items())],
        count=sum(ln.count for ln in ordered))


def _sums(line: StatementLine) -> tuple[str, int, int, int, int, int, int]:
    return (line.asset, line.count, line.gross, line.fees, line.net, line.network_fees,
            line.network_fees_known)
