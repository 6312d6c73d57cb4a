"""OpenTelemetry for the signer: continue the caller's trace, export only when configured.

With an exporter, the gRPC server interceptor continues the caller's W3C trace. Without one,
the interceptor would only cost time (a fifth of a signature's), so the handler reads the
trace id straight from the `traceparent` header. Either way the audit log records the caller's
trace id: an auditor can go from a signing decision to the payout's trace, and back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor


def configure_tracing(env: Mapping[str, str] = os.environ) -> bool:
    """Exports over OTLP when PAYOUTS_SIGNER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is set."""
    endpoint = env.get("PAYOUTS_SIGNER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "signer-service"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return True


def server_interceptor() -> Any:
    return aio_server_interceptor()  # type: ignore[no-untyped-call]


def current_trace_id() -> str:
    """The current span's trace id as 32 hex digits, or "" when there is none."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


_HEX = frozenset("0123456789abcdef")


def traceparent_trace_id(metadata: Any) -> str:
    """The trace id of a W3C `traceparent` header (00-<32 hex>-<16 hex>-<2 hex>), or ""."""
    for key, value in metadata or ():
        if key != "traceparent" or not isinstance(value, str):
            continue
        parts = value.split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and set(parts[1]) <= _HEX and \
                parts[1] != "0" * 32:
            return parts[1]
    return ""


def request_trace_id(grpc_context: Any) -> str:
    return current_trace_id() or traceparent_trace_id(grpc_context.invocation_metadata())
