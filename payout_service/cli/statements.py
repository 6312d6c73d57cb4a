"""`payoutctl rounds statement ROUND` and `payoutctl runs statement RUN`: what a round or a
scheduled run paid, for accounting. The summary (GetPayoutStatement: payouts counted and
summed by state and asset, service fees, and network fees where known, with the time it was
read) and then every payout of it (ExportPayouts with the same round or run, oldest first,
resumed by itself after a dropped connection).

The list is held in memory to print it: for a run of hundreds of thousands of payouts, print
the summary alone (--summary-only) and stream the list with `payoutctl export --run RUN`.
The summary and the list are two reads: when they disagree (a payout changed state between
them) the command says so on stderr and exits 1; run it again once the payouts have settled.
Amounts in JSON are strings of integer stroops (and Amount messages), as everywhere in the
API; the table shows decimals.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

import grpc
from google.protobuf.json_format import MessageToDict

from payout_service.cli import exports as cli_exports
from payout_service.cli.channels import _table
from payout_service.core.amounts import format_amount
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

CALL_TIMEOUT = 30.0


def add_statement_parser(
    sub: argparse._SubParsersAction[Any],
    command: Callable[[argparse._SubParsersAction[Any], str, str], argparse.ArgumentParser],
    what: str,
) -> None:
    s = command(sub, "statement", f"the {what}'s statement: counts and sums by state and "
                "asset, fees, then every payout (details: payoutctl runs --help)")
    s.add_argument("scope_id", metavar=f"{what.split()[-1].upper()}_ID")
    s.add_argument("--summary-only", action="store_true",
                   help="the counts and sums without the list of payouts")


def add_runs_parsers(
    runs: argparse.ArgumentParser,
    command: Callable[[argparse._SubParsersAction[Any], str, str], argparse.ArgumentParser],
) -> None:
    sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    add_statement_parser(sub, command, "scheduled run")


async def _payouts(channel: grpc.aio.Channel, args: argparse.Namespace,
                   err: TextIO) -> list[dict[str, Any]] | None:
    """Every payout of the scope, as export rows; None when the export gave up."""
    export = argparse.Namespace(
        format="jsonl", created_from=None, created_before=None, state=None,
        round_id=args.scope_id if args.command == "rounds" else None,
        run_id=args.scope_id if args.command == "runs" else None, destination=None,
        rows_per_chunk=0, resume=None)
    out = io.StringIO()
    if await cli_exports.run(channel, export, out, io.StringIO()) != 0:
        err.write("payoutctl: the list of payouts could not be read; try again, or "
                  f"payoutctl export --{'round' if export.round_id else 'run'} "
                  f"{args.scope_id}\n")
        return None
    return [json.loads(line) for line in out.getvalue().splitlines()]


def disagreement(statement: pb.GetPayoutStatementResponse,
                 payouts: list[dict[str, Any]]) -> bool:
    """Whether the list counts other payouts per state and asset than the summary."""
    summed = Counter({(pb.PayoutState.Name(ln.state).removeprefix("PAYOUT_STATE_"), ln.asset):
                      ln.count for ln in statement.lines})
    listed = Counter((p["state"], p["asset"]) for p in payouts)
    return summed != listed


async def run(channel: grpc.aio.Channel, args: argparse.Namespace,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    stub = payout_pb2_grpc.PayoutServiceStub(channel)
    request = pb.GetPayoutStatementRequest(
        round_id=args.scope_id if args.command == "rounds" else "",
        run_id=args.scope_id if args.command == "runs" else "")
    statement = await stub.GetPayoutStatement(request, timeout=CALL_TIMEOUT)
    payouts = None if args.summary_only else await _payouts(channel, args, err)
    if payouts is None and not args.summary_only:
        return 1
    out.write(render(statement, payouts, args.output) + "\n")
    if payouts is not None and disagreement(statement, payouts):
        err.write("payoutctl: the list of payouts does not match the summary (payouts changed "
                  "state while it was read); run it again once they have settled\n")
        return 1
    return 0


# ---- output ---------------------------------------------------------------------------------

def _decimal(stroops: str | None) -> str:
    return format_amount(int(stroops)) if stroops else ""


def line_rows(lines: Any, first: str = "STATE") -> list[list[str]]:
    rows = [[first, "ASSET", "COUNT", "GROSS", "FEES", "NET", "NETWORK_FEES", "FEES_KNOWN"]]
    for ln in lines:
        state = pb.PayoutState.Name(ln.state).removeprefix("PAYOUT_STATE_")
        rows.append(["TOTAL" if state == "UNSPECIFIED" else state, ln.asset,
                     str(ln.count), ln.gross.decimal, ln.fees.decimal, ln.net.decimal,
                     ln.network_fees.decimal, str(ln.network_fees_known)])
    return rows


def payout_rows(payouts: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["PAYOUT_ID", "STATE", "GROSS", "FEE", "NET", "NETWORK_FEE", "DESTINATION",
             "TX_HASH", "CONFIRMED"]]
    rows += [[p["payout_id"], p["state"], _decimal(p["gross_stroops"]),
              _decimal(p["fee_stroops"]), _decimal(p["net_stroops"]),
              _decimal(p["network_fee_stroops"]), p["destination"], (p["tx_hash"] or "")[:16],
              (p["confirmed_at"] or "")[:19]] for p in payouts]
    return rows


def render(statement: pb.GetPayoutStatementResponse, payouts: list[dict[str, Any]] | None,
           output: str) -> str:
    if output == "json":
        found: dict[str, Any] = {
            "statement": MessageToDict(statement, preserving_proto_field_name=True)}
        if payouts is not None:
            found["payouts"] = payouts
        return json.dumps(found, indent=2)
    scope = (f"round {statement.round_id}" if statement.round_id
             else f"scheduled run {statement.run_id}")
    as_of = statement.as_of.ToDatetime().strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [f"statement of {scope}, as of {as_of}: {statement.count} payouts"]
    if statement.lines:
        parts.append(_table(line_rows([*statement.lines, *statement.totals])))
    if payouts:
        parts.append(_table(payout_rows(payouts)))
    return "\n\n".join(parts)
