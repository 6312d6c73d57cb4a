"""Four-eyes approvals on the payout service's side: a payout above its threshold waits in
AWAITING_APPROVAL, its creator cannot approve it, one approval of two keeps it waiting, two
distinct approvals release it to the preparer, and the approvals reach the signing request,
where the signer's own rule accepts them."""

from __future__ import annotations

import argparse
import time

import pytest
from stellar_sdk import Asset, Keypair
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_approvals.statement import approval_by
from payout_service.api.convert import payout_to_pb
from payout_service.app.approvals import Approvals
from payout_service.cli.approvals import payment_of
from payout_service.core.errors import PermissionDenied, PreconditionFailed, ValidationFailed
from payout_service.core.states import IllegalTransition
from payout_service.core.validation import AmountLimits, validate_payout_request
from signer_service.approvals import approvals_refusal
from signer_service.policy import ApprovalRule, KeyPolicy
from tests.db.fake_pipeline import NET, run_until_settled, states, world

__all__ = ["world"]

ALICE, BOB, CAROL = (Keypair.from_raw_ed25519_seed(bytes([i] * 32)) for i in (51, 52, 53))
XLM_SAC = Asset.native().contract_id(NET)
THRESHOLD = 50_000_000  # 5 XLM, for the SAC transfer a payout is paid by (batching off)
SETTINGS = {
    "PAYOUTS_APPROVERS": f"alice={ALICE.public_key},bob={BOB.public_key},"
                         f"carol={CAROL.public_key}",
    "PAYOUTS_APPROVALS_REQUIRED": "2",
    "PAYOUTS_APPROVAL_THRESHOLDS": f"{XLM_SAC}={THRESHOLD}",
}


def request(payout_id: str, amount: str):  # type: ignore[no-untyped-def]
    return validate_payout_request(
        payout_id=payout_id, destination=Keypair.random().public_key, amount=amount,
        asset="XLM", idempotency_key=payout_id, metadata={}, reference="",
        limits=AmountLimits())


async def approval_of(desk, payout_id: str, key: Keypair, source: str):  # type: ignore[no-untyped-def]
    """What `payoutctl approve` sends: the statement built from GetPayout's fields."""
    payout = await desk.store.get_payout(payout_id)
    args = argparse.Namespace(treasury=source, network_passphrase=NET, batch_mode="off",
                              contract_id="")
    return approval_by(key.secret, payment_of(payout_to_pb(payout), args), payout_id,
                       int(time.time()) + 600)


async def approve(approvals: Approvals, identity: str, approval):  # type: ignore[no-untyped-def]
    return await approvals.approve(
        approval.payout_id, identity=identity, public_key=approval.approver,
        signature=approval.signature, expires_at=approval.expires_at, correlation_id="c")


