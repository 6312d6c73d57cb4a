"""Payout exports: the filters, the stable column set, the resume cursor and the two formats
(CSV and JSON Lines). Pure: the store reads the rows, this decides what they look like.

The columns are a contract with accounting tools (docs/api.md, Exports): add new ones at the
end, never rename, reorder or drop one.
"""

from __future__ import annotations

import base64
import csv
import enum
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from payout_service.core.errors import FieldViolation, ValidationFailed
from payout_service.core.states import PayoutState
from payout_service.core.validation import IDENTIFIER, destination_problem

EXPORT_COLUMNS = (
    "id", "payout_id", "idempotency_key", "destination", "asset", "gross_stroops",
    "fee_stroops", "net_stroops", "state", "created_at", "updated_at", "confirmed_at",
    "tx_hash", "ledger", "network_fee_stroops", "failure_code", "failure_message",
    "round_id", "batch_id", "reference", "correlation_id", "metadata",
    "memo_type", "memo_value", "muxed_id",
    # The proof of payment (core/payment_proofs.py), empty until the payout is CONFIRMED.
    "ledger_closed_at", "op_index", "event_id", "fee_charged_stroops", "fee_share_stroops",
    "treasury",
)
# Amounts leave as integer strings: a JSON reader parsing numbers as doubles would round
# anything above 2**53 stroops.
_STROOP_COLUMNS = ("gross_stroops", "fee_stroops", "net_stroops", "network_fee_stroops",
                   "fee_charged_stroops", "fee_share_stroops")
_TIME_COLUMNS = ("created_at", "updated_at", "confirmed_at", "ledger_closed_at")

DEFAULT_ROWS_PER_CHUNK = 500
MAX_ROWS_PER_CHUNK = 1000
# A chunk is one gRPC message, and clients receive at most 4 MiB by default: a page whose
# text passes this many characters (at most 4 UTF-8 bytes each) goes out in smaller chunks.
MAX_CHUNK_CHARS = 1 << 20
# Times PostgreSQL's timestamptz and this service's cursors can hold.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - EARLIEST


class ExportFormat(enum.Enum):
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True)
class ExportPosition:
    """The last row sent: the next chunk starts strictly after (created_at, id)."""

    created_at: datetime
    payout_uuid: UUID


@dataclass(frozen=True)
class ExportFilter:
    created_from: datetime | None = None
    created_before: datetime | None = None
    states: tuple[PayoutState, ...] = ()
    round_id: str | None = None
    # A scheduled run's payouts carry its run id as their batch_id.
    run_id: str | None = None
    destination: str | None = None


@dataclass(frozen=True)
class ExportRequest:
    format: ExportFormat
    filter: ExportFilter
    rows_per_chunk: int
    after: ExportPosition | None


def encode_cursor(position: ExportPosition) -> str:
    micros = (position.created_at - EARLIEST) // _MICROSECOND
    raw = f"{micros}.{position.payout_uuid.hex}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")



def decode_cursor(cursor: str) -> ExportPosition:
    """Raises ValueError for anything encode_cursor did not make."""
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        micros_text, _, uuid_hex = base64.urlsafe_b64decode(padded.encode()).decode().partition(
            ".")
        created_at = EARLIEST + int(micros_text) * _MICROSECOND
        payout_uuid = UUID(hex=uuid_hex)
    except (ValueError, UnicodeDecodeError, OverflowError, TypeError):
        raise ValueError("is not a cursor this service issued") from None
    if not EARLIEST <= created_at < LATEST or len(uuid_hex) != 32:
        raise ValueError("is not a cursor this service issued")
    return ExportPosition(created_at, payout_uuid)


