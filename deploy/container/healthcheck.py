"""The image's HEALTHCHECK: exit 0 when the service in this container is healthy, else 1.

payout-service (the default): grpc.health.v1.Health/Check on PAYOUTS_LISTEN_ADDR, the way the
service itself is configured. With PAYOUTS_PLAINTEXT=true the check is plaintext; otherwise it
is TLS, trusting PAYOUTS_TLS_CLIENT_CA and presenting the server's own certificate and key as
the client identity (so the certificate needs the clientAuth usage too, as for the Kubernetes
readiness probe), with the certificate's first DNS name as the expected server name.

signer-service (``--tcp HOST:PORT``): a TCP connect. Its port accepts only mTLS from the
signer's client CA, and a health client inside the signer's container would be one more
identity to guard next to the keys.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

_ANY_HOST = {"", "0.0.0.0", "::", "[::]"}  # noqa: S104 - listen addresses, not a bind


def local_target(listen_addr: str) -> str:
    """The address to dial for a service listening on ``listen_addr`` in this container."""
    host, _, port = listen_addr.rpartition(":")
    if host in _ANY_HOST:
        host = "127.0.0.1"
    return f"{host}:{port}"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _first_dns_name(cert_pem: bytes) -> str | None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    names = san.get_values_for_type(x509.DNSName)
    return names[0] if names else None


def check_grpc(env: dict[str, str], target: str | None, timeout: float) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    addr = target or local_target(env.get("PAYOUTS_LISTEN_ADDR", "").strip() or "127.0.0.1:50051")
    plaintext = env.get("PAYOUTS_PLAINTEXT", "").strip().lower() in {"1", "true", "yes", "on"}
    options: list[tuple[str, str]] = []
    if plaintext:
        channel = grpc.insecure_channel(addr)
    else:
        cert = _read(env["PAYOUTS_TLS_CERT"])
        ca = env.get("PAYOUTS_TLS_CLIENT_CA", "").strip()
        creds = grpc.ssl_channel_credentials(
            root_certificates=_read(ca) if ca else None,
            private_key=_read(env["PAYOUTS_TLS_KEY"]),
            certificate_chain=cert,
        )
        name = _first_dns_name(cert)
        if name:
            options.append(("grpc.ssl_target_name_override", name))
        channel = grpc.secure_channel(addr, creds, options=options)
    try:
        with channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError as err:
        print(f"health check failed: {err.code().name}: {err.details()}", file=sys.stderr)
        return 1
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def check_tcp(addr: str, timeout: float) -> int:
    host, _, port = local_target(addr).rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        print(f"health check failed: {addr}: {err}", file=sys.stderr)
        return 1
    print("LISTENING")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tcp", metavar="HOST:PORT", help="only check that the port accepts")
    parser.add_argument("--addr", metavar="HOST:PORT", help="override PAYOUTS_LISTEN_ADDR")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.tcp:
        return check_tcp(args.tcp, args.timeout)
    try:
        return check_grpc(dict(os.environ), args.addr, args.timeout)
    except (KeyError, OSError) as err:
        print(f"health check misconfigured: {err!r}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
