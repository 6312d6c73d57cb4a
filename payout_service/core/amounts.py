"""Amounts are integers of stroops everywhere; decimal strings exist only at the edges.

1 XLM (and one unit of any Stellar asset) = 10,000,000 stroops, so a decimal amount has at
most 7 places. Parsing is done on the string, never through float or Decimal rounding.
"""

from __future__ import annotations

import re

STROOPS_PER_UNIT = 10_000_000
INT64_MAX = 2**63 - 1

_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,7}))?$")
# Shaped like a number but not one we take, to say what is wrong rather than "not a decimal".
_SIGNED = re.compile(r"^[+-][0-9.]+$")
_TOO_PRECISE = re.compile(r"^[0-9]+\.[0-9]{8,}$")
_TOO_LARGE = re.compile(r"^[0-9]{13,}(?:\.[0-9]*)?$")


class AmountError(ValueError):
    """An amount string that is not a valid decimal with at most 7 places."""


def parse_amount(text: str) -> int:
    """'100.5' -> 1_005_000_000 stroops. Raises AmountError with a reason."""
    text = text.strip() if isinstance(text, str) else ""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        if _SIGNED.fullmatch(text):
            raise AmountError("must be positive, written without a sign, e.g. '100.5'")
        if _TOO_PRECISE.fullmatch(text):
            raise AmountError("has more than 7 decimal places (1 stroop = 0.0000001)")
        if _TOO_LARGE.fullmatch(text):
            raise AmountError("exceeds the largest Stellar amount (922337203685.4775807)")
        raise AmountError("must be a decimal string like '100.5' with at most 7 decimal places")
    whole, frac = match.group(1), match.group(2) or ""
    stroops = int(whole) * STROOPS_PER_UNIT + int(frac.ljust(7, "0"))
    if stroops > INT64_MAX:
        raise AmountError("exceeds the largest Stellar amount (922337203685.4775807)")
    return stroops


def format_amount(stroops: int) -> str:
    """1_005_000_000 -> '100.5000000' (always 7 places, as Stellar shows amounts)."""
    sign = "-" if stroops < 0 else ""
    whole, frac = divmod(abs(stroops), STROOPS_PER_UNIT)
    return f"{sign}{whole}.{frac:07d}"
