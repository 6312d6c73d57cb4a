"""Every RPC of the three payout services, called generically from their descriptors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from stellar_payouts_pb.payout.v1 import admin_pb2, payout_pb2, rounds_pb2

SERVICES = (
    payout_pb2.DESCRIPTOR.services_by_name["PayoutService"],
    rounds_pb2.DESCRIPTOR.services_by_name["RoundService"],
    admin_pb2.DESCRIPTOR.services_by_name["PayoutAdminService"],
)


@dataclass(frozen=True)
class Rpc:
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def name(self) -> str:
        return f"{self.method.containing_service.name}/{self.method.name}"

    @property
    def request_class(self) -> type[Message]:
        return GetMessageClass(self.method.input_type)

    @property
    def response_class(self) -> type[Message]:
        return GetMessageClass(self.method.output_type)

    async def call(
        self, channel: grpc.aio.Channel, request: Message | bytes, *, deadline: float
    ) -> list[Any]:
        """Calls with a request message, or raw bytes as they would go on the wire."""
        serialize = (lambda b: b) if isinstance(request, bytes) else (
            lambda m: m.SerializeToString())
        if self.method.server_streaming:
            stream = channel.unary_stream(
                self.path, request_serializer=serialize,
                response_deserializer=self.response_class.FromString,
            )
            return [item async for item in stream(request, timeout=deadline)]
        unary = channel.unary_unary(
            self.path, request_serializer=serialize,
            response_deserializer=self.response_class.FromString,
        )
        return [await unary(request, timeout=deadline)]


def all_rpcs() -> Iterator[Rpc]:
    for service in SERVICES:
        for method in service.methods:
            yield Rpc(method)


def status_details(err: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """(field, description) of the BadRequest detail of an error, if any."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    found: list[tuple[str, str]] = []
    for packed in status.details if status else ():
        if packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            detail = error_details_pb2.BadRequest()
            packed.Unpack(detail)
            found += [(v.field, v.description) for v in detail.field_violations]
    return found
