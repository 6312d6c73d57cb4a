"""[channel_keys] against a real signer-service (SoftHSM token, mTLS): channel keys generated
on the token while the signer runs sign without a restart, and a key destroyed on the token
stops signing (signer_service.keys.KeyRegistry.refresh)."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from stellar_sdk import Account, Keypair, TransactionBuilder, TransactionEnvelope

from signer_service.config import ConfigError, parse_config
from signer_service.testing import SOFTHSM_MODULE, run_signerctl, running_signer
from stellar_payouts_pb.signer.v1 import signer_pb2 as pb
from stellar_payouts_pb.signer.v1 import signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE
from tests.signer.test_batch_policy import config_with
from tests.waiting import eventually

TOKEN = ("--module", SOFTHSM_MODULE, "--token-label", "payouts")


def merge_envelope(channel: str, into: str) -> str:
    tx = (TransactionBuilder(Account(channel, 41), PASSPHRASE, base_fee=100)
          .add_time_bounds(0, int(time.time()) + 60)
          .append_account_merge_op(into).build())
    return tx.to_xdr()


async def sign(stub: signer_pb2_grpc.SignerServiceStub, key_id: str, xdr: str) -> str:
    reply = await stub.SignTransaction(pb.SignTransactionRequest(
        key_id=key_id, envelope_xdr=xdr, request_id=uuid.uuid4().hex,
        context=pb.SigningContext(payout_id="channel-refresh", attempt=1)))
    return str(reply.signed_envelope_xdr)


async def until_listed(stub: signer_pb2_grpc.SignerServiceStub, wanted: set[str]) -> set[str]:
    """ListKeys refreshes at most once a second: ask until the listing is `wanted`."""

    async def listing() -> set[str] | None:
        listed = {k.key_id for k in (await stub.ListKeys(pb.ListKeysRequest())).keys}
        return listed if listed == wanted else None

    return await eventually(listing, what=f"keys {sorted(wanted)} listed", within=20,
                            interval=0.2)


async def test_channel_keys_generated_and_destroyed_on_the_token_need_no_restart(tmp_path):
    funding = Keypair.random().public_key
    async with running_signer(
        tmp_path, network_passphrase=PASSPHRASE, backend="pkcs11",
        channel_keys={"label_prefix": "channel-", "refresh_seconds": 1,
                      "policy": {"merge_into": funding}},
    ) as signer, grpc.aio.secure_channel(signer.address, signer.channel_credentials()) as ch:
        stub = signer_pb2_grpc.SignerServiceStub(ch)
        assert {k.key_id for k in (await stub.ListKeys(pb.ListKeysRequest())).keys} == {"payout"}
        out = await run_signerctl(signer.env, "channel-keys", "generate", *TOKEN, "--count", "2")
        (one, one_address), (two, two_address) = (line.split() for line in out.splitlines())

        # A GetPublicKey of a key id the signer does not know yet re-lists the token.
        got = (await stub.GetPublicKey(pb.GetPublicKeyRequest(key_id=two))).key
        assert (got.public_key, got.role) == (two_address, pb.KEY_ROLE_CHANNEL)
        signed = TransactionEnvelope.from_xdr(
            await sign(stub, one, merge_envelope(one_address, funding)), PASSPHRASE)
        (signature,) = signed.signatures
        Keypair.from_public_key(one_address).verify(signed.hash(), signature.signature)
        # The channel key's own rules: its merge goes to the funding account only.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await sign(stub, one, merge_envelope(one_address, Keypair.random().public_key))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # Retired: destroyed on the token, the key leaves the registry and signs no more.
        await run_signerctl(signer.env, "channel-keys", "destroy", *TOKEN, "--label", one)
        assert await until_listed(stub, {"payout", two}) == {"payout", two}
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await sign(stub, one, merge_envelope(one_address, funding))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        assert await sign(stub, two, merge_envelope(two_address, funding))


async def test_a_channel_key_label_outside_the_prefix_cannot_be_destroyed(tmp_path):
    async with running_signer(tmp_path, network_passphrase=PASSPHRASE, backend="pkcs11") \
            as signer:
        with pytest.raises(RuntimeError, match="not a channel key label"):
            await run_signerctl(signer.env, "channel-keys", "destroy", *TOKEN,
                                "--label", "payout-key")
        shown = await run_signerctl(signer.env, "key", "show", *TOKEN, "--label", "payout-key")
        assert shown.split()[1] == signer.public_key


def channel_keys_config(tmp_path, table: dict, *, pkcs11: bool = True) -> dict:  # noqa: ANN001
    raw = config_with({"assets": ["native"]}, tmp_path)
    if pkcs11:
        raw["pkcs11"] = {"module": str(tmp_path / "c"), "token_label": "payouts"}
    raw["channel_keys"] = table
    return raw


def test_channel_keys_take_the_template_policy_with_the_label_as_key_id(tmp_path):
    funding = Keypair.random().public_key
    base = config_with({"assets": ["native"]}, tmp_path)["keys"][0]["policy"]
    config = parse_config(channel_keys_config(tmp_path, {
        "label_prefix": "channel-", "allowed_clients": ["payout-service"],
        "policy": {**base, "merge_into": funding}}))
    assert config.channel_keys is not None
    key = config.channel_keys.key("channel-12")
    assert (key.key_id, key.label, key.role, key.backend) == \
        ("channel-12", "channel-12", "channel", "pkcs11")
    assert key.policy.merge_into == funding
    assert key.allowed_clients == frozenset({"payout-service"})
    assert config.channel_keys.refresh_seconds == 10


VALID = "a valid channel key policy"


@pytest.mark.parametrize(("table", "pkcs11", "message"), [
    ({"label_prefix": "channel-", "allowed_clients": ["p"], "policy": VALID}, False,
     "needs a \\[pkcs11\\] table"),
    ({"label_prefix": "channel-", "allowed_clients": ["p"], "policy": {"max_fee_stroops": 1}},
     True, "channel_keys: .*merge_into"),
    ({"label_prefix": "k", "allowed_clients": ["p"], "policy": VALID}, True,
     "key id 'k' starts with channel_keys.label_prefix"),
    ({"label_prefix": "channel-", "allowed_clients": ["p"], "policy": VALID,
      "refresh_seconds": 0}, True, "refresh_seconds"),
    ({"label_prefix": "channel-", "prefix": "x"}, True, "unknown setting 'prefix'"),
])
def test_channel_keys_mistakes_fail_at_start(tmp_path, table, pkcs11, message):  # noqa: ANN001
    if table.get("policy") == VALID:
        base = config_with({"assets": ["native"]}, tmp_path)["keys"][0]["policy"]
        table = {**table, "policy": {**base, "merge_into": Keypair.random().public_key}}
    with pytest.raises(ConfigError, match=message):
        parse_config(channel_keys_config(tmp_path, table, pkcs11=pkcs11))
