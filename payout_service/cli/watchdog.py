"""`payoutctl watchdog status|findings|acknowledge|resolve|pause|resume`: the watchdog and
the sending switch from a shell (PayoutAdminService: the admin identity)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from payout_service.cli.channels import _table
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc

CALL_TIMEOUT = 30.0
KINDS = [n.removeprefix("WATCHDOG_FINDING_KIND_").lower()
         for n in apb.WatchdogFindingKind.keys() if not n.endswith("UNSPECIFIED")]
STATUSES = [n.removeprefix("WATCHDOG_FINDING_STATUS_").lower()
            for n in apb.WatchdogFindingStatus.keys() if not n.endswith("UNSPECIFIED")]


def _choice(names: list[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in names:
            raise argparse.ArgumentTypeError(
                f"unknown value {text!r}; choose from {', '.join(names)}")
        return text.lower()
    return parse


def add_parsers(
    watchdog: argparse.ArgumentParser,
    command: Callable[[argparse._SubParsersAction[Any], str, str], argparse.ArgumentParser],
) -> None:
    sub = watchdog.add_subparsers(dest="watchdog_command", required=True, metavar="ACTION")
    command(sub, "status", "where the watchdog stands (verified ledger, lag), whether sending "
            "is paused and why, the unresolved findings")
    ls = command(sub, "findings", "findings, newest first")
    ls.add_argument("--status", action="append", type=_choice(STATUSES), metavar="STATUS",
                    help=f"repeatable; one of {', '.join(STATUSES)}")
    ls.add_argument("--kind", action="append", type=_choice(KINDS), metavar="KIND",
                    help=f"repeatable; one of {', '.join(KINDS)}")
    ls.add_argument("--limit", type=int, default=50, help="1-500 (default 50)")
    ls.add_argument("--page-token", help="from the previous page")
    ack = command(sub, "acknowledge", "an open finding is being looked at (recorded with you)")
    ack.add_argument("finding_id", type=int)
    res = command(sub, "resolve", "a finding is explained or dealt with; its alert clears once "
                  "no finding of its kind is left unresolved")
    res.add_argument("finding_id", type=int)
    res.add_argument("--reason", required=True, help="why (audited)")
    pause = command(sub, "pause", "stop sending on every replica until `resume`")
    pause.add_argument("--reason", required=True, help="why (audited)")
    resume = command(sub, "resume", "resume sending")
    resume.add_argument("--reason", required=True, help="why (audited)")


async def run(channel: grpc.aio.Channel, args: argparse.Namespace) -> Message:
    admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
    action = args.watchdog_command
    reply: Message
    if action == "status":
        reply = await admin.GetWatchdogStatus(apb.GetWatchdogStatusRequest(),
                                              timeout=CALL_TIMEOUT)
    elif action == "findings":
        reply = await admin.ListWatchdogFindings(apb.ListWatchdogFindingsRequest(
            statuses=[apb.WatchdogFindingStatus.Value(f"WATCHDOG_FINDING_STATUS_{s.upper()}")
                      for s in args.status or []],
            kinds=[apb.WatchdogFindingKind.Value(f"WATCHDOG_FINDING_KIND_{k.upper()}")
                   for k in args.kind or []],
            page_size=max(0, args.limit), page_token=args.page_token or "",
        ), timeout=CALL_TIMEOUT)
    elif action == "acknowledge":
        reply = await admin.AcknowledgeWatchdogFinding(apb.AcknowledgeWatchdogFindingRequest(
            finding_id=max(0, args.finding_id)), timeout=CALL_TIMEOUT)
    elif action == "resolve":
        reply = await admin.ResolveWatchdogFinding(apb.ResolveWatchdogFindingRequest(
            finding_id=max(0, args.finding_id), reason=args.reason), timeout=CALL_TIMEOUT)
    elif action == "pause":
        reply = await admin.PauseSending(apb.PauseSendingRequest(reason=args.reason),
                                         timeout=CALL_TIMEOUT)
    else:
        reply = await admin.ResumeSending(apb.ResumeSendingRequest(reason=args.reason),
                                          timeout=CALL_TIMEOUT)
    return reply


def finding_rows(findings: Any) -> list[list[str]]:
    rows = [["ID", "KIND", "STATUS", "LEDGER", "TX_HASH", "PAYOUT", "AMOUNT", "DETAIL"]]
    for f in findings:
        ledgers = f"{f.ledger}-{f.ledger_to}" if f.ledger_to else str(f.ledger or "")
        rows.append([
            str(f.finding_id), apb.WatchdogFindingKind.Name(f.kind).removeprefix(
                "WATCHDOG_FINDING_KIND_").lower(),
            apb.WatchdogFindingStatus.Name(f.status).removeprefix(
                "WATCHDOG_FINDING_STATUS_").lower(),
            ledgers, f.tx_hash[:16], f.payout_id,
            f"{f.amount.decimal} {f.asset}".strip() if f.HasField("amount") else "",
            f.detail[:70],
        ])
    return rows


def _pause_line(p: apb.SendingPause) -> str:
    if not p.paused:
        return "running"
    cause = f", finding {p.finding_id}" if p.finding_id else ""
    return f"PAUSED by {p.changed_by}{cause}: {p.reason}"


def render(message: Message, output: str) -> str:
    if output == "json":
        return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2)
    if isinstance(message, apb.GetWatchdogStatusResponse):
        m = message
        fields = [
            ("enabled", "yes" if m.enabled else "no"),
            ("verified", f"ledger {m.verified_ledger} (started at {m.start_ledger})"
             if m.started else "not started"),
            ("latest", f"{m.latest_ledger} ({m.lag_ledgers} ledgers behind)"),
            ("read", f"{m.transactions_read} transactions in {m.pages_read} pages"),
            ("lease", m.lease_owner or "-"),
            ("sending", _pause_line(m.sending)),
            ("pause on finding", "yes" if m.pause_on_finding else "no"),
        ]
        text = "\n".join(f"{name + ':':18}{value}" for name, value in fields)
        if m.open_findings:
            text += "\n\n" + _table(finding_rows(m.open_findings))
        return text
    if isinstance(message, apb.ListWatchdogFindingsResponse):
        text = _table(finding_rows(message.findings))
        return text + (f"\nnext page: --page-token {message.next_page_token}"
                       if message.next_page_token else "")
    finding = getattr(message, "finding", None)
    if isinstance(finding, apb.WatchdogFinding):
        return _table(finding_rows([finding]))
    sending = getattr(message, "sending", None)
    if isinstance(sending, apb.SendingPause):
        return f"sending: {_pause_line(sending)}"
    return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2)
