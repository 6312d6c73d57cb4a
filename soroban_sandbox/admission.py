"""Admission checks stellar-core runs before a transaction enters the queue (``checkValid``).

A failed check is a ``sendTransaction`` ERROR with a TransactionResult code: nothing is charged,
the sequence number is not consumed. Soroban authorization entries are *not* checked here: the
host checks them while executing, so a bad auth signature fails on chain (fee and seq consumed).
"""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import TransactionEnvelope
from stellar_sdk import xdr as x
from stellar_sdk.memo import NoneMemo
from stellar_sdk.operation import InvokeHostFunction

from .authority import count_valid_signatures
from .xdr_build import BASE_FEE, BASE_RESERVE

Code = x.TransactionResultCode


@dataclass(frozen=True)
class LedgerView:
    """The part of the ledger admission needs: last closed ledger and the source account."""

    seq: int
    close_time: int
    source_exists: bool
    source_seq: int
    source_balance: int


def resource_fee_of(envelope: TransactionEnvelope) -> int:
    data = envelope.transaction.soroban_data
    return data.resource_fee.int64 if data is not None else 0


def fee_to_charge(envelope: TransactionEnvelope) -> int:
    """Inclusion fee at the base rate (no surge pricing in the sandbox) plus the resource fee."""
    return min(envelope.transaction.fee, BASE_FEE + resource_fee_of(envelope))


def structure_error(envelope: TransactionEnvelope) -> Code | None:
    """Soroban shape rules (CAP-46-7): one InvokeHostFunction op, sorobanData, no memo, no mux."""
    tx = envelope.transaction
    ops = tx.operations
    if not ops:
        return Code.txMISSING_OPERATION
    is_soroban = any(isinstance(op, InvokeHostFunction) for op in ops)
    if not is_soroban:
        # Classic operations are out of scope for this harness.
        return Code.txNOT_SUPPORTED
    if len(ops) != 1 or tx.soroban_data is None:
        return Code.txMALFORMED
    if not isinstance(tx.memo, NoneMemo):
        return Code.txSOROBAN_INVALID
    op = ops[0]
    if tx.source.account_muxed_id is not None or (
        op.source is not None and op.source.account_muxed_id is not None
    ):
        return Code.txSOROBAN_INVALID
    return None


def time_bounds_error(envelope: TransactionEnvelope, view: LedgerView) -> Code | None:
    """Time and ledger bounds against the last closed ledger (close times strictly increase)."""
    cond = envelope.transaction.preconditions
    if cond is None:
        return None
    if cond.time_bounds is not None:
        min_time, max_time = cond.time_bounds.min_time, cond.time_bounds.max_time
        if min_time and view.close_time < min_time:
            return Code.txTOO_EARLY
        if max_time and view.close_time > max_time:
            return Code.txTOO_LATE
    if cond.ledger_bounds is not None:
        next_seq = view.seq + 1
        if cond.ledger_bounds.min_ledger and next_seq < cond.ledger_bounds.min_ledger:
            return Code.txTOO_EARLY
        if cond.ledger_bounds.max_ledger and next_seq >= cond.ledger_bounds.max_ledger:
            return Code.txTOO_LATE
    return None


def admission_error(envelope: TransactionEnvelope, tx_hash: bytes, view: LedgerView) -> Code | None:
    """The first rule the transaction breaks, in stellar-core's order, or None."""
    tx = envelope.transaction
    code = structure_error(envelope) or time_bounds_error(envelope, view)
    if code is not None:
        return code
    # Inclusion fee (fee minus declared resource fee) must reach the base fee per operation.
    if tx.fee - resource_fee_of(envelope) < BASE_FEE * len(tx.operations):
        return Code.txINSUFFICIENT_FEE
    if not view.source_exists:
        return Code.txNO_ACCOUNT
    if tx.sequence != view.source_seq + 1:
        return Code.txBAD_SEQ
    signatures = envelope.to_xdr_object().v1.signatures  # type: ignore[union-attr]
    # The transaction source and an operation's own source must each sign (master key,
    # weight 1); a signature that matches neither is unused, which stellar-core rejects.
    signers = dict.fromkeys(
        [tx.source.account_id] + [op.source.account_id for op in tx.operations if op.source]
    )
    used = 0
    for signer in signers:
        valid = count_valid_signatures(signer, tx_hash, signatures)
        if valid == 0:
            return Code.txBAD_AUTH
        used += valid
    if used < len(signatures):
        return Code.txBAD_AUTH_EXTRA
    # The fee must be payable from the balance above the minimum reserve (2 base reserves).
    if view.source_balance - 2 * BASE_RESERVE < fee_to_charge(envelope):
        return Code.txINSUFFICIENT_BALANCE
    return None
