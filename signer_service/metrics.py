"""Prometheus metrics (names in deploy/prometheus/METRICS.md), served on their own port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()

DECISIONS = Counter(
    "signer_decisions_total", "Signing decisions by decision and policy rule",
    ["decision", "rule"], registry=REGISTRY,
)
BACKEND_SIGN_SECONDS = Histogram(
    "signer_backend_sign_seconds", "Time the signing backend takes per signature",
    registry=REGISTRY,
    buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total", "gRPC requests completed, by method and status code",
    ["grpc_service", "grpc_method", "grpc_code"], registry=REGISTRY,
)
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds", "gRPC request latency",
    ["grpc_service", "grpc_method"], registry=REGISTRY,
)


AUDIT_RECORDS = Gauge(
    "signer_audit_records", "Records in the audit log (head checkpoint count); never decreases",
    registry=REGISTRY,
)
AUDIT_HEAD_PREFIX = Gauge(
    "signer_audit_head_prefix",
    "First 48 bits of the audit log's head hash, as an integer (the checkpoint's head)",
    registry=REGISTRY,
)


def publish_audit_checkpoint(records: int, head: str) -> None:
    AUDIT_RECORDS.set(records)
    AUDIT_HEAD_PREFIX.set(int(head[:12], 16))


def serve_metrics(port: int, addr: str) -> int:
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return int(server.server_port)
