"""The input boundary's rules, and the proto comments that state them to callers."""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from payout_service.api.request_limits import (
    DEFAULT_LIMIT,
    FIELD_LIMITS,
    MAP_KEY_LIMITS,
    MAP_VALUE_LIMITS,
    string_violations,
)
from payout_service.core.validation import quote
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import rounds_pb2 as rpb
from tests.integration.rpcs import SERVICES

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto" / "payout" / "v1"


def request_messages() -> dict[str, Descriptor]:
    found: dict[str, Descriptor] = {}

    def walk(message: Descriptor) -> None:
        if message.full_name in found or message.full_name.startswith("google."):
            return
        found[message.full_name] = message
        for field in message.fields:
            if field.message_type is not None:
                walk(field.message_type)

    for service in SERVICES:
        for method in service.methods:
            walk(method.input_type)
    return found


def field_comment(message: Descriptor, field: FieldDescriptor) -> str:
    """The comment lines right above the field's declaration in its .proto file."""
    text = (PROTO_DIR / Path(message.file.name).name).read_text()
    block = re.search(rf"\nmessage {message.name} {{\n(.*?)\n}}", text, re.S)
    assert block is not None, message.name
    lines = block.group(1).split("\n")
    at = next(i for i, line in enumerate(lines)
              if re.match(rf"\s+[\w<>, .]+ {field.name} = {field.number};", line))
    comment = []
    for line in reversed(lines[:at]):
        if not line.strip().startswith("//"):
            break
        comment.insert(0, line.strip())
    return " ".join(comment)


def test_every_request_string_field_states_its_limit_in_the_proto():
    checked = 0
    for message in request_messages().values():
        if message.GetOptions().map_entry:
            continue
        for field in message.fields:
            is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
            if is_map:
                expected = (f"Keys at most {MAP_KEY_LIMITS[field.name]} characters, values at "
                            f"most {MAP_VALUE_LIMITS[field.name]}")
            elif field.type == FieldDescriptor.TYPE_STRING:
                limit = FIELD_LIMITS.get(field.name, DEFAULT_LIMIT)
                if limit == DEFAULT_LIMIT and field.name not in FIELD_LIMITS:
                    continue  # the service comment states the default
                expected = f"At most {limit} characters"
            else:
                continue
            assert expected in field_comment(message, field), (message.full_name, field.name)
            checked += 1
    assert checked >= 30


def test_nested_repeated_and_map_strings_are_named_by_their_path():
    request = pb.CreatePayoutBatchRequest(items=[
        pb.CreatePayoutRequest(payout_id="ok"),
        pb.CreatePayoutRequest(payout_id="x" * 129, metadata={"k": "v\x00", "bad\x01": "v"}),
    ])
    found = {v.field: v.description for v in string_violations(request)}
    assert set(found) == {"items[1].payout_id", "items[1].metadata[k]", "items[1].metadata"}
    assert found["items[1].payout_id"] == "at most 128 characters (got 129)"
    assert "U+0000" in found["items[1].metadata[k]"]
    assert found["items[1].metadata"].startswith("key 'bad\\x01': ")


def test_unset_fields_default_limit_and_clean_unicode_pass():
    assert string_violations(rpb.ResolveRoundRequest(
        round_id="r-1", winners=[rpb.Winner(rank=1, destination="Ĝ€😀", amount="1")]
    )) == []
    assert string_violations(apb.UpdateScheduleRequest(schedule=apb.Schedule(
        minimum_threshold=pb.Amount(decimal="9" * 65)))) != []
    assert [v.field for v in string_violations(pb.RetryPayoutRequest(reason="r" * 513))] \
        == ["reason"]


def test_every_control_character_is_refused_and_nothing_else_below_u00a0():
    for code in range(0xA0):
        refused = bool(string_violations(pb.GetPayoutRequest(payout_id=chr(code))))
        assert refused == (code < 0x20 or 0x7F <= code <= 0x9F), hex(code)


def test_quote_keeps_a_short_printable_prefix():
    assert quote("abc") == "'abc'"
    long = quote("p" * 1_000_000)
    assert len(long) < 50 and long.endswith("…'")
    assert "\x00" not in quote("a\x00b")
