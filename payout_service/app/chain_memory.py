"""What this process has seen of the chain: the recent ledgers answers reported (with their
close times) and the latest read of each source account.

A proof of death (core/proofs.py) combines a getTransaction NOT_FOUND with observations made
before it was asked; remembering them lets a look use what an earlier look saw, so that the
NOT_FOUND usually covers it. Facts about the chain only (a ledger closed at a time, an account
was in a state at a ledger): they stay true, so nothing here needs to survive a restart.
"""

from __future__ import annotations

import bisect

from payout_service.core.proofs import AccountState, ClosedLedger

# Ledgers remembered: at 5 s a ledger, more than an hour, longer than any signing window.
REMEMBERED_LEDGERS = 1024


class ChainMemory:
    def __init__(self) -> None:
        # Ascending by sequence, and so by close time (close times strictly increase).
        self._sequences: list[int] = []
        self._close_times: list[int] = []
        self._accounts: dict[str, AccountState] = {}

    def closed(self) -> ClosedLedger | None:
        """The newest ledger seen closed."""
        if not self._sequences:
            return None
        return ClosedLedger(self._sequences[-1], self._close_times[-1])

    def closed_past(self, max_time: int) -> ClosedLedger | None:
        """The earliest remembered ledger that closed after `max_time`, or else the newest:
        the earliest is the one a proof of expiry can most often use (it must be covered by a
        NOT_FOUND, or be at or before an account read)."""
        at = bisect.bisect_right(self._close_times, max_time)
        if at < len(self._sequences):
            return ClosedLedger(self._sequences[at], self._close_times[at])
        return self.closed()

    def account(self, account_id: str) -> AccountState | None:
        return self._accounts.get(account_id)

    def saw_ledger(self, sequence: int, close_time: int) -> None:
        if not close_time:
            return
        at = bisect.bisect_left(self._sequences, sequence)
        if at < len(self._sequences) and self._sequences[at] == sequence:
            return
        self._sequences.insert(at, sequence)
        self._close_times.insert(at, close_time)
        if len(self._sequences) > REMEMBERED_LEDGERS:
            del self._sequences[0], self._close_times[0]

    def saw_account(self, account_id: str, state: AccountState) -> None:
        known = self._accounts.get(account_id)
        if known is None or state.ledger >= known.ledger:
            self._accounts[account_id] = state
