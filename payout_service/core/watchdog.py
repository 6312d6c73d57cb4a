"""The watchdog's rules (docs/design.md invariant 9): where it stands in the chain's history, what a
page of transactions means, and when a CONFIRMED payout is unseen. Pure: no I/O.

Position. getTransactions pages through history by TOID cursor (ledger << 32 | tx << 12 | op;
stellar-rpc methods/get_transactions.go): a request resumes right after the cursor's
transaction and reads ledger after ledger, in one consistent read of the node's database, up
to the `latestLedger` it reports, unless it fills the page first. So a page shorter than the
limit proves every ledger up to that `latestLedger` read, and a full page every ledger before
the one its cursor stops in. Nothing else moves the position: a node that has not ingested our
next ledger yet (a lagging node behind a load balancer) answers an empty page with a
`latestLedger` below it, and "not yet ingested" is never taken for "no transactions".
A cursor older than the node's history cannot be read at all (stellar-rpc: "database does not
contain metadata for ledger"): that is a gap, declared as a finding, and the watchdog moves on
to the oldest ledger the node has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from payout_service.core.outflows import (
    FEE_SOURCE,
    Debit,
    WatchedAccounts,
    debits,
    fee_charged,
    names_watched,
)

UNEXPLAINED_OUTFLOW = "unexplained_outflow"
PAID_TWICE = "paid_twice"
CONFIRMED_UNSEEN = "confirmed_unseen"
WATCHDOG_GAP = "watchdog_gap"
FINDING_KINDS = (UNEXPLAINED_OUTFLOW, PAID_TWICE, CONFIRMED_UNSEEN, WATCHDOG_GAP)
# Money may be leaving: these stop sending when PAYOUTS_WATCHDOG_PAUSE_ON_FINDING is on.
PAUSING_KINDS = frozenset({UNEXPLAINED_OUTFLOW, PAID_TWICE})
# stellar-rpc's largest getTransactions page (config/options.go: max 200).
PAGE_LIMIT = 200
# Debits that move an asset away (a fee is reported, not summed with them).
MOVES = ("transfer", "burn", "clawback")


def toid(ledger: int, tx: int = 0, op: int = 0) -> int:
    return (ledger << 32) | (tx << 12) | op


def ledger_of(cursor: int) -> int:
    return cursor >> 32


@dataclass(frozen=True)
class Position:
    """Every ledger up to `verified_ledger` is read; `cursor` resumes inside the next one."""

    verified_ledger: int
    cursor: int

    @classmethod
    def starting_at(cls, ledger: int) -> Position:
        """Nothing read yet; the first page starts with `ledger`'s first transaction."""
        return cls(ledger - 1, toid(ledger))

    @property
    def next_ledger(self) -> int:
        return self.verified_ledger + 1


def after_page(position: Position, *, returned: int, limit: int, page_cursor: str,
               latest_ledger: int) -> Position:
    """Where a page leaves the watchdog (see the module docstring)."""
    if returned >= limit:
        cursor = int(page_cursor)
        if cursor <= position.cursor:
            return position  # a page that did not move forward (never seen from stellar-rpc)
        return Position(max(position.verified_ledger, ledger_of(cursor) - 1), cursor)
    if latest_ledger < position.next_ledger:
        return position  # the node has not reached our next ledger yet: nothing proven
    return Position(latest_ledger, toid(latest_ledger + 1))


def after_gap(position: Position, oldest_ledger: int) -> Position:
    """The node's history starts at `oldest_ledger`: what lies before it is skipped."""
    return Position(max(position.verified_ledger, oldest_ledger - 1), toid(oldest_ledger))


@dataclass(frozen=True)
class ChainTransaction:
    """One transaction as getTransactions reports it (base64 XDR)."""

    tx_hash: str
    ledger: int
    successful: bool
    fee_bump: bool
    envelope_xdr: str
    result_xdr: str
    meta_xdr: str


@dataclass(frozen=True)
class Known:
    """What the service built with this hash: payout attempts (payout, attempt number) and/or
    a channel lifecycle operation."""

    payouts: tuple[tuple[UUID, int], ...] = ()
    channel_operation: bool = False


@dataclass(frozen=True)
class ChainPayment:
    """The chain paid this payout by this transaction in this ledger."""

    payout_id: UUID
    tx_hash: str
    ledger: int
    attempt: int


@dataclass(frozen=True)
class Finding:
    kind: str
    dedupe_key: str
    detail: str
    tx_hash: str | None = None
    ledger: int | None = None
    ledger_to: int | None = None
    payout_id: UUID | None = None
    accounts: tuple[str, ...] = ()
    amount: int | None = None
    asset: str | None = None


@dataclass
class PageVerdict:
    payments: list[ChainPayment] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    fees_stroops: int = 0  # feeCharged of our own transactions in the page
    decoded: int = 0  # transactions that named a watched account and were decoded


def judge_page(
    transactions: Sequence[ChainTransaction], known: Mapping[str, Known],
    inner_hashes: Mapping[str, str], watched: WatchedAccounts,
) -> PageVerdict:
    """Each transaction is ours (its hash, or a fee bump's inner hash, is in `known`), or else
    it must not take anything from a watched account. `inner_hashes`: outer -> inner hash of
    the page's fee bumps."""
    verdict = PageVerdict()
    for tx in transactions:
        inner = inner_hashes.get(tx.tx_hash)
        ours = known.get(tx.tx_hash) or (known.get(inner) if inner else None)
        if ours is not None:
            _ours(tx, ours, inner, watched, verdict)
            continue
        if not names_watched(tx.envelope_xdr, tx.meta_xdr, watched):
            continue
        verdict.decoded += 1
        taken = debits(tx.envelope_xdr, tx.result_xdr, tx.meta_xdr, watched)
        if taken:
            verdict.findings.append(unexplained(tx, taken))
    verdict.findings += paid_twice_within(verdict.payments)
    return verdict


