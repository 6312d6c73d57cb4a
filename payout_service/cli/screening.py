"""`payoutctl screening add|remove|list`: the allow and deny lists of destinations from a
shell (PayoutAdminService: the admin identity; every change audited with it)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from payout_service.cli.channels import _table
from payout_service.cli.watchdog import _choice
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc

CALL_TIMEOUT = 30.0
LISTS = ["allow", "deny"]


def _list_value(name: str | None) -> apb.ScreeningList:
    return apb.ScreeningList(
        apb.ScreeningList.Value(f"SCREENING_LIST_{(name or 'unspecified').upper()}"))


def add_parsers(
    screening: argparse.ArgumentParser,
    command: Callable[[argparse._SubParsersAction[Any], str, str], argparse.ArgumentParser],
) -> None:
    sub = screening.add_subparsers(dest="screening_command", required=True, metavar="ACTION")
    add = command(sub, "add", "put a destination on the allow or deny list")
    remove = command(sub, "remove", "take a destination off the allow or deny list")
    for c in (add, remove):
        c.add_argument("destination", help="a G..., M... or C... address")
        c.add_argument("--list", required=True, type=_choice(LISTS), help="allow or deny")
        c.add_argument("--reason", required=True, help="why (audited; a denied payout fails "
                       "with the reason it was listed for)")
    ls = command(sub, "list", "the screening entries, ordered by address")
    ls.add_argument("--list", type=_choice(LISTS), help="only this list (default both)")
    ls.add_argument("--limit", type=int, default=100, help="1-500 (default 100)")
    ls.add_argument("--page-token", help="from the previous page")


async def run(channel: grpc.aio.Channel, args: argparse.Namespace) -> Message:
    admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
    reply: Message
    if args.screening_command == "add":
        reply = await admin.AddScreeningEntry(apb.AddScreeningEntryRequest(
            destination=args.destination, list=_list_value(args.list), reason=args.reason,
        ), timeout=CALL_TIMEOUT)
    elif args.screening_command == "remove":
        reply = await admin.RemoveScreeningEntry(apb.RemoveScreeningEntryRequest(
            destination=args.destination, list=_list_value(args.list), reason=args.reason,
        ), timeout=CALL_TIMEOUT)
    else:
        reply = await admin.ListScreeningEntries(apb.ListScreeningEntriesRequest(
            list=_list_value(args.list), page_size=max(0, args.limit),
            page_token=args.page_token or "",
        ), timeout=CALL_TIMEOUT)
    return reply


def entry_rows(entries: Any) -> list[list[str]]:
    rows = [["DESTINATION", "LIST", "REASON", "ADDED_BY", "CREATED"]]
    for e in entries:
        rows.append([
            e.destination, apb.ScreeningList.Name(e.list).removeprefix("SCREENING_LIST_").lower(),
            e.reason[:60], e.added_by, e.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
        ])
    return rows


def render(message: Message, output: str) -> str:
    if output == "json":
        return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2)
    if isinstance(message, apb.ListScreeningEntriesResponse):
        text = _table(entry_rows(message.entries))
        return text + (f"\nnext page: --page-token {message.next_page_token}"
                       if message.next_page_token else "")
    if isinstance(message, apb.AddScreeningEntryResponse):
        note = "" if message.created else "\n(already on that list: unchanged)"
        return _table(entry_rows([message.entry])) + note
    if isinstance(message, apb.RemoveScreeningEntryResponse):
        return _table(entry_rows([message.entry])) + "\n(removed)"
    return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2)
