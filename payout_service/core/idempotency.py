"""Idempotency fingerprints: the same key must always mean the same payout (invariant 5)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from payout_service.core.errors import FieldViolation
from payout_service.core.validation import PayoutRequest

FINGERPRINT_FIELDS = (
    "payout_id", "destination", "amount_stroops", "asset", "metadata", "reference", "memo",
    "muxed_id",
)
# A conflict names the field as the request does (CreatePayoutRequest.amount), not as stored.
REQUEST_FIELD = {"amount_stroops": "amount", "muxed_id": "destination"}


def canonical_parameters(request: PayoutRequest) -> dict[str, Any]:
    params: dict[str, Any] = {
        "payout_id": request.payout_id,
        "destination": request.destination,
        "amount_stroops": request.amount_stroops,
        "asset": request.asset,
        "metadata": dict(sorted(request.metadata.items())),
        "reference": request.reference,
    }
    # Present only when set, so a payout without them keeps the fingerprint it was stored
    # with before memos and muxed destinations existed.
    if request.memo is not None:
        params["memo"] = {"type": request.memo.kind.value, "value": request.memo.value}
    if request.muxed_id is not None:
        params["muxed_id"] = str(request.muxed_id)  # uint64: beyond a JSON double
    return params


def fingerprint(params: dict[str, Any]) -> str:
    blob = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def differing_fields(stored: dict[str, Any], incoming: dict[str, Any]) -> list[FieldViolation]:
    """Explains an idempotency conflict field by field, without echoing stored values."""
    fields = dict.fromkeys(REQUEST_FIELD.get(name, name) for name in FINGERPRINT_FIELDS
                           if stored.get(name) != incoming.get(name))
    return [
        FieldViolation(name, "differs from the payout already created with this idempotency key")
        for name in fields
    ]
