"""`payoutctl bulk create FILE.csv`: payouts from a CSV file. The whole file is checked first
with the API's own validation and every bad row is named by line and field; nothing is sent
while any row is bad (unless --skip-invalid). Then CreatePayoutBatch in chunks, with
progress on stderr. The idempotency keys come from the file, so running it again after an
interruption creates nothing twice. --follow then waits for every payout to settle and
prints a summary.

File columns (header line required, any order):
  id               payout id, 1-128 of A-Z a-z 0-9 : _ . -   (required)
  destination      G... account or C... contract           (required)
  amount           positive decimal, at most 7 places       (required)
  asset            XLM when empty, or CODE:ISSUER
  idempotency_key  defaults to the id
  reference        paid at most once, e.g. a task id
  metadata.<key>   one column per metadata key, e.g. metadata.region
A muxed (M...) destination is given in the destination column; memo columns are not read
from files yet (a file with one is refused: create memo payouts with CreatePayout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from payout_service.core.amounts import format_amount
from payout_service.core.payout_file import FileRow, parse_payout_file
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

CALL_TIMEOUT = 60.0
# The server's default PAYOUTS_MAX_BULK_ITEMS; a server with a lower limit needs --chunk-size.
DEFAULT_CHUNK = 500
FOLLOW_POLL_SECONDS = 2.0
LIST_PAGE = 500
# BUILT is where build-only mode stops.
SETTLED = {pb.PAYOUT_STATE_CONFIRMED, pb.PAYOUT_STATE_FAILED, pb.PAYOUT_STATE_CANCELLED,
           pb.PAYOUT_STATE_BUILT}


class BulkFileRefused(Exception):
    """The file has bad rows and --skip-invalid was not given: nothing was sent."""


def add_parsers(
    bulk: argparse.ArgumentParser,
    command: Callable[[argparse._SubParsersAction[Any], str, str], argparse.ArgumentParser],
) -> None:
    sub = bulk.add_subparsers(dest="bulk_command", required=True, metavar="ACTION")
    c = command(sub, "create", "check a CSV file of payouts, create them in chunks, "
                "optionally follow them to the end (columns: payoutctl bulk --help)")
    c.add_argument("file", help="the CSV file (see the columns in payoutctl bulk --help)")
    c.add_argument("--skip-invalid", action="store_true",
                   help="create the valid rows even though some are bad (named on stderr)")
    c.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, metavar="N",
                   help=f"payouts per CreatePayoutBatch, at most the server's "
                        f"PAYOUTS_MAX_BULK_ITEMS (default {DEFAULT_CHUNK})")
    c.add_argument("--follow", action="store_true",
                   help="then wait until every payout is settled and print a summary")


def _request(row: FileRow) -> pb.CreatePayoutRequest:
    r = row.request
    return pb.CreatePayoutRequest(
        payout_id=r.payout_id, destination=r.destination,
        amount=format_amount(r.amount_stroops), asset=r.asset,
        idempotency_key=r.idempotency_key, metadata=dict(r.metadata), reference=r.reference)


@dataclass
class Progress:
    total: int
    out: TextIO
    counts: Counter[str] = field(default_factory=Counter)

    def show(self, what: str) -> None:
        done = sum(self.counts.values())
        width = 30
        filled = width * done // max(self.total, 1)
        detail = ", ".join(f"{n} {name}" for name, n in sorted(self.counts.items()))
        line = f"{what} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {detail}"
        # A terminal gets one line redrawn in place; a log file one line per step.
        self.out.write(f"\r{line}\033[K" if self.out.isatty() else line + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.out.isatty():
            self.out.write("\n")


def refused_lines(error: grpc.aio.AioRpcError, lines: Sequence[int], items: str = "items",
                  ) -> list[tuple[int, str]]:
    """The server's items[i].field violations (a rule only it knows: its amount limits, a
    reference already paid) as the file's lines; `lines[i]` is the line item i came from."""
    found = []
    status = rpc_status.from_call(error)
    for packed in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if not packed.Unpack(bad):
            continue
        for violation in bad.field_violations:
            index, _, rest = violation.field.removeprefix(f"{items}[").partition("].")
            if index.isdigit() and int(index) < len(lines):
                found.append((lines[int(index)], f"{rest}: {violation.description}"))
    return found


