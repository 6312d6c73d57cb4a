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
from stellar_sdk.operation import (
    AccountMerge,
    CreateAccount,
    InvokeHostFunction,
    Operation,
    Payment,
)

from . import xdr_build as b
from .archival import archived_indices, archived_indices_error
from .authority import first_valid_signature
from .fees import non_refundable_fee
from .frozen import accesses_frozen_key
from .protocol import LATEST, Protocol
from .resources import PUBLISHED_TX_LIMITS, TxLimits, limit_error
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
    source_min_balance: int = 2 * BASE_RESERVE  # getMinBalance of the source's sub-entries
    # stellar-core getUpperBoundCloseTimeOffset (src/transactions/TransactionUtils.cpp):
    # EXPECTED_CLOSE_TIME_MULT (2) x the expected ledger close time in whole seconds, plus the
    # time since the last close. A maxTime below close_time + this offset is txTOO_LATE.
    upper_bound_offset: int = 0
    tx_limits: TxLimits = PUBLISHED_TX_LIMITS
    protocol: Protocol = LATEST
    frozen_keys: frozenset[bytes] = frozenset()  # CAP-77 frozenLedgerKeys, XDR-encoded


def resource_fee_of(envelope: TransactionEnvelope) -> int:
    data = envelope.transaction.soroban_data
    return data.resource_fee.int64 if data is not None else 0


def inclusion_bid(envelope: TransactionEnvelope) -> int:
    """What the transaction offers above its declared resource fee (stellar-core
    getInclusionFee); surge pricing ranks Soroban transactions by it."""
    return envelope.transaction.fee - resource_fee_of(envelope)


def fee_to_charge(envelope: TransactionEnvelope, base_fee: int = BASE_FEE) -> int:
    """stellar-core TransactionFrame::getFee while applying: the inclusion fee bid capped at
    the ledger's (possibly surge-priced) base fee per operation, plus the declared resource
    fee. The refundable part of the resource fee is returned after apply."""
    ops = max(1, len(envelope.transaction.operations))
    return min(inclusion_bid(envelope), base_fee * ops) + resource_fee_of(envelope)


@dataclass(frozen=True)
class Rejection:
    """A sendTransaction ERROR: the code, and for txFAILED each operation's result."""

    code: Code
    op_results: list[x.OperationResult] | None = None


def is_classic_supported(op: object) -> bool:
    return isinstance(op, Payment | CreateAccount | AccountMerge)


def is_soroban(envelope: TransactionEnvelope) -> bool:
    return envelope.transaction.soroban_data is not None


ADDRESS_V2 = x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2
WITH_DELEGATES = x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_WITH_DELEGATES


def credentials_error(envelope: TransactionEnvelope, protocol: Protocol) -> Code | None:
    """CAP-71's credential types exist from protocol 27: before, the envelope does not parse
    for the ledger's protocol and checkValid starts with txMALFORMED
    (TransactionFrame::checkValidImpl, validateXDRForProtocol). From 27 the sandbox takes
    ADDRESS_V2 (checked at apply with the address-bound payload) and refuses the delegates
    form loudly (txNOT_SUPPORTED: custom-account delegation is not modelled)."""
    for op in envelope.transaction.operations:
        if not isinstance(op, InvokeHostFunction):
            continue
        for entry in op.auth:
            kind = entry.credentials.type
            if kind in (ADDRESS_V2, WITH_DELEGATES) and not protocol.address_v2_credentials:
                return Code.txMALFORMED
            if kind == WITH_DELEGATES:
                return Code.txNOT_SUPPORTED
    return None


def soroban_memo_error(envelope: TransactionEnvelope) -> Code | None:
    """TransactionFrame::validateSorobanMemo: a Soroban invocation carries no memo and no muxed
    source (the transaction's or the operation's): txSOROBAN_INVALID."""
    tx = envelope.transaction
    if tx.soroban_data is None or len(tx.operations) != 1:
        return None
    op = tx.operations[0]
    if not isinstance(op, InvokeHostFunction):
        return None
    muxed_source = tx.source.account_muxed_id is not None or (
        op.source is not None and op.source.account_muxed_id is not None
    )
    if not isinstance(tx.memo, NoneMemo) or muxed_source:
        return Code.txSOROBAN_INVALID
    return None