def validate_export_request(
    *, format_name: str | None, created_from: datetime | None,
    created_before: datetime | None, states: Sequence[PayoutState | None], round_id: str,
    run_id: str, destination: str, rows_per_chunk: int, resume_cursor: str,
) -> ExportRequest:
    """The export to run, or ValidationFailed naming every bad field. A state of None is one
    the caller sent that this service does not know."""
    violations: list[FieldViolation] = []

    def check(name: str, problem: str | None) -> None:
        if problem:
            violations.append(FieldViolation(name, problem))

    formats = {f.value: f for f in ExportFormat}
    check("format", None if format_name in formats else "must be CSV or JSONL")
    for name, when in (("created_from", created_from), ("created_before", created_before)):
        if when is not None and not EARLIEST <= when < LATEST:
            check(name, "must be between 1970 and 9000")
    if created_from and created_before and created_from >= created_before:
        check("created_before", "must be later than created_from")
    check("states", "contains an unknown state" if None in states else None)
    for name, value in (("round_id", round_id), ("run_id", run_id)):
        check(name, "must be 1-128 characters from A-Z a-z 0-9 : _ . -"
              if value and not IDENTIFIER.fullmatch(value) else None)
    check("destination", destination_problem(destination) if destination else None)
    check("rows_per_chunk", f"must be at most {MAX_ROWS_PER_CHUNK}"
          if rows_per_chunk > MAX_ROWS_PER_CHUNK else None)
    after = None
    if resume_cursor:
        try:
            after = decode_cursor(resume_cursor)
        except ValueError as err:
            check("resume_cursor", str(err))
    if violations:
        raise ValidationFailed(violations)
    return ExportRequest(
        format=formats[format_name or ""],
        filter=ExportFilter(
            created_from=created_from, created_before=created_before,
            states=tuple(s for s in states if s is not None), round_id=round_id or None,
            run_id=run_id or None, destination=destination or None),
        rows_per_chunk=rows_per_chunk or DEFAULT_ROWS_PER_CHUNK,
        after=after,
    )


def export_row(stored: Mapping[str, Any]) -> dict[str, Any]:
    """One payout as the export shows it, from the stored columns (EXPORT_COLUMNS)."""
    row = {name: stored[name] for name in EXPORT_COLUMNS}
    row["id"] = str(row["id"])
    for name in _STROOP_COLUMNS:
        row[name] = None if row[name] is None else str(row[name])
    for name in _TIME_COLUMNS:
        row[name] = None if row[name] is None else _utc(row[name])
    row["metadata"] = dict(row["metadata"] or {})
    # A uint64: text, like the amounts, so no reader rounds it.
    row["muxed_id"] = None if row["muxed_id"] is None else str(row["muxed_id"])
    return row


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render_chunk(rows: Sequence[Mapping[str, Any]], fmt: ExportFormat, *,
                 header: bool) -> str:
    """The rows as text, each line ending with a newline; `header` adds the CSV header."""
    if fmt is ExportFormat.JSONL:
        return "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n"
                       for r in rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(EXPORT_COLUMNS)
    for r in rows:
        writer.writerow(_csv_cell(r[name]) for name in EXPORT_COLUMNS)
    return out.getvalue()


def render_fitting(rows: Sequence[Mapping[str, Any]], fmt: ExportFormat, *, header: bool,
                   max_chars: int = MAX_CHUNK_CHARS) -> list[tuple[str, int]]:
    """The rows as (text, row count) chunks of at most `max_chars` each (a single row always
    fits: every field of a payout is bounded far below it), in order; the header, when asked
    for, opens the first."""
    text = render_chunk(rows, fmt, header=header)
    if len(text) <= max_chars or len(rows) <= 1:
        return [(text, len(rows))] if text else []
    half = len(rows) // 2
    return (render_fitting(rows[:half], fmt, header=header, max_chars=max_chars)
            + render_fitting(rows[half:], fmt, header=False, max_chars=max_chars))


# A spreadsheet opening the CSV runs a cell starting with one of these as a formula (OWASP,
# "CSV Injection"): a payee's reference or metadata could then reach the finance team's
# machine as `=HYPERLINK(...)` or worse.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_formula(text: str) -> str:
    """The text with a leading apostrophe when a spreadsheet would read it as a formula;
    unchanged otherwise. The apostrophe is what spreadsheets show a text cell with, and no
    value this service writes itself (amounts, ids, times, hashes) starts with a trigger."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _csv_cell(value: Any) -> str:
    """Absent is an empty cell; the metadata map is compact JSON with sorted keys; a cell a
    spreadsheet would run as a formula is neutralized (JSON Lines keeps values as they are)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return neutralize_formula(str(value))
