"""Every request gets an answer it can act on, against the real signer (SoftHSM token, mTLS):
bytes that are not a valid message, invalid UTF-8 in any string field, wrong wire types,
mutated envelopes and entries. Never INTERNAL or UNKNOWN; INVALID_ARGUMENT names the field;
what reaches the policy is audited."""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from stellar_sdk import Address, MuxedAccount, TransactionEnvelope

from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE, build_tx
from tests.signer.test_policy import auth_entry
from tests.signer.test_service import audit_records, bad_request_fields, refusal_info

SERVICE = signer_pb2.DESCRIPTOR.services_by_name["SignerService"]
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
           grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.UNAUTHENTICATED}
# The ledger every test of the session's signer claims (test_service's too): the first claim
# accepted anchors the signer's bound on later ones (policy.ledger_ceiling).
SESSION_LEDGER = 1000
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"ok\xf4\x90\x80\x80"]


def key(tag: int) -> bytes:
    out = b""
    while True:
        byte, tag = tag & 0x7F, tag >> 7
        out += bytes([byte | (0x80 if tag else 0)])
        if not tag:
            return out


def length_delimited(number: int, body: bytes) -> bytes:
    return key(number << 3 | 2) + key(len(body)) + body


def string_paths(message: Descriptor, prefix: str = "", depth: int = 0
                 ) -> Iterator[tuple[str, list[FieldDescriptor]]]:
    """Every string field at any depth: its path and the fields leading to it."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            yield prefix + field.name, [field]
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
            for path, chain in string_paths(field.message_type, prefix + field.name + ".",
                                            depth + 1):
                yield path, [field, *chain]


def nested(chain: list[FieldDescriptor], value: bytes) -> bytes:
    body = value
    for field in reversed(chain):
        body = length_delimited(field.number, body)
    return body


def expected_path(chain: list[FieldDescriptor]) -> str:
    return ".".join(f.name + ("[0]" if f.is_repeated else "") for f in chain)


async def call(channel: grpc.aio.Channel, method: str, raw: bytes
               ) -> tuple[grpc.StatusCode, grpc.aio.AioRpcError | None]:
    """A generic unary call with raw request bytes (no client-side serialisation)."""
    rpc = channel.unary_unary(f"/{SERVICE.full_name}/{method}")
    try:
        await rpc(raw, timeout=20)
    except grpc.aio.AioRpcError as err:
        return err.code(), err
    return grpc.StatusCode.OK, None


@pytest.fixture
async def raw_channel(pkcs11_signer):
    async with grpc.aio.secure_channel(pkcs11_signer.address,
                                       pkcs11_signer.channel_credentials()) as channel:
        yield channel


async def test_invalid_utf8_in_request_id_is_invalid_argument_naming_it(raw_channel):
    """protobuf refuses the bytes before any handler runs; the signer's deserializer turns
    that into an answer naming the field (grpc alone would say UNKNOWN)."""
    raw = length_delimited(1, b"payout") + length_delimited(3, b"\xff\xfe")
    code, err = await call(raw_channel, "SignTransaction", raw)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, code
    assert bad_request_fields(err) == ["request_id"]
    assert "request_id: is not valid UTF-8" == err.details()


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
async def test_invalid_utf8_in_every_string_field_of_every_rpc(raw_channel, method):
    request = SERVICE.methods_by_name[method].input_type
    for path, chain in string_paths(request):
        for bad in BAD_UTF8:
            code, err = await call(raw_channel, method, nested(chain, bad))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, path, bad, code)
            assert bad_request_fields(err) == [expected_path(chain)], (method, path)


WIRE_VALUES = {0: key(5), 1: bytes(8), 2: key(3) + b"abc", 5: bytes(4)}


@pytest.mark.parametrize("method", [m.name for m in SERVICE.methods])
async def test_wrong_wire_types_and_broken_bytes_are_answered(raw_channel, method):
    request = SERVICE.methods_by_name[method].input_type
    cases = []
    for field in request.fields:
        for wire_type, value in WIRE_VALUES.items():
            cases.append(key(field.number << 3 | wire_type) + value)
        cases.append(key(field.number << 3 | 2) + key(50) + b"short")  # length past the end
        cases.append(key(field.number << 3 | 3))  # a group start, never ended
        cases.append(key(field.number << 3 | 7))  # no such wire type
    cases += [b"\x80", b"\xff" * 11, key(2**29 << 3 | 0) + b"\x80"]
    rng = random.Random(f"wire-{method}")
    cases += [rng.randbytes(rng.randint(1, 64)) for _ in range(60)]
    for raw in cases:
        code, err = await call(raw_channel, method, raw)
        assert code in ANSWERS, (method, raw, code)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert bad_request_fields(err), (method, raw, err.details())


def flipped(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


async def test_mutated_envelopes_and_entries_never_crash_the_policy(pkcs11_signer, raw_channel):
    """Bit flips in real XDR: most no longer decode (INVALID_ARGUMENT), the rest reach the
    policy with odd contents (other types, addresses, lengths) and get a decision."""
    stub = signer_pb2_grpc.SignerServiceStub(raw_channel)
    rng = random.Random("xdr-mutations")
    envelope = TransactionEnvelope(build_tx(), PASSPHRASE).to_xdr_object().to_xdr_bytes()
    entry = auth_entry(pkcs11_signer.public_key).to_xdr_bytes()
    for _ in range(150):
        for rpc, request in (
            (stub.SignTransaction, signer_pb2.SignTransactionRequest(
                key_id=pkcs11_signer.key_id, request_id=uuid.uuid4().hex,
                envelope_xdr=base64.b64encode(flipped(envelope, rng)).decode())),
            (stub.CheckTransaction, signer_pb2.CheckTransactionRequest(
                key_id=pkcs11_signer.key_id, request_id=uuid.uuid4().hex,
                envelope_xdr=base64.b64encode(flipped(envelope, rng)).decode())),
            (stub.SignAuthorizationEntry, signer_pb2.SignAuthorizationEntryRequest(
                key_id=pkcs11_signer.key_id, request_id=uuid.uuid4().hex,
                entry_xdr=base64.b64encode(flipped(entry, rng)).decode(),
                current_ledger=SESSION_LEDGER,
                signature_expiration_ledger=SESSION_LEDGER + 50)),
        ):
            try:
                await rpc(request, timeout=20)
            except grpc.aio.AioRpcError as err:
                assert err.code() in ANSWERS, (err.code(), err.details())


async def test_a_muxed_address_entry_is_refused_by_the_policy_and_audited(pkcs11_signer, stub):
    """stellar-sdk cannot build a preimage for an M... address (ValueError): the policy
    refuses the entry (credentials) and audits it, with no hash."""
    entry = auth_entry(pkcs11_signer.public_key)
    muxed = MuxedAccount(pkcs11_signer.public_key, 7).account_muxed
    assert muxed is not None and muxed.startswith("M")
    entry.credentials.address.address = Address(muxed).to_xdr_sc_address()
    request_id = uuid.uuid4().hex
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
            key_id=pkcs11_signer.key_id, entry_xdr=entry.to_xdr(), current_ledger=SESSION_LEDGER,
            signature_expiration_ledger=SESSION_LEDGER + 50, request_id=request_id), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refusal_info(err.value)[0] == "credentials"
    assert muxed in err.value.details()
    record = next(r for r in audit_records(pkcs11_signer) if r["request_id"] == request_id)
    assert (record["decision"], record["rule"], record["tx_hash"]) == (
        "refuse", "credentials", "")
