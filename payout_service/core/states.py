"""Payout and attempt lifecycles as tables of allowed transitions (docs/design.md).

Pure: the store applies these with one guarded UPDATE each (payout_service/adapters/transitions.py),
so no state change can skip the table.
"""

from __future__ import annotations

from enum import StrEnum

from payout_service.core.errors import FailedPrecondition


class PayoutState(StrEnum):
    ACCEPTED = "ACCEPTED"
    BUILT = "BUILT"
    AWAITING_SIGNATURE = "AWAITING_SIGNATURE"
    QUEUED = "QUEUED"
    SUBMITTED = "SUBMITTED"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    # Above an approval threshold: waits for N distinct approvers before it is built.
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    # The paying account cannot cover it now (core/funds.py); nothing built, nothing spent.
    AWAITING_FUNDS = "AWAITING_FUNDS"


S = PayoutState


class PayoutMode(StrEnum):
    """How the payout's current attempt gets its signature (the first: how it was created)."""

    BUILD_ONLY = "BUILD_ONLY"  # unsigned XDR for the caller, never submitted
    SIGNER_SERVICE = "SIGNER_SERVICE"  # signed by the signer service
    EXTERNAL = "EXTERNAL"  # handed out unsigned; SubmitSignedTransaction brings it back

TRANSITIONS: dict[PayoutState, frozenset[PayoutState]] = {
    # ACCEPTED -> ACCEPTED: an attempt that never left us was superseded before signing.
    S.ACCEPTED: frozenset(
        {S.ACCEPTED, S.BUILT, S.AWAITING_SIGNATURE, S.QUEUED, S.FAILED, S.CANCELLED,
         S.AWAITING_FUNDS}
    ),
    # Held before anything was built: released to ACCEPTED once a balance read covers it.
    S.AWAITING_FUNDS: frozenset({S.ACCEPTED, S.CANCELLED}),
    S.BUILT: frozenset({S.CANCELLED}),
    # AWAITING_SIGNATURE -> CONFIRMED: the holder of the unsigned envelope signed it and
    # submitted it to the network itself, without SubmitSignedTransaction.
    S.AWAITING_SIGNATURE: frozenset(
        {S.QUEUED, S.AWAITING_SIGNATURE, S.FAILED, S.CANCELLED, S.CONFIRMED}
    ),
    # QUEUED -> AWAITING_SIGNATURE: a rebuilt attempt in external mode needs a new signature.
    S.QUEUED: frozenset({S.SUBMITTED, S.QUEUED, S.AWAITING_SIGNATURE, S.FAILED, S.CANCELLED}),
    # SUBMITTED -> QUEUED only once the attempt is proven dead (invariant 1).
    S.SUBMITTED: frozenset({S.CONFIRMED, S.QUEUED, S.AWAITING_SIGNATURE, S.FAILED}),
    # FAILED -> QUEUED/AWAITING_SIGNATURE: operator RetryPayout.
    # FAILED/CANCELLED -> CONFIRMED: an ABANDONED attempt (its envelope was handed out, or
    # rejected by a node that may keep it) landed after all. The chain is the truth: the
    # record says the payout was paid rather than hide it.
    S.FAILED: frozenset({S.QUEUED, S.AWAITING_SIGNATURE, S.CONFIRMED}),
    S.CONFIRMED: frozenset(),
    S.CANCELLED: frozenset({S.CONFIRMED}),
    # -> ACCEPTED once approved; -> FAILED when an approver rejects it (RejectPayout).
    S.AWAITING_APPROVAL: frozenset({S.ACCEPTED, S.FAILED, S.CANCELLED}),
}

TERMINAL = frozenset({S.BUILT, S.CONFIRMED, S.FAILED, S.CANCELLED})
# A payout in these states has no attempt that we could still send.
CANCELLABLE = frozenset({S.ACCEPTED, S.BUILT, S.AWAITING_SIGNATURE, S.QUEUED,
                         S.AWAITING_APPROVAL, S.AWAITING_FUNDS})


