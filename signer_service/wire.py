"""Request bytes the signer cannot parse become an answer, not a crash.

grpc hands each request's bytes to a deserializer before any handler runs; protobuf refuses
invalid UTF-8 in a string field or a corrupt wire format with DecodeError, which grpc turns
into UNKNOWN with no word of what was wrong. The deserializers here never raise: bytes that
do not parse become a `Malformed` naming the first field at fault (found by walking the
wire format against the message's descriptor), which the RPC wrapper answers with
INVALID_ARGUMENT and a field violation. A field sent with another wire type than its own is
an unknown field to protobuf (kept aside, never read): the request then lacks that field and
is answered as such.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message as pb_message
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

VARINT, FIXED64, LENGTH_DELIMITED, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
MAX_DEPTH = 32  # nested messages the walker follows (the signer's go two deep)


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not a valid message: the field at fault and why."""

    field: str
    reason: str


class _Truncated(Exception):
    pass


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise _Truncated
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _skip(data: bytes, at: int, wire_type: int) -> int:
    if wire_type == VARINT:
        return _varint(data, at)[1]
    if wire_type == FIXED64:
        end = at + 8
    elif wire_type == FIXED32:
        end = at + 4
    elif wire_type == LENGTH_DELIMITED:
        size, at = _varint(data, at)
        end = at + size
    else:  # groups: deprecated, never part of a signer message
        raise _Truncated
    if end > len(data):
        raise _Truncated
    return end


def malformed_field(descriptor: Descriptor, data: bytes, prefix: str = "",
                    depth: int = 0) -> Malformed | None:
    """The first field of `data` (as `descriptor`) that protobuf would refuse, or None."""
    at, counts = 0, dict[int, int]()  # the index of each repeated field, for the path
    whole = prefix.rstrip(".") or "request"
    try:
        while at < len(data):
            tag, at = _varint(data, at)
            number, wire_type = tag >> 3, tag & 7
            field = descriptor.fields_by_number.get(number)
            if field is None or wire_type != LENGTH_DELIMITED:
                at = _skip(data, at, wire_type)
                continue
            start = at
            at = _skip(data, at, wire_type)
            size, body_at = _varint(data, start)
            body = data[body_at:body_at + size]
            path = prefix + field.name
            if field.is_repeated:
                index = counts.get(number, 0)
                counts[number] = index + 1
                path += f"[{index}]"
            if field.type == FieldDescriptor.TYPE_STRING:
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    return Malformed(path, "is not valid UTF-8")
            elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < MAX_DEPTH:
                inner = malformed_field(field.message_type, body, path + ".", depth + 1)
                if inner is not None:
                    return inner
    except _Truncated:
        return Malformed(whole, "is not a valid protobuf message (truncated or corrupt)")
    return None


def tolerant(message_class: Any) -> Callable[[bytes], Any]:
    """A request deserializer that returns a Malformed instead of raising."""

    def parse(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except pb_message.DecodeError:
            found = malformed_field(message_class.DESCRIPTOR, data)
            return found or Malformed("request", "is not a valid protobuf message")

    return parse


def add_service(server: grpc.aio.Server, servicer: Any, service: ServiceDescriptor,
                messages: Any) -> None:
    """Register every method of `service` (unary-unary) on `servicer`, as the generated
    add_*Servicer_to_server does, but with deserializers that never raise."""
    handlers = {}
    for method in service.methods:
        request = getattr(messages, method.input_type.name)
        response = getattr(messages, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name), request_deserializer=tolerant(request),
            response_serializer=response.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        service.full_name, handlers),))
