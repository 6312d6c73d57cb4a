"""What the transaction appliers (classic, issued, sac, execution) read and write of the
ledger: an interface of its own, so they need not import ledger.py, which imports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from stellar_sdk import xdr as x

from .contracts import ContractRegistry
from .entry_history import EntryKey
from .protocol import Protocol as NetworkProtocol
from .records import Account, ClosedLedger, TokenBalance, Trustline


@dataclass(frozen=True)
class ArchivedEntry:
    """An archived entry in a transaction's footprint."""

    key: x.LedgerKey
    read_write_index: int | None  # its index in the read-write footprint; None if read-only
    size: int  # the entry's XDR size: what restoring it reads from disk


class LedgerState(Protocol):
    """The ledger's entries and the operations on them that applying a transaction needs."""

    @property
    def registry(self) -> ContractRegistry: ...
    @property
    def protocol(self) -> NetworkProtocol: ...
    @property
    def passphrase(self) -> str: ...
    @property
    def latest(self) -> ClosedLedger: ...
    @property
    def accounts(self) -> dict[str, Account]: ...
    @property
    def tokens(self) -> dict[tuple[str, str], TokenBalance]: ...
    @property
    def trustlines(self) -> dict[tuple[str, str], Trustline]: ...
    @property
    def used_nonces(self) -> set[tuple[str, int]]: ...

    def before_write(self, *keys: EntryKey) -> None:
        """Records the entries' values before they change (for entry history)."""

    def archived_entries(self, footprint: x.LedgerFootprint, seq: int) -> list[ArchivedEntry]:
        """The footprint's entries that are archived at ledger `seq`."""

    def restore(self, keys: list[x.LedgerKey], seq: int) -> None:
        """Restores archived entries at ledger `seq`."""
