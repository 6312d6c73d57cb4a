"""Invariant 8: a proof of death comes from one consistent view of the chain.

The rules of core/proofs.py, each on its own, then a property: over random chains in which
our transaction may or may not have landed, and random observations from nodes at different
heights with different history (a transaction store behind the ledger entries, a lagging node
behind a load balancer, a node whose history starts late, a ledger ingested between the two
reads of one getTransaction), no observation ever proves dead a transaction that landed.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from payout_service.core.proofs import (
    AccountState,
    ClosedLedger,
    DeathKind,
    Envelope,
    NotFound,
    expired_unused,
    history_misses,
    proof_of_death,
    replaced_by,
)

SEQ = 50 << 32  # an account created in ledger 50
ENVELOPE = Envelope(sequence=SEQ + 7, max_time=1_000, left_at_ledger=100)


def test_expired_once_a_ledger_that_closed_past_max_time_is_covered_by_the_not_found():
    proof = proof_of_death(ENVELOPE, NotFound(120, 1_100, 50), closed=ClosedLedger(119, 1_001))
    assert proof is not None and proof.kind is DeathKind.EXPIRED


def test_the_not_founds_own_latest_ledger_may_not_have_been_searched():
    """stellar-rpc reads the transaction, then its ledger range: the latest ledger it reports
    may have been ingested in between, unsearched."""
    assert proof_of_death(ENVELOPE, NotFound(120, 1_100, 50), closed=ClosedLedger(120, 1_001)) \
        is None
    assert proof_of_death(ENVELOPE, NotFound(120, 1_100, 50)) is None


def test_not_expired_while_the_ledger_seen_closed_at_or_before_max_time():
    assert proof_of_death(ENVELOPE, NotFound(120, 1_100, 50), closed=ClosedLedger(119, 1_000)) \
        is None


def test_no_proof_when_the_history_starts_after_it_left_us():
    late = ClosedLedger(119, 5_000)
    assert proof_of_death(ENVELOPE, NotFound(120, 5_000, 101), closed=late) is None
    assert proof_of_death(ENVELOPE, NotFound(120, 5_000, 100), closed=late) is not None


def test_an_envelope_that_never_left_us_has_nothing_to_prove():
    never_sent = Envelope(sequence=SEQ + 7, max_time=1_000, left_at_ledger=None)
    assert proof_of_death(never_sent, NotFound(120, 5_000, 1),
                          closed=ClosedLedger(119, 5_000)) is None


def test_sequence_consumed_needs_the_not_found_to_cover_the_ledger_the_account_was_read_at():
    consumed = AccountState(sequence=SEQ + 7, ledger=110)
    # The transaction store is behind the ledger entries: our transaction may be the one that
    # consumed the number in ledger 109 or 110.
    assert proof_of_death(ENVELOPE, NotFound(108, 900, 50), account=consumed) is None
    assert proof_of_death(ENVELOPE, NotFound(110, 900, 50), account=consumed) is None
    proof = proof_of_death(ENVELOPE, NotFound(111, 900, 50), account=consumed)
    assert proof is not None and proof.kind is DeathKind.SEQUENCE_CONSUMED


def test_sequence_not_yet_consumed_is_no_proof():
    assert proof_of_death(ENVELOPE, NotFound(111, 900, 50),
                          account=AccountState(sequence=SEQ + 6, ledger=110)) is None


def test_a_missing_source_is_a_proof_only_with_a_not_found_covering_the_read():
    merged = AccountState(sequence=None, ledger=110)
    assert proof_of_death(ENVELOPE, NotFound(110, 900, 50), account=merged) is None
    proof = proof_of_death(ENVELOPE, NotFound(111, 900, 50), account=merged)
    assert proof is not None and proof.kind is DeathKind.SOURCE_MISSING


def test_a_missing_source_proves_nothing_for_a_number_a_recreated_account_could_reach():
    # Numbered above ledger << 32: a re-created account could start below it.
    far = Envelope(sequence=(110 << 32) + 1, max_time=1_000, left_at_ledger=100)
    assert proof_of_death(far, NotFound(111, 900, 50), account=AccountState(None, 110)) is None


def test_expired_unused_needs_no_history_reaching_back():
    """Every node's history starts after the envelope left us (ledger 100): no NOT_FOUND can
    cover it, but the source read at or after a ledger closed past max_time, still below the
    envelope's number, proves it was never applied and never can be."""
    late_history = NotFound(200, 5_000, 150)
    assert history_misses(ENVELOPE, late_history.oldest_ledger)
    unused = AccountState(sequence=SEQ + 6, ledger=160)
    proof = proof_of_death(ENVELOPE, late_history, closed=ClosedLedger(160, 1_001),
                           account=unused)
    assert proof is not None and proof.kind is DeathKind.EXPIRED_UNUSED
    assert proof_of_death(ENVELOPE, late_history, closed=ClosedLedger(160, 1_001)) is None


