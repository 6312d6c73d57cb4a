"""Without a recording tracer, payout-service serves without the OpenTelemetry interceptor and
ServiceInterceptor makes the caller's trace context current instead: what a handler sees as
the current trace (and stores on the payout) is the caller's, as under the interceptor."""

from __future__ import annotations

import secrets
from typing import Any

import grpc

from payout_service.api.interceptors import ServiceInterceptor
from payout_service.tracing import current_traceparent, server_interceptor
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc


class Echo(payout_pb2_grpc.PayoutServiceServicer):  # type: ignore[misc]
    async def CreatePayout(self, request: Any, context: Any) -> pb.CreatePayoutResponse:  # noqa: N802
        return pb.CreatePayoutResponse(payout=pb.Payout(correlation_id=current_traceparent()))


async def seen_trace(interceptors: list[Any], metadata: Any) -> str:
    server = grpc.aio.server(interceptors=interceptors)
    payout_pb2_grpc.add_PayoutServiceServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            answer = await stub.CreatePayout(pb.CreatePayoutRequest(), metadata=metadata)
            return str(answer.payout.correlation_id)
    finally:
        await server.stop(0)


async def test_the_callers_trace_is_current_in_the_handler():
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    caller = (("traceparent", f"00-{trace_id}-{span_id}-01"),)
    light = [ServiceInterceptor(admin_identities=(), plaintext=True, continue_trace=True)]
    assert await seen_trace(light, caller) == f"00-{trace_id}-{span_id}-01"
    assert await seen_trace(light, None) == ""
    # The same trace as under the OpenTelemetry interceptor (a child span of the caller's
    # when a provider records, the caller's own span otherwise).
    otel = [server_interceptor(), ServiceInterceptor(admin_identities=(), plaintext=True)]
    assert (await seen_trace(otel, caller)).split("-")[1] == trace_id
    # Off, the interceptor carries nothing.
    plain = [ServiceInterceptor(admin_identities=(), plaintext=True)]
    assert await seen_trace(plain, caller) == ""
