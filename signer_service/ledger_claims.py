"""What the signer may believe about the network's ledger number: the caller's claim, the
log's first accepted claim (the anchor), and the ceiling wall time allows. Pure."""

from __future__ import annotations

from dataclasses import dataclass

# Stellar's first ledger closed on 2015-09-30; close times rise by at least one second a
# ledger (stellar-core), so no network's ledger number can exceed the seconds since then.
STELLAR_EPOCH = 1_443_571_200


@dataclass(frozen=True)
class LedgerClaim:
    """What SignAuthorizationEntry knows about ledgers: the caller's claimed current ledger,
    the expiration it asks for, and the highest ledger the signer believes possible now."""

    current: int
    expiration: int
    ceiling: int


@dataclass(frozen=True)
class LedgerAnchor:
    """The first current_ledger claim the audit log accepted, and when (unix time): the one
    point every later claim is measured from. It never moves, so accepted claims cannot
    raise the bound: slack does not add up per request."""

    ledger: int
    at: float


# Ledgers a claim may run ahead of the anchor's pace: a caller's view of the latest ledger
# (and so the anchor itself) may be up to a minute stale at 5-second ledgers.
LEDGER_CLAIM_SLACK = 12


def ledger_ceiling(now: float, anchor: LedgerAnchor | None, min_close_seconds: int = 1) -> int:
    """The highest current ledger plausible at `now`. Close times are strictly increasing
    whole seconds (stellar-core refuses a close time not after the last one), so at most one
    ledger closes per second: never more than the seconds since Stellar's epoch, nor more
    than the anchor plus the seconds elapsed since it (`min_close_seconds` per ledger when
    the operator knows the network is slower) plus a fixed slack."""
    ceiling = int(now) - STELLAR_EPOCH
    if anchor is not None:
        elapsed = max(0.0, now - anchor.at)
        ceiling = min(ceiling, anchor.ledger + int(elapsed // min_close_seconds)
                      + LEDGER_CLAIM_SLACK)
    return ceiling