def test_expired_unused_needs_the_account_read_at_or_after_the_late_ledger():
    late = ClosedLedger(160, 1_001)
    assert expired_unused(ENVELOPE, closed=late,
                          account=AccountState(sequence=SEQ + 6, ledger=159)) is None
    assert expired_unused(ENVELOPE, closed=ClosedLedger(160, 1_000),
                          account=AccountState(sequence=SEQ + 6, ledger=170)) is None


def test_expired_unused_is_no_proof_once_the_number_was_reached_or_the_source_is_gone():
    late = ClosedLedger(160, 1_001)
    for account in (AccountState(SEQ + 7, 170), AccountState(SEQ + 9, 170),
                    AccountState(None, 170)):
        assert expired_unused(ENVELOPE, closed=late, account=account) is None
    never_sent = Envelope(sequence=SEQ + 7, max_time=1_000, left_at_ledger=None)
    assert expired_unused(never_sent, closed=late, account=AccountState(SEQ, 170)) is None


@st.composite
def chains_and_observations(draw: st.DrawFn) -> tuple[
        Envelope, int | None, NotFound, ClosedLedger, AccountState]:
    """A chain of ledgers 1..tip (ledger n closes at 10 n), our envelope (it left us at
    `left`), whether it landed (at ledger `landed`) or another transaction took its number
    (at `taken`) or the account was merged (at `merged_at`), and observations from arbitrary
    nodes: a ledger seen closed, an account read at ledger A, and a NOT_FOUND from a node
    whose history is [oldest, latest] and which searched only up to `searched` (latest, or
    latest - 1 when a ledger was ingested between its two reads)."""
    tip = draw(st.integers(20, 60))
    left = draw(st.integers(1, tip - 5))
    max_time = draw(st.integers(left * 10, (tip + 10) * 10))
    start = SEQ + draw(st.integers(0, 3))
    envelope = Envelope(sequence=start + 1, max_time=max_time, left_at_ledger=left)
    # Can land in a ledger from `left` on whose close time is within max_time.
    landable = [n for n in range(left, tip + 1) if n * 10 <= max_time]
    landed = draw(st.sampled_from([None, *landable]))
    taken = None if landed is not None else draw(st.sampled_from([None, *range(1, tip + 1)]))
    merged_at = draw(st.sampled_from([None, *range(1, tip + 1)]))

    def sequence_at(ledger: int) -> int | None:
        if merged_at is not None and ledger >= merged_at:
            return None
        used = landed if landed is not None else taken
        return start + 1 if used is not None and ledger >= used else start

    # The interesting cases sit at the edges: observations at the NOT_FOUND's latest ledger
    # or at the one the transaction landed in; draw those often.
    near_landing = [n for n in (landed, (landed or 0) + 1) if landed is not None and n <= tip]
    latest = draw(st.one_of(st.sampled_from(near_landing or [tip]), st.integers(1, tip)))
    edges = [n for n in (latest, latest - 1, landed) if n is not None and n >= 1]
    account_ledger = draw(st.one_of(st.sampled_from(edges), st.integers(1, tip)))
    seen_ledger = draw(st.one_of(st.sampled_from(edges), st.integers(1, tip)))
    oldest = draw(st.integers(1, latest))
    searched = latest - draw(st.integers(0, 1))
    if landed is not None and oldest <= landed <= searched:
        # That node has it: it would answer SUCCESS, not NOT_FOUND. Move its history away.
        oldest = landed + 1
        latest = max(latest, oldest)
    return (envelope, landed, NotFound(latest, latest * 10, oldest),
            ClosedLedger(seen_ledger, seen_ledger * 10),
            AccountState(sequence_at(account_ledger), account_ledger))


@given(chains_and_observations())
def test_no_observation_proves_dead_a_transaction_that_landed(case):
    envelope, landed, not_found, closed, account = case
    proof = proof_of_death(envelope, not_found, closed=closed, account=account)
    if landed is not None:
        assert proof is None, (landed, not_found, closed, account, proof)


def test_another_transaction_at_the_same_number_landing_is_a_proof():
    proof = replaced_by(ENVELOPE, "ab" * 32, 130)
    assert proof.kind is DeathKind.REPLACED and f"{ENVELOPE.sequence}" in proof.text