async def _send(stub: payout_pb2_grpc.PayoutServiceStub, rows: Sequence[FileRow],
                chunk_size: int, err: TextIO) -> dict[str, str]:
    """Creates the rows chunk by chunk; returns each payout id's bulk request id (the one
    that first created it) for following them."""
    progress = Progress(len(rows), err)
    batches: dict[str, str] = {}
    for start in range(0, len(rows), chunk_size):
        chunk = rows[start:start + chunk_size]
        try:
            reply = await stub.CreatePayoutBatch(pb.CreatePayoutBatchRequest(
                items=[_request(r) for r in chunk]), timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            progress.end()
            lines = [r.line for r in chunk]
            err.write("".join(f"line {line}: {problem}\n"
                              for line, problem in refused_lines(error, lines)))
            err.write(f"payoutctl: the chunk starting at line {chunk[0].line} was refused; "
                      f"{start} payouts before it were sent (run the file again once fixed: "
                      "they are not created twice)\n")
            raise
        for result in reply.results:
            name = "created" if result.outcome == pb.BATCH_ITEM_OUTCOME_ACCEPTED \
                else "already there"
            progress.counts[name] += 1
            batches[result.payout.payout_id] = result.payout.batch_id
        progress.show("creating")
    progress.end()
    return batches


async def _follow(stub: payout_pb2_grpc.PayoutServiceStub, batches: dict[str, str],
                  err: TextIO) -> dict[str, pb.Payout]:
    """Polls ListPayouts per bulk request until every payout of the file is settled."""
    latest: dict[str, pb.Payout] = {}
    progress = Progress(len(batches), err)
    while True:
        for payout_id in [i for i, b in batches.items() if not b]:
            # Created outside any bulk request: no batch to list it by.
            got = await stub.GetPayout(pb.GetPayoutRequest(payout_id=payout_id),
                                       timeout=CALL_TIMEOUT)
            latest[payout_id] = got.payout
        for batch_id in sorted({b for b in batches.values() if b}):
            token = ""
            while True:
                page = await stub.ListPayouts(pb.ListPayoutsRequest(
                    batch_id=batch_id, page_size=LIST_PAGE, page_token=token),
                    timeout=CALL_TIMEOUT)
                latest.update((p.payout_id, p) for p in page.payouts if p.payout_id in batches)
                token = page.next_page_token
                if not token:
                    break
        progress.counts = Counter(pb.PayoutState.Name(p.state).removeprefix("PAYOUT_STATE_")
                                  for p in latest.values() if p.state in SETTLED)
        progress.show("settling")
        if len(latest) == len(batches) and all(p.state in SETTLED for p in latest.values()):
            progress.end()
            return latest
        await asyncio.sleep(FOLLOW_POLL_SECONDS)


def summary(payouts: Sequence[pb.Payout]) -> dict[str, Any]:
    """Counts by state, failures by code, and the sums of what was confirmed (stroops)."""
    states = Counter(pb.PayoutState.Name(p.state).removeprefix("PAYOUT_STATE_")
                     for p in payouts)
    confirmed = [p for p in payouts if p.state == pb.PAYOUT_STATE_CONFIRMED]
    failed = [p for p in payouts if p.state == pb.PAYOUT_STATE_FAILED]
    gross = sum(p.gross.stroops for p in confirmed)
    fees = sum(p.fee.stroops for p in confirmed)
    net = sum(p.net.stroops for p in confirmed)
    network = sum(p.network_fee_stroops for p in confirmed)
    return {
        "payouts": len(payouts), "states": dict(sorted(states.items())),
        "failures": [{"payout_id": p.payout_id, "code": p.failure.code,
                      "message": p.failure.message} for p in failed],
        "confirmed_gross": format_amount(gross), "confirmed_fees": format_amount(fees),
        "confirmed_net": format_amount(net),
        "network_fees_stroops": network,
    }


def read_file(path: str) -> str:
    # utf-8-sig: spreadsheets save CSV with a byte order mark.
    with open(path, encoding="utf-8-sig", newline="") as handle:  # noqa: PTH123
        return handle.read()


async def run(channel: grpc.aio.Channel, args: argparse.Namespace,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        text = read_file(args.file)
    except (OSError, UnicodeDecodeError) as error:
        err.write(f"payoutctl: cannot read {args.file!r}: {error}\n")
        return 2
    rows, problems = parse_payout_file(text)
    for problem in problems:
        err.write(f"{args.file}: {problem}\n")
    if problems and not args.skip_invalid:
        bad_lines = len({p.line for p in problems})
        err.write(f"payoutctl: {bad_lines} bad rows; nothing was created "
                  "(fix them, or --skip-invalid to create the rest)\n")
        return 1
    if not 1 <= args.chunk_size:
        err.write("payoutctl: --chunk-size must be at least 1\n")
        return 2
    stub = payout_pb2_grpc.PayoutServiceStub(channel)
    batches = await _send(stub, rows, args.chunk_size, err)
    if args.follow:
        settled = await _follow(stub, batches, err)
        result = summary(list(settled.values()))
    else:
        result = {"payouts": len(batches), "skipped_lines": sorted({p.line for p in problems})}
    if args.output == "json":
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        out.write("\n".join(f"{name}: {value}" for name, value in result.items()) + "\n")
    return 0
