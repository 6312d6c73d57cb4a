"""Proofs of death: when a transaction that left us can never land (DESIGN.md invariants 1, 8).

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

- A getTransaction NOT_FOUND covers the ledgers [oldestLedger, latestLedger] of the node that
  answered, and says the transaction is in none of them. It is worth something only if that
  range starts at or before the first ledger the envelope could have been applied in (when it
  was first sent or handed out).
- **Expired**: the same answer's latestLedgerCloseTime is past the envelope's max_time. Close
  times strictly increase, so no later ledger can include it, and no ledger up to latestLedger
  did.
- **Sequence consumed**: the account, read at ledger A, is at or past the envelope's sequence
  number, and the NOT_FOUND's latestLedger is at or past A. Some transaction used the number at
  or before A, and it was not ours (ours is in none of the ledgers up to A). A NOT_FOUND from a
  store behind A proves nothing: ours may be the one that used the number.
- **Source missing**: the account does not exist at ledger A (merged), with the same NOT_FOUND
  condition. A re-created account starts at sequence (its creation ledger) << 32, above
  A << 32; an envelope numbered at or below that can never apply (stellar-core
  getStartingSequenceNumber; AccountMerge refuses a sequence number that far, SEQNUM_TOO_FAR).

Callers read the account before looking the transaction up, so that the NOT_FOUND tends to be
the later observation and the condition holds on the first try; the condition, not the order,
is what makes the proof safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeathKind(StrEnum):
    EXPIRED = "expired"
    SEQUENCE_CONSUMED = "sequence_consumed"
    SOURCE_MISSING = "source_missing"


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
class DeathProof:
    kind: DeathKind
    text: str


def proof_of_death(
    envelope: Envelope, not_found: NotFound, account: AccountState | None = None
) -> DeathProof | None:
    """A proof that `envelope` can never land, or None when these observations do not give
    one (then it may still land: keep it and look again later)."""
    if envelope.left_at_ledger is None or not_found.oldest_ledger > envelope.left_at_ledger:
        return None  # the node's history does not reach back to when it could first land
    seen = (f"NOT_FOUND by a node holding ledgers {not_found.oldest_ledger}.."
            f"{not_found.latest_ledger} (left us at ledger {envelope.left_at_ledger})")
    if not_found.latest_ledger_close_time > envelope.max_time:
        return DeathProof(DeathKind.EXPIRED, (
            f"{seen}; ledger {not_found.latest_ledger} closed at "
            f"{not_found.latest_ledger_close_time} > max_time {envelope.max_time}"))
    if account is None or not_found.latest_ledger < account.ledger:
        return None  # the transactions seen do not reach the ledger the account was read at
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
