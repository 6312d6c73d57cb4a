"""What each ledger entry was at each of the last few ledgers, so a node that is behind the
network can answer as of its own ledger. No I/O.

Copy-on-write: before an entry changes, the ledger hands its old value here (``remember``), once
per entry and ledger. The value at ledger ``H`` is then the old value kept by the first change
made after ``H``, or the current value if nothing changed since.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import TypeVar

# ("account", G...), ("trustline", G..., "CODE:ISSUER") or ("token", C..., holder).
EntryKey = tuple[str, ...]
Value = TypeVar("Value")


def account_key(account_id: str) -> EntryKey:
    return ("account", account_id)


def trustline_key(holder: str, asset: str) -> EntryKey:
    return ("trustline", holder, asset)


def token_key(token_id: str, holder: str) -> EntryKey:
    return ("token", token_id, holder)


class EntryHistory:
    def __init__(self) -> None:
        # Per entry, (ledger that changed it, what it was before), oldest first.
        self._changes: dict[EntryKey, deque[tuple[int, object]]] = {}
        self._changed_in: dict[int, list[EntryKey]] = {}

    def remember(self, key: EntryKey, ledger_seq: int, before: object) -> None:
        """Keep ``before`` (None: the entry did not exist) unless this ledger already changed
        the entry: its first write holds the value the previous ledger ended with."""
        changes = self._changes.setdefault(key, deque())
        if changes and changes[-1][0] == ledger_seq:
            return
        changes.append((ledger_seq, copy.copy(before)))
        self._changed_in.setdefault(ledger_seq, []).append(key)

    def at(self, key: EntryKey, ledger_seq: int, current: Value | None) -> Value | None:
        """The entry as ledger ``ledger_seq`` left it."""
        for changed_in, before in self._changes.get(key, ()):
            if changed_in > ledger_seq:
                return before  # type: ignore[return-value]
        return current

    def forget_through(self, ledger_seq: int) -> None:
        """Drop what no answer at ``ledger_seq`` or later needs: changes made up to it."""
        for seq in [s for s in self._changed_in if s <= ledger_seq]:
            for key in self._changed_in.pop(seq):
                changes = self._changes.get(key)
                while changes and changes[0][0] <= ledger_seq:
                    changes.popleft()
                if changes is not None and not changes:
                    del self._changes[key]
