"""The input boundary every RPC passes: string fields checked before any handler runs.

One table of maximum lengths by field name (the proto comments state the same numbers), a
safe default for every other string field, and one rule for every string: no control
characters (Unicode category Cc: NUL, C0, DEL, C1). PostgreSQL refuses NUL in `text`; the
others have no place in identifiers, and in free text they forge log lines and terminals.
The walk covers nested messages, repeated fields and both sides of maps. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from payout_service.core.errors import FieldViolation
from payout_service.core.validation import quote

# Characters (Unicode code points), by field name, wherever the field appears.
FIELD_LIMITS: dict[str, int] = {
    "payout_id": 128, "idempotency_key": 128, "round_id": 128, "batch_id": 128,
    "earning_id": 128, "alert_id": 64, "destination": 128, "asset": 128, "amount": 64,
    "decimal": 64, "reference": 256, "reason": 512, "page_token": 256, "timezone": 64,
    # A Soroban transaction is at most 132 KiB of XDR (network config); base64 adds a third.
    "signed_envelope_xdr": 262_144,
    # Webhook URLs of the alert configuration; an URL over 2048 characters is not portable.
    "webhook_urls": 2048,
}
MAP_KEY_LIMITS: dict[str, int] = {"metadata": 64}
MAP_VALUE_LIMITS: dict[str, int] = {"metadata": 512}
DEFAULT_LIMIT = 256
# Unicode category Cc, exactly: C0 controls (NUL included), DEL and the C1 controls.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def string_problem(value: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"at most {limit} characters (got {len(value)})"
    if found := CONTROL.search(value):
        return (f"contains a control character (U+{ord(found.group()):04X}) "
                f"at position {found.start()}")
    return None


def _strings(message: Message, prefix: str = "") -> Iterator[tuple[str, str, int, str]]:
    """(field path, value, limit, role) for every string in the message, recursively;
    role is "key " for a map key (reported on its map field), else ""."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                if key_field.type == FieldDescriptor.TYPE_STRING:
                    yield path, key, MAP_KEY_LIMITS.get(field.name, DEFAULT_LIMIT), "key "
                    shown = f"{path}[{quote(key)[1:-1]}]"  # as validation names it
                else:
                    shown = f"{path}[{key}]"
                if value_field.type == FieldDescriptor.TYPE_STRING:
                    yield shown, item, MAP_VALUE_LIMITS.get(field.name, DEFAULT_LIMIT), ""
                elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    yield from _strings(item, f"{shown}.")
            continue
        limit = FIELD_LIMITS.get(field.name, DEFAULT_LIMIT)
        items = list(enumerate(value)) if field.is_repeated else [(None, value)]
        for index, item in items:
            where = path if index is None else f"{path}[{index}]"
            if field.type == FieldDescriptor.TYPE_STRING:
                yield where, item, limit, ""
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                yield from _strings(item, f"{where}.")


def string_violations(message: Message, *, max_violations: int = 20) -> list[FieldViolation]:
    """Every string field that breaks the boundary rules, named by its path."""
    found: list[FieldViolation] = []
    for path, value, limit, role in _strings(message):
        if problem := string_problem(value, limit):
            found.append(FieldViolation(path, f"{role}{quote(value)}: {problem}" if role
                                        else problem))
            if len(found) >= max_violations:
                break
    return found
