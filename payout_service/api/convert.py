"""Domain records -> protobuf messages."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from payout_service.core.amounts import INT64_MAX, AmountError, format_amount, parse_amount
from payout_service.core.errors import FieldViolation
from payout_service.core.model import Attempt, Payout
from payout_service.core.payment_proofs import PaymentProof
from payout_service.core.states import PayoutState
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

STATE_TO_PB = {s: pb.PayoutState.Value(f"PAYOUT_STATE_{s.value}") for s in PayoutState}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}
MODE_TO_PB = {
    "BUILD_ONLY": pb.EXECUTION_MODE_BUILD_ONLY,
    "SIGNER_SERVICE": pb.EXECUTION_MODE_SIGNER_SERVICE,
    "EXTERNAL": pb.EXECUTION_MODE_EXTERNAL,
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> Timestamp | None:
    """Timestamp.FromDatetime's result (a naive time is UTC), in integer arithmetic: three
    per payout answered, and FromDatetime was the slowest part of payout_to_pb."""
    if value is None:
        return None
    delta = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)


def amount(stroops: int) -> pb.Amount:
    return pb.Amount(decimal=format_amount(stroops), stroops=stroops)


def total(stroops: int) -> pb.Amount:
    """A sum of amounts: the decimal is exact, stroops saturates at the int64 maximum (a sum
    of int64 amounts can pass it; the proto field cannot)."""
    return pb.Amount(decimal=format_amount(stroops), stroops=min(stroops, INT64_MAX))


def attempt_to_pb(a: Attempt) -> pb.Attempt:
    return pb.Attempt(
        number=a.number, source_account=a.source_account, sequence=a.sequence,
        min_time=timestamp(a.min_time), max_time=timestamp(a.max_time), tx_hash=a.tx_hash,
        fee_stroops=a.fee_stroops, status=a.status.value, result_code=a.result_code or "",
        ledger=a.ledger or 0, submitted_at=timestamp(a.submitted_at), proof=a.proof or "",
    )


def payout_to_pb(p: Payout) -> pb.Payout:
    msg = pb.Payout(
        id=str(p.id), payout_id=p.payout_id, idempotency_key=p.idempotency_key,
        destination=p.destination, asset=p.asset, gross=amount(p.gross_stroops),
        fee=amount(p.fee_stroops), net=amount(p.net_stroops), state=STATE_TO_PB[p.state],
        mode=MODE_TO_PB[p.mode], unsigned_envelope_xdr=p.unsigned_envelope_xdr or "",
        attempt_count=p.attempt_count, metadata=p.metadata, round_id=p.round_id or "",
        batch_id=p.batch_id or "", correlation_id=p.correlation_id,
        created_at=timestamp(p.created_at), updated_at=timestamp(p.updated_at),
        confirmed_at=timestamp(p.confirmed_at), reference=p.reference,
        network_fee_stroops=p.network_fee_stroops or 0,
    )
    if p.memo_type is not None and p.memo_value is not None:
        msg.memo.CopyFrom(memo_to_pb(p.memo_type, p.memo_value))
    if p.muxed_id is not None:
        msg.muxed_id = p.muxed_id
    if p.failure_code:
        msg.failure.CopyFrom(
            pb.Failure(code=p.failure_code, message=p.failure_message or "", retryable=False)
        )
    if p.current_attempt is not None:
        msg.current_attempt.CopyFrom(attempt_to_pb(p.current_attempt))
        msg.tx_hash = p.current_attempt.tx_hash
        msg.ledger = p.current_attempt.ledger or 0
    if p.proof is not None:
        msg.proof.CopyFrom(proof_to_pb(p.proof))
    return msg


def proof_to_pb(proof: PaymentProof) -> pb.PaymentProof:
    msg = pb.PaymentProof(
        tx_hash=proof.tx_hash, ledger=proof.ledger,
        ledger_closed_at=Timestamp(seconds=proof.ledger_close_time), op_index=proof.op_index,
        event_id=proof.event_id, fee_charged_stroops=proof.fee_charged,
        fee_share_stroops=proof.fee_share, treasury=proof.treasury,
    )
    if proof.memo:
        kind, _, value = proof.memo.partition(":")
        msg.memo.CopyFrom(memo_to_pb(kind, value))
    if proof.muxed_id is not None:
        msg.muxed_id = proof.muxed_id
    return msg


# Memo oneof field -> core/validation.MemoKind value.
MEMO_KINDS = {"text": "text", "id": "id", "hash": "hash", "return_hash": "return"}


def memo_from_pb(memo: pb.Memo | None) -> tuple[str, object] | None:
    """A request's memo (None when the field is unset) as (kind, value) for core
    validation."""
    if memo is None:
        return None
    which = memo.WhichOneof("value")
    if which is None:
        return ("", None)  # an empty Memo message: validation names it
    return MEMO_KINDS[which], getattr(memo, which)


def memo_to_pb(kind: str, value: str) -> pb.Memo:
    if kind == "text":
        return pb.Memo(text=value)
    if kind == "id":
        return pb.Memo(id=int(value))
    if kind == "hash":
        return pb.Memo(hash=bytes.fromhex(value))
    return pb.Memo(return_hash=bytes.fromhex(value))


def amount_from_pb(msg: pb.Amount, name: str, violations: list[FieldViolation]) -> int:
    """An input Amount: its decimal or its stroops (both only if they agree)."""
    stroops = int(msg.stroops)
    if msg.decimal:
        try:
            stroops = parse_amount(msg.decimal)
        except AmountError as err:
            violations.append(FieldViolation(f"{name}.decimal", str(err)))
        if msg.stroops and msg.stroops != stroops:
            violations.append(FieldViolation(name, "decimal and stroops disagree; give one"))
    elif stroops < 0:
        violations.append(FieldViolation(f"{name}.stroops", "must not be negative"))
    return stroops
