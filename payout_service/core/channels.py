"""The channel pool's pure core: channel states and their transitions (a table), what a
channel needs next, and the lifecycle transactions (create, top-up, merge). No I/O.

A channel account is the source of payout transactions, one in flight at a time
(docs/channels.md). Its lifecycle:

    pending ─▶ funding ─▶ active ◀─▶ draining ─▶ retired ─▶ merging ─▶ merged
       ▲          │                                 ▲  │        │
       └──────────┘ (create failed or proven dead)  │  └─▶ active (re-activated, still funded)
                                                    └───────────┘ (merge failed or proven dead)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from stellar_sdk import Account, Asset, TransactionBuilder
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service.core.amounts import format_amount
from payout_service.core.transactions import BASE_INCLUSION_FEE

# stellar-core TransactionFrame: a transaction carries at most 100 operations (MAX_OPS_PER_TX).
MAX_OPS_PER_TX = 100
# Base reserve 0.5 XLM, an account needs 2 of them (CAP-0033 keeps it at 2 × base reserve):
# CreateAccount with less fails CREATE_ACCOUNT_LOW_RESERVE.
MIN_STARTING_BALANCE_STROOPS = 10_000_000


class ChannelState(StrEnum):
    PENDING = "pending"  # registered, its account not on chain yet; waits for CreateAccount
    FUNDING = "funding"  # a CreateAccount for it is live
    ACTIVE = "active"  # leased to payout transactions
    DRAINING = "draining"  # takes no new work; retired once nothing is in flight
    RETIRED = "retired"  # no work, still funded: can be re-activated or merged
    MERGING = "merging"  # its AccountMerge into the funding account is live
    MERGED = "merged"  # gone from the ledger; its XLM is back in the funding account


S = ChannelState
TRANSITIONS: dict[ChannelState, frozenset[ChannelState]] = {
    S.PENDING: frozenset({S.FUNDING, S.RETIRED}),
    S.FUNDING: frozenset({S.ACTIVE, S.PENDING}),
    S.ACTIVE: frozenset({S.DRAINING}),
    S.DRAINING: frozenset({S.ACTIVE, S.RETIRED}),
    S.RETIRED: frozenset({S.ACTIVE, S.MERGING}),
    S.MERGING: frozenset({S.MERGED, S.RETIRED}),
    S.MERGED: frozenset(),
}
# Channels that still exist on chain and may hold a payout transaction in flight.
ON_CHAIN = frozenset({S.ACTIVE, S.DRAINING, S.RETIRED, S.MERGING})


class IllegalChannelTransition(Exception):
    def __init__(self, account: str, current: ChannelState, target: ChannelState) -> None:
        super().__init__(f"channel {account} is {current.value}; it cannot become {target.value}")
        self.account, self.current, self.target = account, current, target


def sources_of(target: ChannelState) -> frozenset[ChannelState]:
    """The states a channel may be in to move to `target` (the guard of the one UPDATE)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def check_transition(account: str, current: ChannelState, target: ChannelState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalChannelTransition(account, current, target)


class KeyRole(StrEnum):
    """A key's role in the signer (signer.proto KeyRole; ListKeys reports it). The signer's
    policy gives each role its own rules: a channel key may be a transaction source and merge
    into the funding account (merge_into), a funding key may create and top up channels
    (channel_funding). A key of another role would sign under the wrong rules or be refused
    on every lifecycle transaction."""

    UNSPECIFIED = "unspecified"
    PAYOUT = "payout"
    FUNDING = "funding"
    CHANNEL = "channel"


def role_fault(key_id: str, held: KeyRole, wanted: KeyRole) -> str | None:
    """Why a key may not serve as `wanted`, or None."""
    if held is wanted:
        return None
    how = ("signerctl channel-keys generate" if wanted is KeyRole.CHANNEL
           else "a key of role 'funding' with channel_funding rules")
    return (f"the signer's key {key_id[:40]} has role '{held}', a {wanted} key needs role "
            f"'{wanted}' ({how})")


def role_faults(wanted: Mapping[str, KeyRole], held: Mapping[str, KeyRole]) -> list[str]:
    """Each wanted key the signer lists under another role; keys it does not list are not
    judged here (the signer may be one key behind; signing will say NOT_FOUND)."""
    faults = []
    for key_id, role in sorted(wanted.items()):
        if key_id in held:
            fault = role_fault(key_id, held[key_id], role)
            if fault is not None:
                faults.append(fault)
    return faults


class OperationKind(StrEnum):
    CREATE = "create"  # CreateAccount × n from the funding account
    TOP_UP = "top_up"  # native Payment × n from the funding account
    MERGE = "merge"  # AccountMerge of one channel into the funding account


class OperationStatus(StrEnum):
    BUILT = "built"
    SIGNED = "signed"
    SENT = "sent"
    INCLUDED = "included"
    FAILED_ON_CHAIN = "failed_on_chain"
    DEAD = "dead"
    REJECTED = "rejected"  # refused by the signer: never left us, its number is free


LIVE = frozenset({OperationStatus.BUILT, OperationStatus.SIGNED, OperationStatus.SENT})
# Statuses that hold their sequence number on the source (as payout attempts' HOLDS_SEQUENCE):
# a live one may still land, an included or failed one consumed it.
HOLDS_SEQUENCE = LIVE | {OperationStatus.INCLUDED, OperationStatus.FAILED_ON_CHAIN}


# What happens to the channels of an operation when it ends.
@dataclass(frozen=True)
class Outcome:
    state_from: ChannelState | None  # None: the channels' state does not change
    state_to: ChannelState | None


def channel_outcome(kind: OperationKind, succeeded: bool) -> Outcome:
    """A create that landed activates its channels, one that did not sends them back to
    pending (a later create retries them); a merge that landed ends the channel, one that
    did not leaves it retired. A top-up changes no state either way."""
    if kind is OperationKind.CREATE:
        return Outcome(S.FUNDING, S.ACTIVE if succeeded else S.PENDING)
    if kind is OperationKind.MERGE:
        return Outcome(S.MERGING, S.MERGED if succeeded else S.RETIRED)
    return Outcome(None, None)


def top_up_amount(balance_stroops: int, threshold_stroops: int, target_stroops: int) -> int:
    """A channel below the threshold is brought back to the target; else nothing."""
    if balance_stroops >= threshold_stroops:
        return 0
    return max(0, target_stroops - balance_stroops)


def created_account_sequence(ledger: int) -> int:
    """stellar-core CreateAccountOpFrame: a new account starts at sequence ledgerSeq << 32
    (getStartingSequenceNumber, protocol 10 and later)."""
    return ledger << 32


def chunks(items: list[tuple[str, int]], size: int = MAX_OPS_PER_TX) -> list[list[tuple[str, int]]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


@dataclass(frozen=True)
class LifecycleTx:
    source_account: str
    sequence: int
    max_time: int  # unix seconds, never 0: "proven dead" must be reachable (invariant 2)
    network_passphrase: str
    fee_per_op: int = BASE_INCLUSION_FEE


@dataclass(frozen=True)
class BuiltTx:
    envelope_xdr: str
    tx_hash: str
    fee_stroops: int


def build_lifecycle_transaction(
    kind: OperationKind, tx: LifecycleTx, items: list[tuple[str, int]], *, funding_account: str,
) -> BuiltTx:
    """create/top-up: one operation per (channel, amount), from the funding account (the
    transaction's source); merge: one AccountMerge of the source (the channel) into the
    funding account. Classic operations: the fee is fee_per_op × operations."""
    if tx.max_time <= 0:
        raise ValueError("every lifecycle transaction needs a max_time (invariant 2)")
    if not items or len(items) > MAX_OPS_PER_TX:
        raise ValueError(f"1 to {MAX_OPS_PER_TX} operations per transaction, got {len(items)}")
    if kind is OperationKind.MERGE and len(items) != 1:
        raise ValueError("a merge transaction merges exactly one channel")
    # TransactionBuilder increments the account's sequence, so hand it seq - 1.
    builder = TransactionBuilder(
        Account(tx.source_account, tx.sequence - 1),
        network_passphrase=tx.network_passphrase, base_fee=tx.fee_per_op,
    )
    builder.add_time_bounds(0, tx.max_time)
    for account, amount in items:
        if kind is OperationKind.CREATE:
            builder.append_create_account_op(account, format_amount(amount))
        elif kind is OperationKind.TOP_UP:
            builder.append_payment_op(account, Asset.native(), format_amount(amount))
        else:
            builder.append_account_merge_op(funding_account)
    envelope: TransactionEnvelope = builder.build()
    return BuiltTx(envelope.to_xdr(), envelope.hash_hex(), envelope.transaction.fee)