async def test_a_payout_above_the_threshold_is_paid_only_after_two_distinct_approvals(world):
    make, source = world
    desk, pipeline, ledger, signer = make("signer", **SETTINGS)
    approvals = Approvals(desk.store.pool, desk.config)
    await desk.create(request("big", "10"), actor="alice", correlation_id="c")
    await desk.create(request("small", "5"), actor="alice", correlation_id="c")
    assert await states(desk) == {"big": "AWAITING_APPROVAL", "small": "ACCEPTED"}

    requests: list[tuple[str, list]] = []
    sign = signer.sign_transaction

    async def recording(envelope_xdr: str, **kw):  # type: ignore[no-untyped-def]
        requests.append((envelope_xdr, list(kw.get("approvals", []))))
        return await sign(envelope_xdr, **kw)

    signer.sign_transaction = recording  # type: ignore[method-assign]
    await run_until_settled(pipeline, ledger, rounds=4)
    assert await states(desk) == {"big": "AWAITING_APPROVAL", "small": "CONFIRMED"}

    with pytest.raises(PermissionDenied, match="creator"):
        await approve(approvals, "alice", await approval_of(desk, "big", ALICE, source.public_key))
    with pytest.raises(PermissionDenied):  # bob approving with carol's key
        await approve(approvals, "bob", await approval_of(desk, "big", CAROL, source.public_key))
    with pytest.raises(PermissionDenied):  # not an approver
        await approve(approvals, "mallory",
                      await approval_of(desk, "big", BOB, source.public_key))
    other_treasury = await approval_of(desk, "big", BOB, Keypair.random().public_key)
    with pytest.raises(ValidationFailed) as bad:
        await approve(approvals, "bob", other_treasury)
    assert [v.field for v in bad.value.violations] == ["signature"]
    for far in (int(time.time()) + 8 * 24 * 3600, 2**62):  # beyond 7 days, beyond year 9999
        with pytest.raises(ValidationFailed) as too_long:
            await approvals.approve("big", identity="bob", public_key=BOB.public_key,
                                    signature=bytes(64), expires_at=far, correlation_id="c")
        assert [v.field for v in too_long.value.violations] == ["expires_at"]

    first = await approve(approvals, "bob", await approval_of(desk, "big", BOB,
                                                               source.public_key))
    assert (first.approvals, first.required, first.payout.state) == (1, 2, "AWAITING_APPROVAL")
    # Approving again with the same key still counts once.
    again = await approve(approvals, "bob", await approval_of(desk, "big", BOB,
                                                               source.public_key))
    assert again.approvals == 1
    await run_until_settled(pipeline, ledger, rounds=2)
    assert (await states(desk))["big"] == "AWAITING_APPROVAL"

    second = await approve(approvals, "carol", await approval_of(desk, "big", CAROL,
                                                                  source.public_key))
    assert (second.approvals, second.payout.state) == (2, "ACCEPTED")
    with pytest.raises(IllegalTransition):
        await approve(approvals, "alice", await approval_of(desk, "big", ALICE,
                                                             source.public_key))
    await run_until_settled(pipeline, ledger, rounds=4)
    assert (await states(desk))["big"] == "CONFIRMED"

    big_requests = [(x, a) for x, a in requests if a]
    assert len(big_requests) == 1
    envelope_xdr, sent = big_requests[0]
    assert sorted((i, a.approver) for i, a in sent) == sorted(
        [(0, BOB.public_key), (0, CAROL.public_key)])
    # The signer's own rule, on the envelope that was signed, accepts exactly these.
    rule = ApprovalRule(frozenset({ALICE.public_key, BOB.public_key, CAROL.public_key}), 2,
                        {XLM_SAC: THRESHOLD})
    policy = KeyPolicy(NET, frozenset({"*"}), (), 10**6, 10**12, 10**13, 300, approvals=rule)
    tx = TransactionEnvelope.from_xdr(envelope_xdr, NET).transaction.to_xdr_object()
    now = int(time.time())
    assert approvals_refusal(tx, policy, NET, sent, now) is None
    assert approvals_refusal(tx, policy, NET, sent[:1], now) is not None

    events = await desk.store.pool.fetch(
        """SELECT e.reason, e.actor FROM payout_events e JOIN payouts p ON p.id = e.payout_id
           WHERE p.payout_id = 'big' AND e.reason LIKE 'approved%' ORDER BY e.id""")
    assert [r["actor"] for r in events] == ["bob", "bob", "carol", "carol"]


async def test_a_rejected_or_cancelled_payout_is_never_built(world):
    make, _ = world
    desk, pipeline, ledger, _signer = make("signer", **SETTINGS)
    approvals = Approvals(desk.store.pool, desk.config)
    await desk.create(request("rejected", "10"), actor="alice", correlation_id="c")
    await desk.create(request("cancelled", "10"), actor="alice", correlation_id="c")
    with pytest.raises(PermissionDenied):
        await approvals.reject("rejected", identity="mallory", reason="no")
    with pytest.raises(ValidationFailed):
        await approvals.reject("rejected", identity="bob", reason=" ")
    rejected = await approvals.reject("rejected", identity="bob", reason="unknown payee")
    assert (rejected.state, rejected.failure_code, rejected.failure_message) == (
        "FAILED", "rejected", "unknown payee")
    with pytest.raises(PreconditionFailed, match="rejected"):
        await desk.retry(rejected, actor="admin", reason="try again")
    await desk.cancel(await desk.store.get_payout("cancelled"), actor="alice", reason="duplicate")
    await run_until_settled(pipeline, ledger, rounds=3)
    assert await states(desk) == {"rejected": "FAILED", "cancelled": "CANCELLED"}
    assert await desk.store.pool.fetchval("SELECT count(*) FROM payout_attempts") == 0
