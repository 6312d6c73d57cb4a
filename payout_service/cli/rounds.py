"""`payoutctl rounds create|close|resolve|show|list|statement`: game rounds from a shell
(RoundService; statements: payoutctl runs --help). A round goes OPEN -> CLOSED -> RESOLVED
-> SETTLED; resolving creates every winner's payout in one transaction, all or none, and
needs the admin identity.

`rounds resolve ROUND FILE.csv` reads the winners from a CSV file (header line required,
any order):
  rank         the winner's position, a whole number from 1, once per round  (required)
  destination  G... account, M... muxed address or C... contract          (required)
  amount       positive decimal, at most 7 places, in the round's asset    (required)
Each winner is paid as payout ROUND-winner-RANK with the idempotency key
round:ROUND:rank:RANK, so resolving again with the same file returns the same payouts and
creates nothing twice. The whole file is checked first, with the service's own rules, and
every bad row is named by line and column; nothing is sent while any row is bad. Memo
columns are not read from files yet (a file with one is refused). At most 1000 winners.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from payout_service.cli.bulk import read_file, refused_lines
from payout_service.cli.channels import _table
from payout_service.cli.statements import add_statement_parser
from payout_service.cli.watchdog import _choice
from payout_service.core.payout_file import parse_winner_file
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import rounds_pb2 as rpb
from stellar_payouts_pb.payout.v1 import rounds_pb2_grpc

CALL_TIMEOUT = 60.0
STATES = [n.removeprefix("ROUND_STATE_").lower() for n in rpb.RoundState.keys()
          if not n.endswith("UNSPECIFIED")]


class WinnerFileRefused(Exception):
    """The winners file has bad rows (named on stderr): nothing was sent."""


def add_parsers(
    rounds: argparse.ArgumentParser,
    command: Callable[[argparse._SubParsersAction[Any], str, str], argparse.ArgumentParser],
) -> None:
    sub = rounds.add_subparsers(dest="rounds_command", required=True, metavar="ACTION")
    c = command(sub, "create", "open a round (again with the same asset: returns it)")
    c.add_argument("round_id", help="1-96 of A-Z a-z 0-9 : _ . -")
    c.add_argument("--asset", default="XLM", help="what its winners are paid in: XLM "
                   "(default) or CODE:ISSUER")
    x = command(sub, "close", "close an OPEN round: no change to it after, only resolving")
    x.add_argument("round_id")
    r = command(sub, "resolve", "pay a CLOSED round's winners from a CSV file, all or none "
                "(admin identity; columns: payoutctl rounds --help)")
    r.add_argument("round_id")
    r.add_argument("file", help="the winners: rank,destination,amount (payoutctl rounds "
                   "--help)")
    s = command(sub, "show", "a round and its payouts")
    s.add_argument("round_id")
    ls = command(sub, "list", "rounds, newest first")
    ls.add_argument("--state", action="append", type=_choice(STATES), metavar="STATE",
                    help=f"repeatable; one of {', '.join(STATES)}")
    ls.add_argument("--limit", type=int, default=50, help="1-500 (default 50)")
    ls.add_argument("--page-token", help="from the previous page")
    add_statement_parser(sub, command, "round")


async def _resolve(stub: rounds_pb2_grpc.RoundServiceStub, args: argparse.Namespace,
                   err: TextIO) -> Message:
    try:
        text = read_file(args.file)
    except (OSError, UnicodeDecodeError) as error:
        raise WinnerFileRefused(f"cannot read {args.file!r}: {error}") from None
    # The round's asset is part of what a winner's payout is checked against.
    found = await stub.GetRound(rpb.GetRoundRequest(round_id=args.round_id),
                                timeout=CALL_TIMEOUT)
    rows, problems = parse_winner_file(text, found.round.round_id, found.round.asset)
    for problem in problems:
        err.write(f"{args.file}: {problem}\n")
    if problems:
        bad_lines = len({p.line for p in problems})
        raise WinnerFileRefused(f"{bad_lines} bad rows; nothing was sent")
    try:
        reply: Message = await stub.ResolveRound(rpb.ResolveRoundRequest(
            round_id=args.round_id,
            winners=[rpb.Winner(rank=r.winner.rank, destination=r.winner.destination,
                                amount=r.winner.amount) for r in rows],
        ), timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as error:
        err.write("".join(f"{args.file}: line {line}: {problem}\n" for line, problem in
                          refused_lines(error, [r.line for r in rows], "winners")))
        raise
    return reply


async def run(channel: grpc.aio.Channel, args: argparse.Namespace,
              err: TextIO = sys.stderr) -> Message:
    stub = rounds_pb2_grpc.RoundServiceStub(channel)
    reply: Message
    if args.rounds_command == "create":
        reply = await stub.CreateRound(
            rpb.CreateRoundRequest(round_id=args.round_id, asset=args.asset),
            timeout=CALL_TIMEOUT)
    elif args.rounds_command == "close":
        reply = await stub.CloseRound(rpb.CloseRoundRequest(round_id=args.round_id),
                                      timeout=CALL_TIMEOUT)
    elif args.rounds_command == "resolve":
        reply = await _resolve(stub, args, err)
    elif args.rounds_command == "show":
        reply = await stub.GetRound(rpb.GetRoundRequest(round_id=args.round_id),
                                    timeout=CALL_TIMEOUT)
    else:
        reply = await stub.ListRounds(rpb.ListRoundsRequest(
            states=[rpb.RoundState.Value(f"ROUND_STATE_{s.upper()}") for s in args.state or []],
            page_size=max(0, args.limit), page_token=args.page_token or "",
        ), timeout=CALL_TIMEOUT)
    return reply


# ---- output ---------------------------------------------------------------------------------

def _when(message: Message, name: str) -> str:
    if not message.HasField(name):
        return ""
    return str(getattr(message, name).ToDatetime().strftime("%Y-%m-%d %H:%M:%S"))


def _round_state(value: int) -> str:
    return str(rpb.RoundState.Name(value)).removeprefix("ROUND_STATE_")


def round_block(r: rpb.Round) -> str:
    fields = [("round_id", r.round_id), ("state", _round_state(r.state)), ("asset", r.asset),
              ("winners", str(r.winner_count)), ("total", r.total.decimal),
              ("created", _when(r, "created_at")), ("closed", _when(r, "closed_at")),
              ("resolved", _when(r, "resolved_at")), ("settled", _when(r, "settled_at")),
              ("resolved_by", r.resolved_by)]
    return "\n".join(f"{name + ':':16}{value}" for name, value in fields if value)


def winner_rows(payouts: Any) -> list[list[str]]:
    rows = [["RANK", "PAYOUT_ID", "STATE", "AMOUNT", "DESTINATION", "TX_HASH", "FAILURE"]]
    for p in sorted(payouts, key=lambda p: int(p.metadata.get("rank", "0") or 0)):
        rows.append([p.metadata.get("rank", ""), p.payout_id,
                     str(pb.PayoutState.Name(p.state)).removeprefix("PAYOUT_STATE_"),
                     p.gross.decimal, p.destination, p.tx_hash[:16], p.failure.code])
    return rows


def round_rows(rounds: Any) -> list[list[str]]:
    rows = [["ROUND_ID", "STATE", "ASSET", "WINNERS", "TOTAL", "CREATED"]]
    rows += [[r.round_id, _round_state(r.state), r.asset, str(r.winner_count),
              r.total.decimal, _when(r, "created_at")] for r in rounds]
    return rows


def render(message: Message, output: str) -> str:
    if output == "json":
        return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2)
    if isinstance(message, rpb.ListRoundsResponse):
        text = _table(round_rows(message.rounds))
        return text + (f"\nnext page: --page-token {message.next_page_token}"
                       if message.next_page_token else "")
    block = round_block(message.round)
    payouts = getattr(message, "payouts", None)
    return block + ("\n\n" + _table(winner_rows(payouts)) if payouts else "")
