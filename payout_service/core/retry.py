"""Which failures are worth another attempt, when, and when an attempt is proven dead."""

from __future__ import annotations

import random
from dataclasses import dataclass

from payout_service.core.refusals import CHANNEL_HELD

# Rejected at submission. A rejection alone proves nothing: the same signed envelope may
# still be queued elsewhere or become valid later (its predecessor lands, fees drop), so it
# is kept and re-sent until proven dead (core/proofs.py). These codes
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


def verdict_at_death(last_rejection: str | None) -> Verdict:
    """An attempt proven dead after being rejected keeps that rejection's verdict; one that
    simply expired (dropped, never included) is worth a new attempt, and so is one whose
    channel was held for it (not counted: core/refusals.py)."""
    if last_rejection is None:
        return Verdict(retry=True, code="expired")
    if last_rejection == CHANNEL_HELD:
        return Verdict(retry=True, code=CHANNEL_HELD)
    return judge_rejection(last_rejection)


def worth_resending(last_rejection: str | None) -> bool:
    """Re-sending an envelope the network refuses for good only adds load; one whose channel
    is held waits for its proof of death instead (the channel may be fixed meanwhile, but its
    payouts are rebuilt on another source, uncounted)."""
    return last_rejection not in PERMANENT_REJECTIONS and last_rejection != CHANNEL_HELD
