"""A CSV file of payouts (`payoutctl bulk create`) or of a round's winners (`payoutctl rounds
resolve`): its columns, and every row checked with the API's own validation before anything
is sent. Pure: text in, rows and problems out.

The columns are documented in `payoutctl bulk --help` (payout_service/cli/bulk.py) and
`payoutctl rounds --help` (payout_service/cli/rounds.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass

from payout_service.core.errors import ValidationFailed
from payout_service.core.rounds import WinnerInput, validate_winners
from payout_service.core.validation import AmountLimits, PayoutRequest, validate_payout_request

WINNER_COLUMNS = ("rank", "destination", "amount")

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
class WinnerRow:
    line: int
    winner: WinnerInput


@dataclass(frozen=True)
class RowProblem:
    line: int
    field: str
    description: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.description}"


def _header_problems(header: list[str], required: tuple[str, ...],
                     optional: tuple[str, ...], command: str, metadata: bool) -> list[RowProblem]:
    problems = [RowProblem(1, name, "required column is missing")
                for name in required if name not in header]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            problems.append(RowProblem(1, name, "column appears twice"))
        seen.add(name)
        if name in UNSUPPORTED_COLUMNS:
            problems.append(RowProblem(1, name, UNSUPPORTED_COLUMNS[name]))
        elif not (name in required or name in optional
                  or (metadata and name.startswith(METADATA_PREFIX)
                      and len(name) > len(METADATA_PREFIX))):
            problems.append(RowProblem(1, name, f"unknown column (see payoutctl {command} "
                                       "--help)"))
    return problems


def read_rows(
    text: str, required: tuple[str, ...], optional: tuple[str, ...], command: str, *,
    metadata: bool = True,
) -> tuple[list[tuple[int, dict[str, str]]], list[RowProblem]]:
    """Each non-blank row as (the line it starts on, column -> cell), and the rows whose
    shape is wrong. A bad header is the only problem returned, with no rows."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    if not header:
        return [], [RowProblem(1, "header", "the file is empty")]
    problems = _header_problems(header, required, optional, command, metadata)
    if problems:
        return [], problems
    rows: list[tuple[int, dict[str, str]]] = []
    line = reader.line_num + 1
    for cells in reader:
        row_line, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            problems.append(RowProblem(row_line, "row", f"has {len(cells)} cells, the header "
                                       f"{len(header)}"))
            continue
        rows.append((row_line, dict(zip(header, cells, strict=True))))
    return rows, problems


def parse_payout_file(
    text: str, limits: AmountLimits | None = None
) -> tuple[list[FileRow], list[RowProblem]]:
    """Every valid row and every problem, in file order. A row's line is the line it starts
    on (1 is the header). The file is one unit: the caller sends nothing while any problem
    is left, unless told to skip the bad rows."""
    table, problems = read_rows(text, REQUIRED_COLUMNS, OPTIONAL_COLUMNS, "bulk create")
    rows: list[FileRow] = []
    first_line: dict[tuple[str, str], int] = {}
    for row_line, fields in table:
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
    return rows, sorted(problems, key=lambda p: p.line)


def parse_winner_file(
    text: str, round_id: str, asset: str, limits: AmountLimits | None = None
) -> tuple[list[WinnerRow], list[RowProblem]]:
    """A round's winners (`payoutctl rounds resolve`), checked as ResolveRound checks them
    (the round's rules in core.rounds, the API's payout validation): every winner, or every
    problem by line and column. Columns: rank, destination, amount; the payout id, key,
    asset and metadata are the round's."""
    table, problems = read_rows(text, WINNER_COLUMNS, (), "rounds resolve", metadata=False)
    if problems and problems[0].line == 1:
        return [], problems
    rows: list[WinnerRow] = []
    for row_line, fields in table:
        rank = fields["rank"].strip()
        if not rank.isascii() or not rank.isdigit():
            problems.append(RowProblem(row_line, "rank", "must be a whole number, 1 or more"))
            continue
        rows.append(WinnerRow(row_line, WinnerInput(
            int(rank), fields["destination"].strip(), fields["amount"].strip())))

    def validate(fields: Mapping[str, object]) -> PayoutRequest:
        return validate_payout_request(
            payout_id=str(fields["payout_id"]), destination=str(fields["destination"]),
            amount=str(fields["amount"]), asset=str(fields["asset"]),
            idempotency_key=str(fields["idempotency_key"]),
            metadata=dict(fields["metadata"]),  # type: ignore[call-overload]
            reference="", limits=limits or AmountLimits())

    if rows or not problems:
        try:
            validate_winners(round_id, asset, [r.winner for r in rows], validate)
        except ValidationFailed as err:
            problems += [_winner_problem(v.field, v.description, rows) for v in err.violations]
    return ([] if problems else rows), sorted(problems, key=lambda p: p.line)


def _winner_problem(field: str, description: str, rows: list[WinnerRow]) -> RowProblem:
    """`winners[i].column` as the file's line and column; a rule about the whole list (none,
    too many) on the header's line."""
    index, _, column = field.removeprefix("winners[").partition("].")
    if index.isdigit() and int(index) < len(rows):
        return RowProblem(rows[int(index)].line, column, description)
    return RowProblem(1, "rows", description)
