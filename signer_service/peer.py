"""Who is calling: the one identity a client certificate names, and the TLS floor.

grpc has verified the certificate chain against the configured client CA before any RPC runs;
this module decides which name in that certificate is the caller. Exactly two fields make an
identity: the subject's common name (CN) and the DNS names of the subject alternative name
extension. Every other field (URI, e-mail, IP address, other-name SANs, other subject
attributes) is never an identity, whatever it says. A certificate must name exactly one
identity: at most one CN, and every DNS name equal to it (or, without a CN, one DNS name).
A certificate whose CN and DNS names disagree names nobody, so it is refused.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

# What the signer's TLS 1.2 cipher list holds: one PSK suite. The signer never configures a
# pre-shared key, so no TLS 1.2 (or older) handshake can complete; TLS 1.3 suites are not
# configurable in BoringSSL and stay on. grpc reads the variable when it first builds TLS
# credentials: main.py sets it before grpc is imported. Python's grpc has no minimum-version
# setting, so this is how TLS 1.3 becomes the floor for every service on the port.
TLS13_ONLY_CIPHER_SUITES = "PSK-AES128-CBC-SHA"
CIPHER_SUITES_ENV = "GRPC_SSL_CIPHER_SUITES"


def require_tls13() -> None:
    """Before grpc is imported: an operator's own GRPC_SSL_CIPHER_SUITES is overridden."""
    os.environ[CIPHER_SUITES_ENV] = TLS13_ONLY_CIPHER_SUITES


@dataclass(frozen=True)
class Peer:
    """The caller: `identity` when the certificate names exactly one, else `problem`."""

    identity: str
    problem: str = ""


def _short(names: list[str]) -> str:
    shown = [repr(n[:32]) for n in names[:4]]
    return ", ".join(shown) + (", ..." if len(names) > 4 else "")


@functools.lru_cache(maxsize=256)
def certificate_identity(pem: bytes) -> Peer:
    """The identity of a PEM client certificate (memoised: a connection presents the same
    certificate on every call)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        common = [str(a.value) for a in cert.subject.get_attributes_for_oid(
            NameOID.COMMON_NAME)]
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns = [str(name) for name in san.get_values_for_type(x509.DNSName)]
        except x509.ExtensionNotFound:
            dns = []
    except Exception:  # noqa: BLE001 - grpc accepted it; anything we cannot read names nobody
        return Peer("", "the client certificate cannot be read")
    if len(common) > 1:
        return Peer("", f"the client certificate has {len(common)} common names "
                        f"({_short(common)})")
    names = sorted(set(common) | set(dns))
    if not names:
        return Peer("", "the client certificate names no identity (no common name and no DNS "
                        "subject alternative name)")
    if len(names) > 1:
        return Peer("", "the client certificate's common name and DNS subject alternative "
                        f"names disagree ({_short(names)})")
    return Peer(names[0])


def caller(context: Any) -> Peer:
    """The peer of an RPC, from the certificate grpc verified for this connection."""
    pems = context.auth_context().get("x509_pem_cert", [])
    if len(pems) != 1:
        return Peer("", "no client certificate")
    return certificate_identity(bytes(pems[0]))
