"""signer.v1.SignerService over real mTLS against a real SoftHSM token."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from stellar_sdk import DecoratedSignature, Keypair, Network, TransactionEnvelope, scval
from stellar_sdk import xdr as sx
from stellar_sdk.auth import authorization_payload_hash, build_authorization_preimage

from signer_service.certs import DevCA
from signer_service.testing import run_signerctl
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE, build_tx
from tests.signer.test_policy import auth_entry


def request(signer, tx=None, *, key_id=None, payout_id="p-1", **tx_kwargs):
    tx = tx or build_tx(**tx_kwargs)
    passphrase = tx_kwargs.get("passphrase", PASSPHRASE)
    return signer_pb2.SignTransactionRequest(
        key_id=key_id or signer.key_id,
        envelope_xdr=TransactionEnvelope(tx, passphrase).to_xdr(),
        request_id=uuid.uuid4().hex,
        context=signer_pb2.SigningContext(payout_id=payout_id, attempt=2, correlation_id="c-9"),
    )


def audit_records(signer):
    return [json.loads(line) for line in signer.audit_log.read_text().splitlines()]


async def test_signs_and_the_signature_verifies_for_the_recomputed_hash(pkcs11_signer, stub):
    req = request(pkcs11_signer, amount=42)
    reply = await stub.SignTransaction(req)
    envelope = TransactionEnvelope.from_xdr(reply.signed_envelope_xdr, PASSPHRASE)
    assert reply.tx_hash == envelope.hash_hex()
    assert reply.public_key == pkcs11_signer.public_key
    signer_key = Keypair.from_public_key(pkcs11_signer.public_key)
    (sig,) = envelope.signatures
    signer_key.verify(envelope.hash(), sig.signature)
    assert sig.signature_hint == signer_key.signature_hint()
    decorated = DecoratedSignature.from_xdr_object(
        sx.DecoratedSignature.from_xdr(reply.decorated_signature_xdr)
    )
    assert decorated == sig
    record = next(r for r in audit_records(pkcs11_signer) if r["request_id"] == req.request_id)
    assert (record["decision"], record["rule"]) == ("allow", "none")
    assert record["tx_hash"] == reply.tx_hash
    assert (record["payout_id"], record["attempt"], record["correlation_id"]) == ("p-1", 2, "c-9")
    assert record["client"] == "payout-service" and record["amount_stroops"] == 42


async def test_existing_signatures_are_kept(pkcs11_signer, stub):
    other = Keypair.random()
    envelope = TransactionEnvelope(build_tx(), PASSPHRASE)
    envelope.sign(other)
    req = request(pkcs11_signer)
    req.envelope_xdr = envelope.to_xdr()
    reply = await stub.SignTransaction(req)
    signed = TransactionEnvelope.from_xdr(reply.signed_envelope_xdr, PASSPHRASE)
    assert len(signed.signatures) == 2
    other.verify(signed.hash(), signed.signatures[0].signature)


async def test_the_hash_is_always_computed_for_the_signers_network(pkcs11_signer, stub):
    tx = build_tx(passphrase=Network.PUBLIC_NETWORK_PASSPHRASE)
    req = request(pkcs11_signer, tx, passphrase=Network.PUBLIC_NETWORK_PASSPHRASE)
    reply = await stub.SignTransaction(req)
    mainnet_hash = TransactionEnvelope(tx, Network.PUBLIC_NETWORK_PASSPHRASE).hash_hex()
    testnet_hash = TransactionEnvelope(tx, PASSPHRASE).hash_hex()
    # The signature is only good on the signer's network (testnet), never on mainnet.
    assert reply.tx_hash == testnet_hash != mainnet_hash


@pytest.mark.parametrize("tx_kwargs, rule", [
    ({"fee": 5_000_000}, "max_fee_stroops"),
    ({"amount": 10_000_000_001}, "max_amount_stroops_per_tx"),
    ({"timeout": None}, "time_bounds"),
    ({"max_time": 0}, "time_bounds"),
    ({"timeout": 3600}, "max_time_window_seconds"),
    ({"extra_payment": True}, "operations"),
    ({"payment_only": True}, "operations"),
    ({"args": [scval.to_int128(1)]}, "arguments"),
])
async def test_policy_refusals_are_permission_denied_naming_the_rule_and_audited(
    pkcs11_signer, stub, tx_kwargs, rule
):
    req = request(pkcs11_signer, **tx_kwargs)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(req)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details().startswith(f"policy rule {rule} refused: ")
    assert "Traceback" not in err.value.details()
    # Machine-readable too: the rule and the key in a google.rpc.ErrorInfo detail.
    assert refusal_info(err.value) == (rule, "signer.payouts", {"key_id": pkcs11_signer.key_id})
    record = next(r for r in audit_records(pkcs11_signer) if r["request_id"] == req.request_id)
    assert (record["decision"], record["rule"]) == ("refuse", rule)


def refusal_info(err: grpc.aio.AioRpcError) -> tuple[str, str, dict[str, str]] | None:
    status = rpc_status.from_call(err)
    assert status is not None, "the refusal carries no google.rpc.Status details"
    assert status.code == err.code().value[0] and status.message == err.details()
    for packed in status.details:
        info = error_details_pb2.ErrorInfo()
        if packed.Unpack(info):
            return info.reason, info.domain, dict(info.metadata)
    return None


async def test_the_fee_refusal_message_carries_the_numbers(pkcs11_signer, stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(request(pkcs11_signer, fee=5_000_000))
    assert err.value.details() == "policy rule max_fee_stroops refused: fee 5000000 > 2000000"


def bad_request_fields(err: grpc.aio.AioRpcError) -> list[str]:
    """The fields of the status's google.rpc.BadRequest details (a refusal's ErrorInfo may
    stand beside them)."""
    status = rpc_status.from_call(err)
    assert status is not None
    fields = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


@pytest.mark.parametrize("mutate, field", [
    (lambda r: setattr(r, "envelope_xdr", "AAAA-not-xdr"), "envelope_xdr"),
    (lambda r: setattr(r, "envelope_xdr", ""), "envelope_xdr"),
    (lambda r: setattr(r, "request_id", ""), "request_id"),
    (lambda r: setattr(r, "key_id", ""), "key_id"),
])
async def test_bad_input_is_invalid_argument_with_a_field_violation(
    pkcs11_signer, stub, mutate, field
):
    req = request(pkcs11_signer)
    mutate(req)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(req)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == [field]


async def test_an_unknown_key_is_not_found(pkcs11_signer, stub):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(request(pkcs11_signer, key_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_keys_and_get_public_key(pkcs11_signer, stub):
    listed = await stub.ListKeys(signer_pb2.ListKeysRequest())
    assert [(k.key_id, k.public_key, k.backend) for k in listed.keys] == [
        (pkcs11_signer.key_id, pkcs11_signer.public_key, signer_pb2.KEY_BACKEND_PKCS11)
    ]
    got = await stub.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=pkcs11_signer.key_id))
    assert got.key.public_key == pkcs11_signer.public_key


async def test_a_valid_certificate_with_an_identity_not_allowed_is_permission_denied(
    pkcs11_signer
):
    async with grpc.aio.secure_channel(
        pkcs11_signer.address, pkcs11_signer.channel_credentials("intruder")
    ) as channel:
        intruder = signer_pb2_grpc.SignerServiceStub(channel)
        req = request(pkcs11_signer)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await intruder.SignTransaction(req)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "intruder" in err.value.details()
        assert refusal_info(err.value) == (
            "allowed_clients", "signer.payouts", {"key_id": pkcs11_signer.key_id})
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await intruder.GetPublicKey(signer_pb2.GetPublicKeyRequest(key_id=pkcs11_signer.key_id))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert list((await intruder.ListKeys(signer_pb2.ListKeysRequest())).keys) == []
    record = next(r for r in audit_records(pkcs11_signer) if r["request_id"] == req.request_id)
    assert (record["decision"], record["rule"], record["client"]) == (
        "refuse", "allowed_clients", "intruder")


async def expect_handshake_refused(address: str, credentials: grpc.ChannelCredentials) -> None:
    async with grpc.aio.secure_channel(address, credentials) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await signer_pb2_grpc.SignerServiceStub(channel).ListKeys(
                signer_pb2.ListKeysRequest(), timeout=5
            )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_no_client_certificate_fails_the_handshake(pkcs11_signer):
    creds = grpc.ssl_channel_credentials(root_certificates=pkcs11_signer.ca_cert.read_bytes())
    await expect_handshake_refused(pkcs11_signer.address, creds)


async def test_a_client_certificate_from_another_ca_fails_the_handshake(pkcs11_signer, tmp_path):
    rogue = DevCA(tmp_path / "rogue").issue("payout-service")
    creds = grpc.ssl_channel_credentials(
        root_certificates=pkcs11_signer.ca_cert.read_bytes(),
        private_key=rogue.key.read_bytes(), certificate_chain=rogue.cert.read_bytes(),
    )
    await expect_handshake_refused(pkcs11_signer.address, creds)


async def test_an_expired_client_certificate_fails_the_handshake(pkcs11_signer):
    ca = DevCA.load(pkcs11_signer.ca_cert.parent)
    expired = ca.issue("payout-service", expired=True, stem="expired-payout-service")
    creds = grpc.ssl_channel_credentials(
        root_certificates=pkcs11_signer.ca_cert.read_bytes(),
        private_key=expired.key.read_bytes(), certificate_chain=expired.cert.read_bytes(),
    )
    await expect_handshake_refused(pkcs11_signer.address, creds)


async def test_health_and_reflection_answer_over_mtls(pkcs11_signer):
    async with grpc.aio.secure_channel(
        pkcs11_signer.address, pkcs11_signer.channel_credentials()
    ) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="signer.v1.SignerService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        services = set()
        async for reply in stream:
            services |= {s.name for s in reply.list_services_response.service}
        assert {"signer.v1.SignerService", "grpc.health.v1.Health"} <= services


async def test_authorization_entry_signature_verifies(pkcs11_signer, stub):
    # Every test of the session's signer claims ledger 1000: the first claim accepted
    # anchors the bound on later ones (policy.ledger_ceiling).
    entry = auth_entry(pkcs11_signer.public_key, amount=500)
    reply = await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
        key_id=pkcs11_signer.key_id, entry_xdr=entry.to_xdr(), signature_expiration_ledger=1034,
        current_ledger=1000, request_id=uuid.uuid4().hex,
    ))
    signed = sx.SorobanAuthorizationEntry.from_xdr(reply.signed_entry_xdr)
    creds = signed.credentials.address
    assert creds.signature_expiration_ledger.uint32 == 1034
    (sig_map,) = scval.from_vec(creds.signature)
    fields = {scval.from_symbol(k): scval.from_bytes(v) for k, v in scval.from_map(sig_map).items()}
    key = Keypair.from_public_key(pkcs11_signer.public_key)
    assert fields["public_key"] == key.raw_public_key()
    payload = authorization_payload_hash(build_authorization_preimage(signed, 1034, PASSPHRASE))
    key.verify(payload, fields["signature"])
    assert signed.root_invocation == entry.root_invocation


async def test_authorization_entry_over_the_amount_limit_is_refused(pkcs11_signer, stub):
    entry = auth_entry(pkcs11_signer.public_key, amount=10_000_000_001)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
            key_id=pkcs11_signer.key_id, entry_xdr=entry.to_xdr(),
            signature_expiration_ledger=10, current_ledger=5, request_id="auth-big",
        ))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "max_amount_stroops_per_tx" in err.value.details()


async def test_concurrent_requests_all_verify_and_the_audit_chain_holds(pkcs11_signer, stub):
    requests = [request(pkcs11_signer, sequence=i + 10) for i in range(40)]
    replies = await asyncio.gather(*(stub.SignTransaction(r) for r in requests))
    key = Keypair.from_public_key(pkcs11_signer.public_key)
    for reply in replies:
        env = TransactionEnvelope.from_xdr(reply.signed_envelope_xdr, PASSPHRASE)
        key.verify(env.hash(), env.signatures[-1].signature)
    out = await run_signerctl(pkcs11_signer.env, "audit", "verify", "--config",
                              str(pkcs11_signer.config_path))
    assert out.startswith("ok: ")


async def test_metrics_count_decisions_by_rule_and_grpc_codes(pkcs11_signer, stub):
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.SignTransaction(request(pkcs11_signer, fee=9_999_999))
    await stub.SignTransaction(request(pkcs11_signer))
    url = f"http://127.0.0.1:{pkcs11_signer.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'signer_decisions_total{decision="refuse",rule="max_fee_stroops"}' in body
    assert 'signer_decisions_total{decision="sign",rule="none"}' in body
    assert ('grpc_server_handled_total{grpc_code="PERMISSION_DENIED",grpc_method="SignTransaction"'
            in body)
    assert "signer_backend_sign_seconds_count" in body


async def test_no_secret_or_envelope_appears_in_logs_or_audit(pkcs11_signer, stub):
    req = request(pkcs11_signer)
    await stub.SignTransaction(req)
    await asyncio.sleep(0.2)  # let the log drain catch up
    secrets = [pkcs11_signer.env["PAYOUTS_SIGNER_PKCS11_PIN"],
               pkcs11_signer.env["PAYOUTS_SIGNER_PKCS11_SO_PIN"]]
    text = "\n".join(pkcs11_signer.logs) + pkcs11_signer.audit_log.read_text()
    assert req.request_id in text  # the logs are there and carry ids
    for secret in secrets:
        assert secret not in text
    assert req.envelope_xdr not in text
    for line in pkcs11_signer.logs:
        json.loads(line)  # every log line is one JSON object


async def test_a_batch_signs_each_request_on_its_own_with_its_own_answer(pkcs11_signer, stub):
    good, refused, garbage = (request(pkcs11_signer, sequence=500), request(
        pkcs11_signer, fee=5_000_000), request(pkcs11_signer))
    garbage.envelope_xdr = "AAAA-not-xdr"
    reply = await stub.SignTransactions(signer_pb2.SignTransactionsRequest(
        requests=[good, refused, garbage]))
    signed, no, bad = reply.results
    envelope = TransactionEnvelope.from_xdr(signed.signed.signed_envelope_xdr, PASSPHRASE)
    Keypair.from_public_key(pkcs11_signer.public_key).verify(
        envelope.hash(), envelope.signatures[-1].signature)
    assert (no.error.code, no.error.message) == (
        grpc.StatusCode.PERMISSION_DENIED.value[0],
        "policy rule max_fee_stroops refused: fee 5000000 > 2000000")
    assert (bad.error.code, bad.error.field) == (grpc.StatusCode.INVALID_ARGUMENT.value[0],
                                                 "envelope_xdr")
    records = {r["request_id"]: r for r in audit_records(pkcs11_signer)}
    assert records[good.request_id]["decision"] == "allow"
    assert records[refused.request_id]["rule"] == "max_fee_stroops"
    assert garbage.request_id not in records


@pytest.mark.parametrize("count", [0, 101])
async def test_a_batch_needs_1_to_100_requests(pkcs11_signer, stub, count):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransactions(signer_pb2.SignTransactionsRequest(
            requests=[request(pkcs11_signer) for _ in range(count)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(err.value) == ["requests"]


@pytest.mark.parametrize("traceparent, expected", [
    ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
     "0af7651916cd43dd8448eb211c80319c"),
    ("00-" + "0" * 32 + "-b7ad6b7169203331-01", ""),
    ("garbage", ""),
])
async def test_the_callers_trace_id_reaches_the_audit_record_without_an_exporter(
    pkcs11_signer, stub, traceparent, expected
):
    req = request(pkcs11_signer)
    await stub.SignTransaction(req, metadata=(("traceparent", traceparent),))
    record = next(r for r in audit_records(pkcs11_signer) if r["request_id"] == req.request_id)
    assert record["trace_id"] == expected
