"""`payoutctl channels list|add|create|top-up|retire|plan`: the channel pool from a shell
(PayoutAdminService: the admin identity)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

CALL_TIMEOUT = 30.0
CHANNEL_STATES = [n.removeprefix("CHANNEL_STATE_").lower() for n in apb.ChannelState.keys()
                  if n != "CHANNEL_STATE_UNSPECIFIED"]
KEYS_HELP = ("channel keys as KEY_ID=G... (repeatable), as `signerctl` prints them; "
             "or --from-file")


class ChannelUsageError(Exception):
    """A bad argument found before any call."""


def channel_state(text: str) -> str:
    if text.lower() not in CHANNEL_STATES:
        raise argparse.ArgumentTypeError(
            f"unknown state {text!r}; choose from {', '.join(CHANNEL_STATES)}")
    return text.lower()


def key_pair(text: str) -> apb.ChannelKey:
    """KEY_ID=G... or `KEY_ID G...` (signerctl's output line)."""
    key_id, sep, address = text.strip().partition("=")
    if not sep:
        key_id, _, address = text.strip().partition(" ")
    if not key_id or not address.strip():
        raise argparse.ArgumentTypeError(f"{text[:60]!r} is not KEY_ID=G...")
    return apb.ChannelKey(key_id=key_id.strip(), public_key=address.strip())


def keys_from(args: argparse.Namespace) -> list[apb.ChannelKey]:
    keys = list(args.keys or [])
    if args.from_file:
        try:
            with open(args.from_file, encoding="utf-8") as handle:  # noqa: PTH123 - user's file
                lines = [line for line in handle if line.strip()]
        except OSError as err:
            raise ChannelUsageError(f"cannot read {args.from_file!r}: {err.strerror}") from None
        for n, line in enumerate(lines, start=1):
            try:
                keys.append(key_pair(_json_line(line)))
            except argparse.ArgumentTypeError as err:
                raise ChannelUsageError(f"{args.from_file} line {n}: {err}") from None
    if not keys:
        raise ChannelUsageError("name at least one channel key (KEY_ID=G... or --from-file)")
    return keys


def _json_line(line: str) -> str:
    """signerctl -o json prints {"key_id": ..., "public_key": ...} a line."""
    if line.lstrip().startswith("{"):
        try:
            data = json.loads(line)
            return f"{data['key_id']}={data['public_key']}"
        except (ValueError, KeyError, TypeError):
            return line
    return line


def add_parsers(
    channels: argparse.ArgumentParser,
    command: Callable[[argparse._SubParsersAction[Any], str, str], argparse.ArgumentParser],
) -> None:
    sub = channels.add_subparsers(dest="channels_command", required=True, metavar="ACTION")
    ls = command(sub, "list", "the channels (all, or --state) and the latest lifecycle "
                 "transactions")
    ls.add_argument("--state", action="append", type=channel_state, metavar="STATE",
                    help=f"repeatable; one of {', '.join(CHANNEL_STATES)}")
    add = command(sub, "add", "register accounts already on chain whose keys the signer holds; "
                  "active at once (a retired one comes back)")
    add.add_argument("keys", nargs="*", type=key_pair, metavar="KEY_ID=G...", help=KEYS_HELP)
    add.add_argument("--from-file", metavar="FILE",
                     help="one key a line: KEY_ID=G..., `KEY_ID G...` or signerctl's JSON")
    create = command(sub, "create", "fund new channel accounts (keys generated with signerctl) "
                     "by CreateAccount from the funding account, up to 100 per transaction")
    create.add_argument("keys", nargs="*", type=key_pair, metavar="KEY_ID=G...",
                        help=KEYS_HELP)
    create.add_argument("--from-file", metavar="FILE",
                        help="one key a line: KEY_ID=G..., `KEY_ID G...` or signerctl's JSON")
    create.add_argument("--starting-balance", required=True, metavar="DECIMAL",
                        help="XLM each new account starts with, at least 1 (two base reserves)")
    top = command(sub, "top-up", "pay channels whose XLM balance is below --below up to --to "
                  "(native Payment from the funding account)")
    top.add_argument("--below", required=True, metavar="DECIMAL",
                     help="top up channels with less XLM than this")
    top.add_argument("--to", required=True, metavar="DECIMAL", help="...up to this balance")
    retire = command(sub, "retire", "stop giving channels new work; retired once nothing is "
                     "in flight")
    retire.add_argument("accounts", nargs="+", metavar="G...", help="channel accounts")
    retire.add_argument("--merge", action="store_true",
                        help="then merge each into the funding account (AccountMerge)")
    plan = command(sub, "plan", "how many channels the load needs (default: the queue as it "
                   "stands) and the change that gets there")
    plan.add_argument("--queued-per-ledger", type=int, default=0, metavar="N",
                      help="payouts to carry per ledger (default: from the queue)")
    plan.add_argument("--payouts-per-tx", type=int, default=0, metavar="N",
                      help="payouts per transaction, 1-100 (default: the server's setting)")
    plan.add_argument("--close-time-ms", type=int, default=0, metavar="MS",
                      help="ledger close time (default: the server's setting)")


async def run(channel: grpc.aio.Channel, args: argparse.Namespace) -> Message:
    admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
    action = args.channels_command
    reply: Message
    if action == "list":
        states = [apb.ChannelState.Value(f"CHANNEL_STATE_{s.upper()}") for s in args.state or []]
        reply = await admin.ListChannels(apb.ListChannelsRequest(states=states),
                                         timeout=CALL_TIMEOUT)
    elif action == "add":
        reply = await admin.AddChannels(apb.AddChannelsRequest(channels=keys_from(args)),
                                        timeout=CALL_TIMEOUT)
    elif action == "create":
        reply = await admin.CreateChannels(apb.CreateChannelsRequest(
            channels=keys_from(args), starting_balance=pb.Amount(decimal=args.starting_balance),
        ), timeout=CALL_TIMEOUT)
    elif action == "top-up":
        reply = await admin.TopUpChannels(apb.TopUpChannelsRequest(
            below=pb.Amount(decimal=args.below), to=pb.Amount(decimal=args.to),
        ), timeout=CALL_TIMEOUT)
    elif action == "retire":
        reply = await admin.RetireChannels(apb.RetireChannelsRequest(
            accounts=args.accounts, merge=args.merge), timeout=CALL_TIMEOUT)
    else:
        reply = await admin.PlanChannels(apb.PlanChannelsRequest(
            queued_payouts_per_ledger=max(0, args.queued_per_ledger),
            payouts_per_transaction=max(0, args.payouts_per_tx),
            close_time_ms=max(0, args.close_time_ms),
        ), timeout=CALL_TIMEOUT)
    return reply


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def channel_rows(channels: Any) -> list[list[str]]:
    rows = [["ACCOUNT", "KEY_ID", "STATE", "BALANCE", "IN_FLIGHT", "TOP_UP", "MERGE", "ORIGIN",
             "HELD"]]
    for c in channels:
        rows.append([
            c.account, c.key_id, apb.ChannelState.Name(c.state).removeprefix("CHANNEL_STATE_"),
            c.balance.decimal if c.HasField("balance") else "-",
            "yes" if c.in_flight else "", c.top_up.decimal if c.HasField("top_up") else "",
            "yes" if c.merge_requested else "", c.origin, c.held_reason[:60],
        ])
    return rows


def render(message: Message, output: str) -> str:
    if output == "json":
        return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2)
    if isinstance(message, apb.PlanChannelsResponse):
        m = message
        fields = [
            ("queued", f"{m.queued_payouts} payouts ({m.queued_payouts_per_ledger} per ledger)"),
            ("transactions", f"{m.transactions_per_ledger} per ledger"),
            ("needed", str(m.needed)), ("target", f"{m.target} (limited by {m.limited_by})"),
            ("ceiling", f"{m.ceiling_payouts_per_minute} payouts/min"),
            ("pool", f"{m.active} active, {m.spare} spare"),
            ("change", f"re-activate {m.reactivate}, drain {m.drain}, create {m.create}"),
        ]
        return "\n".join(f"{name + ':':14}{value}" for name, value in fields)
    text = _table(channel_rows(getattr(message, "channels", [])))
    if isinstance(message, apb.ListChannelsResponse) and message.operations:
        ops = [["OPERATION", "KIND", "STATUS", "CHANNELS", "TOTAL", "TX_HASH", "RESULT"]] + [
            [o.operation_id[:8], o.kind, o.status, str(o.channels), o.total.decimal,
             o.tx_hash[:16], o.result_code] for o in message.operations]
        text += "\n\n" + _table(ops)
    if isinstance(message, apb.TopUpChannelsResponse):
        text += f"\n\ntotal: {message.total.decimal} XLM"
    return text
