"""Which certificate fields make a caller's identity, and the TLS floor, against the real
signer (SoftHSM token, mTLS): only the CN and DNS subject alternative names, and they must
name one identity; TLS 1.2 handshakes are refused."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid

import grpc
import pytest
from cryptography import x509

from signer_service.certs import DevCA
from signer_service.testing import SignerFixture
from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.test_service import audit_records, refusal_info, request


def issue(signer: SignerFixture, stem: str, *, common_names: list[str],
          sans: list[x509.GeneralName]) -> grpc.ChannelCredentials:
    """A client certificate from the signer's own CA (the handshake accepts it)."""
    pair = DevCA.load(signer.ca_cert.parent).issue(
        stem, stem=f"{stem}-{uuid.uuid4().hex[:6]}", common_names=common_names, sans=sans)
    return grpc.ssl_channel_credentials(
        root_certificates=signer.ca_cert.read_bytes(), private_key=pair.key.read_bytes(),
        certificate_chain=pair.cert.read_bytes())


async def sign_with(signer: SignerFixture, creds: grpc.ChannelCredentials):
    req = request(signer)
    async with grpc.aio.secure_channel(signer.address, creds) as channel:
        stub = signer_pb2_grpc.SignerServiceStub(channel)
        try:
            await stub.SignTransaction(req, timeout=10)
        except grpc.aio.AioRpcError as err:
            return req, err
    return req, None


@pytest.mark.parametrize("other_san", [
    x509.UniformResourceIdentifier("payout-service"),
    x509.RFC822Name("payout-service"),
    x509.UniformResourceIdentifier("spiffe://payout-service"),
])
async def test_no_other_san_type_makes_an_identity(pkcs11_signer, other_san):
    """CN=intruder with a URI or e-mail SAN equal to the allowed client is `intruder`: only
    the CN and DNS names make an identity."""
    creds = issue(pkcs11_signer, "intruder", common_names=["intruder"], sans=[other_san])
    req, err = await sign_with(pkcs11_signer, creds)
    assert err is not None, "signed for a certificate whose identity is intruder"
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refusal_info(err)[0] == "allowed_clients"
    record = next(r for r in audit_records(pkcs11_signer) if r["request_id"] == req.request_id)
    assert (record["decision"], record["rule"], record["client"]) == (
        "refuse", "allowed_clients", "intruder")


@pytest.mark.parametrize("common_names, sans", [
    (["intruder"], [x509.DNSName("payout-service")]),
    (["payout-service"], [x509.DNSName("intruder")]),
    (["payout-service"], [x509.DNSName("payout-service"), x509.DNSName("intruder")]),
    (["payout-service", "intruder"], [x509.DNSName("payout-service")]),
    (["payout-service", "payout-service"], []),
    ([], [x509.DNSName("payout-service"), x509.DNSName("intruder")]),
    ([], [x509.UniformResourceIdentifier("payout-service")]),
], ids=["cn-intruder-dns-allowed", "cn-allowed-dns-intruder", "two-dns-names",
        "two-cns", "two-equal-cns", "no-cn-two-dns", "no-cn-no-dns"])
async def test_a_certificate_that_names_no_single_identity_is_refused_and_audited(
    pkcs11_signer, common_names, sans
):
    creds = issue(pkcs11_signer, "ambiguous", common_names=common_names, sans=sans)
    req, err = await sign_with(pkcs11_signer, creds)
    assert err is not None, "signed for a certificate that names more than one identity"
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refusal_info(err)[0] == "client_identity"
    record = next(r for r in audit_records(pkcs11_signer) if r["request_id"] == req.request_id)
    assert (record["decision"], record["rule"], record["client"]) == (
        "refuse", "client_identity", "")
    assert "client certificate" in record["detail"]
    async with grpc.aio.secure_channel(pkcs11_signer.address, creds) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as listed:
            await signer_pb2_grpc.SignerServiceStub(channel).ListKeys(
                signer_pb2.ListKeysRequest(), timeout=10)
    assert listed.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("common_names, sans", [
    ([], [x509.DNSName("payout-service")]),
    (["payout-service"], []),
    (["payout-service"], [x509.DNSName("payout-service"),
                          x509.UniformResourceIdentifier("spiffe://anything")]),
], ids=["dns-only", "cn-only", "cn-and-dns-agree-with-a-uri-beside"])
async def test_the_documented_fields_alone_still_identify_the_client(
    pkcs11_signer, common_names, sans
):
    creds = issue(pkcs11_signer, "payout-service", common_names=common_names, sans=sans)
    req, err = await sign_with(pkcs11_signer, creds)
    assert err is None, err
    record = next(r for r in audit_records(pkcs11_signer) if r["request_id"] == req.request_id)
    assert (record["decision"], record["client"]) == ("allow", "payout-service")


def handshake(signer: SignerFixture, version: ssl.TLSVersion) -> str:
    """A real TLS handshake with the client certificate, at exactly `version`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(signer.ca_cert)
    ctx.load_cert_chain(signer.client_cert, signer.client_key)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    host, port = signer.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            ctx.wrap_socket(raw) as tls:
        return str(tls.version())


async def test_tls_1_3_is_the_floor(pkcs11_signer):
    assert await asyncio.to_thread(handshake, pkcs11_signer, ssl.TLSVersion.TLSv1_3) == \
        "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(handshake, pkcs11_signer, ssl.TLSVersion.TLSv1_2)
