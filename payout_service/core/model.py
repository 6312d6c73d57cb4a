"""Domain records as the store hands them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from payout_service.core.payment_proofs import PaymentProof
from payout_service.core.states import AttemptStatus, PayoutState


@dataclass(frozen=True)
class Attempt:
    payout_id: UUID
    number: int
    source_account: str
    sequence: int
    min_time: datetime
    max_time: datetime
    envelope_xdr: str
    signed: bool
    tx_hash: str
    fee_stroops: int
    status: AttemptStatus
    result_code: str | None
    ledger: int | None
    submitted_at: datetime | None
    submitted_ledger: int | None
    send_count: int
    poll_count: int
    proof: str | None
    trace_context: str
    # Set on the attempts of one batch transaction: the same batch_id, envelope
    # and hash; op_index is the payout's operation (or vector item) in it.
    batch_id: UUID | None = None
    op_index: int | None = None
    # The latest ledger seen when last sent or re-sent (core/pacing.resend_due), and the
    # classic operations the transaction holds in the network's queue, on its lead row.
    last_sent_ledger: int | None = None
    classic_ops: int = 0
    # The payout's caller-facing id and correlation id, for log lines (not attempt columns).
    payout_ref: str = ""
    correlation_id: str = ""


@dataclass(frozen=True)
class Payout:
    id: UUID
    payout_id: str
    idempotency_key: str
    fingerprint: str
    parameters: dict[str, Any]
    destination: str
    asset: str
    gross_stroops: int
    fee_stroops: int
    net_stroops: int
    state: PayoutState
    mode: str
    unsigned_envelope_xdr: str | None
    attempt_count: int
    failure_code: str | None
    failure_message: str | None
    metadata: dict[str, str]
    reference: str
    round_id: str | None
    batch_id: str | None
    correlation_id: str
    trace_context: str
    network_fee_stroops: int | None
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None
    # The transaction memo (core/validation.MemoKind value and stored text), and a muxed
    # destination's id (its G... account is the one credited).
    memo_type: str | None = None
    memo_value: str | None = None
    muxed_id: int | None = None
    current_attempt: Attempt | None = field(default=None)
    # What the chain recorded, for a confirmed payout (payout_proofs); loaded where shown.
    proof: PaymentProof | None = field(default=None)


@dataclass(frozen=True)
class NewAttempt:
    """An attempt built and ready to be stored: its envelope, hash and time bounds."""

    source_account: str
    sequence: int
    min_time: datetime
    max_time: datetime
    envelope_xdr: str
    tx_hash: str
    fee_stroops: int
    # Set when the envelope is handed out unsigned (external signing): its holder could
    # submit it from this ledger on, so proofs of death need history back to it.
    handed_out_at_ledger: int | None = None
