"""OpenTelemetry for the signer: continue the caller's trace, export only when configured.

The gRPC server interceptor extracts the caller's W3C traceparent, so even with no exporter
the current span carries the payout's trace id, which the audit log records: an auditor can
go from a signing decision to the payout's trace, and back.
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
    """The current trace id as 32 hex digits, or "" when the call carried none."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
