"""Every request field is bounded (INVALID_ARGUMENT naming the field), and
no error message repeats more than a short prefix of its input."""

from __future__ import annotations

import uuid

import grpc
import pytest
from stellar_sdk import TransactionEnvelope

from stellar_payouts_pb.signer.v1 import signer_pb2
from tests.signer.envelopes import PASSPHRASE, build_tx
from tests.signer.test_auth_tree import address_entry, node, transfer
from tests.signer.test_service import bad_request_fields

MIB = "x" * (1 << 20)


def tx_request(signer) -> signer_pb2.SignTransactionRequest:  # noqa: ANN001
    return signer_pb2.SignTransactionRequest(
        key_id=signer.key_id, request_id=uuid.uuid4().hex,
        envelope_xdr=TransactionEnvelope(build_tx(), PASSPHRASE).to_xdr(),
        context=signer_pb2.SigningContext(payout_id="p", correlation_id="c"))


def auth_request(signer) -> signer_pb2.SignAuthorizationEntryRequest:  # noqa: ANN001
    return signer_pb2.SignAuthorizationEntryRequest(
        key_id=signer.key_id, request_id=uuid.uuid4().hex,
        entry_xdr=address_entry(node(transfer(5)), signer.public_key).to_xdr(),
        signature_expiration_ledger=1010, current_ledger=1000,
        context=signer_pb2.SigningContext(payout_id="p", correlation_id="c"))


def set_field(request, path: str, value: str) -> None:  # noqa: ANN001
    *parents, leaf = path.split(".")
    for name in parents:
        request = getattr(request, name)
    setattr(request, leaf, value)


CASES = [
    ("SignTransaction", tx_request, field)
    for field in ("key_id", "request_id", "envelope_xdr", "context.payout_id",
                  "context.correlation_id")
] + [
    ("SignAuthorizationEntry", auth_request, field)
    for field in ("key_id", "request_id", "entry_xdr", "context.payout_id",
                  "context.correlation_id")
]


@pytest.mark.parametrize("method, build, field", CASES)
async def test_a_one_mebibyte_field_is_invalid_argument_with_a_short_message(
    pkcs11_signer, stub, method, build, field
):
    request = build(pkcs11_signer)
    set_field(request, field, MIB)
    audit_before = pkcs11_signer.audit_log.read_bytes()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, method)(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == [field]
    assert len(err.value.details()) < 100 and "xxxxxxxxxx" not in err.value.details()
    # Refused before any decision: nothing signed, no 3 MB audit line.
    assert pkcs11_signer.audit_log.read_bytes() == audit_before


async def test_get_public_key_bounds_key_id_too(pkcs11_signer, stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=MIB))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(err.value.details()) < 100


async def test_an_unknown_key_is_echoed_as_a_short_prefix_only(pkcs11_signer, stub):
    request = tx_request(pkcs11_signer)
    request.key_id = "k" * 64  # within the limit, not configured
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(request)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == f"key {'k' * 32 + '...'!r} is not configured"


async def test_fields_at_their_limits_are_signed(pkcs11_signer, stub):
    request = tx_request(pkcs11_signer)
    request.request_id, request.context.payout_id = "r" * 128, "p" * 128
    request.context.correlation_id = "c" * 128
    await stub.SignTransaction(request)
    audit = pkcs11_signer.audit_log.read_text()
    assert "r" * 128 in audit and "r" * 129 not in audit
