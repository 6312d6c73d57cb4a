"""Proof of payment: what the chain recorded for a confirmed payout, read once at
confirmation and stored with it, never recomputed. Pure: no I/O.

An auditor or a payee checks a payment by its transaction hash and ledger, the operation that
moved the money (a classic batch carries up to 100 payments in one transaction, a Soroban
payout is operation 0) and the CAP-67 transfer event that operation emitted. Event ids are
the ones stellar-rpc's getEvents gives (db/event.go InsertEvents: the TOID of ledger,
application order and operation, then the event's index among that operation's events), so
an id found here can be looked up there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stellar_sdk import Address, MuxedAccount
from stellar_sdk import xdr as x

from payout_service.core.payees import memo_text, operation_events, transfer_muxed_id


@dataclass(frozen=True)
class PaymentProof:
    tx_hash: str
    ledger: int
    ledger_close_time: int  # unix seconds (getTransaction's createdAt)
    op_index: int
    event_id: str  # '' when the chain's record carries no transfer event for the operation
    fee_charged: int  # stroops, the whole transaction's (its result's feeCharged)
    fee_share: int  # stroops, this payout's part of fee_charged (fee_shares)
    memo: str  # 'kind:value' as stored for payouts (core/validation), '' for none
    muxed_id: int | None
    treasury: str  # the G... account the money left


def proof_document(proof: PaymentProof) -> dict[str, Any]:
    """The proof as JSON (webhook bodies, `payoutctl proof -o json`): stroops and ledgers as
    numbers like the rest of a payout event, the uint64 muxed id as text so a reader with
    doubles keeps every digit, the close time in RFC 3339 UTC."""
    kind, _, value = proof.memo.partition(":")
    return {
        "tx_hash": proof.tx_hash, "ledger": proof.ledger,
        "ledger_closed_at": datetime.fromtimestamp(proof.ledger_close_time, UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "op_index": proof.op_index, "event_id": proof.event_id,
        "fee_charged_stroops": proof.fee_charged, "fee_share_stroops": proof.fee_share,
        "memo": {"type": kind, "value": value} if proof.memo else None,
        "muxed_id": str(proof.muxed_id) if proof.muxed_id is not None else None,
        "treasury": proof.treasury,
    }


def fee_shares(fee_charged: int, payouts: int) -> list[int]:
    """Each payout's share of a transaction's fee, in operation order: floor(fee / n) each,
    the remainder one stroop apiece to the lowest operation indexes. Integer stroops, so the
    shares add up to the fee exactly (an export summed by finance matches the ledger)."""
    if payouts < 1:
        raise ValueError("a transaction carries at least one payout")
    if fee_charged < 0:
        raise ValueError("a fee charged is never negative")
    share, rest = divmod(fee_charged, payouts)
    return [share + (1 if index < rest else 0) for index in range(payouts)]


def stellar_rpc_event_id(ledger: int, application_order: int, op_index: int,
                         event_index: int) -> str:
    """stellar-rpc's event id (protocol cursor): TOID (ledger << 32 | tx << 12 | op) in 19
    digits, '-', the event's index within its operation in 10 digits."""
    toid = (ledger << 32) | (application_order << 12) | op_index
    return f"{toid:019d}-{event_index:010d}"


def _account_of(muxed: x.MuxedAccount) -> str:
    return MuxedAccount.from_xdr_object(muxed).account_id


def _transfer_events(events: list[x.ContractEvent]) -> list[tuple[int, x.ContractEvent]]:
    """The `transfer` events among an operation's, with their index among all of them."""
    found = []
    for index, event in enumerate(events):
        body = event.body.v0
        if body is not None and body.topics and body.topics[0].sym is not None \
                and body.topics[0].sym.sc_symbol == b"transfer":
            found.append((index, event))
    return found


def read_proof(envelope_xdr: str, meta_xdr: str, *, tx_hash: str, ledger: int,
               ledger_close_time: int, application_order: int, position: int,
               fee_charged: int, fee_share: int) -> PaymentProof:
    """The proof of the payment at `position` of an included transaction, from the envelope
    and meta the chain recorded. `position` is the payout's operation in a classic
    transaction; in a Soroban one (a single InvokeHostFunction, operation 0) it is the
    payout's item in the call, paid by the call's transfer event of that rank (a single
    payout: the first). The treasury is the transfer event's `from` (who paid, even when a
    channel account is the transaction's source); without an event, the operation's source,
    else the transaction's."""
    tx = x.TransactionEnvelope.from_xdr(envelope_xdr).v1
    if tx is None:
        raise ValueError("the included envelope is not a v1 transaction")
    operations = tx.tx.operations
    soroban = len(operations) == 1 and operations[0].body.invoke_host_function_op is not None
    op_index, rank = (0, position) if soroban else (position, 0)
    if not 0 <= op_index < len(operations):
        raise ValueError(f"no operation {op_index} in the included transaction")
    operation = operations[op_index]
    events = operation_events(x.TransactionMeta.from_xdr(meta_xdr), op_index) if meta_xdr \
        else []
    transfers = _transfer_events(events)
    found = transfers[rank] if rank < len(transfers) else None
    event_id, treasury = "", ""
    if found is not None and application_order > 0:
        event_id = stellar_rpc_event_id(ledger, application_order, op_index, found[0])
    if found is not None:
        topics = found[1].body.v0.topics if found[1].body.v0 is not None else []
        if len(topics) > 1 and topics[1].address is not None:
            treasury = Address.from_xdr_sc_address(topics[1].address).address
    if not treasury:
        source = operation.source_account or tx.tx.source_account
        treasury = _account_of(source)
    # Classic: the Payment's M... destination (the event's to_muxed_id would be the memo id
    # of a plain G... payment, CAP-67). Soroban: the transfer event's to_muxed_id.
    body = operation.body
    muxed_id: int | None = None
    if body.payment_op is not None and body.payment_op.destination.med25519 is not None:
        muxed_id = body.payment_op.destination.med25519.id.uint64
    elif soroban and found is not None:
        muxed_id = transfer_muxed_id([found[1]])[1]
    return PaymentProof(
        tx_hash=tx_hash, ledger=ledger, ledger_close_time=ledger_close_time,
        op_index=op_index, event_id=event_id, fee_charged=fee_charged, fee_share=fee_share,
        memo=memo_text(tx.tx.memo), muxed_id=muxed_id, treasury=treasury)
