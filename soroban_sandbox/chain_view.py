"""The chain as one RPC node answers about it. No I/O.

stellar-rpc answers from two places (cmd/stellar-rpc/internal/methods/): its transaction store,
the database it ingests ledger by ledger (getTransaction, getTransactions, getEvents,
getLedgers, getLatestLedger, getHealth, getFeeStats, and the ``latestLedger`` of
sendTransaction), and its captive stellar-core (getLedgerEntries through core's query server,
and the validation of sendTransaction). Every read method answers through one ``ChainView``, so
a node behind the network, a store behind its core or a history cut short by a restart is one
set of heights here, not a special case in each method.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stellar_sdk import xdr as x

from .faults import UP_TO_DATE, Route
from .ledger import FoundEntry, Ledger
from .records import ClosedLedger, Event, IncludedTx


@dataclass(frozen=True)
class ChainView:
    ledger: Ledger
    store_seq: int  # the last ledger the transaction store has ingested: latestLedger
    history_from: int  # the first ledger the store still holds: oldestLedger
    entries_seq: int  # the ledger getLedgerEntries answers at
    core_seq: int  # the ledger the node's stellar-core validates sendTransaction against
    lookup_seq: int  # what getTransaction's lookup has seen (store_seq, or one less mid-commit)
    retention_ledgers: int  # the store's history window (getHealth ledgerRetentionWindow)

    @classmethod
    def of_network(cls, ledger: Ledger) -> ChainView:
        """One node, up to date, keeping the configured window: no fault."""
        return cls.of_node(ledger, UP_TO_DATE, restarted_at=0, retention_ledgers=0)

    @classmethod
    def of_node(
        cls, ledger: Ledger, route: Route, *, restarted_at: int, retention_ledgers: int
    ) -> ChainView:
        """The node ``route`` picked: its core ``core_lag`` ledgers behind the network, its
        store ``store_lag`` behind its core, its history starting no earlier than the ledger it
        last came back at (``restarted_at``, 0 if never) nor before its retention window."""
        pruned = ledger.oldest.seq
        core = max(ledger.latest.seq - route.core_lag, pruned, restarted_at)
        store = max(core - route.store_lag, pruned, restarted_at)
        window = min(retention_ledgers or ledger.retention_ledgers, ledger.retention_ledgers)
        history_from = max(pruned, store - window + 1, restarted_at)
        return cls(
            ledger,
            store_seq=store,
            history_from=history_from,
            entries_seq=store if route.entries_follow_store else core,
            core_seq=core,
            lookup_seq=store - 1 if route.ingest_race else store,
            retention_ledgers=window,
        )

    @property
    def latest(self) -> ClosedLedger:
        closed = self.ledger.ledger_at(self.store_seq)
        assert closed is not None  # heights never go below what the ledger still holds
        return closed

    @property
    def oldest(self) -> ClosedLedger:
        closed = self.ledger.ledger_at(self.history_from)
        assert closed is not None
        return closed

    def ledger_at(self, seq: int) -> ClosedLedger | None:
        if not self.history_from <= seq <= self.store_seq:
            return None
        return self.ledger.ledger_at(seq)

    def transaction(self, tx_hash: str) -> IncludedTx | None:
        tx = self.ledger.transaction(tx_hash)
        if tx is None or not self.history_from <= tx.ledger <= self.lookup_seq:
            return None
        return tx

    @property
    def events(self) -> Iterable[Event]:
        """In order; callers stop at the end of the range they asked for (within the store's)."""
        return self.ledger.events

    def ledger_entry(self, key: x.LedgerKey) -> FoundEntry | None:
        return self.ledger.ledger_entry(key, at=self.entries_seq)

    def recent_inclusion_fees(self, ledgers: int, *, soroban: bool) -> tuple[list[int], int]:
        return self.ledger.recent_inclusion_fees(ledgers, soroban=soroban, up_to=self.store_seq)
