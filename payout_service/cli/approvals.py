"""`payoutctl approve|reject`: four-eyes approvals from the approver's own machine.

`approve` reads the payout (GetPayout), builds its approval statement locally
(payout_approvals) from the payout's fields and what the approver states independently (the
network, the treasury account, how the service pays), signs it with the Ed25519 secret read
from --key-file, and sends only the signature (ApprovePayout). The secret never leaves this
process and is never printed; a payout the service changed, or a treasury or network that
is not the one the approver named, gives a statement the service and the signer refuse."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import grpc
from google.protobuf.message import Message

from payout_approvals.statement import MAX_APPROVAL_SECONDS, Payment, approval_by
from payout_service.core.amounts import AmountError, format_amount, parse_amount
from payout_service.core.approvals import Route, route_payment
from payout_service.core.batches import BatchMode
from payout_service.core.model import Payout
from payout_service.core.states import PayoutState
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc, payout_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

CALL_TIMEOUT = 30.0
TESTNET = "Test SDF Network ; September 2015"
DEFAULT_TTL = 24 * 3600


class ApprovalRefused(Exception):
    """The approval cannot be built here (no key, a payout that cannot be approved)."""


def add_parsers(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    a = command("approve", "approve a payout waiting in AWAITING_APPROVAL: signs its "
                "statement locally with your approval key (approver identity)")
    a.add_argument("payout_id")
    a.add_argument("--key-file", required=True, type=Path,
                   help="file holding your Ed25519 approval secret (S...); never sent")
    a.add_argument("--ttl", type=int, default=DEFAULT_TTL, metavar="SECONDS",
                   help="how long the approval stays valid (default 86400); it must still be "
                        "valid when the payout is signed")
    a.add_argument("--expect-amount", metavar="AMOUNT",
                   help="refuse to sign unless the payout pays exactly this amount (checked "
                        "against what the service reports, before signing)")
    a.add_argument("--expect-destination", metavar="ADDRESS",
                   help="refuse to sign unless the payout pays this destination")
    a.add_argument("--treasury", default=os.environ.get("PAYOUT_SOURCE_ACCOUNT", ""),
                   help="the paying account (default $PAYOUT_SOURCE_ACCOUNT)")
    a.add_argument("--network-passphrase",
                   default=os.environ.get("STELLAR_NETWORK_PASSPHRASE", "") or TESTNET,
                   help="default $STELLAR_NETWORK_PASSPHRASE, else testnet")
    a.add_argument("--batch-mode", choices=[m.value for m in BatchMode],
                   default=os.environ.get("PAYOUTS_BATCH_MODE", "").strip().lower() or "off",
                   help="how the service pays (default $PAYOUTS_BATCH_MODE, else off)")
    a.add_argument("--contract-id", default=os.environ.get("PAYOUT_CONTRACT_ID", ""),
                   help="the service's payout contract, if any (default $PAYOUT_CONTRACT_ID)")
    r = command("reject", "reject a payout waiting in AWAITING_APPROVAL: it fails with "
                "failure code rejected (approver identity)")
    r.add_argument("payout_id")
    r.add_argument("--reason", required=True, help="recorded as the failure message")


def _stored(p: pb.Payout) -> Payout:
    """The fields of a GetPayout answer the statement reads, as the service stores them."""
    memo_type = memo_value = None
    which = p.memo.WhichOneof("value") if p.HasField("memo") else None
    if which == "text":
        memo_type, memo_value = "text", p.memo.text
    elif which == "id":
        memo_type, memo_value = "id", str(p.memo.id)
    elif which in ("hash", "return_hash"):
        memo_type = "hash" if which == "hash" else "return"
        memo_value = getattr(p.memo, which).hex()
    now = datetime.now(UTC)
    return Payout(
        id=UUID(p.id), payout_id=p.payout_id, idempotency_key="", fingerprint="",
        parameters={}, destination=p.destination, asset=p.asset,
        gross_stroops=p.gross.stroops, fee_stroops=p.fee.stroops, net_stroops=p.net.stroops,
        state=PayoutState.AWAITING_APPROVAL, mode="", unsigned_envelope_xdr=None,
        attempt_count=0, failure_code=None, failure_message=None, metadata={}, reference="",
        round_id=None, batch_id=None, correlation_id="", trace_context="",
        network_fee_stroops=None, created_at=now, updated_at=now, confirmed_at=None,
        memo_type=memo_type, memo_value=memo_value,
        muxed_id=p.muxed_id if p.HasField("muxed_id") else None)


def payment_of(p: pb.Payout, args: argparse.Namespace) -> Payment:
    if not args.treasury:
        raise ApprovalRefused("--treasury (or PAYOUT_SOURCE_ACCOUNT) is required")
    route = Route(BatchMode(args.batch_mode), args.contract_id or None,
                  args.network_passphrase, args.treasury)
    payment = route_payment(_stored(p), route)
    if payment is None:
        raise ApprovalRefused("a payout paid by the payout contract cannot be approved")
    return payment


def check_expected(payment: Payment, args: argparse.Namespace) -> None:
    """--expect-amount / --expect-destination: the approver's own figures, compared with
    what the service reports before anything is signed."""
    if args.expect_destination and args.expect_destination.strip() != payment.destination:
        raise ApprovalRefused(f"the payout pays {payment.destination}, not "
                              f"{args.expect_destination.strip()}: not signed")
    if args.expect_amount:
        try:
            expected = parse_amount(args.expect_amount)
        except AmountError as err:
            raise ApprovalRefused(f"--expect-amount: {err}") from None
        if expected != payment.amount_stroops:
            raise ApprovalRefused(f"the payout pays {format_amount(payment.amount_stroops)}, "
                                  f"not {format_amount(expected)}: not signed")


def read_secret(path: Path) -> str:
    try:
        secret = path.read_text().strip()
    except OSError as err:
        raise ApprovalRefused(f"cannot read --key-file: {err.strerror}") from None
    if not secret.startswith("S"):
        raise ApprovalRefused("--key-file must hold an Ed25519 secret seed (S...)")
    return secret


async def run(channel: grpc.aio.Channel, args: argparse.Namespace) -> Message:
    admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
    if args.command == "reject":
        reply: Message = await admin.RejectPayout(
            apb.RejectPayoutRequest(payout_id=args.payout_id, reason=args.reason),
            timeout=CALL_TIMEOUT)
        return reply
    got = await payout_pb2_grpc.PayoutServiceStub(channel).GetPayout(
        pb.GetPayoutRequest(payout_id=args.payout_id), timeout=CALL_TIMEOUT)
    if got.payout.state != pb.PAYOUT_STATE_AWAITING_APPROVAL:
        raise ApprovalRefused(f"payout is {pb.PayoutState.Name(got.payout.state)}, "
                              "not awaiting approval")
    payment = payment_of(got.payout, args)
    check_expected(payment, args)
    if not 0 < args.ttl <= MAX_APPROVAL_SECONDS:
        raise ApprovalRefused(f"--ttl must be 1 to {MAX_APPROVAL_SECONDS} seconds (7 days)")
    expires_at = int(time.time()) + args.ttl
    # What is signed, said before signing: the approver's own check of what the service
    # reported (a compromised service could report another payment).
    print(f"approving payout {got.payout.payout_id}: {format_amount(payment.amount_stroops)} "
          f"{payment.asset} to {payment.destination}"
          f"{f' (muxed id {payment.muxed_id})' if payment.muxed_id is not None else ''}"
          f", memo {payment.memo}, from {payment.treasury}, valid {args.ttl} s",
          file=sys.stderr)
    try:
        approval = approval_by(read_secret(args.key_file), payment, got.payout.payout_id,
                               expires_at)
    except ValueError:
        # Never echo the file's content: it is a secret, however malformed.
        raise ApprovalRefused("--key-file does not hold a valid Ed25519 secret") from None
    reply = await admin.ApprovePayout(apb.ApprovePayoutRequest(
        payout_id=got.payout.payout_id, approver_public_key=approval.approver,
        signature=approval.signature, expires_at=expires_at), timeout=CALL_TIMEOUT)
    return reply