def structure_error(
    envelope: TransactionEnvelope,
    limits: TxLimits = PUBLISHED_TX_LIMITS,
    protocol: Protocol = LATEST,
) -> Code | None:
    """Soroban shape rules (CAP-46-7), in TransactionFrame::commonValidPreSeqNum's order: one
    InvokeHostFunction op with sorobanData (txMALFORMED), no memo and no muxed source (from
    protocol 25), resources within the limits and valid ``archivedSorobanEntries``
    (checkSorobanResources), then the resource fee."""
    tx = envelope.transaction
    ops = tx.operations
    if not ops:
        return Code.txMISSING_OPERATION
    is_soroban = any(isinstance(op, InvokeHostFunction) for op in ops)
    if not is_soroban:
        # Classic transactions: Payment, CreateAccount and AccountMerge (up to 100 operations,
        # the XDR's MAX_OPS_PER_TX); any other classic operation is refused loudly.
        if not all(is_classic_supported(op) for op in ops):
            return Code.txNOT_SUPPORTED
        return Code.txMALFORMED if tx.soroban_data is not None else None
    if len(ops) != 1 or tx.soroban_data is None:
        return Code.txMALFORMED
    if protocol.soroban_memo_in_check_valid and soroban_memo_error(envelope) is not None:
        return Code.txSOROBAN_INVALID
    data = tx.soroban_data
    size = len(envelope.to_xdr_object().to_xdr_bytes())
    marked = len(archived_indices(data))
    if limit_error(data.resources, size, limits, marked) is not None:
        return Code.txSOROBAN_INVALID
    if archived_indices_error(data) is not None:
        return Code.txSOROBAN_INVALID
    return resource_fee_error(envelope)


def resource_fee_error(envelope: TransactionEnvelope) -> Code | None:
    """stellar-core TransactionFrame::commonValidPreSeqNum: the declared resource fee may not
    exceed the full fee nor fall below the resources' fee, and a footprint key may appear once
    (all txSOROBAN_INVALID, checked before time bounds and the inclusion fee)."""
    tx = envelope.transaction
    data = tx.soroban_data
    assert data is not None
    declared = data.resource_fee.int64
    footprint = data.resources.footprint
    fixed = non_refundable_fee(len(footprint.read_write), len(archived_indices(data)))
    if declared > tx.fee or declared < fixed:
        return Code.txSOROBAN_INVALID
    keys = [k.to_xdr_bytes() for k in [*footprint.read_only, *footprint.read_write]]
    if len(set(keys)) != len(keys):
        return Code.txSOROBAN_INVALID
    return None


def time_bounds_error(envelope: TransactionEnvelope, view: LedgerView) -> Code | None:
    """Time and ledger bounds against the last closed ledger (close times strictly increase)."""
    cond = envelope.transaction.preconditions
    if cond is None:
        return None
    if cond.time_bounds is not None:
        min_time, max_time = cond.time_bounds.min_time, cond.time_bounds.max_time
        # stellar-core TransactionFrame::isTooEarly / isTooLate (src/transactions/
        # TransactionFrame.cpp): minTime > closeTime; maxTime < closeTime + upper bound offset.
        if min_time and min_time > view.close_time:
            return Code.txTOO_EARLY
        if max_time and max_time < view.close_time + view.upper_bound_offset:
            return Code.txTOO_LATE
    if cond.ledger_bounds is not None:
        next_seq = view.seq + 1
        if cond.ledger_bounds.min_ledger and next_seq < cond.ledger_bounds.min_ledger:
            return Code.txTOO_EARLY
        if cond.ledger_bounds.max_ledger and next_seq >= cond.ledger_bounds.max_ledger:
            return Code.txTOO_LATE
    return None


