"""Webhook signing, verification and retry timing. Pure: no network, no clock (the time is
an argument), so a receiver can import `verify` as it is.

Every delivery carries

    Stellar-Payouts-Event-Id: <event id>        (also the body's "id"; the same on every
                                                 retry and redelivery: de-duplicate on it)
    Stellar-Payouts-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]

where each v1 is HMAC-SHA256, keyed with one active secret, of the bytes
`<t>.<raw body>` (the decimal timestamp, a full stop, the body exactly as received). One v1
per active secret lets a receiver roll its secret without a gap. A receiver accepts the
delivery when one v1 matches one of its secrets and `t` is within its tolerance of its own
clock (DEFAULT_TOLERANCE_SECONDS); a captured delivery replayed later fails the tolerance,
and one replayed within it repeats an event id already seen.

The older headers (X-Payout-Signature: sha256=HMAC of the body alone, with the first secret,
and X-Payout-Event-Id) are still sent for receivers written against them; they do not protect
against replay.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

SIGNATURE_HEADER = "Stellar-Payouts-Signature"
EVENT_ID_HEADER = "Stellar-Payouts-Event-Id"
LEGACY_SIGNATURE_HEADER = "X-Payout-Signature"
LEGACY_EVENT_ID_HEADER = "X-Payout-Event-Id"
SIGNATURE_SCHEME = "v1"
# Long enough for a retry's clock skew and queueing, short enough that a captured delivery is
# soon worthless.
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureRejected(ValueError):
    """Why a delivery is not trusted (the message says which check failed)."""


def redacted(url: str) -> str:
    """scheme://host[:port]/path: no credentials or query string in logs and rows."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_payload(timestamp: int, body: bytes) -> bytes:
    """What v1 signs: the timestamp is inside the MAC, so it cannot be replaced."""
    return str(timestamp).encode() + b"." + body


def sign(body: bytes, timestamp: int, secrets: Sequence[str]) -> str:
    """The Stellar-Payouts-Signature value: one v1 per secret, in the order given."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    payload = signed_payload(timestamp, body)
    return ",".join([f"t={timestamp}"] + [f"{SIGNATURE_SCHEME}={_hmac(s, payload)}"
                                          for s in secrets])


@dataclass(frozen=True)
class ParsedSignature:
    timestamp: int
    signatures: tuple[str, ...]


def parse_signature_header(header: str) -> ParsedSignature:
    """t= once, v1= one or more; other schemes are skipped (a receiver keeps working when a
    new scheme is added beside v1)."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureRejected(f"malformed {SIGNATURE_HEADER} header")
        if key == "t":
            timestamps.append(value)
        elif key == SIGNATURE_SCHEME:
            signatures.append(value)
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if len(timestamps) != 1 or not (timestamps[0].isascii() and timestamps[0].isdigit()):
        raise SignatureRejected(f"{SIGNATURE_HEADER} needs exactly one t=<unix seconds>")
    # A value that is not lowercase hex can match nothing; compare_digest would raise on a
    # non-ASCII one, so it is dropped here.
    signatures = [v for v in signatures if v and all(c in "0123456789abcdef" for c in v)]
    if not signatures:
        raise SignatureRejected(f"{SIGNATURE_HEADER} carries no {SIGNATURE_SCHEME} signature")
    return ParsedSignature(int(timestamps[0]), tuple(signatures))


def verify(
    body: bytes, header: str, secrets: Sequence[str], *, now: float,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Checks a delivery as a receiver should; returns its timestamp, or raises
    SignatureRejected. `now` is the receiver's clock (unix seconds); a timestamp further than
    the tolerance from it, in either direction, is refused."""
    parsed = parse_signature_header(header)
    payload = signed_payload(parsed.timestamp, body)
    expected = [_hmac(s, payload) for s in secrets if s]
    if not any(hmac.compare_digest(e, given) for e in expected for given in parsed.signatures):
        raise SignatureRejected("no signature matches an active secret")
    if abs(now - parsed.timestamp) > tolerance_seconds:
        raise SignatureRejected(
            f"timestamp {parsed.timestamp} is outside the {tolerance_seconds:g} s tolerance")
    return parsed.timestamp


def legacy_signature(body: bytes, secret: str) -> str:
    """X-Payout-Signature: HMAC of the body alone (no timestamp: replayable)."""
    return "sha256=" + _hmac(secret, body)


def verify_legacy(body: bytes, secret: str, header: str) -> bool:
    return hmac.compare_digest(legacy_signature(body, secret), header)


def event_body(
    event_id: int | str, event_type: str, created_at: datetime, payload: dict[str, Any]
) -> bytes:
    """The exact bytes that are signed and sent (compact, keys sorted: stable on retries)."""
    document = {
        "id": event_id, "type": event_type, "created_at": created_at.isoformat(),
        "data": payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def backoff_seconds(
    attempts: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential with jitter: a uniform draw in [d/2, d], d = min(cap, base * 2**(n-1))."""
    ceiling: float = min(cap, base * 2 ** min(max(attempts - 1, 0), 60))
    draw: float = (rng or random).random()
    return ceiling / 2 + draw * ceiling / 2


def budget_spent(attempts_since_queued: int, max_attempts: int) -> bool:
    """After this many failed attempts since the event was (re)queued, it is dead-lettered
    instead of retried: the receiver has been unreachable for the whole backoff schedule."""
    return attempts_since_queued >= max_attempts


ALERT_EVENT_PREFIX = "alert-"
MAX_EVENT_ROW_ID = 2**63 - 1


@dataclass(frozen=True)
class EventRef:
    """Which outbox an event id names: payout events are `<n>`, alert notifications
    `alert-<n>` (so a receiver de-duplicating on the id never mixes the two)."""

    alert: bool
    row_id: int

    @property
    def event_id(self) -> str:
        return f"{ALERT_EVENT_PREFIX if self.alert else ''}{self.row_id}"


def parse_event_id(text: str) -> EventRef | None:
    """None when the text is not an event id this service issues."""
    alert = text.startswith(ALERT_EVENT_PREFIX)
    digits = text[len(ALERT_EVENT_PREFIX):] if alert else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        return None
    row_id = int(digits)
    if not 0 < row_id <= MAX_EVENT_ROW_ID:
        return None
    return EventRef(alert, row_id)
