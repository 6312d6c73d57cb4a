"""Several instances' verified audit logs as one report, ordered by time. Pure.

Each instance keeps its own chain (verified on its own first); the merged view answers what
no single log can: what every instance together signed per key in the last 24 hours.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from signer_service.spending import DAY_SECONDS, spending_bucket


@dataclass(frozen=True)
class InstanceLog:
    name: str  # the instance name, or the log's path when it has none
    records: list[dict[str, Any]]


def merged(logs: list[InstanceLog]) -> list[dict[str, Any]]:
    """Every record of every log, each with its `instance`, ordered by time (ties: by log
    order, then by sequence)."""
    rows = [(float(r.get("time", 0.0)), i, int(r.get("seq", 0)), {**r, "instance": log.name})
            for i, log in enumerate(logs) for r in log.records]
    return [row[3] for row in sorted(rows, key=lambda row: row[:3])]


def signed_in_day(records: list[dict[str, Any]], until: float) -> dict[str, int]:
    """Per spending bucket (key, or "key asset"): the amounts allowed in the 24 h up to
    `until`, across the records given (all instances)."""
    totals: dict[str, int] = {}
    for r in records:
        at = float(r.get("time", 0.0))
        if r.get("decision") != "allow" or not until - DAY_SECONDS < at <= until:
            continue
        key_id = str(r.get("key_id"))
        amount = r.get("amount_stroops")
        if isinstance(amount, int) and amount > 0:
            totals[key_id] = totals.get(key_id, 0) + amount
        assets = r.get("asset_amounts")
        for asset, value in (assets.items() if isinstance(assets, dict) else ()):
            if isinstance(value, int) and value > 0:
                bucket = spending_bucket(key_id, str(asset))
                totals[bucket] = totals.get(bucket, 0) + value
    return totals


def report_lines(logs: list[InstanceLog], until: float,
                 limits: Mapping[str, int]) -> Iterator[str]:
    """The merged summary: records per instance and in all, and each key's signed total in
    the 24 h up to `until` against its deployment-wide daily limit (`limits`, by bucket)."""
    rows = merged(logs)
    yield (f"merged: {len(rows)} records from {len(logs)} logs "
           f"({', '.join(f'{log.name}: {len(log.records)}' for log in logs)})")
    for bucket, total in sorted(signed_in_day(rows, until).items()):
        limit = limits.get(bucket)
        over = " OVER THE LIMIT" if limit is not None and total > limit else ""
        of = f" of the daily limit {limit}" if limit is not None else ""
        yield f"  {bucket}: {total} stroops signed in the 24 h before the last record{of}{over}"
