"""How fast we offer transactions to the network. Pure: no I/O.

Two rules, both counted in ledgers and operations, never in wall time (the sandbox's test
clock closes a ledger every 0.25 s with close times a second apart, so a rule in seconds is
wrong by a factor of four there, and by another on a slow network):

- Re-send pacing. A node drops a queued transaction only at a ledger boundary (stellar-core
  HerderImpl: not included within TRANSACTION_QUEUE_TIMEOUT_LEDGERS, or trimmed from a full
  queue), so re-sending a not-yet-found envelope more than once per closed ledger only adds
  load: `resend_due`.
- The network's queue. stellar-core holds at most TRANSACTION_QUEUE_SIZE_MULTIPLIER (2) ledgers'
  worth of classic operations (the ledger header's maxTxSetSize); a transaction beyond that is
  refused (txINSUFFICIENT_FEE at equal fees) and banned for 10 ledgers. The sender keeps the
  classic operations it has in flight under that capacity and holds the rest, signed, until
  room frees up: `admit_for_sending`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stellar_sdk import xdr

# stellar-core src/main/Config.cpp TRANSACTION_QUEUE_SIZE_MULTIPLIER: the classic queue holds
# this many ledgers' worth of operations.
QUEUE_SIZE_MULTIPLIER = 2
# The published testnet limit (stellar-docs networks page: 200 operations per ledger), used
# when neither the RPC nor PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER says otherwise; mainnet's
# 1,000 is larger, so this is the safe guess.
DEFAULT_CLASSIC_OPS_PER_LEDGER = 200


def resend_due(last_sent_ledger: int | None, latest_ledger: int) -> bool:
    """A not-found, not-provably-dead envelope is re-sent only once a ledger has closed since
    it was last sent (or re-sent): before that the node has had no chance to drop it. Unknown
    (a row from before migration 090): due."""
    return last_sent_ledger is None or latest_ledger > last_sent_ledger


def classic_queue_capacity(network_ops_per_ledger: int | None, configured: int | None) -> int:
    """Classic operations the network's queue holds: the multiplier times the per-ledger
    limit the RPC reports (the latest ledger header's maxTxSetSize), lowered by
    PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER when the operator set it (room for other
    submitters), else the published testnet limit."""
    known = [n for n in (network_ops_per_ledger, configured) if n is not None and n > 0]
    per_ledger = min(known) if known else DEFAULT_CLASSIC_OPS_PER_LEDGER
    return QUEUE_SIZE_MULTIPLIER * per_ledger


def classic_operations(envelope_xdr: str) -> int:
    """The classic operations a transaction puts in the network's queue: all of its operations
    when it is a classic transaction, none when it is a Soroban one (its own lane, limited by
    resources, not operations). An envelope that does not decode counts as none: the node
    refuses it without queueing it."""
    try:
        envelope = xdr.TransactionEnvelope.from_xdr(envelope_xdr)
    except Exception:  # noqa: BLE001 - any decode failure: the node will refuse it anyway
        return 0
    if envelope.v1 is not None:
        tx = envelope.v1.tx
        return 0 if tx.ext.v == 1 else len(tx.operations)
    if envelope.v0 is not None:
        return len(envelope.v0.tx.operations)
    return 0  # a fee bump: never built by this service


@dataclass(frozen=True)
class Outgoing:
    """A transaction claimed for its first send: its sequence source, its classic operations,
    and whether its time bounds can still be met."""

    source: str
    classic_ops: int
    expired: bool = False


def expired_before_sending(max_time: int, latest_close_time: int) -> bool:
    """Too late to send: every ledger from now on closes after `latest_close_time`, so one at or
    past `max_time` means the envelope can never be included (txTOO_LATE)."""
    return latest_close_time >= max_time


def admit_for_sending(outgoing: Sequence[Outgoing], in_flight: int, capacity: int
                      ) -> list[bool]:
    """Which of `outgoing` (in claim order: sequence order within a source) go out now.

    Classic operations in flight (sent, not yet seen included or dead) plus those admitted
    stay within `capacity`; a transaction that would overflow it is held, and so is every
    later one of the same source (a node takes N+1 only after N). Soroban transactions use
    no classic room. When nothing is in flight the first transaction goes out even if it is
    alone larger than the capacity (the node then says so; holding it for ever would strand
    it). An expired one is not sent (the caller rebuilds it, giving its number back), and
    later ones of its source wait: above a free number, they are rebuilt next."""
    admitted: list[bool] = []
    held_sources: set[str] = set()
    used = in_flight
    for item in outgoing:
        if item.expired or item.source in held_sources:
            held_sources.add(item.source)
            admitted.append(False)
            continue
        fits = used + item.classic_ops <= capacity or (used == 0 and item.classic_ops > 0)
        if item.classic_ops and not fits:
            held_sources.add(item.source)
            admitted.append(False)
            continue
        used += item.classic_ops
        admitted.append(True)
    return admitted
