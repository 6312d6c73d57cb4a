"""Four-eyes approvals against the real signer (SoftHSM, mTLS, audit log): a payment above its
threshold is signed only with N distinct listed approvers' signatures over exactly that
payment, whatever the caller claims."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from stellar_sdk import Account, Asset, Keypair, TransactionBuilder, TransactionEnvelope

from payout_approvals.statement import Approval, Payment, memo_text, statement
from payout_service.adapters.signer_client import SigningRefused
from payout_service.core.approvals import approval_payment
from payout_service.core.batches import BatchItem, OpKind, PlannedOp, build_classic_batch
from payout_service.core.transactions import TxParams
from signer_service.testing import SignerFixture, running_signer
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.conftest import SESSION_POLICY
from tests.signer.envelopes import DESTINATION, PASSPHRASE, XLM_SAC, build_tx
from tests.signer.test_batch_policy import units
from tests.signer.test_deny_by_default_service import audited
from tests.signer.test_two_instances import client_for
from tests.unit.test_payout_approvals import payout

XLM = 10**7
APPROVERS = [Keypair.from_raw_ed25519_seed(bytes([i] * 32)) for i in (11, 12, 13)]
OUTSIDER = Keypair.from_raw_ed25519_seed(bytes([14] * 32))
OTHER_DESTINATION = Keypair.from_raw_ed25519_seed(bytes([15] * 32)).public_key
THRESHOLD = 5 * XLM
POLICY = {**SESSION_POLICY, "payments": {"assets": ["native"]}, "approvals": {
    "approvers": [k.public_key for k in APPROVERS], "required": 2,
    "thresholds": {"native": THRESHOLD, XLM_SAC: THRESHOLD}}}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def approvals_signer(tmp_path_factory) -> AsyncIterator[SignerFixture]:  # noqa: ANN001
    async with running_signer(
        tmp_path_factory.mktemp("approvals-signer"), network_passphrase=PASSPHRASE,
        backend="pkcs11", policy=POLICY, allowed_clients=["payout-service"],
    ) as signer:
        yield signer


@pytest_asyncio.fixture(loop_scope="session")
async def stub(approvals_signer: SignerFixture
               ) -> AsyncIterator[signer_pb2_grpc.SignerServiceStub]:
    async with grpc.aio.secure_channel(
        approvals_signer.address, approvals_signer.channel_credentials()
    ) as channel:
        yield signer_pb2_grpc.SignerServiceStub(channel)


def payments(source: str, amounts: list[int], destination: str = DESTINATION
             ) -> TransactionEnvelope:
    builder = TransactionBuilder(Account(source, 41), PASSPHRASE, base_fee=100)
    for amount in amounts:
        builder.append_payment_op(destination, Asset.native(), units(amount))
    return builder.set_timeout(60).build()


def approve(key: Keypair, treasury: str, amount: int, *, index: int = 0,
            destination: str = DESTINATION, asset: str = "native", payout_id: str = "p-1",
            ttl: int = 600) -> signer_pb2.Approval:
    expires_at = int(time.time()) + ttl
    payment = Payment(PASSPHRASE, treasury, destination, None, memo_text("none"), asset, amount)
    return signer_pb2.Approval(
        operation_index=index, approver_public_key=key.public_key, payout_id=payout_id,
        expires_at=expires_at, signature=key.sign(statement(payment, payout_id, expires_at)))


def signing_request(signer: SignerFixture, envelope: TransactionEnvelope,
                    approvals: list[signer_pb2.Approval]) -> signer_pb2.SignTransactionRequest:
    return signer_pb2.SignTransactionRequest(
        key_id=signer.key_id, envelope_xdr=envelope.to_xdr(), request_id=uuid.uuid4().hex,
        approvals=approvals)


async def sign(stub, signer, envelope: TransactionEnvelope,  # noqa: ANN001, ANN201
               approvals: list[signer_pb2.Approval]):
    request = signing_request(signer, envelope, approvals)
    return request, await stub.SignTransaction(request)


async def refused(stub, signer, envelope, approvals) -> dict:  # noqa: ANN001
    request = signing_request(signer, envelope, approvals)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(request)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "approvals" in (err.value.details() or "")
    record = audited(signer, request.request_id)
    assert (record["decision"], record["rule"]) == ("refuse", "approvals")
    return record


async def test_under_the_threshold_signs_without_approvals(approvals_signer, stub):
    request, _ = await sign(stub, approvals_signer,
                            payments(approvals_signer.public_key, [THRESHOLD]), [])
    assert audited(approvals_signer, request.request_id)["decision"] == "allow"


async def test_two_distinct_approvers_sign_a_payment_above_the_threshold(approvals_signer, stub):
    me, amount = approvals_signer.public_key, 10 * XLM
    approvals = [approve(k, me, amount) for k in APPROVERS[:2]]
    request, _ = await sign(stub, approvals_signer, payments(me, [amount]), approvals)
    record = audited(approvals_signer, request.request_id)
    assert record["decision"] == "allow"
    assert [(a["operation_index"], a["approver"]) for a in record["approvals"]] == [
        (0, k.public_key) for k in APPROVERS[:2]]


async def test_not_enough_approvals_are_refused_and_audited(approvals_signer, stub):
    me, amount = approvals_signer.public_key, 10 * XLM
    record = await refused(stub, approvals_signer, payments(me, [amount]),
                           [approve(APPROVERS[0], me, amount)])
    assert "1 of 2" in record["detail"]


async def test_an_approval_of_10_xlm_does_not_approve_11(approvals_signer, stub):
    me = approvals_signer.public_key
    approvals = [approve(k, me, 10 * XLM) for k in APPROVERS[:2]]
    await refused(stub, approvals_signer, payments(me, [11 * XLM]), approvals)


async def test_an_approval_for_another_destination_is_refused(approvals_signer, stub):
    me, amount = approvals_signer.public_key, 10 * XLM
    approvals = [approve(k, me, amount, destination=OTHER_DESTINATION) for k in APPROVERS[:2]]
    await refused(stub, approvals_signer, payments(me, [amount]), approvals)


async def test_a_forged_or_outsider_or_expired_approval_does_not_count(approvals_signer, stub):
    me, amount = approvals_signer.public_key, 10 * XLM
    forged = approve(OUTSIDER, me, amount)
    forged.approver_public_key = APPROVERS[1].public_key
    for second in (forged, approve(OUTSIDER, me, amount), approve(APPROVERS[1], me, amount,
                                                                  ttl=-1)):
        await refused(stub, approvals_signer, payments(me, [amount]),
                      [approve(APPROVERS[0], me, amount), second])


async def test_one_approver_twice_counts_once(approvals_signer, stub):
    me, amount = approvals_signer.public_key, 10 * XLM
    await refused(stub, approvals_signer, payments(me, [amount]),
                  [approve(APPROVERS[0], me, amount), approve(APPROVERS[0], me, amount)])


async def test_each_operation_of_a_batch_needs_its_own_approvals(approvals_signer, stub):
    me, big = approvals_signer.public_key, 10 * XLM
    first = [approve(k, me, big, index=1) for k in APPROVERS[:2]]
    envelope = payments(me, [XLM, big, big])
    await refused(stub, approvals_signer, envelope, first)
    # Approvals naming the first operation's payout are no approval of another payment.
    await refused(stub, approvals_signer, envelope,
                  first + [approve(k, me, big, index=2) for k in APPROVERS[1:]])
    both = first + [approve(k, me, big, index=2, payout_id="p-2") for k in APPROVERS[1:]]
    request, _ = await sign(stub, approvals_signer, envelope, both)
    assert audited(approvals_signer, request.request_id)["decision"] == "allow"


async def test_a_sac_transfer_is_bound_to_its_contract_from_to_and_amount(approvals_signer, stub):
    me, amount = approvals_signer.public_key, 10 * XLM
    envelope = TransactionEnvelope(build_tx(source=me, amount=amount), PASSPHRASE)
    await refused(stub, approvals_signer, envelope, [
        approve(k, me, amount) for k in APPROVERS[:2]])  # approved as "native", not the SAC
    approvals = [approve(k, me, amount, asset=XLM_SAC) for k in APPROVERS[:2]]
    request, _ = await sign(stub, approvals_signer, envelope, approvals)
    assert audited(approvals_signer, request.request_id)["decision"] == "allow"


async def test_the_payout_services_client_carries_approvals_of_its_own_statements(
        approvals_signer):
    """The payout service's side: statements built from stored payouts (core.approvals), sent
    by its signer client with the operation index of each payout in a classic batch."""
    me = approvals_signer.public_key
    small, big = payout(net_stroops=XLM, payout_id="p-small"), payout(net_stroops=10 * XLM)
    ops = [PlannedOp(BatchItem(p.id, p.destination, p.asset, p.net_stroops), OpKind.PAYMENT)
           for p in (small, big)]
    envelope = build_classic_batch(TxParams(me, 42, 0, int(time.time()) + 60, PASSPHRASE), ops,
                                   operation_source=None).to_xdr()
    expires_at = int(time.time()) + 600
    statement_of_big = statement(approval_payment(big, network_passphrase=PASSPHRASE,
                                                  treasury=me, classic=True),
                                 big.payout_id, expires_at)
    approvals = [(1, Approval(k.public_key, k.sign(statement_of_big), big.payout_id, expires_at))
                 for k in APPROVERS[:2]]
    client = client_for(approvals_signer)
    try:
        check = await client.check_transaction(envelope, approvals=approvals)
        assert check.would_sign, check.message
        with pytest.raises(SigningRefused) as err:
            await client.sign_transaction(envelope, payout_id=big.payout_id, attempt=1,
                                          correlation_id="c", approvals=approvals[:1])
        assert err.value.rule == "approvals"
        signed = await client.sign_transaction(envelope, payout_id=big.payout_id, attempt=1,
                                               correlation_id="c", approvals=approvals)
        assert signed.tx_hash
    finally:
        await client.close()
