"""A channel key signs only what a channel needs, against the real signer (SoftHSM token,
mTLS): as the transaction's source, for an operation paid by a payer it serves. Its
signature never authorises anyone's money, its own included."""

from __future__ import annotations

import uuid

import grpc
import pytest
from stellar_sdk import Keypair, TransactionEnvelope

from stellar_payouts_pb.signer.v1 import signer_pb2
from tests.signer.channels import (
    CHANNEL,
    PAYER,
    STRANGER,
    address_entry,
    channel_world,  # noqa: F401 - the module's fixture
    payout_envelope,
    sign_request,
    source_entry,
)
from tests.signer.test_policy import auth_entry
from tests.signer.test_service import refusal_info


async def test_a_channel_signs_the_payout_it_is_the_source_of(channel_world):  # noqa: F811
    reply = await channel_world.stub.SignTransaction(
        sign_request("channel-1", payout_envelope()), timeout=10)
    envelope = TransactionEnvelope.from_xdr(reply.signed_envelope_xdr, "Test SDF Network ; "
                                            "September 2015")
    Keypair.from_public_key(CHANNEL.public_key).verify(envelope.hash(),
                                                       envelope.signatures[0].signature)


@pytest.mark.parametrize("envelope, account", [
    # A transfer whose `from` is a stranger (useless on chain, since the
    # stranger's authorisation is missing, but nothing a channel needs).
    (lambda: payout_envelope(sender=STRANGER), STRANGER),
    (lambda: payout_envelope(sender=STRANGER, auth=[
        address_entry(STRANGER, STRANGER, 100)]), STRANGER),
    # No operation source: the SOURCE_ACCOUNT entry would authorise the channel itself.
    (lambda: payout_envelope(sender=CHANNEL.public_key, op_source=None), CHANNEL.public_key),
    (lambda: payout_envelope(op_source=None, auth=[
        address_entry(PAYER.public_key, PAYER.public_key, 100)]), CHANNEL.public_key),
    # A stranger as the operation's source, or an entry of a stranger beside the payer's.
    (lambda: payout_envelope(op_source=STRANGER), STRANGER),
    (lambda: payout_envelope(auth=[source_entry(PAYER.public_key, 100),
                                   address_entry(STRANGER, PAYER.public_key, 100)]), STRANGER),
    # Signing as anything but the transaction's source.
    (lambda: payout_envelope(source=PAYER.public_key), PAYER.public_key),
], ids=["from-stranger", "from-stranger-with-its-entry", "channel-authorises-itself",
        "no-op-source", "stranger-op-source", "stranger-entry", "not-the-tx-source"])
async def test_a_channel_refuses_what_a_channel_does_not_need(
    channel_world, envelope, account  # noqa: F811
):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel_world.stub.SignTransaction(sign_request("channel-1", envelope()),
                                                 timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refusal_info(err.value) == ("source_accounts", "signer.payouts", {
        "key_id": "channel-1", "account": account})


async def test_a_channel_signs_no_authorization_entry(channel_world):  # noqa: F811
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await channel_world.stub.SignAuthorizationEntry(
            signer_pb2.SignAuthorizationEntryRequest(
                key_id="channel-1", entry_xdr=auth_entry(CHANNEL.public_key).to_xdr(),
                current_ledger=1000, signature_expiration_ledger=1050,
                request_id=uuid.uuid4().hex), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refusal_info(err.value)[0] == "credentials"
