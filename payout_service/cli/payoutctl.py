"""payoutctl: run the payout flow from a shell (create, get, list, watch, cancel, retry, and
external signing with unsigned / submit-signed), show a payout's proof of payment (proof),
create payouts from a CSV file (bulk create),
export payouts as CSV or JSON Lines (export), see health and set the alert
configuration (health, alert-config), run the channel pool (channels ...), see the
watchdog and pause or resume sending (watchdog ...), follow and redeliver webhooks
(webhooks ...), run game rounds: create, close, resolve from a file of winners, show,
list (rounds ...), and print a round's or a scheduled run's statement (rounds statement,
runs statement)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from payout_service.cli import approvals as cli_approvals
from payout_service.cli import bulk as cli_bulk
from payout_service.cli import channels as cli_channels
from payout_service.cli import exports as cli_exports
from payout_service.cli import proofs as cli_proofs
from payout_service.cli import rounds as cli_rounds
from payout_service.cli import screening as cli_screening
from payout_service.cli import statements as cli_statements
from payout_service.cli import watchdog as cli_watchdog
from payout_service.cli import webhooks as cli_webhooks
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc, payout_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

DEFAULT_TARGET = "127.0.0.1:50051"
CALL_TIMEOUT = 30.0
STATE_NAMES = [n.removeprefix("PAYOUT_STATE_").lower() for n in pb.PayoutState.keys()
               if n != "PAYOUT_STATE_UNSPECIFIED"]

CONNECTION_HELP = f"""\
connection (every command; flags win over the environment):
  --target HOST:PORT   payout-service address; env PAYOUTCTL_TARGET (default {DEFAULT_TARGET})
  --ca-cert FILE       CA certificate of the server; turns TLS on. env PAYOUTCTL_CA_CERT.
                       Without it payoutctl speaks plaintext (a server started with
                       PAYOUTS_PLAINTEXT=true).
  --client-cert FILE   client certificate and key for mutual TLS; env PAYOUTCTL_CLIENT_CERT
  --client-key FILE    and PAYOUTCTL_CLIENT_KEY. The certificate's name is your identity:
                       admin commands (retry) need one listed in PAYOUTS_ADMIN_IDENTITIES.
  -o, --output FORMAT  json (default; env PAYOUTCTL_OUTPUT) or table; --json is -o json

