"""Idempotency fingerprints: the same key must always mean the same payout (invariant 5)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from payout_service.core.errors import FieldViolation
from payout_service.core.validation import PayoutRequest

FINGERPRINT_FIELDS = (
    "payout_id", "destination", "amount_stroops", "asset", "metadata", "reference",
)
# A conflict names the field as the request does (CreatePayoutRequest.amount), not as stored.
REQUEST_FIELD = {"amount_stroops": "amount"}


def canonical_parameters(request: PayoutRequest) -> dict[str, Any]:
    return {
        "payout_id": request.payout_id,
        "destination": request.destination,
        "amount_stroops": request.amount_stroops,
        "asset": request.asset,
        "metadata": dict(sorted(request.metadata.items())),
        "reference": request.reference,
    }


def fingerprint(params: dict[str, Any]) -> str:
    blob = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def differing_fields(stored: dict[str, Any], incoming: dict[str, Any]) -> list[FieldViolation]:
    """Explains an idempotency conflict field by field, without echoing stored values."""
    return [
        FieldViolation(
            REQUEST_FIELD.get(name, name),
            "differs from the payout already created with this idempotency key",
        )
        for name in FINGERPRINT_FIELDS
        if stored.get(name) != incoming.get(name)
    ]
