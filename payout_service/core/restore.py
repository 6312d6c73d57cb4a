"""What a restored database must learn from the chain before anything is built again. Pure.

A database restored from a backup (or a standby promoted after asynchronous replication)
knows nothing of what the service did after that point, but the chain and the signer's audit
log do. An attempt built after the restore point may have landed; its payout is, in the
restored database, ACCEPTED or QUEUED (no attempt, or an older one) and would be built again,
at a sequence number the chain already consumed: txBAD_SEQ, whose proof of death of the new
attempt (its number consumed) is true, so a third attempt at a fresh number is built and
pays the payout a second time. Invariant 1 only holds if the database knows every envelope
that may still land.

So, with sending held and every envelope signed before the hold past its max_time (nothing
still in flight can land later), each payout's candidates are judged on the chain: its
in-flight attempts the database knows and every hash the signer signed for it since the
restore point. At most one can have landed successfully (invariant 1 held while they were
built); that one is attached to the payout as its current attempt and the confirmer records
it. A payout none of whose candidates landed is safe to build again: nothing of it can land
any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from payout_service.core.states import PayoutState

S = PayoutState


class Verdict(StrEnum):
    UNPAID = "unpaid"  # nothing landed: build again when sending resumes
    KNOWN_ATTEMPT_LANDED = "known_attempt_landed"  # the database's own attempt: mark it sent
    SIGNED_AFTER_RESTORE_LANDED = "signed_after_restore_landed"  # attach the audit's hash
    ALREADY_RECORDED = "already_recorded"  # the database says CONFIRMED by that hash
    PAID_TWICE = "paid_twice"  # two candidates landed: invariant 1 broken before the restore
    UNKNOWN_PAYOUT_PAID = "unknown_payout_paid"  # created after the backup, paid: the caller
    #   holds an acknowledgement this database cannot answer; it must not create it again
    NOT_ATTACHABLE = "not_attachable"  # landed, but the payout's state cannot take it


@dataclass(frozen=True)
class Candidate:
    tx_hash: str
    landed: bool  # included in a ledger, successful
    known_attempt: int | None  # the database's attempt number with this hash, if any


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    tx_hash: str | None = None
    known_attempt: int | None = None

    @property
    def blocks_release(self) -> bool:
        """Sending may not resume while one of these stands: an operator decides."""
        return self.verdict in (Verdict.PAID_TWICE, Verdict.UNKNOWN_PAYOUT_PAID,
                                Verdict.NOT_ATTACHABLE)


# States a landed attempt may be attached in: walked to SUBMITTED through QUEUED, then the
# confirmer records it CONFIRMED. CANCELLED is terminal for a new attempt (a cancel never
# follows a submission that could land), CONFIRMED by another hash means it was paid twice.
ATTACHABLE = frozenset({S.ACCEPTED, S.AWAITING_SIGNATURE, S.QUEUED, S.SUBMITTED, S.FAILED})


def judge(state: PayoutState | None, candidates: list[Candidate],
          confirmed_hash: str | None = None) -> Judgement:
    landed = sorted({c.tx_hash: c for c in candidates if c.landed}.values(),
                    key=lambda c: c.tx_hash)
    if not landed:
        return Judgement(Verdict.UNPAID)
    if state is None:
        return Judgement(Verdict.UNKNOWN_PAYOUT_PAID, landed[0].tx_hash)
    if state == S.CONFIRMED:
        if [c.tx_hash for c in landed] == [confirmed_hash]:
            return Judgement(Verdict.ALREADY_RECORDED, confirmed_hash)
        return Judgement(Verdict.PAID_TWICE, landed[0].tx_hash)
    if len(landed) > 1:
        return Judgement(Verdict.PAID_TWICE, landed[0].tx_hash)
    (paid,) = landed
    if state not in ATTACHABLE:
        return Judgement(Verdict.NOT_ATTACHABLE, paid.tx_hash)
    if paid.known_attempt is not None:
        return Judgement(Verdict.KNOWN_ATTEMPT_LANDED, paid.tx_hash, paid.known_attempt)
    return Judgement(Verdict.SIGNED_AFTER_RESTORE_LANDED, paid.tx_hash)


def path_to_submitted(state: PayoutState) -> list[PayoutState]:
    """The moves (each allowed by core/states.py) that bring a payout to SUBMITTED with a
    new current attempt: always through QUEUED (a SUBMITTED one leaves its old attempt)."""
    return [S.SUBMITTED] if state == S.QUEUED else [S.QUEUED, S.SUBMITTED]
