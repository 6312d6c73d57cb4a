"""What this process has seen of the chain: the newest ledger any answer reported (with its
close time) and the latest read of each source account.

A proof of death (core/proofs.py) combines a getTransaction NOT_FOUND with observations made
before it was asked; remembering them lets a look use what an earlier look saw, so that the
NOT_FOUND usually covers it. Facts about the chain only (a ledger closed at a time, an account
was in a state at a ledger): they stay true, so nothing here needs to survive a restart.
"""

from __future__ import annotations

from payout_service.core.proofs import AccountState, ClosedLedger


class ChainMemory:
    def __init__(self) -> None:
        self._closed: ClosedLedger | None = None
        self._accounts: dict[str, AccountState] = {}

    def closed(self) -> ClosedLedger | None:
        return self._closed

    def account(self, account_id: str) -> AccountState | None:
        return self._accounts.get(account_id)

    def saw_ledger(self, sequence: int, close_time: int) -> None:
        if close_time and (self._closed is None or sequence > self._closed.sequence):
            self._closed = ClosedLedger(sequence, close_time)

    def saw_account(self, account_id: str, state: AccountState) -> None:
        known = self._accounts.get(account_id)
        if known is None or state.ledger >= known.ledger:
            self._accounts[account_id] = state
