"""Classic batches against the real signer (SoftHSM, mTLS, audit log): signed, refused, counted
per asset. This module's signer allows XLM and USDC, USDC with its own limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from stellar_sdk import Account, Asset, Keypair, TransactionBuilder, TransactionEnvelope

from signer_service.testing import SignerFixture, running_signer
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.conftest import SESSION_POLICY
from tests.signer.envelopes import DESTINATION, PASSPHRASE
from tests.signer.test_batch_policy import USDC_NAME as BATCH_ASSET
from tests.signer.test_batch_policy import units
from tests.signer.test_deny_by_default_service import audited

USDC = Asset(*BATCH_ASSET.split(":"))
BATCH_ASSET_LIMITS = {"max_amount_stroops_per_op": 5_000_000,
                      "max_amount_stroops_per_tx": 20_000_000,
                      "max_amount_stroops_per_day": 30_000_000}
BATCH_POLICY = {**SESSION_POLICY, "payments": {
    "assets": ["native", BATCH_ASSET], "limits": {BATCH_ASSET: BATCH_ASSET_LIMITS}}}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def batch_signer(tmp_path_factory) -> AsyncIterator[SignerFixture]:  # noqa: ANN001
    async with running_signer(
        tmp_path_factory.mktemp("batch-signer"), network_passphrase=PASSPHRASE,
        backend="pkcs11", policy=BATCH_POLICY, allowed_clients=["payout-service"],
    ) as signer:
        yield signer


@pytest_asyncio.fixture(loop_scope="session")
async def stub(batch_signer: SignerFixture) -> AsyncIterator[signer_pb2_grpc.SignerServiceStub]:
    async with grpc.aio.secure_channel(
        batch_signer.address, batch_signer.channel_credentials()
    ) as channel:
        yield signer_pb2_grpc.SignerServiceStub(channel)


def batch_envelope(source: str, payments: list[tuple[Asset, int]],
                   op_source: str | None = None) -> TransactionEnvelope:
    builder = TransactionBuilder(Account(source, 41), PASSPHRASE, base_fee=100)
    for asset, amount in payments:
        builder.append_payment_op(DESTINATION, asset, units(amount), source=op_source)
    return builder.set_timeout(60).build()


async def sign(stub, signer, envelope: TransactionEnvelope):  # noqa: ANN001, ANN201
    request = signer_pb2.SignTransactionRequest(
        key_id=signer.key_id, envelope_xdr=envelope.to_xdr(), request_id=uuid.uuid4().hex)
    return request, await stub.SignTransaction(request)


async def test_a_payment_batch_is_signed_by_the_key_and_audited_with_its_sum(batch_signer, stub):
    payments = [(Asset.native(), 7 + i) for i in range(50)]
    envelope = batch_envelope(batch_signer.public_key, payments)
    request, response = await sign(stub, batch_signer, envelope)
    signed = TransactionEnvelope.from_xdr(response.signed_envelope_xdr, PASSPHRASE)
    Keypair.from_public_key(batch_signer.public_key).verify(
        signed.hash(), signed.signatures[0].signature)
    record = audited(batch_signer, request.request_id)
    assert (record["decision"], record["amount_stroops"]) == ("allow", sum(range(7, 57)))
    assert "asset_amounts" not in record  # native counts with the key's own daily total


async def test_an_issued_asset_batch_counts_toward_its_own_daily_limit(batch_signer, stub):
    per_tx = BATCH_ASSET_LIMITS["max_amount_stroops_per_tx"]
    full = batch_envelope(batch_signer.public_key, [(USDC, per_tx // 4)] * 4)
    request, _ = await sign(stub, batch_signer, full)
    assert audited(batch_signer, request.request_id)["asset_amounts"] == {BATCH_ASSET: per_tx}
    # 20 of USDC's 30 (x 1e6 stroops) a day are spent: a second full batch exceeds the day.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sign(stub, batch_signer, full)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details().startswith("policy rule max_amount_stroops_per_day refused: ")
    # XLM is another bucket: still signed.
    await sign(stub, batch_signer, batch_envelope(batch_signer.public_key,
                                                   [(Asset.native(), per_tx)]))


@pytest.mark.parametrize(("payments", "op_source", "rule"), [
    ([(Asset.native(), 5), (Asset("EURT", DESTINATION), 5)], None, "assets"),
    ([(Asset.native(), 5)], DESTINATION, "source_accounts"),
    ([(USDC, BATCH_ASSET_LIMITS["max_amount_stroops_per_op"] + 1)], None,
     "max_amount_stroops_per_op"),
])
async def test_a_refused_batch_is_permission_denied_naming_the_rule(
    batch_signer, stub, payments, op_source, rule,  # noqa: ANN001
):
    envelope = batch_envelope(batch_signer.public_key, payments, op_source)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await sign(stub, batch_signer, envelope)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details().startswith(f"policy rule {rule} refused: ")


async def test_list_keys_reports_each_keys_role(stub):  # noqa: ANN001
    listed = await stub.ListKeys(signer_pb2.ListKeysRequest())
    assert [k.role for k in listed.keys] == [signer_pb2.KEY_ROLE_PAYOUT]


MERGE_HOME = Keypair.random().public_key  # the funding account a channel merges into
CHANNEL = Keypair.random()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool_signer(tmp_path_factory) -> AsyncIterator[SignerFixture]:  # noqa: ANN001
    """A funding key ("payout") and one channel key, as the channel pool configures them."""
    async with running_signer(
        tmp_path_factory.mktemp("pool-signer"), network_passphrase=PASSPHRASE,
        backend="pkcs11", policy=SESSION_POLICY, extra_keys={"channel-1": CHANNEL.secret},
        key_settings={
            "payout": {"role": "funding", "policy": {
                "payments": {"assets": ["native"]},
                "channel_funding": {"max_starting_balance_stroops": 50_000_000,
                                    "max_top_up_stroops": 20_000_000}}},
            "channel-1": {"role": "channel", "policy": {"merge_into": MERGE_HOME}},
        },
    ) as signer:
        yield signer


async def test_the_pool_keys_sign_funding_and_merge_and_nothing_else(pool_signer):  # noqa: ANN001
    async with grpc.aio.secure_channel(pool_signer.address,
                                       pool_signer.channel_credentials()) as channel:
        pool = signer_pb2_grpc.SignerServiceStub(channel)
        listed = await pool.ListKeys(signer_pb2.ListKeysRequest())
        assert {k.key_id: k.role for k in listed.keys} == {
            "payout": signer_pb2.KEY_ROLE_FUNDING, "channel-1": signer_pb2.KEY_ROLE_CHANNEL}

        def lifecycle(source: str, op: str, to: str) -> str:
            builder = TransactionBuilder(Account(source, 9), PASSPHRASE, base_fee=100)
            if op == "create":
                builder.append_create_account_op(to, "5")
            else:
                builder.append_account_merge_op(to)
            return builder.set_timeout(60).build().to_xdr()

        async def sign_as(key_id: str, xdr: str) -> signer_pb2.SignTransactionResponse:
            return await pool.SignTransaction(signer_pb2.SignTransactionRequest(
                key_id=key_id, envelope_xdr=xdr, request_id=uuid.uuid4().hex))

        funding = pool_signer.public_key
        await sign_as("payout", lifecycle(funding, "create", CHANNEL.public_key))
        await sign_as("channel-1", lifecycle(CHANNEL.public_key, "merge", MERGE_HOME))
        for key_id, xdr, rule in [
            ("payout", lifecycle(funding, "create", DESTINATION), "channel_destinations"),
            ("channel-1", lifecycle(CHANNEL.public_key, "merge", DESTINATION),
             "merge_destination"),
            ("channel-1", lifecycle(CHANNEL.public_key, "create", DESTINATION), "operations"),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await sign_as(key_id, xdr)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert err.value.details().startswith(f"policy rule {rule} refused: ")
