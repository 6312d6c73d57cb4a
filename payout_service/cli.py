"""payoutctl: run the payout flow from a shell (create, get, list, watch)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc


def _print(message: Any) -> None:
    print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    if args.ca_cert:
        def read(path: str | None) -> bytes | None:
            return open(path, "rb").read() if path else None  # noqa: SIM115, PTH123

        creds = grpc.ssl_channel_credentials(
            read(args.ca_cert), read(args.client_key), read(args.client_cert)
        )
        return grpc.aio.secure_channel(args.target, creds)
    return grpc.aio.insecure_channel(args.target)


async def _run(args: argparse.Namespace) -> int:
    async with _channel(args) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        if args.command == "create":
            metadata = dict(kv.split("=", 1) for kv in args.meta or [])
            _print(await stub.CreatePayout(pb.CreatePayoutRequest(
                payout_id=args.payout_id, destination=args.destination, amount=args.amount,
                asset=args.asset, idempotency_key=args.idempotency_key or args.payout_id,
                metadata=metadata, reference=args.reference or "",
            )))
        elif args.command == "get":
            _print(await stub.GetPayout(
                pb.GetPayoutRequest(payout_id=args.payout_id, include_attempts=args.attempts)
            ))
        elif args.command == "list":
            states = [pb.PayoutState.Value(f"PAYOUT_STATE_{s.upper()}") for s in args.state or []]
            _print(await stub.ListPayouts(pb.ListPayoutsRequest(
                states=states, destination=args.destination or "", page_size=args.limit,
                page_token=args.page_token or "",
            )))
        elif args.command == "unsigned":
            # External signing from a shell: print the envelope to sign, nothing else, so it
            # pipes into the signing tool and back into `payoutctl submit-signed ID -`.
            got = await stub.GetPayout(pb.GetPayoutRequest(payout_id=args.payout_id))
            if got.payout.state != pb.PAYOUT_STATE_AWAITING_SIGNATURE:
                state = pb.PayoutState.Name(got.payout.state)
                print(f"payoutctl: payout is {state}, not AWAITING_SIGNATURE", file=sys.stderr)
                return 1
            print(got.payout.unsigned_envelope_xdr)
        elif args.command == "watch":
            async for event in stub.WatchPayout(pb.WatchPayoutRequest(payout_id=args.payout_id)):
                _print(event)
        elif args.command == "submit-signed":
            xdr = sys.stdin.read().strip() if args.xdr == "-" else args.xdr
            _print(await stub.SubmitSignedTransaction(
                pb.SubmitSignedTransactionRequest(payout_id=args.payout_id, signed_envelope_xdr=xdr)
            ))
        elif args.command == "retry":
            _print(await stub.RetryPayout(pb.RetryPayoutRequest(payout_id=args.payout_id)))
        elif args.command == "cancel":
            _print(await stub.CancelPayout(
                pb.CancelPayoutRequest(payout_id=args.payout_id, reason=args.reason or "")
            ))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="payoutctl", description=__doc__)
    p.add_argument("--target", default=os.environ.get("PAYOUTCTL_TARGET", "127.0.0.1:50051"))
    p.add_argument("--ca-cert", default=os.environ.get("PAYOUTCTL_CA_CERT"))
    p.add_argument("--client-cert", default=os.environ.get("PAYOUTCTL_CLIENT_CERT"))
    p.add_argument("--client-key", default=os.environ.get("PAYOUTCTL_CLIENT_KEY"))
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="create a payout")
    c.add_argument("payout_id")
    c.add_argument("destination")
    c.add_argument("amount", help="decimal, at most 7 places, e.g. 100.5")
    c.add_argument("--asset", default="XLM")
    c.add_argument("--idempotency-key")
    c.add_argument("--reference")
    c.add_argument("--meta", action="append", help="key=value, repeatable")
    g = sub.add_parser("get", help="show one payout")
    g.add_argument("payout_id")
    g.add_argument("--attempts", action="store_true")
    ls = sub.add_parser("list", help="list payouts, newest first")
    ls.add_argument("--state", action="append", help="e.g. submitted; repeatable")
    ls.add_argument("--destination")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--page-token")
    w = sub.add_parser("watch", help="stream state changes until terminal")
    w.add_argument("payout_id")
    u = sub.add_parser("unsigned", help="print the envelope awaiting an external signature")
    u.add_argument("payout_id")
    s = sub.add_parser("submit-signed", help="bring an externally signed envelope")
    s.add_argument("payout_id")
    s.add_argument("xdr", help="signed envelope XDR, or - to read stdin")
    r = sub.add_parser("retry", help="retry a FAILED payout")
    r.add_argument("payout_id")
    x = sub.add_parser("cancel", help="cancel while nothing can land")
    x.add_argument("payout_id")
    x.add_argument("--reason")
    return p


def main() -> None:
    args = parser().parse_args()
    try:
        sys.exit(asyncio.run(_run(args)))
    except grpc.aio.AioRpcError as err:
        print(f"payoutctl: {err.code().name}: {err.details()}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
