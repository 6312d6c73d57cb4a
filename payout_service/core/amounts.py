"""Amounts are integers of stroops everywhere; decimal strings exist only at the edges.

1 XLM (and one unit of any Stellar asset) = 10,000,000 stroops, so a decimal amount has at
most 7 places. Parsing is done on the string, never through float or Decimal rounding.
"""

from __future__ import annotations

import re

STROOPS_PER_UNIT = 10_000_000
INT64_MAX = 2**63 - 1

_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,7}))?$")


class AmountError(ValueError):
    """An amount string that is not a valid decimal with at most 7 places."""


def parse_amount(text: str) -> int:
    """'100.5' -> 1_005_000_000 stroops. Raises AmountError with a reason."""
    match = _DECIMAL.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise AmountError(
            "must be a decimal string like '100.5' with at most 7 decimal places"
        )
    whole, frac = match.group(1), match.group(2) or ""
    stroops = int(whole) * STROOPS_PER_UNIT + int(frac.ljust(7, "0"))
    if stroops > INT64_MAX:
        raise AmountError("exceeds the largest Stellar amount")
    return stroops


def format_amount(stroops: int) -> str:
    """1_005_000_000 -> '100.5000000' (always 7 places, as Stellar shows amounts)."""
    sign = "-" if stroops < 0 else ""
    whole, frac = divmod(abs(stroops), STROOPS_PER_UNIT)
    return f"{sign}{whole}.{frac:07d}"
