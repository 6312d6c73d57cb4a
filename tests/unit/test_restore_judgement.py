"""core/restore.py: what a restored database must record from the chain before sending
resumes. Each payout's candidates (its in-flight attempts, and the hashes the signer signed
for it after the restore point) are judged on the chain: at most one landed."""

from __future__ import annotations

import pytest

from payout_service.core.restore import Candidate, Verdict, judge, path_to_submitted
from payout_service.core.states import TRANSITIONS, PayoutState

S = PayoutState


def landed(tx_hash: str, known: int | None = None) -> Candidate:
    return Candidate(tx_hash, landed=True, known_attempt=known)


def dead(tx_hash: str, known: int | None = None) -> Candidate:
    return Candidate(tx_hash, landed=False, known_attempt=known)


def test_nothing_landed_means_the_payout_may_be_built_again():
    assert judge(S.ACCEPTED, []).verdict == Verdict.UNPAID
    assert judge(S.QUEUED, [dead("a", known=1), dead("b")]).verdict == Verdict.UNPAID


def test_a_hash_signed_after_the_restore_point_that_landed_is_attached():
    judged = judge(S.ACCEPTED, [landed("h")])
    assert (judged.verdict, judged.tx_hash) == (Verdict.SIGNED_AFTER_RESTORE_LANDED, "h")
    assert not judged.blocks_release


def test_the_database_s_own_attempt_that_landed_is_marked_sent_not_rebuilt():
    judged = judge(S.QUEUED, [landed("h", known=2), dead("x")])
    assert (judged.verdict, judged.known_attempt) == (Verdict.KNOWN_ATTEMPT_LANDED, 2)


@pytest.mark.parametrize("state", [None, S.CONFIRMED, S.QUEUED])
def test_what_an_operator_must_decide_blocks_release(state):
    candidates = [landed("a"), landed("b")] if state != S.CONFIRMED else [landed("b")]
    judged = judge(state, candidates, confirmed_hash="a")
    assert judged.blocks_release, judged
    expected = {None: Verdict.UNKNOWN_PAYOUT_PAID, S.CONFIRMED: Verdict.PAID_TWICE,
                S.QUEUED: Verdict.PAID_TWICE}[state]
    assert judged.verdict == expected


def test_a_confirmed_payout_whose_hash_is_the_one_that_landed_is_already_recorded():
    assert judge(S.CONFIRMED, [landed("a")], confirmed_hash="a").verdict == \
        Verdict.ALREADY_RECORDED


def test_a_cancelled_payout_that_landed_is_left_to_an_operator():
    judged = judge(S.CANCELLED, [landed("a")])
    assert (judged.verdict, judged.blocks_release) == (Verdict.NOT_ATTACHABLE, True)


@pytest.mark.parametrize("state", [S.ACCEPTED, S.AWAITING_SIGNATURE, S.QUEUED, S.SUBMITTED,
                                   S.FAILED])
def test_the_walk_to_submitted_takes_only_allowed_moves(state):
    walk = [state, *path_to_submitted(state)]
    assert walk[-1] == S.SUBMITTED
    assert all(b in TRANSITIONS[a] for a, b in zip(walk, walk[1:], strict=False)), walk