def admission_error(
    envelope: TransactionEnvelope, tx_hash: bytes, view: LedgerView
) -> Rejection | None:
    """The first rule the transaction breaks, in stellar-core's order, or None."""
    tx = envelope.transaction
    code = (
        credentials_error(envelope, view.protocol)
        or structure_error(envelope, view.tx_limits, view.protocol)
        or time_bounds_error(envelope, view)
    )
    if code is not None:
        return Rejection(code)
    # Inclusion fee (fee minus declared resource fee) must reach the base fee per operation.
    if tx.fee - resource_fee_of(envelope) < BASE_FEE * len(tx.operations):
        return Rejection(Code.txINSUFFICIENT_FEE)
    if not view.source_exists:
        return Rejection(Code.txNO_ACCOUNT)
    # CAP-77: after the source account is found, before its sequence number is checked
    # (commonValidPreSeqNum, accessesFrozenKey).
    if view.frozen_keys and accesses_frozen_key(
        envelope, lambda key: key.to_xdr_bytes() in view.frozen_keys
    ):
        return Rejection(Code.txFROZEN_KEY_ACCESSED)
    if tx.sequence != view.source_seq + 1:
        return Rejection(Code.txBAD_SEQ)
    signatures = envelope.to_xdr_object().v1.signatures  # type: ignore[union-attr]
    # Master keys of weight 1 only. stellar-core's SignatureChecker uses each signature for at
    # most one signer; any signature left unused (an extra key, or the same signature twice)
    # fails checkAllSignaturesUsed: txBAD_AUTH_EXTRA, checked last.
    used: set[int] = set()
    signed: set[str] = set()
    source = tx.source.account_id
    index = first_valid_signature(source, tx_hash, signatures, used)
    if index is None:
        return Rejection(Code.txBAD_AUTH)  # TransactionFrame::commonValid, the tx source
    used.add(index)
    signed.add(source)
    # The full fee must be payable from the balance above the minimum reserve:
    # TransactionQueue::canAdd checks getAvailableBalance - getFullFee.
    if view.source_balance - view.source_min_balance < tx.fee:
        return Rejection(Code.txINSUFFICIENT_BALANCE)
    failed = _operation_error(tx.operations, source, tx_hash, signatures, used, signed)
    if failed is not None:
        return failed
    if len(used) < len(signatures):
        return Rejection(Code.txBAD_AUTH_EXTRA)
    # Before protocol 25 the memo rule was the queue's flooding filter, after checkValid and
    # the fee-source balance (TransactionQueue::canAdd).
    if not view.protocol.soroban_memo_in_check_valid and soroban_memo_error(envelope):
        return Rejection(Code.txSOROBAN_INVALID)
    return None


def _operation_error(
    ops: list[Operation],
    tx_source: str,
    tx_hash: bytes,
    signatures: list[x.DecoratedSignature],
    used: set[int],
    signed: set[str],
) -> Rejection | None:
    """TransactionFrame::checkValid's loop over OperationFrame::checkValid (not for apply):
    each operation's source must have signed (opBAD_AUTH, whether or not that account exists:
    checkSignatureNoAccount), then the operation's own doCheckValid (MALFORMED). The first
    failure stops the loop: txFAILED, the operations not reached keep their zero result."""
    results = [b.unchecked_op_result(op.to_xdr_object().body.type) for op in ops]
    for position, op in enumerate(ops):
        source = op.source.account_id if op.source else tx_source
        if source not in signed:
            index = first_valid_signature(source, tx_hash, signatures, used)
            if index is None:
                results[position] = b.op_code_result(x.OperationResultCode.opBAD_AUTH)
                return Rejection(Code.txFAILED, results)
            used.add(index)
            signed.add(source)
        malformed = _malformed(op, source)
        if malformed is not None:
            results[position] = malformed
            return Rejection(Code.txFAILED, results)
    return None


def _malformed(op: Operation, source: str) -> x.OperationResult | None:
    """PaymentOpFrame / CreateAccountOpFrame / MergeOpFrame::doCheckValid."""
    body = op.to_xdr_object().body
    if body.payment_op is not None and body.payment_op.amount.int64 <= 0:
        return b.payment_result(x.PaymentResultCode.PAYMENT_MALFORMED)
    if isinstance(op, CreateAccount) and body.create_account_op is not None:
        if body.create_account_op.starting_balance.int64 < 0 or op.destination == source:
            return b.create_account_result(x.CreateAccountResultCode.CREATE_ACCOUNT_MALFORMED)
    if isinstance(op, AccountMerge) and op.destination.account_id == source:
        return b.account_merge_result(x.AccountMergeResultCode.ACCOUNT_MERGE_MALFORMED)
    return None
