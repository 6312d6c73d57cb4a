"""Signed envelopes that left a client are public, and anyone may submit them again.

An envelope sent to an RPC node is handed to stellar-core, which floods it to its peers: from
then on any node operator (or whoever the client handed it to) holds a valid signed
transaction. It can land as long as its sequence number is unused and its ``maxTime`` has not
passed, whoever submits it. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import TransactionEnvelope

from .ledger import Envelope, Ledger

# Bounds memory when envelopes carry no maxTime (the oldest are forgotten first).
MAX_OPEN_ENVELOPES = 100_000


@dataclass(frozen=True)
class PublicEnvelope:
    hash: str
    xdr: str
    source: str
    seq: int
    max_time: int  # 0: no upper time bound


class PublicEnvelopes:
    def __init__(self) -> None:
        self._open: dict[str, PublicEnvelope] = {}  # first seen first

    def remember(self, raw: str, envelope: Envelope, tx_hash: str) -> None:
        """Every envelope a client sends, whatever the answer: it left the client."""
        if not isinstance(envelope, TransactionEnvelope):
            return  # fee bumps are refused (README "Not modelled")
        tx = envelope.transaction
        bounds = tx.preconditions.time_bounds if tx.preconditions else None
        public = PublicEnvelope(
            hash=tx_hash,
            xdr=raw,
            source=tx.source.account_id,
            seq=tx.sequence,
            max_time=bounds.max_time if bounds else 0,
        )
        self._open.setdefault(public.hash, public)
        while len(self._open) > MAX_OPEN_ENVELOPES:
            del self._open[next(iter(self._open))]

    def still_open(self, ledger: Ledger) -> list[PublicEnvelope]:
        """Those that may still land, in the order first seen; the rest are forgotten: included,
        a ledger closed after their maxTime, or their sequence number already used."""
        close_time = ledger.latest.close_time
        for envelope in list(self._open.values()):
            account = ledger.accounts.get(envelope.source)
            if (
                ledger.transaction(envelope.hash) is not None
                or (envelope.max_time and close_time > envelope.max_time)
                or (account is not None and account.seq >= envelope.seq)
            ):
                del self._open[envelope.hash]
        return list(self._open.values())
