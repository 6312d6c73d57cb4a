"""A request id names one request, against the real signer (SoftHSM token, mTLS): the same
id for the same request gets the same signature without being counted again (also after a
restart); the same id for another request is ALREADY_EXISTS, audited."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from stellar_sdk import TransactionEnvelope

from signer_service.testing import SignerFixture, running_signer, serving
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE, build_tx
from tests.signer.test_policy import auth_entry
from tests.signer.test_service import bad_request_fields, refusal_info

DAILY = 2_500


def sign_request(signer: SignerFixture, amount: int, sequence: int, request_id: str
                 ) -> signer_pb2.SignTransactionRequest:
    return signer_pb2.SignTransactionRequest(
        key_id=signer.key_id, request_id=request_id,
        envelope_xdr=TransactionEnvelope(build_tx(amount=amount, sequence=sequence),
                                         PASSPHRASE).to_xdr())


def records(signer: SignerFixture) -> list[dict]:
    return [json.loads(line) for line in signer.audit_log.read_text().splitlines()]


async def test_the_same_request_id_and_request_is_signed_once_and_counted_once(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="pkcs11",
                              policy={"max_amount_stroops_per_day": DAILY}) as signer:
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            first = sign_request(signer, 1_000, 1, "payout-7-attempt-1")
            signed = await stub.SignTransaction(first, timeout=10)
            # A retry after a lost answer, twice, and two more at the same time.
            again = [await stub.SignTransaction(first, timeout=10) for _ in range(2)]
            again += await asyncio.gather(*(stub.SignTransaction(first, timeout=10)
                                            for _ in range(2)))
            assert {r.signed_envelope_xdr for r in again} == {signed.signed_envelope_xdr}
            # Counted once: 1,000 of 2,500, so another 1,000 still fits, a third does not.
            await stub.SignTransaction(sign_request(signer, 1_000, 2, "other"), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as over:
                await stub.SignTransaction(sign_request(signer, 1_000, 3, "third"),
                                           timeout=10)
            assert refusal_info(over.value)[0] == "max_amount_stroops_per_day"
    mine = [r for r in records(signer) if r["request_id"] == "payout-7-attempt-1"]
    assert [(r["decision"], r["amount_stroops"]) for r in mine] == \
        [("allow", 1_000)] + [("replay", 0)] * 4
    assert all(f"audit record {mine[0]['seq']}" in r["detail"] for r in mine[1:])
    # After a restart the id is still known (rebuilt from the audit log, like the limits).
    async with serving(signer) as restarted, \
            grpc.aio.secure_channel(restarted.address, signer.channel_credentials()) as ch:
        replayed = await signer_pb2_grpc.SignerServiceStub(ch).SignTransaction(first,
                                                                               timeout=10)
    assert replayed.signed_envelope_xdr == signed.signed_envelope_xdr
    assert records(signer)[-1]["decision"] == "replay"


async def test_the_same_request_id_for_another_request_is_already_exists_and_audited(
    tmp_path
):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE,
                              backend="pkcs11") as signer:
        async with grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
            stub = signer_pb2_grpc.SignerServiceStub(ch)
            await stub.SignTransaction(sign_request(signer, 1_000, 1, "reused"), timeout=10)
            for other in (sign_request(signer, 2_000, 1, "reused"),  # another transaction
                          signer_pb2.SignAuthorizationEntryRequest(  # another kind
                              key_id=signer.key_id, request_id="reused",
                              entry_xdr=auth_entry(signer.public_key).to_xdr(),
                              current_ledger=1000, signature_expiration_ledger=1050)):
                rpc = stub.SignTransaction if isinstance(
                    other, signer_pb2.SignTransactionRequest) else stub.SignAuthorizationEntry
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await rpc(other, timeout=10)
                assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
                assert bad_request_fields(err.value) == ["request_id"]
                assert refusal_info(err.value)[0] == "request_id"
        refused = [r for r in records(signer) if r["request_id"] == "reused"][1:]
        assert [(r["decision"], r["rule"]) for r in refused] == [("refuse", "request_id")] * 2


async def test_a_refused_request_does_not_take_its_id(tmp_path):
    """Only a signature binds an id: a refusal has nothing to replay."""
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="pkcs11",
                              policy={"max_fee_stroops": 1_000}) as signer, \
            grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
        stub = signer_pb2_grpc.SignerServiceStub(ch)
        too_dear = signer_pb2.SignTransactionRequest(
            key_id=signer.key_id, request_id="retry-me",
            envelope_xdr=TransactionEnvelope(build_tx(fee=5_000), PASSPHRASE).to_xdr())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SignTransaction(too_dear, timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await stub.SignTransaction(sign_request(signer, 1, 1, "retry-me"), timeout=10)
