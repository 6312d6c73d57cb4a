"""Development X.509 material for mTLS: a CA, a server cert and client certs (dev/test only)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class DevCerts:
    ca_cert: Path
    ca_key: Path
    server: CertPair
    clients: dict[str, CertPair]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    path.chmod(0o600)


class DevCA:
    def __init__(self, folder: Path, name: str = "signer-dev-ca", days: int = 30) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.key = ec.generate_private_key(ec.SECP256R1())
        self._create(name, days)

    @classmethod
    def load(cls, folder: Path) -> DevCA:
        """The CA written by an earlier DevCA(folder), to issue more certs (e.g. in tests)."""
        ca = cls.__new__(cls)
        ca.folder = folder
        ca.cert_path, ca.key_path = folder / "ca.pem", folder / "ca.key"
        ca.cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
        key = serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca.key_path} is not an EC key")
        ca.key = key
        return ca

    def _create(self, name: str, days: int) -> None:
        folder = self.folder
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = folder / "ca.pem"
        self.key_path = folder / "ca.key"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        _write_key(self.key_path, self.key)

    def issue(
        self, cn: str, *, server: bool = False, days: int = 30, expired: bool = False,
        stem: str | None = None, common_names: list[str] | None = None,
        sans: list[x509.GeneralName] | None = None,
    ) -> CertPair:
        """A certificate for `cn` (CN and DNS name). Tests of identity rules may set the
        subject's common names (`common_names`, [] for none) and the subject alternative
        names (`sans`, [] for none) themselves."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)
        if expired:
            start, end = now - dt.timedelta(days=3), now - dt.timedelta(days=1)
        if sans is None:
            sans = [x509.DNSName(cn)]
            if server:
                sans += [x509.DNSName("localhost"),
                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)
                             for name in (common_names if common_names is not None else [cn])])
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        stem = stem or cn
        pair = CertPair(self.folder / f"{stem}.pem", self.folder / f"{stem}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pair.key, key)
        return pair


def generate_dev_certs(
    folder: Path, client_names: list[str], server_name: str = "signer-service"
) -> DevCerts:
    ca = DevCA(folder)
    server = ca.issue(server_name, server=True, stem="server")
    clients = {name: ca.issue(name, stem=f"client-{name}") for name in client_names}
    return DevCerts(ca.cert_path, ca.key_path, server, clients)
