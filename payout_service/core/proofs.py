"""Proofs of death: when a transaction that left us can never land (docs/design.md invariants 1, 8).

Every envelope that ever left the service (sent by us, or handed out unsigned to an external
signer, who may submit it without telling us) may land until the chain proves otherwise. This
module is the one place that decides, from observations of the chain; callers gather them and
apply the verdict. Pure: no I/O.

Real RPC nodes are not one consistent clock. stellar-rpc serves getLedgerEntries from captive
core's current state while getTransaction reads the transactions it has ingested into its own
database, which may be behind; a load balancer answers each call from a node at its own height;
history is kept for a moving window and starts afresh on a node that lost its database. So a
proof never combines two observations without checking that they describe overlapping
history:

- A getTransaction NOT_FOUND says the transaction is in none of the ledgers the answering node
  had searched. stellar-rpc reads the transaction first and its ledger range second
  (methods/get_transaction.go), so a ledger ingested between the two reads is reported in
  `latestLedger` without having been searched: an answer covers [oldestLedger,
  latestLedger - 1] (ingestion commits one ledger per database transaction, seconds apart;
  the two reads are microseconds apart). It is worth something only if that range starts at
  or before the first ledger the envelope could have been applied in (when it was first sent
  or handed out).
- **Expired**: some ledger S closed after the envelope's max_time, and the NOT_FOUND covers S.
  Close times strictly increase, so no ledger after S can include it, and none up to S did.
  S comes from an earlier observation (any answer's latest ledger and its close time): the
  NOT_FOUND's own latest ledger is the one it may not have searched.
- **Sequence consumed**: the account, read at ledger A, is at or past the envelope's sequence
  number, and the NOT_FOUND covers A. Some transaction used the number at or before A, and it
  was not ours. A NOT_FOUND from a store that has not searched A (a transaction store behind
  the ledger entries, a lagging node behind a load balancer) proves nothing: ours may be the
  one that used the number.
- **Source missing**: the account does not exist at ledger A (merged), and the NOT_FOUND
  covers A. A re-created account starts at sequence (its creation ledger) << 32, above
  A << 32; an envelope numbered at or below that can never apply (stellar-core
  getStartingSequenceNumber; AccountMerge refuses a sequence number that far, SEQNUM_TOO_FAR).

One proof needs no transaction history at all, so it still holds when every node's history
starts after the envelope left us (a node restarted without backfill, a retention window
shorter than an external signer's delay):

- **Expired unused**: the account, read at ledger A, is below the envelope's sequence number,
  and some ledger S <= A closed after its max_time. Applying a transaction (successful or
  failed) sets its source's sequence number to the transaction's, and a source's number only
  grows (BumpSequence raises it; a merged and re-created account starts at its creation
  ledger << 32, above any number the old one could reach, since AccountMerge refuses a
  number that far): so it was not applied in any ledger up to A, and no ledger after S
  accepts it. Like sequence consumed, it takes A from the same getLedgerEntries answer as
  the account's state (its latestLedger), so the state is never older than A.

Every observation used with a NOT_FOUND must have been made before that getTransaction was
sent (an account or ledger read first, or remembered from an earlier look): then the facts it
states (a ledger's close time, an account's state at a ledger) are about ledgers the NOT_FOUND
can be checked against. What makes the proof safe is the coverage condition, which needs the
order only to be satisfied at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeathKind(StrEnum):
    EXPIRED = "expired"
    SEQUENCE_CONSUMED = "sequence_consumed"
    SOURCE_MISSING = "source_missing"
    EXPIRED_UNUSED = "expired_unused"
    # Another transaction with the same source and sequence number was seen included.
    REPLACED = "replaced"


@dataclass(frozen=True)
class Envelope:
    """What we know of a transaction we built."""

    sequence: int
    max_time: int  # unix seconds; every transaction carries one (invariant 2)
    # The first ledger it could have been applied in: the ledger we first saw when we sent it
    # or handed it out. None: it never left us, so there is nothing to prove.
    left_at_ledger: int | None


@dataclass(frozen=True)
class NotFound:
    """A getTransaction NOT_FOUND, with the range of history of the node that answered."""

    latest_ledger: int
    latest_ledger_close_time: int
    oldest_ledger: int


@dataclass(frozen=True)
class AccountState:
    """A source account as one getLedgerEntries answer showed it."""

    sequence: int | None  # None: no such account at that ledger
    ledger: int  # the ledger the answer reflects (its latestLedger)


@dataclass(frozen=True)
class ClosedLedger:
    """A ledger some answer reported, with its close time."""

    sequence: int
    close_time: int


@dataclass(frozen=True)
class DeathProof:
    kind: DeathKind
    text: str


# Ledgers a getTransaction answer may report without having searched them (see above).
UNSEARCHED_LEDGERS = 1


def proof_of_death(
    envelope: Envelope, not_found: NotFound, *, closed: ClosedLedger | None = None,
    account: AccountState | None = None,
) -> DeathProof | None:
    """A proof that `envelope` can never land, or None when these observations do not give
    one (then it may still land: keep it and look again later). `closed` and `account` were
    observed before the getTransaction that answered `not_found`."""
    unused = expired_unused(envelope, closed=closed, account=account)
    if unused is not None:
        return unused
    if envelope.left_at_ledger is None or history_misses(envelope, not_found.oldest_ledger):
        return None  # the node's history does not reach back to when it could first land
    covered_to = not_found.latest_ledger - UNSEARCHED_LEDGERS
    seen = (f"NOT_FOUND by a node that searched ledgers {not_found.oldest_ledger}.."
            f"{covered_to} (left us at ledger {envelope.left_at_ledger})")
    if closed is not None and closed.close_time > envelope.max_time \
            and closed.sequence <= covered_to:
        return DeathProof(DeathKind.EXPIRED, (
            f"{seen}; ledger {closed.sequence} closed at {closed.close_time} > max_time "
            f"{envelope.max_time}"))
    if account is None or account.ledger > covered_to:
        return None
    if account.sequence is None:
        if envelope.sequence <= account.ledger << 32:
            return DeathProof(DeathKind.SOURCE_MISSING, (
                f"{seen}; source account missing at ledger {account.ledger}"))
        return None
    if account.sequence >= envelope.sequence:
        return DeathProof(DeathKind.SEQUENCE_CONSUMED, (
            f"{seen}; sequence {envelope.sequence} consumed by another transaction "
            f"(account at {account.sequence} in ledger {account.ledger})"))
    return None


def searched(not_found: NotFound, ledger: int) -> bool:
    """The NOT_FOUND searched `ledger`: it is in the answering node's history, and not the
    latest ledger it reported (which it may not have searched, see above)."""
    return not_found.oldest_ledger <= ledger <= not_found.latest_ledger - UNSEARCHED_LEDGERS


def history_misses(envelope: Envelope, oldest_ledger: int) -> bool:
    """A node whose history starts at `oldest_ledger` can never prove `envelope` dead by a
    NOT_FOUND: it left us before that history starts."""
    return envelope.left_at_ledger is not None and oldest_ledger > envelope.left_at_ledger


def expired_unused(
    envelope: Envelope, *, closed: ClosedLedger | None, account: AccountState | None,
) -> DeathProof | None:
    """The proof that needs no getTransaction (see above): `account` read at a ledger at or
    after `closed`, which closed past max_time, and still below the envelope's number."""
    if envelope.left_at_ledger is None or closed is None or account is None:
        return None
    if account.sequence is None:  # merged: it may have been applied before
        return None
    if closed.close_time > envelope.max_time and closed.sequence <= account.ledger \
            and account.sequence < envelope.sequence:
        return DeathProof(DeathKind.EXPIRED_UNUSED, (
            f"ledger {closed.sequence} closed at {closed.close_time} > max_time "
            f"{envelope.max_time}; source account at {account.sequence} < {envelope.sequence} "
            f"in ledger {account.ledger}"))
    return None


def replaced_by(envelope: Envelope, landed_hash: str, ledger: int) -> DeathProof:
    """A transaction with the same source account and sequence number as `envelope` was
    included (a getTransaction SUCCESS or FAILED answer, which no lag can fake): the number is
    consumed, and stellar-core applies a source's number at most once."""
    return DeathProof(DeathKind.REPLACED, (
        f"sequence {envelope.sequence} consumed by {landed_hash} included in ledger {ledger}"))