def _ours(tx: ChainTransaction, ours: Known, inner: str | None, watched: WatchedAccounts,
          verdict: PageVerdict) -> None:
    if inner is None:
        verdict.fees_stroops += max(0, fee_charged(tx.result_xdr))
    else:
        # Our envelope, bumped: whoever bumped it paid the fee, unless the bump names one of
        # our accounts as fee source, which the service never builds.
        verdict.decoded += 1
        bump = [d for d in debits(tx.envelope_xdr, tx.result_xdr, "", watched)
                if d.kind == FEE_SOURCE]
        if bump:
            verdict.findings.append(unexplained(tx, bump))
    if tx.successful:
        paid = inner or tx.tx_hash
        verdict.payments += [ChainPayment(payout, paid, tx.ledger, attempt)
                             for payout, attempt in ours.payouts]


def unexplained(tx: ChainTransaction, taken: Sequence[Debit]) -> Finding:
    moved = [d for d in taken if d.kind in MOVES and d.amount is not None]
    assets = {d.asset for d in moved}
    single = len(assets) == 1
    status = "successful" if tx.successful else "failed (the fee and sequence number only)"
    return Finding(
        UNEXPLAINED_OUTFLOW, f"{UNEXPLAINED_OUTFLOW}:{tx.tx_hash}",
        f"{status} transaction the service did not build: "
        + "; ".join(d.describe() for d in taken),
        tx_hash=tx.tx_hash, ledger=tx.ledger,
        accounts=tuple(dict.fromkeys(d.account for d in taken)),
        amount=sum(d.amount or 0 for d in moved) if single else None,
        asset=next(iter(assets)) if single else None,
    )


def paid_twice_within(payments: Iterable[ChainPayment]) -> list[Finding]:
    """Two different successful transactions for one payout within these payments."""
    first: dict[UUID, ChainPayment] = {}
    found = []
    for p in payments:
        seen = first.setdefault(p.payout_id, p)
        if seen.tx_hash != p.tx_hash:
            found.append(paid_twice(p, seen.tx_hash, seen.ledger))
    return found


def paid_twice(payment: ChainPayment, other_hash: str, other_ledger: int) -> Finding:
    """`payment` is a second successful transaction for a payout the chain already paid."""
    pair = sorted((payment.tx_hash, other_hash))
    return Finding(
        PAID_TWICE, f"{PAID_TWICE}:{payment.payout_id}:{pair[0]}:{pair[1]}",
        f"payout paid by two transactions: {other_hash} (ledger {other_ledger}) and "
        f"{payment.tx_hash} (ledger {payment.ledger}, attempt {payment.attempt})",
        tx_hash=payment.tx_hash, ledger=payment.ledger, payout_id=payment.payout_id,
    )


def gap(position: Position, oldest_ledger: int) -> Finding:
    first, last = position.next_ledger, oldest_ledger - 1
    return Finding(
        WATCHDOG_GAP, f"{WATCHDOG_GAP}:{first}:{last}",
        f"ledgers {first}-{last} left the RPC's history before the watchdog read them: "
        "outflows in them are not verified", ledger=first, ledger_to=last,
    )


@dataclass(frozen=True)
class ConfirmedPayout:
    """A CONFIRMED payout, its included attempt and whether the chain paid it by that hash."""

    payout_id: UUID
    payout_ref: str
    confirmed_at: datetime
    tx_hash: str | None
    ledger: int | None
    matched: bool


@dataclass(frozen=True)
class ConfirmedCheck:
    findings: list[Finding]
    # The next check reads confirmations after this time.
    checked_until: datetime
    # Every row was judged (none waits for the watchdog to read its ledger).
    complete: bool = True


def check_confirmed(
    rows: Sequence[ConfirmedPayout], *, checked_until: datetime, verified_ledger: int,
    start_ledger: int, gaps: Sequence[tuple[int, int]],
) -> ConfirmedCheck:
    """Walks confirmations in time order: once the watchdog has read a payout's ledger, the
    chain must have paid it by the hash the service confirmed. The walk stops at the first
    payout whose ledger the watchdog has not read yet (it is checked at a later step)."""
    findings: list[Finding] = []
    until = checked_until
    for row in rows:
        if row.ledger is not None and row.ledger > verified_ledger:
            # Re-read from just before it; an earlier row at the same time is checked again,
            # harmlessly (findings are idempotent).
            return ConfirmedCheck(findings, max(checked_until,
                                                row.confirmed_at - timedelta(microseconds=1)),
                                  complete=False)
        until = max(until, row.confirmed_at)
        if row.ledger is not None and (
                row.ledger < start_ledger or any(a <= row.ledger <= b for a, b in gaps)):
            continue  # in history the watchdog never read
        if not row.matched:
            findings.append(Finding(
                CONFIRMED_UNSEEN, f"{CONFIRMED_UNSEEN}:{row.payout_id}:{row.tx_hash}",
                f"payout {row.payout_ref} is CONFIRMED by {row.tx_hash or 'no transaction'}"
                f" in ledger {row.ledger}, but the chain shows no successful transaction with"
                " that hash paying it", tx_hash=row.tx_hash, ledger=row.ledger,
                payout_id=row.payout_id,
            ))
    return ConfirmedCheck(findings, until)
