"""ChainMemory: the ledgers a proof of expiry can use, earliest past max_time first."""

from __future__ import annotations

from payout_service.app.chain_memory import REMEMBERED_LEDGERS, ChainMemory
from payout_service.core.proofs import ClosedLedger


def test_closed_past_is_the_earliest_remembered_ledger_after_max_time():
    memory = ChainMemory()
    for seq in (12, 10, 11, 14):  # answers arrive out of order from nodes at other heights
        memory.saw_ledger(seq, seq * 10)
    assert memory.closed() == ClosedLedger(14, 140)
    assert memory.closed_past(105) == ClosedLedger(11, 110)
    assert memory.closed_past(110) == ClosedLedger(12, 120)
    assert memory.closed_past(9_999) == ClosedLedger(14, 140)  # none past it: the newest


def test_nothing_seen_and_zero_close_times_give_nothing():
    memory = ChainMemory()
    memory.saw_ledger(5, 0)
    assert memory.closed() is None and memory.closed_past(0) is None


def test_memory_is_bounded_and_forgets_the_oldest():
    memory = ChainMemory()
    for seq in range(1, REMEMBERED_LEDGERS + 11):
        memory.saw_ledger(seq, seq * 10)
    memory.saw_ledger(REMEMBERED_LEDGERS, REMEMBERED_LEDGERS * 10)  # seen again: kept once
    assert memory.closed_past(0) == ClosedLedger(11, 110)
    assert memory.closed() == ClosedLedger(REMEMBERED_LEDGERS + 10, (REMEMBERED_LEDGERS + 10) * 10)
