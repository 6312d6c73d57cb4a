"""Issue 12 finding 1 against the real signer (SoftHSM, mTLS): what it signed is now refused."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest
from stellar_sdk import TransactionEnvelope

from stellar_payouts_pb.signer.v1 import signer_pb2
from tests.signer.envelopes import PASSPHRASE
from tests.signer.test_auth_tree import (
    NESTED_HOLES,
    address_entry,
    node,
    source_entry,
    transfer,
    tx_with,
)


def sign_tx_request(signer, tx) -> signer_pb2.SignTransactionRequest:  # noqa: ANN001
    return signer_pb2.SignTransactionRequest(
        key_id=signer.key_id, envelope_xdr=TransactionEnvelope(tx, PASSPHRASE).to_xdr(),
        request_id=uuid.uuid4().hex)


def audited(signer, request_id: str) -> dict:  # noqa: ANN001
    for line in signer.audit_log.read_text().splitlines():
        record = json.loads(line)
        if record.get("request_id") == request_id:
            return record
    raise AssertionError(f"no audit record for {request_id}")


@pytest.mark.parametrize("name", list(NESTED_HOLES))
async def test_the_issues_nested_authorisations_are_refused_and_audited(
    pkcs11_signer, stub, name
):
    hole, rule = NESTED_HOLES[name]
    tx = tx_with(transfer(5), source_entry(node(transfer(5), hole)))
    req = sign_tx_request(pkcs11_signer, tx)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(req)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details().startswith(f"policy rule {rule} refused: ")
    assert (audited(pkcs11_signer, req.request_id)["rule"]) == rule


@pytest.mark.parametrize("name", list(NESTED_HOLES))
async def test_sign_authorization_entry_refuses_the_same_trees(pkcs11_signer, stub, name):
    hole, rule = NESTED_HOLES[name]
    entry = address_entry(node(transfer(5), hole), pkcs11_signer.public_key)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
            key_id=pkcs11_signer.key_id, entry_xdr=entry.to_xdr(),
            signature_expiration_ledger=1010, current_ledger=1000,
            request_id=uuid.uuid4().hex))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details().startswith(f"policy rule {rule} refused: ")


async def test_an_expiration_ledger_of_2_pow_32_minus_1_is_refused(pkcs11_signer, stub):
    entry = address_entry(node(transfer(5)), pkcs11_signer.public_key)
    for current in (1000, 2**32 - 101):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
                key_id=pkcs11_signer.key_id, entry_xdr=entry.to_xdr(),
                signature_expiration_ledger=2**32 - 1, current_ledger=current,
                request_id=uuid.uuid4().hex))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "max_signature_expiration_ledgers" in err.value.details()


async def test_a_missing_current_ledger_is_invalid_argument(pkcs11_signer, stub):
    entry = address_entry(node(transfer(5)), pkcs11_signer.public_key)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
            key_id=pkcs11_signer.key_id, entry_xdr=entry.to_xdr(),
            signature_expiration_ledger=10, request_id=uuid.uuid4().hex))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "current_ledger" in err.value.details()


async def test_a_one_stroop_root_cannot_carry_a_nested_transfer_past_the_limit(
    pkcs11_signer, stub
):
    tx = tx_with(transfer(1), source_entry(node(transfer(1), node(transfer(10_000_000_000)))))
    req = sign_tx_request(pkcs11_signer, tx)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(req)
    assert "max_amount_stroops_per_tx" in err.value.details()
    # The root and its own SOURCE_ACCOUNT entry are one transfer: signed, counted once.
    req = sign_tx_request(pkcs11_signer, tx_with(transfer(9), source_entry(node(transfer(9)))))
    await stub.SignTransaction(req)
    assert audited(pkcs11_signer, req.request_id)["amount_stroops"] == 9
