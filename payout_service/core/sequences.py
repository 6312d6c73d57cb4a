"""Sequence-number rules (docs/design.md, invariant 6). Pure: no I/O.

Stellar includes a transaction only when `tx.seq == account.seq + 1`, so one number that is
reserved and then never used stops every later transaction of the account. The invariant
these rules keep: *every number between the chain's sequence and our next fresh number is
either held by an attempt we still pursue or free, and the next reservation takes the lowest
free one.* Abandoning an attempt therefore never leaves a hole that nobody will fill.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Resync:
    free: list[int]  # numbers above the chain that nothing holds, lowest first
    next_sequence: int  # the first number above everything held


def resync(chain_sequence: int, held: Iterable[int]) -> Resync:
    """Numbering after re-reading the account from the chain (on txBAD_SEQ).

    `held` are the numbers of attempts that may still land and that we keep (sent, or handed
    out, or reserved by a concurrent preparer). Everything between the chain and the highest
    of them that none holds is free: the next reservations fill those holes first."""
    above = {n for n in held if n > chain_sequence}
    top = max(above, default=chain_sequence)
    holes = [n for n in range(chain_sequence + 1, top) if n not in above]
    return Resync(free=holes, next_sequence=top + 1)


def must_resequence(sequence: int, lowest_free: int | None, *, left_us: bool) -> bool:
    """An attempt above a free number would wait behind a hole (txBAD_SEQ) until someone
    fills it. If its envelope never left us it is rebuilt at the free number instead; one that
    left us must keep its number (a copy at another number could land too: paid twice)."""
    return not left_us and lowest_free is not None and lowest_free < sequence
