"""Reconciliation: re-checks CONFIRMED payouts against the chain and reports mismatches."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from payout_service import metrics
from payout_service.adapters.ledger import Included, LedgerUnavailable, LookupOutcome, NotFound
from payout_service.core.proofs import searched

log = logging.getLogger(__name__)

Lookup = Callable[[str], Awaitable[LookupOutcome]]
MAX_LOOKBACK_HOURS = 24 * 7  # Stellar RPC keeps getTransaction history for about 7 days
CONCURRENT_LOOKUPS = 8
LOOKUP_TRIES = 4
LOOKUP_BACKOFF_SECONDS = 0.2


@dataclass(frozen=True)
class Mismatch:
    payout_id: str
    tx_hash: str
    problem: str


@dataclass(frozen=True)
class Reconciliation:
    checked: int
    mismatches: list[Mismatch]
    # NOT_FOUND only from nodes whose history misses the recorded ledger (restarted without
    # backfill, lagging, pruned): no evidence either way, so neither a match nor a mismatch.
    unverified: int = 0


@dataclass(frozen=True)
class ConfirmedPayout:
    payout_id: str
    tx_hash: str | None
    ledger: int | None


async def confirmed_since(pool: asyncpg.Pool, hours: int) -> list[ConfirmedPayout]:
    rows = await pool.fetch(
        """SELECT p.payout_id, a.tx_hash, a.ledger FROM payouts p
           LEFT JOIN payout_attempts a ON a.payout_id = p.id AND a.number = p.attempt_count
           WHERE p.state = 'CONFIRMED'
             AND COALESCE(p.confirmed_at, p.updated_at) > now() - make_interval(hours => $1)
           ORDER BY p.confirmed_at""",
        hours,
    )
    return [ConfirmedPayout(r["payout_id"], r["tx_hash"], r["ledger"]) for r in rows]


def unverifiable(p: ConfirmedPayout, outcome: LookupOutcome) -> bool:
    """Pure: the answer says nothing about the recorded ledger (core/proofs.py, searched)."""
    return isinstance(outcome, NotFound) and p.ledger is not None \
        and not searched(outcome, p.ledger)


def problem_with(p: ConfirmedPayout, outcome: LookupOutcome) -> str | None:
    """Pure: what is wrong between our record and the chain's answer, if anything."""
    if unverifiable(p, outcome):
        return None
    if isinstance(outcome, NotFound):
        return "not found on chain"
    assert isinstance(outcome, Included)
    if not outcome.successful:
        return f"failed on chain ({outcome.result_code})"
    if p.ledger is not None and outcome.ledger != p.ledger:
        return f"included in ledger {outcome.ledger}, recorded as ledger {p.ledger}"
    return None


async def reconcile(pool: asyncpg.Pool, lookup: Lookup, lookback_hours: int) -> Reconciliation:
    payouts = await confirmed_since(pool, lookback_hours)
    gate = asyncio.Semaphore(CONCURRENT_LOOKUPS)

    unverified = 0

    async def check(p: ConfirmedPayout) -> Mismatch | None:
        nonlocal unverified
        if not p.tx_hash:
            return Mismatch(p.payout_id, "", "confirmed without a transaction hash")
        async with gate:
            outcome = await lookup_retrying(lookup, p.tx_hash)
            # Behind a load balancer, another node may hold the history this one lacks.
            for _ in range(LOOKUP_TRIES - 1):
                if not unverifiable(p, outcome):
                    break
                await asyncio.sleep(LOOKUP_BACKOFF_SECONDS)
                outcome = await lookup_retrying(lookup, p.tx_hash)
        if unverifiable(p, outcome):
            unverified += 1
        problem = problem_with(p, outcome)
        return Mismatch(p.payout_id, p.tx_hash, problem) if problem else None

    checks = [asyncio.ensure_future(check(p)) for p in payouts]
    try:
        found = await asyncio.gather(*checks)
    except BaseException:
        # A lasting outage aborts the run: the lookups still waiting are not made (gather
        # alone would leave them running, each retried, the whole window of them).
        for c in checks:
            c.cancel()
        raise
    return Reconciliation(len(payouts), [m for m in found if m is not None], unverified)


async def lookup_retrying(lookup: Lookup, tx_hash: str) -> LookupOutcome:
    """A transient RPC error (503, timeout) is retried with backoff; only a lasting outage
    aborts the run (the loop runner records it and tries again later)."""
    for attempt in range(1, LOOKUP_TRIES + 1):
        try:
            return await lookup(tx_hash)
        except LedgerUnavailable:
            if attempt == LOOKUP_TRIES:
                raise
            await asyncio.sleep(LOOKUP_BACKOFF_SECONDS * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover


def job_lookback_hours(interval_seconds: float) -> int:
    """Each periodic run looks back two intervals (so a missed run loses nothing), bounded
    by what Stellar RPC keeps."""
    return min(MAX_LOOKBACK_HOURS, max(1, math.ceil(2 * interval_seconds / 3600)))


async def reconcile_job(pool: asyncpg.Pool, lookup: Lookup, interval_seconds: float) -> None:
    """The periodic reconciliation: logs every mismatch and exports how many it found.

    Every replica runs it (read-only lookups), so each one's gauge is current."""
    result = await reconcile(pool, lookup, job_lookback_hours(interval_seconds))
    metrics.RECONCILE_MISMATCHES.set(len(result.mismatches))
    for m in result.mismatches:
        log.error("reconciliation mismatch", extra={
            "payout_id": m.payout_id, "tx_hash": m.tx_hash, "problem": m.problem})
    log.info("reconciliation done", extra={
        "checked": result.checked, "mismatches": len(result.mismatches),
        "unverified": result.unverified})
