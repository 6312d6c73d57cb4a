"""What the ledger stores and reports: accounts, included transactions, events, transfers."""

from __future__ import annotations

from dataclasses import dataclass

from .xdr_build import BASE_RESERVE

INT64_MAX = 2**63 - 1  # the most any balance or trustline limit can hold, in stroops


def min_balance(num_sub_entries: int) -> int:
    """stellar-core getMinBalance: (2 + sub-entries) base reserves; with none, 1 XLM."""
    return (2 + num_sub_entries) * BASE_RESERVE


NEW_ACCOUNT_MIN_BALANCE = min_balance(0)  # what a new account must start with


@dataclass
class Account:
    account_id: str
    balance: int  # stroops
    seq: int
    last_modified: int
    num_sub_entries: int = 0  # trustlines; each raises the minimum balance by a base reserve


@dataclass
class Trustline:
    """A classic trustline (stellar-core TrustLineEntry): balance, limit and the issuer's
    AUTHORIZED_FLAG. The issuer itself holds no trustline (it mints and burns)."""

    balance: int
    limit: int
    authorized: bool
    last_modified: int


@dataclass
class TokenBalance:
    """A SAC ``Balance`` entry (persistent contract data) of a contract holder."""

    amount: int
    last_modified: int
    live_until: int  # its TTL (liveUntilLedgerSeq): archived once a ledger passes it


@dataclass(frozen=True)
class Transfer:
    tx_hash: str
    ledger: int
    contract_id: str
    function: str
    from_: str
    to: str
    amount: int
    asset: str
    to_muxed_id: int | str | None = None  # MuxedId.as_json() of the move, if it had one
    to_muxed_id_type: str | None = None  # "u64", "string" or "bytes" (hex)


@dataclass(frozen=True)
class Event:
    ledger: int
    close_time: int
    contract_id: str
    topics: list[str]
    value: str
    tx_hash: str
    tx_index: int  # application order, 1-based; 0 for fee events charged before all txs
    op_index: int
    event_index: int
    in_successful_call: bool = True

    @property
    def position(self) -> tuple[int, int, int, int]:
        return self.ledger, self.tx_index, self.op_index, self.event_index

    @property
    def id(self) -> str:
        # stellar-rpc event ids: TOID (ledger<<32 | tx<<12 | op) and the event's index.
        toid = (self.ledger << 32) | (self.tx_index << 12) | self.op_index
        return f"{toid:019d}-{self.event_index:010d}"


@dataclass(frozen=True)
class IncludedTx:
    hash: str
    envelope_xdr: str
    result_xdr: str
    meta_xdr: str
    ledger: int
    created_at: int
    application_order: int
    failure: str | None  # why the invocation trapped; None on success
    inclusion_fee_charged: int = 0  # what getFeeStats counts (per operation for classic)
    transaction_events: tuple[str, ...] = ()  # CAP-67 fee events (TransactionEvent XDR)
    contract_events: tuple[tuple[str, ...], ...] = ()  # ContractEvent XDR per operation
    soroban: bool = True

    @property
    def successful(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class ClosedLedger:
    seq: int
    close_time: int
    hash: bytes
    header_xdr: str
    meta_xdr: str
    tx_hashes: tuple[str, ...] = ()  # included transactions in application order


@dataclass(frozen=True)
class Submission:
    status: str  # PENDING, DUPLICATE, TRY_AGAIN_LATER or ERROR
    hash: str
    error_result_xdr: str | None = None


@dataclass(frozen=True)
class Eviction:
    """A queued transaction that left the queue without being included."""

    hash: str
    ledger: int
    reason: str
