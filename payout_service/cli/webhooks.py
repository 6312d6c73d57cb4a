"""`payoutctl webhooks list|redeliver`: the webhook delivery log and redelivery from a shell
(PayoutAdminService: the admin identity)."""

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
STATES = [n.removeprefix("WEBHOOK_DELIVERY_STATE_").lower()
          for n in apb.WebhookDeliveryState.keys() if not n.endswith("UNSPECIFIED")]


def add_parsers(
    webhooks: argparse.ArgumentParser,
    command: Callable[[argparse._SubParsersAction[Any], str, str], argparse.ArgumentParser],
) -> None:
    sub = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    ls = command(sub, "list", "webhook deliveries, newest first, with their latest attempts")
    ls.add_argument("--event-id", help="only this event (as the receiver saw it: N or alert-N)")
    ls.add_argument("--state", action="append", type=_choice(STATES), metavar="STATE",
                    help=f"repeatable; one of {', '.join(STATES)}")
    ls.add_argument("--limit", type=int, default=50, help="1-500 (default 50)")
    ls.add_argument("--page-token", help="from the previous page")
    again = command(sub, "redeliver", "queue an event again with the same event id and a "
                    "fresh retry budget (a dead-lettered one too)")
    again.add_argument("event_id")


async def run(channel: grpc.aio.Channel, args: argparse.Namespace) -> Message:
    admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
    reply: Message
    if args.webhooks_command == "list":
        reply = await admin.ListWebhookDeliveries(apb.ListWebhookDeliveriesRequest(
            event_id=args.event_id or "",
            states=[apb.WebhookDeliveryState.Value(f"WEBHOOK_DELIVERY_STATE_{s.upper()}")
                    for s in args.state or []],
            page_size=max(0, args.limit), page_token=args.page_token or "",
        ), timeout=CALL_TIMEOUT)
    else:
        reply = await admin.RedeliverWebhook(
            apb.RedeliverWebhookRequest(event_id=args.event_id), timeout=CALL_TIMEOUT)
    return reply


def delivery_rows(deliveries: Any) -> list[list[str]]:
    rows = [["EVENT_ID", "TYPE", "STATE", "ATTEMPTS", "LAST_STATUS", "LATENCY_MS", "CREATED",
             "LAST_ERROR"]]
    for d in deliveries:
        last = d.log[0] if d.log else None
        rows.append([
            d.event_id, d.event_type,
            apb.WebhookDeliveryState.Name(d.state).removeprefix(
                "WEBHOOK_DELIVERY_STATE_").lower(),
            str(d.attempts), str(last.status_code or "-") if last else "",
            str(last.latency_ms) if last else "",
            d.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"), d.last_error[:60],
        ])
    return rows


def render(message: Message, output: str) -> str:
    if output == "json":
        return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2)
    if isinstance(message, apb.ListWebhookDeliveriesResponse):
        text = _table(delivery_rows(message.deliveries))
        return text + (f"\nnext page: --page-token {message.next_page_token}"
                       if message.next_page_token else "")
    if isinstance(message, apb.RedeliverWebhookResponse):
        return _table(delivery_rows([message.delivery]))
    return json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2)
