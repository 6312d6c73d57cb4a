"""Webhook signing and retry timing. Pure: no network, no clock.

Receivers verify `X-Payout-Signature: sha256=<hex>` as HMAC-SHA256 of the raw body with the
shared secret, and deduplicate on `X-Payout-Event-Id` (delivery is at least once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Payout-Signature"
EVENT_ID_HEADER = "X-Payout-Event-Id"


def redacted(url: str) -> str:
    """scheme://host[:port]/path: no credentials or query string in logs and rows."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    return hmac.compare_digest(signature(body, secret), header)


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
