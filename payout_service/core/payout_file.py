"""A CSV file of payouts (`payoutctl bulk create`): its columns, and every row checked with
the API's own validation before anything is sent. Pure: text in, rows and problems out.

The columns are documented in `payoutctl bulk --help` (payout_service/cli/bulk.py).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from payout_service.core.errors import ValidationFailed
from payout_service.core.validation import AmountLimits, PayoutRequest, validate_payout_request

REQUIRED_COLUMNS = ("id", "destination", "amount")
OPTIONAL_COLUMNS = ("asset", "idempotency_key", "reference")
METADATA_PREFIX = "metadata."
# Files carry no memo yet (M... destinations are read as any destination): say so, not
# "unknown". Dropping the memo would lose an exchange deposit, so the file is refused.
UNSUPPORTED_COLUMNS = {
    "memo": "memos are not read from files yet: create these payouts with CreatePayout",
    "memo_type": "memos are not read from files yet: create these payouts with CreatePayout"}


@dataclass(frozen=True)
class FileRow:
    line: int
    request: PayoutRequest


@dataclass(frozen=True)
class RowProblem:
    line: int
    field: str
    description: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.description}"


def _header_problems(header: list[str]) -> list[RowProblem]:
    problems = [RowProblem(1, name, "required column is missing")
                for name in REQUIRED_COLUMNS if name not in header]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(RowProblem(1, name, "column appears twice"))
        seen.add(name)
        if name in UNSUPPORTED_COLUMNS:
            problems.append(RowProblem(1, name, UNSUPPORTED_COLUMNS[name]))
        elif not (name in REQUIRED_COLUMNS or name in OPTIONAL_COLUMNS
                  or (name.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX))):
            problems.append(RowProblem(1, name, "unknown column (see payoutctl bulk create "
                                       "--help)"))
    return problems


def parse_payout_file(
    text: str, limits: AmountLimits | None = None
) -> tuple[list[FileRow], list[RowProblem]]:
    """Every valid row and every problem, in file order. A row's line is the line it starts
    on (1 is the header). The file is one unit: the caller sends nothing while any problem
    is left, unless told to skip the bad rows."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    if not header:
        return [], [RowProblem(1, "header", "the file is empty")]
    problems = _header_problems(header)
    if problems:
        return [], problems
    rows: list[FileRow] = []
    first_line: dict[tuple[str, str], int] = {}
    line = reader.line_num + 1
    for cells in reader:
        row_line, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            problems.append(RowProblem(row_line, "row", f"has {len(cells)} cells, the header "
                                       f"{len(header)}"))
            continue
        fields = dict(zip(header, cells, strict=True))
        payout_id = fields["id"]
        try:
            request = validate_payout_request(
                payout_id=payout_id, destination=fields["destination"],
                amount=fields["amount"], asset=fields.get("asset") or "XLM",
                idempotency_key=fields.get("idempotency_key") or payout_id,
                metadata={k.removeprefix(METADATA_PREFIX): v for k, v in fields.items()
                          if k.startswith(METADATA_PREFIX) and v},
                reference=fields.get("reference", ""), limits=limits or AmountLimits(),
            )
        except ValidationFailed as err:
            # A key defaulted from the id fails with it: name the id once.
            keyed = bool(fields.get("idempotency_key"))
            problems += [RowProblem(row_line, "id" if v.field == "payout_id" else v.field,
                                    v.description) for v in err.violations
                         if keyed or v.field != "idempotency_key"]
            continue
        repeated = [(name, first_line[(name, value)]) for name, value in
                    (("id", request.payout_id), ("idempotency_key", request.idempotency_key))
                    if (name, value) in first_line]
        if repeated:
            problems += [RowProblem(row_line, name, f"repeats line {earlier}")
                         for name, earlier in repeated]
            continue
        first_line[("id", request.payout_id)] = row_line
        first_line[("idempotency_key", request.idempotency_key)] = row_line
        rows.append(FileRow(row_line, request))
    return rows, problems