class AttemptStatus(StrEnum):
    BUILT = "built"  # envelope built, sequence number reserved, not signed
    SIGNED = "signed"  # signed (by the signer service or an external signer), not yet sent
    SENT = "sent"  # handed to the network at least once
    INCLUDED = "included"  # in a ledger, successful
    FAILED_ON_CHAIN = "failed_on_chain"  # in a ledger, failed: sequence and fee consumed
    DEAD = "dead"  # proven never to land (time bound passed, or its sequence number consumed)
    REJECTED = "rejected"  # refused before it ever left us (signer policy): consumed nothing
    SUPERSEDED = "superseded"  # never left us; re-sequenced, its payout gets a new attempt
    CANCELLED = "cancelled"  # never left us; its payout was cancelled
    # We will never send it again, but a copy may exist outside (handed to an external signer,
    # or rejected by a node): it may land until proven dead. Its sequence number goes to the
    # next reservation on its source, a replacement that kills it by construction (two
    # transactions with one source and sequence number can never both be included).
    ABANDONED = "abandoned"


A = AttemptStatus

ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    # BUILT -> INCLUDED / FAILED_ON_CHAIN: an envelope handed out unsigned, which its holder
    # signed and submitted itself. BUILT -> DEAD only with a proof (core/proofs.py): it left
    # us when it was handed out.
    A.BUILT: frozenset({A.SIGNED, A.REJECTED, A.SUPERSEDED, A.CANCELLED, A.ABANDONED, A.DEAD,
                        A.INCLUDED, A.FAILED_ON_CHAIN}),
    # SIGNED -> DEAD: another transaction at its number landed (core/proofs.py REPLACED).
    A.SIGNED: frozenset({A.SENT, A.SUPERSEDED, A.CANCELLED, A.ABANDONED, A.DEAD}),
    A.SENT: frozenset({A.INCLUDED, A.FAILED_ON_CHAIN, A.DEAD, A.ABANDONED}),
    A.ABANDONED: frozenset({A.INCLUDED, A.FAILED_ON_CHAIN, A.DEAD}),
    A.INCLUDED: frozenset(),
    A.FAILED_ON_CHAIN: frozenset(),
    A.DEAD: frozenset(),
    A.REJECTED: frozenset(),
    A.SUPERSEDED: frozenset(),
    A.CANCELLED: frozenset(),
}

# Statuses whose envelope we may still send: the source account is busy with them.
IN_FLIGHT = frozenset({A.BUILT, A.SIGNED, A.SENT})
# Statuses that hold their sequence number: nobody else may be given it. ABANDONED is not
# among them: its number is free for a replacement.
HOLDS_SEQUENCE = frozenset({A.BUILT, A.SIGNED, A.SENT, A.INCLUDED, A.FAILED_ON_CHAIN})


class IllegalTransition(FailedPrecondition):
    kind, subject = "STATE", "payout"

    def __init__(self, current: StrEnum | None, target: StrEnum, what: str = "payout") -> None:
        where = f"in state {current}" if current is not None else "not found"
        super().__init__(f"{what} {where} cannot move to {target}")
        self.current = current
        self.target = target


class AttemptMayStillLand(IllegalTransition):
    """RetryPayout while an ABANDONED attempt of the payout is not yet proven dead: a new
    attempt could land beside it (invariant 1)."""

    def __init__(self, number: int) -> None:
        super().__init__(PayoutState.FAILED, PayoutState.QUEUED)
        self.args = (f"payout attempt {number} may still land until proven dead (its sequence "
                     "number consumed or its max_time passed); retry after that",)


def check_transition(current: PayoutState, target: PayoutState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)


def payout_sources(target: PayoutState) -> frozenset[PayoutState]:
    """Every state a payout may reach `target` from: the guard of the one UPDATE."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def attempt_sources(target: AttemptStatus) -> frozenset[AttemptStatus]:
    return frozenset(s for s, targets in ATTEMPT_TRANSITIONS.items() if target in targets)


def given_up(status: AttemptStatus, *, handed_out: bool) -> AttemptStatus:
    """What an attempt we stop pursuing becomes. One that never left us (built or signed by
    our signer, not sent) is CANCELLED: its number is free at once and nothing can land. One
    whose envelope exists outside (sent, or handed to an external signer) is ABANDONED."""
    if status == A.SENT or handed_out:
        return A.ABANDONED
    return A.CANCELLED


def requeue_target(current: PayoutState) -> PayoutState:
    """Where a payout waits for its next attempt: ACCEPTED stays ACCEPTED (it never got a
    signature), anything later goes back to QUEUED (in external mode the preparer moves it to
    AWAITING_SIGNATURE when it builds the new envelope)."""
    return S.ACCEPTED if current == S.ACCEPTED else S.QUEUED
