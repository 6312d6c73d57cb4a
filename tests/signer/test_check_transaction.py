"""CheckTransaction explains without signing, against the real signer (SoftHSM token, mTLS):
the same decision as SignTransaction, never counted toward a limit, audited as a check; and
a source_accounts refusal names the account, so a caller can tell a refused channel from a
refused payer."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest

from stellar_payouts_pb.signer.v1 import signer_pb2
from tests.signer.channels import (
    DAILY,
    STRANGER,
    channel_world,  # noqa: F401 - the module's fixture
    payout_envelope,
    sign_request,
)
from tests.signer.test_service import refusal_info


def check_request(key_id: str, envelope_xdr: str) -> signer_pb2.CheckTransactionRequest:
    return signer_pb2.CheckTransactionRequest(
        key_id=key_id, envelope_xdr=envelope_xdr, request_id=uuid.uuid4().hex,
        context=signer_pb2.SigningContext(payout_id="p-check"))


def audit(world) -> list[dict]:  # noqa: ANN001
    return [json.loads(line) for line in world.signer.audit_log.read_text().splitlines()]


CASES = {
    # key, envelope: what SignTransaction decides, CheckTransaction must say.
    "payer signs a channel payout": ("payout", lambda s: payout_envelope(sequence=s)),
    "channel signs its payout": ("channel-1", lambda s: payout_envelope(sequence=s)),
    "payer: a stranger as transaction source": (
        "payout", lambda s: payout_envelope(source=STRANGER, sequence=s)),
    "payer: a stranger as operation source": (
        "payout", lambda s: payout_envelope(op_source=STRANGER, sequence=s)),
    "channel: a stranger's money": (
        "channel-1", lambda s: payout_envelope(sender=STRANGER, sequence=s)),
    "over the per-transaction limit": (
        "payout", lambda s: payout_envelope(amount=10**16, sequence=s)),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_check_answers_what_sign_then_does(channel_world, name):  # noqa: F811
    key_id, build = CASES[name]
    envelope = build(100 + list(CASES).index(name))
    check = await channel_world.stub.CheckTransaction(check_request(key_id, envelope),
                                                      timeout=10)
    try:
        signed = await channel_world.stub.SignTransaction(sign_request(key_id, envelope),
                                                          timeout=10)
    except grpc.aio.AioRpcError as err:
        assert not check.would_sign
        rule, _, metadata = refusal_info(err)
        assert (check.rule, check.account, check.message) == (
            rule, metadata.get("account", ""), err.details())
    else:
        assert check.would_sign and check.rule == "" and check.tx_hash == signed.tx_hash
    assert check.key_id == key_id


async def test_a_check_is_never_counted_and_is_audited_as_a_check(channel_world):  # noqa: F811
    """Checks of 60% of the payer's daily limit say yes, however many; the one signature
    then takes it, and the next check of as much says no, as signing would."""
    amount = DAILY * 6 // 10
    envelope = payout_envelope(amount=amount, sequence=9_001)
    checks = [await channel_world.stub.CheckTransaction(check_request("payout", envelope),
                                                        timeout=10) for _ in range(3)]
    assert all(c.would_sign for c in checks)
    await channel_world.stub.SignTransaction(sign_request("payout", envelope), timeout=10)
    again = await channel_world.stub.CheckTransaction(
        check_request("payout", payout_envelope(amount=amount, sequence=9_002)), timeout=10)
    assert (again.would_sign, again.rule) == (False, "max_amount_stroops_per_day")
    records = [r for r in audit(channel_world) if r["kind"] == "check"
               and r["tx_hash"] in {checks[0].tx_hash, again.tx_hash}]
    assert [(r["decision"], r["payout_id"]) for r in records] == \
        [("would_sign", "p-check")] * 3 + [("would_refuse", "p-check")]


async def test_source_account_refusals_name_the_account_refused(channel_world):  # noqa: F811
    """Payout-service tells "this channel is not allowed" (the channel is the transaction
    source the payer's key refuses) from "this payer is not allowed" (the operation source
    the channel's key refuses) by the account in the refusal's ErrorInfo."""
    stub = channel_world.stub
    other_channel = STRANGER
    with pytest.raises(grpc.aio.AioRpcError) as channel_refused:
        await stub.SignTransaction(sign_request("payout", payout_envelope(
            source=other_channel, sequence=77)), timeout=10)
    assert refusal_info(channel_refused.value) == ("source_accounts", "signer.payouts", {
        "key_id": "payout", "account": other_channel})
    with pytest.raises(grpc.aio.AioRpcError) as payer_refused:
        await stub.SignTransaction(sign_request("channel-1", payout_envelope(
            op_source=STRANGER, sender=STRANGER, sequence=78)), timeout=10)
    assert refusal_info(payer_refused.value) == ("source_accounts", "signer.payouts", {
        "key_id": "channel-1", "account": STRANGER})
    # The batch RPC says the same per request.
    batch = await stub.SignTransactions(signer_pb2.SignTransactionsRequest(requests=[
        sign_request("payout", payout_envelope(source=other_channel, sequence=79))]))
    (result,) = batch.results
    assert (result.error.rule, result.error.account) == ("source_accounts", other_channel)
