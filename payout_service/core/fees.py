"""Platform fee as basis points of the gross amount (gross, fee and net stored; net paid)."""

from __future__ import annotations

from dataclasses import dataclass

BPS_DENOMINATOR = 10_000


@dataclass(frozen=True)
class FeeSplit:
    gross: int
    fee: int
    net: int


def split_fee(gross_stroops: int, fee_bps: int) -> FeeSplit:
    """Fee rounds down, so rounding never takes a stroop from the payee."""
    if not 0 <= fee_bps < BPS_DENOMINATOR:
        raise ValueError("fee_bps must be in [0, 10000)")
    fee = gross_stroops * fee_bps // BPS_DENOMINATOR
    return FeeSplit(gross=gross_stroops, fee=fee, net=gross_stroops - fee)
