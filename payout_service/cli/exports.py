"""`payoutctl export`: ExportPayouts to stdout as CSV or JSON Lines, resuming from the last
chunk's cursor when the connection drops, so a cut adds no row twice and skips none of the
rows the export would have read uncut (docs/api.md#exports: rows committed late)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

# A cut connection, a restarting server, a proxy timing out: worth resuming. Anything else
# (a bad filter, a permission) would only fail again.
RESUMABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
             grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
             grpc.StatusCode.RESOURCE_EXHAUSTED}
# Tries in a row without a chunk received before giving up; any chunk resets the count.
MAX_TRIES_WITHOUT_PROGRESS = 6
RETRY_DELAY_SECONDS = 1.0


def utc_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-01 or 2026-11-01T00:00:00Z"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def add_parser(
    command: Callable[[str, str], argparse.ArgumentParser], state_name: Callable[[str], str],
    states: list[str],
) -> None:
    e = command("export", "stream payouts as CSV or JSON Lines to stdout, oldest first "
                "(columns: docs/api.md#exports); resumes by itself after a dropped "
                "connection, and prints the cursor to continue from if it gives up")
    e.add_argument("--format", required=True, choices=("csv", "jsonl"))
    e.add_argument("--from", dest="created_from", type=utc_time, metavar="TIME",
                   help="created at or after (ISO 8601; UTC unless an offset is given)")
    e.add_argument("--before", dest="created_before", type=utc_time, metavar="TIME",
                   help="created before (exclusive)")
    e.add_argument("--state", action="append", type=state_name, metavar="STATE",
                   help=f"repeatable; one of {', '.join(states)}")
    e.add_argument("--round", dest="round_id", help="only this round's payouts")
    e.add_argument("--run", dest="run_id", help="only this scheduled run's payouts")
    e.add_argument("--destination", help="only payouts to exactly this G..., M... or C... address")
    e.add_argument("--rows-per-chunk", type=int, default=0, metavar="N",
                   help="1-1000 (server default 500)")
    e.add_argument("--resume", metavar="CURSOR", help="continue after this cursor (no CSV "
                   "header): append to the file the cut export wrote, with >>")


def _timestamp(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def export_request(args: argparse.Namespace, cursor: str) -> pb.ExportPayoutsRequest:
    return pb.ExportPayoutsRequest(
        format=pb.EXPORT_FORMAT_CSV if args.format == "csv" else pb.EXPORT_FORMAT_JSONL,
        created_from=_timestamp(args.created_from),
        created_before=_timestamp(args.created_before),
        states=[pb.PayoutState.Value(f"PAYOUT_STATE_{s.upper()}") for s in args.state or []],
        round_id=args.round_id or "", run_id=args.run_id or "",
        destination=args.destination or "", rows_per_chunk=args.rows_per_chunk,
        resume_cursor=cursor,
    )


async def run(channel: grpc.aio.Channel, args: argparse.Namespace,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    stub = payout_pb2_grpc.PayoutServiceStub(channel)
    cursor = args.resume or ""
    rows = 0
    failed_tries = 0
    while True:
        try:
            call: Any = stub.ExportPayouts(export_request(args, cursor))
            async for chunk in call:
                out.write(chunk.data)
                rows += chunk.row_count
                if chunk.resume_cursor:
                    cursor = chunk.resume_cursor
                failed_tries = 0
            out.flush()
            print(f"payoutctl: exported {rows} payouts", file=err)
            return 0
        except grpc.aio.AioRpcError as error:
            if error.code() not in RESUMABLE:
                raise
            failed_tries += 1
            out.flush()
            if failed_tries >= MAX_TRIES_WITHOUT_PROGRESS:
                print(f"payoutctl: export stopped after {rows} payouts "
                      f"({error.code().name}); continue with: --resume {cursor or '(none)'}"
                      " >> the same file", file=err)
                return 1
            print(f"payoutctl: connection lost after {rows} payouts ({error.code().name}); "
                  "resuming", file=err)
            await asyncio.sleep(RETRY_DELAY_SECONDS * failed_tries)
