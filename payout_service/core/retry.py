"""Which failures are worth another attempt, when, and when an attempt is proven dead."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Rejected at submission. A rejection alone proves nothing: the same signed envelope may
# still be queued elsewhere or become valid later (its predecessor lands, fees drop), so it
# is kept and re-sent until proven dead (see sequence_consumed / proof_of_death). These codes
# then decide between a new attempt and FAILED. Retryable ones are transient or fixed by
# rebuilding (fresh sequence, fresh fee, fresh time bounds).
RETRYABLE_REJECTIONS = frozenset(
    {"txBAD_SEQ", "txINSUFFICIENT_FEE", "txTOO_LATE", "txTOO_EARLY", "txINTERNAL_ERROR"}
)
# Wrong signature or malformed envelope: rebuilding the same thing fails the same way, and
# re-sending it is pointless.
PERMANENT_REJECTIONS = frozenset(
    {"txBAD_AUTH", "txBAD_AUTH_EXTRA", "txMALFORMED", "txSOROBAN_INVALID", "txNO_ACCOUNT",
     "txINSUFFICIENT_BALANCE", "txNOT_SUPPORTED", "txUNKNOWN",
     # An operation source's signature missing or wrong, or the account missing (txFAILED
     # at submission, named by the operation's result).
     "opBAD_AUTH", "opNO_ACCOUNT"}
)
# Included but failed on chain. txFAILED covers contract errors such as an insufficient
# balance: permanent until an operator tops up and calls RetryPayout.
RETRYABLE_ON_CHAIN = frozenset({"txTOO_LATE", "txINSUFFICIENT_FEE", "txBAD_SEQ"})


@dataclass(frozen=True)
class Verdict:
    retry: bool
    code: str


def judge_rejection(code: str) -> Verdict:
    return Verdict(retry=code in RETRYABLE_REJECTIONS, code=code)


def judge_on_chain_failure(code: str) -> Verdict:
    return Verdict(retry=code in RETRYABLE_ON_CHAIN, code=code)


def backoff_seconds(
    attempt: int, *, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return (rng or random).uniform(0, ceiling)


@dataclass(frozen=True)
class DeathProof:
    text: str


def proof_of_death(
    *, max_time: int, submitted_ledger: int | None, latest_ledger: int,
    latest_close_time: int, oldest_ledger: int,
) -> DeathProof | None:
    """A NOT_FOUND is proof only after a ledger closed past max_time (close times are
    strictly monotonic, so the transaction can no longer be included) and the node's history
    reaches back to when it was sent (else it might have landed and been forgotten)."""
    if latest_close_time <= max_time:
        return None
    if submitted_ledger is not None and oldest_ledger > submitted_ledger:
        return None
    return DeathProof(
        f"NOT_FOUND at ledger {latest_ledger} closed {latest_close_time} > max_time {max_time}; "
        f"history from ledger {oldest_ledger} covers submission ledger {submitted_ledger}"
    )


def sequence_consumed(
    *, sequence: int, chain_sequence: int, history_covers_submission: bool
) -> DeathProof | None:
    """A rejected envelope is dead at once only when the account's sequence number has
    reached its own and getTransaction (with history reaching back to the submission) does
    not know it: another transaction used the number, so this one can never be included."""
    if sequence > chain_sequence or not history_covers_submission:
        return None
    return DeathProof(
        f"sequence {sequence} consumed by another transaction (account at {chain_sequence}); "
        "NOT_FOUND with history covering the submission"
    )


def verdict_at_death(last_rejection: str | None) -> Verdict:
    """An attempt proven dead after being rejected keeps that rejection's verdict; one that
    simply expired (dropped, never included) is worth a new attempt."""
    if last_rejection is None:
        return Verdict(retry=True, code="expired")
    return judge_rejection(last_rejection)