against the dev stack (scripts/dev-stack): `. .devstack/operator.env` sets all of these and
puts .venv/bin on PATH; `. .devstack/admin.env` for the admin identity.
"""


class UsageError(Exception):
    """A bad setting or argument found before any call: a message, no traceback."""


# ---- output ---------------------------------------------------------------------------------

def as_dict(message: Message) -> dict[str, Any]:
    found: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return found


def _state(value: int) -> str:
    return str(pb.PayoutState.Name(value)).removeprefix("PAYOUT_STATE_")


def payout_rows(payouts: Sequence[pb.Payout]) -> list[list[str]]:
    rows = [["PAYOUT_ID", "STATE", "GROSS", "NET", "DESTINATION", "TX_HASH", "CREATED"]]
    for p in payouts:
        created = p.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") \
            if p.HasField("created_at") else ""
        rows.append([p.payout_id, _state(p.state), p.gross.decimal, p.net.decimal,
                     p.destination, p.tx_hash[:16], created])
    return rows


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def payout_block(p: pb.Payout) -> str:
    fields = [("payout_id", p.payout_id), ("id", p.id), ("state", _state(p.state)),
              ("destination", p.destination),
              ("muxed_id", str(p.muxed_id) if p.HasField("muxed_id") else ""),
              ("memo", memo_text(p.memo) if p.HasField("memo") else ""), ("asset", p.asset),
              ("gross", p.gross.decimal), ("fee", p.fee.decimal), ("net", p.net.decimal),
              ("attempts", str(p.attempt_count)), ("tx_hash", p.tx_hash),
              ("ledger", str(p.ledger or "")), ("failure", p.failure.code),
              ("correlation_id", p.correlation_id)]
    return "\n".join(f"{name + ':':16}{value}" for name, value in fields if value)


def memo_text(memo: pb.Memo) -> str:
    """`kind:value` as `create --memo` takes it; hash and return in hex."""
    which = memo.WhichOneof("value")
    if which is None:
        return ""
    value = getattr(memo, which)
    return f"{MEMO_FLAG_KINDS[which]}:{value.hex() if isinstance(value, bytes) else value}"


# The oneof field of pb.Memo -> the kind `--memo` names it by.
MEMO_FLAG_KINDS = {"text": "text", "id": "id", "hash": "hash", "return_hash": "return"}


def memo_arg(text: str) -> pb.Memo:
    """`--memo text:…`, `id:123`, `hash:<64 hex>` or `return:<64 hex>`."""
    kind, sep, value = text.partition(":")
    try:
        if sep and kind == "text":
            return pb.Memo(text=value)
        if sep and kind == "id":
            return pb.Memo(id=int(value))
        if sep and kind == "hash":
            return pb.Memo(hash=bytes.fromhex(value))
        if sep and kind == "return":
            return pb.Memo(return_hash=bytes.fromhex(value))
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        "expected text:TEXT, id:NUMBER, hash:HEX or return:HEX (the service checks the limits)")


def render(message: Message, output: str) -> str:
    if output == "json":
        return json.dumps(as_dict(message), indent=2)
    if isinstance(message, pb.ListPayoutsResponse):
        text = table(payout_rows(message.payouts))
        return text + (f"\nnext page: --page-token {message.next_page_token}"
                       if message.next_page_token else "")
    if isinstance(message, pb.WatchPayoutResponse):
        at = message.changed_at.ToDatetime().strftime("%H:%M:%S")
        before = _state(message.previous_state) if message.previous_state else "-"
        tx = f"  tx {message.payout.tx_hash}" if message.payout.tx_hash else ""
        return f"{at}  {message.payout.payout_id}  {before} -> {_state(message.payout.state)}{tx}"
    if isinstance(message, pb.GetPayoutResponse) and message.attempts:
        attempts = [["#", "STATUS", "SEQUENCE", "TX_HASH", "RESULT"]] + [
            [str(a.number), a.status, str(a.sequence), a.tx_hash, a.result_code]
            for a in message.attempts]
        return payout_block(message.payout) + "\n\n" + table(attempts)
    payout = getattr(message, "payout", None)
    if isinstance(payout, pb.Payout):
        return payout_block(payout)
    if isinstance(message, apb.AlertConfig):
        return alert_config_block(message)
    if isinstance(message, apb.GetSystemHealthResponse):
        return health_block(message)
    return json.dumps(as_dict(message), indent=2)


def alert_config_block(c: apb.AlertConfig) -> str:
    fields = [
        ("enabled", str(c.enabled).lower()),
        ("failure rate", f"{c.failure_rate_warning:g} / {c.failure_rate_critical:g} critical"),
        ("pending count", str(c.pending_count)),
        ("delay seconds", f"{c.processing_delay_seconds_warning:g} / "
                          f"{c.processing_delay_seconds_critical:g} critical"),
        ("amount 24h", c.amount_24h.decimal), ("system errors", str(c.system_errors)),
        ("webhooks", ", ".join(c.webhook_urls) or "-"),
        ("version", f"{c.version} by {c.updated_by or '-'}"),
    ]
    return "\n".join(f"{name + ':':16}{value}" for name, value in fields)


def health_block(h: apb.GetSystemHealthResponse) -> str:
    m = h.metrics
    lines = [f"{'level:':16}{apb.HealthLevel.Name(h.level).removeprefix('HEALTH_LEVEL_')}",
             f"{'failure rate:':16}{m.failure_rate:.1%}", f"{'pending:':16}{m.pending_count}",
             f"{'oldest pending:':16}{m.oldest_pending_age_seconds:.0f} s",
             f"{'amount 24h:':16}{m.amount_last_24h.decimal}"]
    if h.active_alerts:
        rows = [["ALERT_ID", "KIND", "SEVERITY", "STATUS", "MESSAGE"]] + [
            [a.alert_id, apb.AlertKind.Name(a.kind).removeprefix("ALERT_KIND_"),
             apb.HealthLevel.Name(a.severity).removeprefix("HEALTH_LEVEL_"),
             apb.AlertStatus.Name(a.status).removeprefix("ALERT_STATUS_"), a.message]
            for a in h.active_alerts]
        lines += ["", table(rows)]
    return "\n".join(lines)


# ---- errors ---------------------------------------------------------------------------------

def explain(err: grpc.aio.AioRpcError, args: argparse.Namespace) -> str:
    """One line with the status, then the fields at fault and, when it helps, what to try."""
    lines = [f"payoutctl: {err.code().name}: {err.details()}"]
    status = rpc_status.from_call(err)
    for packed in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if packed.Unpack(bad):
            lines += [f"  {v.field}: {v.description}" for v in bad.field_violations]
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        mode = "TLS" if args.ca_cert else "plaintext (no --ca-cert / PAYOUTCTL_CA_CERT)"
        lines.append(f"  cannot talk to payout-service at {args.target} over {mode}.")
        if not args.ca_cert:
            lines.append("  If the server uses TLS, give its CA and your client certificate "
                         "(see payoutctl --help);\n  against the dev stack: "
                         ". .devstack/operator.env")
        elif not args.client_cert:
            lines.append("  If the server wants mutual TLS, give your client certificate: "
                         "--client-cert/--client-key\n  (PAYOUTCTL_CLIENT_CERT, "
                         "PAYOUTCTL_CLIENT_KEY)")
    if err.code() == grpc.StatusCode.PERMISSION_DENIED:
        lines.append("  this command needs an admin client certificate "
                     "(dev stack: . .devstack/admin.env)")
    return "\n".join(lines)


# ---- calls ----------------------------------------------------------------------------------

def _read(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as handle:  # noqa: PTH123 - a file named by the user
            return handle.read()
    except OSError as err:
        raise UsageError(f"cannot read the {what} {path!r}: {err.strerror}") from None


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    if args.ca_cert:
        if bool(args.client_cert) != bool(args.client_key):
            raise UsageError("give both --client-cert and --client-key (or neither)")
        creds = grpc.ssl_channel_credentials(
            _read(args.ca_cert, "CA certificate"), _read(args.client_key, "client key"),
            _read(args.client_cert, "client certificate"),
        )
        return grpc.aio.secure_channel(args.target, creds)
    if args.client_cert or args.client_key:
        raise UsageError("a client certificate needs --ca-cert (PAYOUTCTL_CA_CERT) for TLS")
    return grpc.aio.insecure_channel(args.target)


Command = Callable[[payout_pb2_grpc.PayoutServiceStub, argparse.Namespace], Any]


async def _create(stub: payout_pb2_grpc.PayoutServiceStub, args: argparse.Namespace) -> Any:
    return await stub.CreatePayout(pb.CreatePayoutRequest(
        payout_id=args.payout_id, destination=args.destination, amount=args.amount,
        asset=args.asset, idempotency_key=args.idempotency_key or args.payout_id,
        metadata=dict(args.meta or []), reference=args.reference or "", memo=args.memo,
    ), timeout=CALL_TIMEOUT)


async def _get(stub: payout_pb2_grpc.PayoutServiceStub, args: argparse.Namespace) -> Any:
    return await stub.GetPayout(
        pb.GetPayoutRequest(payout_id=args.payout_id, include_attempts=args.attempts),
        timeout=CALL_TIMEOUT)


async def _list(stub: payout_pb2_grpc.PayoutServiceStub, args: argparse.Namespace) -> Any:
    states = [pb.PayoutState.Value(f"PAYOUT_STATE_{s.upper()}") for s in args.state or []]
    return await stub.ListPayouts(pb.ListPayoutsRequest(
        states=states, destination=args.destination or "", page_size=args.limit,
        page_token=args.page_token or "",
    ), timeout=CALL_TIMEOUT)


async def _retry(stub: payout_pb2_grpc.PayoutServiceStub, args: argparse.Namespace) -> Any:
    return await stub.RetryPayout(
        pb.RetryPayoutRequest(payout_id=args.payout_id, reason=args.reason or ""),
        timeout=CALL_TIMEOUT)


async def _cancel(stub: payout_pb2_grpc.PayoutServiceStub, args: argparse.Namespace) -> Any:
    return await stub.CancelPayout(
        pb.CancelPayoutRequest(payout_id=args.payout_id, reason=args.reason or ""),
        timeout=CALL_TIMEOUT)


async def _submit_signed(
    stub: payout_pb2_grpc.PayoutServiceStub, args: argparse.Namespace
) -> Any:
    xdr = sys.stdin.read().strip() if args.xdr == "-" else args.xdr
    return await stub.SubmitSignedTransaction(pb.SubmitSignedTransactionRequest(
        payout_id=args.payout_id, signed_envelope_xdr=xdr), timeout=CALL_TIMEOUT)


SIMPLE: dict[str, Command] = {
    "create": _create, "get": _get, "list": _list, "retry": _retry, "cancel": _cancel,
    "submit-signed": _submit_signed,
}

# alert-config flag -> AlertConfig field
ALERT_FLAGS = {
    "failure_rate": "failure_rate_warning", "failure_rate_critical": "failure_rate_critical",
    "pending_count": "pending_count", "delay_seconds": "processing_delay_seconds_warning",
    "delay_seconds_critical": "processing_delay_seconds_critical",
    "system_errors": "system_errors",
}


async def _admin(channel: grpc.aio.Channel, args: argparse.Namespace) -> Message:
    """health and alert-config (PayoutAdminService: the admin identity)."""
    admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
    if args.command == "health":
        reply: Message = await admin.GetSystemHealth(apb.GetSystemHealthRequest(),
                                                     timeout=CALL_TIMEOUT)
        return reply
    current = (await admin.GetAlertConfig(apb.GetAlertConfigRequest(),
                                          timeout=CALL_TIMEOUT)).config
    changed = apb.AlertConfig()
    changed.CopyFrom(current)
    for flag, name in ALERT_FLAGS.items():
        if getattr(args, flag) is not None:
            setattr(changed, name, getattr(args, flag))
    if args.amount_24h is not None:
        changed.amount_24h.CopyFrom(pb.Amount(decimal=args.amount_24h))
    if args.enabled is not None:
        changed.enabled = args.enabled
    if args.webhook is not None:
        del changed.webhook_urls[:]
        changed.webhook_urls.extend(u for u in args.webhook if u)
    if changed == current:
        return current
    # Based on the version read: a concurrent change makes this FAILED_PRECONDITION.
    saved = await admin.UpdateAlertConfig(apb.UpdateAlertConfigRequest(config=changed),
                                          timeout=CALL_TIMEOUT)
    return saved.config


async def _run(args: argparse.Namespace) -> int:
    async with _channel(args) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        if args.command in ("health", "alert-config"):
            print(render(await _admin(channel, args), args.output))
        elif args.command == "channels":
            print(cli_channels.render(await cli_channels.run(channel, args), args.output))
        elif args.command == "watchdog":
            print(cli_watchdog.render(await cli_watchdog.run(channel, args), args.output))
        elif args.command == "export":
            return await cli_exports.run(channel, args)
        elif args.command == "bulk":
            return await cli_bulk.run(channel, args)
        elif args.command == "webhooks":
            print(cli_webhooks.render(await cli_webhooks.run(channel, args), args.output))
        elif args.command == "runs" or getattr(args, "rounds_command", "") == "statement":
            return await cli_statements.run(channel, args)
        elif args.command == "rounds":
            try:
                print(cli_rounds.render(await cli_rounds.run(channel, args), args.output))
            except cli_rounds.WinnerFileRefused as refused:
                print(f"payoutctl: {refused}", file=sys.stderr)
                return 1
        elif args.command == "screening":
            print(cli_screening.render(await cli_screening.run(channel, args), args.output))
        elif args.command in ("approve", "reject"):
            print(render(await cli_approvals.run(channel, args), args.output))
        elif args.command in SIMPLE:
            print(render(await SIMPLE[args.command](stub, args), args.output))
        elif args.command == "unsigned":
            # External signing from a shell: print the envelope to sign, nothing else, so it
            # pipes into the signing tool and back into `payoutctl submit-signed ID -`.
            got = await stub.GetPayout(pb.GetPayoutRequest(payout_id=args.payout_id),
                                       timeout=CALL_TIMEOUT)
            if got.payout.state != pb.PAYOUT_STATE_AWAITING_SIGNATURE:
                state = _state(got.payout.state)
                print(f"payoutctl: payout is {state}, not AWAITING_SIGNATURE", file=sys.stderr)
                return 1
            print(got.payout.unsigned_envelope_xdr)
        elif args.command == "proof":
            got = await stub.GetPayout(pb.GetPayoutRequest(payout_id=args.payout_id),
                                       timeout=CALL_TIMEOUT)
            if not got.payout.HasField("proof"):
                state = _state(got.payout.state)
                print(f"payoutctl: payout is {state}: no proof of payment (only a CONFIRMED "
                      "payout has one)", file=sys.stderr)
                return 1
            print(cli_proofs.render(got.payout, args.network, args.output,
                                    memo=memo_text(got.payout.proof.memo)))
        elif args.command == "watch":
            async for event in stub.WatchPayout(pb.WatchPayoutRequest(payout_id=args.payout_id)):
                print(render(event, args.output), flush=True)
    return 0


# ---- arguments ------------------------------------------------------------------------------

def state_name(text: str) -> str:
    if text.lower() not in STATE_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown state {text!r}; choose from {', '.join(STATE_NAMES)}")
    return text.lower()


def meta_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key, value


def page_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError("must be 1-500")
    return value


def _connection_flags(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The connection flags; on subcommands without defaults, so a flag given before the
    subcommand is not reset by the subcommand's parser."""
    env = os.environ.get

    def default(value: str | None) -> Any:
        return value if defaults else argparse.SUPPRESS

    group = p.add_argument_group("connection (see the end of --help)")
    group.add_argument("--target", metavar="HOST:PORT",
                       default=default(env("PAYOUTCTL_TARGET", DEFAULT_TARGET)),
                       help="payout-service address (PAYOUTCTL_TARGET)")
    group.add_argument("--ca-cert", metavar="FILE", default=default(env("PAYOUTCTL_CA_CERT")),
                       help="server CA certificate; turns TLS on (PAYOUTCTL_CA_CERT)")
    group.add_argument("--client-cert", metavar="FILE",
                       default=default(env("PAYOUTCTL_CLIENT_CERT")),
                       help="client certificate for mTLS (PAYOUTCTL_CLIENT_CERT)")
    group.add_argument("--client-key", metavar="FILE",
                       default=default(env("PAYOUTCTL_CLIENT_KEY")),
                       help="client key for mTLS (PAYOUTCTL_CLIENT_KEY)")
    group.add_argument("-o", "--output", choices=("json", "table"),
                       default=default(env("PAYOUTCTL_OUTPUT", "json")),
                       help="json or table (PAYOUTCTL_OUTPUT)")
    group.add_argument("--json", dest="output", action="store_const", const="json",
                       default=argparse.SUPPRESS, help="same as -o json")


def parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="payoutctl", description=__doc__, epilog=CONNECTION_HELP,
                                formatter_class=formatter)
    _connection_flags(p, defaults=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text, description=help_text, epilog=CONNECTION_HELP,
                           formatter_class=formatter)
        _connection_flags(c, defaults=False)
        return c

    c = command("create", "create a payout (a replay with the same idempotency key returns it)")
    c.add_argument("payout_id", help="your id for the payout, 1-128 of A-Z a-z 0-9 : _ . -")
    c.add_argument("destination", help="G... account, M... muxed address or C... contract")
    c.add_argument("amount", help="positive decimal, at most 7 places, e.g. 100.5")
    c.add_argument("--asset", default="XLM", help="XLM (default) or CODE:ISSUER")
    c.add_argument("--idempotency-key", help="defaults to the payout id")
    c.add_argument("--reference", help="paid at most once (eligibility), e.g. a task id")
    c.add_argument("--meta", action="append", type=meta_pair, metavar="KEY=VALUE",
                   help="metadata, repeatable")
    c.add_argument("--memo", type=memo_arg, metavar="KIND:VALUE",
                   help="transaction memo: text:TEXT, id:NUMBER, hash:HEX or return:HEX")
    g = command("get", "show one payout")
    g.add_argument("payout_id", help="your payout id or the server id (UUID)")
    g.add_argument("--attempts", action="store_true", help="also show every attempt")
    ls = command("list", "list payouts, newest first")
    ls.add_argument("--state", action="append", type=state_name, metavar="STATE",
                    help=f"repeatable; one of {', '.join(STATE_NAMES)}")
    ls.add_argument("--destination", help="only payouts to this G.../C... address")
    ls.add_argument("--limit", type=page_size, default=50, help="1-500 (default 50)")
    ls.add_argument("--page-token", help="from the previous page")
    w = command("watch", "print the payout, then each state change until a terminal state")
    w.add_argument("payout_id")
    u = command("unsigned", "print the envelope awaiting an external signature (XDR only)")
    u.add_argument("payout_id")
    s = command("submit-signed", "bring an externally signed envelope")
    s.add_argument("payout_id")
    s.add_argument("xdr", help="signed envelope XDR, or - to read it from stdin")
    r = command("retry", "queue a FAILED payout for a new attempt (admin identity)")
    r.add_argument("payout_id")
    r.add_argument("--reason", help="recorded in the payout's audit trail")
    x = command("cancel", "cancel a payout while no attempt of it can land")
    x.add_argument("payout_id")
    x.add_argument("--reason", help="recorded in the payout's audit trail")
    cli_exports.add_parser(command, state_name, STATE_NAMES)
    cli_approvals.add_parsers(command)
    cli_proofs.add_parser(command)
    command("health", "health level, metrics and active alerts (admin identity)")
    a = command("alert-config", "show the alert configuration, or change it with the flags "
                "below (admin identity); unset flags keep their value")
    toggle = a.add_mutually_exclusive_group()
    toggle.add_argument("--enable", dest="enabled", action="store_const", const=True,
                        help="raise and notify alerts")
    toggle.add_argument("--disable", dest="enabled", action="store_const", const=False,
                        help="raise and notify nothing (health still reports the level)")
    a.add_argument("--failure-rate", type=float, metavar="0..1", help="warning threshold")
    a.add_argument("--failure-rate-critical", type=float, metavar="0..1")
    a.add_argument("--pending-count", type=int, metavar="N")
    a.add_argument("--delay-seconds", type=float, metavar="S",
                   help="oldest pending payout's age, warning")
    a.add_argument("--delay-seconds-critical", type=float, metavar="S")
    a.add_argument("--amount-24h", metavar="DECIMAL", help="amount paid out in 24 h, e.g. 10000")
    a.add_argument("--system-errors", type=int, metavar="N")
    a.add_argument("--webhook", action="append", metavar="URL",
                   help="notification target, repeatable; replaces the list "
                        "(--webhook '' clears it)")
    channels = sub.add_parser(
        "channels", help="the channel pool: list, add, create, top-up, retire, plan "
        "(admin identity)", description=cli_channels.__doc__, epilog=CONNECTION_HELP,
        formatter_class=formatter)

    def channel_command(
        parent: argparse._SubParsersAction[Any], name: str, help_text: str
    ) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = parent.add_parser(
            name, help=help_text, description=help_text, epilog=CONNECTION_HELP,
            formatter_class=formatter)
        _connection_flags(c, defaults=False)
        return c

    cli_channels.add_parsers(channels, channel_command)
    watchdog = sub.add_parser(
        "watchdog", help="the watchdog's position and findings; pause and resume sending "
        "(admin identity)", description=cli_watchdog.__doc__, epilog=CONNECTION_HELP,
        formatter_class=formatter)
    cli_watchdog.add_parsers(watchdog, channel_command)
    bulk = sub.add_parser(
        "bulk", help="create payouts from a CSV file", description=cli_bulk.__doc__,
        epilog=CONNECTION_HELP, formatter_class=formatter)
    cli_bulk.add_parsers(bulk, channel_command)
    webhooks = sub.add_parser(
        "webhooks", help="webhook deliveries and their attempts; redeliver an event "
        "(admin identity)", description=cli_webhooks.__doc__, epilog=CONNECTION_HELP,
        formatter_class=formatter)
    cli_webhooks.add_parsers(webhooks, channel_command)
    rounds = sub.add_parser(
        "rounds", help="game rounds: create, close, resolve from a file of winners (admin "
        "identity), show, list", description=cli_rounds.__doc__, epilog=CONNECTION_HELP,
        formatter_class=formatter)
    cli_rounds.add_parsers(rounds, channel_command)
    runs = sub.add_parser(
        "runs", help="scheduled runs: a run's statement", description=cli_statements.__doc__,
        epilog=CONNECTION_HELP, formatter_class=formatter)
    cli_statements.add_runs_parsers(runs, channel_command)
    screening = sub.add_parser(
        "screening", help="allow and deny lists of destinations (admin identity)",
        description=cli_screening.__doc__, epilog=CONNECTION_HELP, formatter_class=formatter)
    cli_screening.add_parsers(screening, channel_command)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        sys.exit(asyncio.run(_run(args)))
    except (UsageError, cli_channels.ChannelUsageError) as err:
        print(f"payoutctl: {err}", file=sys.stderr)
        sys.exit(2)
    except cli_approvals.ApprovalRefused as err:
        print(f"payoutctl: {err}", file=sys.stderr)
        sys.exit(1)
    except grpc.aio.AioRpcError as err:
        print(explain(err, args), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
