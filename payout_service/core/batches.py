"""Many payouts in one transaction (docs/design.md, "Batching"). Pure: no I/O.

Plans a classic batch (one `Payment` or `CreateAccount` operation per payout), builds its
transaction, and judges a failed batch from its per-operation results: which payouts caused
the failure (they fail with their reason) and which are innocent (they are re-batched).
A Stellar transaction is atomic (stellar-core TransactionFrame::applyOperations: every
operation is applied and gets its own result; if any fails, the transaction is txFAILED and
nothing moves), so one guilty payout must never take the others down with it twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from stellar_sdk import Account, Asset, StrKey, TransactionBuilder, scval
from stellar_sdk.operation import CreateAccount, Payment
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service.core.transactions import BASE_INCLUSION_FEE, TxParams
from payout_service.core.validation import Memo, MemoKind, is_muxed_account_id, paid_account

# stellar-core: at most 100 operations per transaction (MAX_OPS_PER_TX).
MAX_OPERATIONS_PER_TX = 100
# A new account needs a starting balance of at least 2 base reserves (CreateAccountOpFrame:
# CREATE_ACCOUNT_LOW_RESERVE below it); the base reserve is 0.5 XLM on testnet and mainnet.
BASE_RESERVE_STROOPS = 5_000_000
MIN_STARTING_BALANCE_STROOPS = 2 * BASE_RESERVE_STROOPS
STROOPS_PER_UNIT = 10_000_000


class BatchMode(StrEnum):
    OFF = "off"  # one payout per transaction (the Soroban transfer / payout-contract call)
    CLASSIC = "classic"  # Payment / CreateAccount operations, up to 100 per transaction
    CONTRACT = "contract"  # the payout contract's batch method, once per transaction


@dataclass(frozen=True)
class BatchItem:
    payout_uuid: UUID
    destination: str
    asset: str  # "XLM" or "CODE:ISSUER"
    amount_stroops: int
    memo: Memo | None = None

    @property
    def account(self) -> str:
        """The G... account credited (an M... destination's own account)."""
        return paid_account(self.destination)


class OpKind(StrEnum):
    PAYMENT = "payment"
    CREATE_ACCOUNT = "create_account"


@dataclass(frozen=True)
class PlannedOp:
    item: BatchItem
    kind: OpKind


@dataclass(frozen=True)
class Refusal:
    """A payout that cannot be paid by a classic batch: it fails before any batch is built."""

    item: BatchItem
    code: str
    message: str


@dataclass(frozen=True)
class ClassicPlan:
    operations: list[PlannedOp] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    # Left for a later batch: a second payout to an account this batch creates would be
    # blamed (PAYMENT_NO_DESTINATION) if the CreateAccount before it failed.
    deferred: list[BatchItem] = field(default_factory=list)
    # Left for a later pass: their destination is missing on the ledger and a CreateAccount
    # for it is already in flight (another batch, pass or replica). A second one would fail
    # CREATE_ACCOUNT_ALREADY_EXIST and its whole batch with it; once the account exists they
    # are paid by a Payment.
    waiting: list[BatchItem] = field(default_factory=list)


def is_classic_destination(destination: str) -> bool:
    """Classic operations pay G… accounts and M… muxed addresses (a Payment's destination is a
    MuxedAccount); C… (contract) destinations need a Soroban call."""
    return (StrKey.is_valid_ed25519_public_key(destination)
            or is_muxed_account_id(destination))


def payee_route_problem(batch_mode: BatchMode, *, destination: str, has_memo: bool,
                        payout_contract: bool) -> tuple[str, str] | None:
    """(field, rule) when this service, as configured, cannot pay the payee as asked; None
    when it can. Decided when the payout is created, so it is refused before it is stored.

    - A memo rides only on a classic transaction: the network refuses a Soroban transaction
      with a memo (txSOROBAN_INVALID, stellar-core validateSorobanMemo from protocol 25;
      stellar-rpc 25.1.0 refuses it in simulation). So a memo needs PAYOUTS_BATCH_MODE=classic
      and a destination a classic Payment can pay (G... or M...). It is refused rather than
      paid on a different path than the one configured: the operator chose the path.
    - A muxed destination is a MuxedAddress, which only the SAC `transfer` (CAP-67, protocol
      23) and classic operations accept; the payout contract's `Address` parameters trap on it
      (CAP-67 "MuxedAddressObject host object")."""
    if has_memo and (batch_mode is not BatchMode.CLASSIC
                     or not is_classic_destination(destination)):
        return ("memo", "a memo is paid only by a classic transaction: it needs "
                "PAYOUTS_BATCH_MODE=classic and a G... or M... destination (a Soroban "
                "transaction cannot carry a memo)")
    if is_muxed_account_id(destination) and (batch_mode is BatchMode.CONTRACT
                                             or (batch_mode is BatchMode.OFF
                                                 and payout_contract)):
        return ("destination", "a muxed (M...) destination is paid by the SAC transfer or a "
                "classic Payment; the payout contract takes no muxed address")
    return None


def plan_classic_batch(
    items: Iterable[BatchItem], existing: set[str], max_payouts: int, *, spare: int = 0,
    being_created: AbstractSet[str] = frozenset(),
) -> ClassicPlan:
    """One operation per payout, in the given order, at most `max_payouts` of them, plus
    `spare` more candidates (the batch takes the first `max_payouts` it can lock: with
    several workers planning the same head, each still fills its transaction).

    `existing` holds the destinations found on the ledger (one getLedgerEntries call per
    batch). A missing destination gets CreateAccount when it is paid in XLM and the amount
    covers the reserve; otherwise the payout is refused with the reason, before batching.
    A missing destination in `being_created` (a live attempt's CreateAccount creates it)
    gets nothing yet: the payout waits. So a destination is created by one operation at a
    time, whatever the passes, batches and replicas. `existing` and `being_created` hold
    G... accounts: an M... destination is looked up by the account inside it.

    A memo belongs to the whole transaction (Stellar-transaction.x: `Memo memo` is a field of
    Transaction, not of an operation), so a payout with a memo is the only payout of its
    batch: it is planned when it comes first, and ends the plan; met later, it waits for the
    next batch. Alone, because exchanges credit a deposit by the transaction's memo and
    the payment in it: a second payment under the same memo would be a second deposit the
    exchange may not credit, and under another payout's memo it would credit the wrong
    customer."""
    if not 1 <= max_payouts <= MAX_OPERATIONS_PER_TX:
        raise ValueError(f"a classic batch holds 1..{MAX_OPERATIONS_PER_TX} payouts")
    plan = ClassicPlan()
    created: set[str] = set()
    for item in items:
        alone = bool(plan.operations) and plan.operations[0].item.memo is not None
        if (len(plan.operations) == max_payouts + spare or alone
                or (item.memo is not None and plan.operations)):
            plan.deferred.append(item)
            continue
        account = item.account if is_classic_destination(item.destination) else ""
        if not account:
            plan.refused.append(Refusal(item, "CLASSIC_NEEDS_ACCOUNT",
                                        f"{item.destination} is not a G… account"))
        elif account in existing:
            plan.operations.append(PlannedOp(item, OpKind.PAYMENT))
        elif account in being_created:
            plan.waiting.append(item)
        elif account in created:
            plan.deferred.append(item)
        elif account != item.destination:
            # CreateAccount's destination is an AccountID, never muxed (CAP-67 "Create
            # Account"): creating the account would credit it without the muxed id.
            plan.refused.append(Refusal(
                item, "DESTINATION_MISSING",
                f"{account} (the account of the muxed destination) does not exist; a muxed "
                "destination must be an existing account"))
        elif item.asset != "XLM":
            plan.refused.append(Refusal(
                item, "DESTINATION_MISSING",
                f"{item.destination} does not exist; an account paid in {item.asset} must "
                "exist and trust the asset"))
        elif item.amount_stroops < MIN_STARTING_BALANCE_STROOPS:
            plan.refused.append(Refusal(
                item, "DESTINATION_BELOW_RESERVE",
                f"{item.destination} does not exist and {item.amount_stroops} stroops do not "
                f"cover the {MIN_STARTING_BALANCE_STROOPS} stroops a new account needs"))
        else:
            created.add(account)
            plan.operations.append(PlannedOp(item, OpKind.CREATE_ACCOUNT))
    return plan


def stroops_to_amount(stroops: int) -> str:
    """Integer stroops -> the SDK's decimal string, without floating point."""
    if stroops <= 0:
        raise ValueError("amounts are positive")
    return f"{stroops // STROOPS_PER_UNIT}.{stroops % STROOPS_PER_UNIT:07d}"


def _asset(asset: str) -> Asset:
    if asset == "XLM":
        return Asset.native()
    code, _, issuer = asset.partition(":")
    return Asset(code, issuer)


def build_classic_batch(
    params: TxParams, operations: Sequence[PlannedOp], *, operation_source: str | None,
    inclusion_fee: int = BASE_INCLUSION_FEE,
) -> TransactionEnvelope:
    """The batch transaction, unsigned: operation i pays operations[i]. With a channel as the
    transaction's source, each operation's source is the paying account (BATCH_INTERFACE.md).
    The fee is the inclusion bid per operation (stellar-core charges per operation)."""
    if params.max_time <= 0:
        raise ValueError("every payout transaction needs a max_time (invariant 2)")
    if not 1 <= len(operations) <= MAX_OPERATIONS_PER_TX:
        raise ValueError(f"a classic batch holds 1..{MAX_OPERATIONS_PER_TX} operations")
    builder = TransactionBuilder(
        Account(params.source_account, params.sequence - 1),
        network_passphrase=params.network_passphrase, base_fee=inclusion_fee,
    )
    builder.add_time_bounds(params.min_time, params.max_time)
    memos = {op.item.memo for op in operations}
    if len(memos) > 1:
        raise ValueError("a transaction carries one memo: its payouts must share it")
    if (memo := memos.pop()) is not None:
        _add_memo(builder, memo)
    for op in operations:
        amount = stroops_to_amount(op.item.amount_stroops)
        if op.kind == OpKind.CREATE_ACCOUNT:
            builder.append_operation(CreateAccount(op.item.destination, amount,
                                                   source=operation_source))
        else:
            builder.append_operation(Payment(op.item.destination, _asset(op.item.asset), amount,
                                             source=operation_source))
    return builder.build()


def _add_memo(builder: TransactionBuilder, memo: Memo) -> None:
    if memo.kind is MemoKind.TEXT:
        builder.add_text_memo(memo.value)
    elif memo.kind is MemoKind.ID:
        builder.add_id_memo(int(memo.value))
    elif memo.kind is MemoKind.HASH:
        builder.add_hash_memo(bytes.fromhex(memo.value))
    else:
        builder.add_return_hash_memo(bytes.fromhex(memo.value))


# Per-operation results that blame the payout itself: its destination cannot receive it.
DESTINATION_FAULTS = frozenset({
    "PAYMENT_NO_DESTINATION", "PAYMENT_NO_TRUST", "PAYMENT_LINE_FULL",
    "PAYMENT_NOT_AUTHORIZED", "PAYMENT_NO_ISSUER", "CREATE_ACCOUNT_LOW_RESERVE",
})
# The payer could not cover this operation when it was applied (operations apply in order, so
# the ones that still fit succeed). Not the destination's fault, but a retry cannot succeed
# until an operator tops the payer up: the payout fails with the reason, like the single
# path's insufficient balance (core/retry.py), and RetryPayout brings it back. Retrying it
# automatically would only re-fail every batch it joins and hold the innocent ones.
PAYER_FAULTS = frozenset({
    "PAYMENT_UNDERFUNDED", "PAYMENT_SRC_NO_TRUST", "PAYMENT_SRC_NOT_AUTHORIZED",
    "CREATE_ACCOUNT_UNDERFUNDED",
})
# A failed operation with one of these codes fails its payout at once; any other failed
# operation (CREATE_ACCOUNT_ALREADY_EXIST, opNO_ACCOUNT, a code this list does not know) is a
# counted retry of its payout.
PERMANENT_OPERATION_FAULTS = DESTINATION_FAULTS | PAYER_FAULTS
SUCCESS_CODES = frozenset({"PAYMENT_SUCCESS", "CREATE_ACCOUNT_SUCCESS"})
# The result code stored on an innocent member's attempt: it does not count toward
# PAYOUTS_MAX_ATTEMPTS.
REBATCHED = "REBATCHED"


@dataclass(frozen=True)
class MemberVerdict:
    """What one payout of a failed batch gets: FAILED with `code`, or a new attempt."""

    fail: bool
    code: str
    counts_as_attempt: bool  # innocent payouts re-batched do not spend their attempts


@dataclass(frozen=True)
class FailedBatch:
    """The judgement of a batch included as failed: one verdict per member."""

    verdicts: tuple[MemberVerdict, ...]
    # No operation failed: the transaction failed as a whole (txINSUFFICIENT_BALANCE of its
    # source, txBAD_AUTH, txNO_ACCOUNT, ...). The source's fault, not a payout's.
    source_fault: bool


def judge_failed_batch(op_codes: Sequence[str], op_indexes: Sequence[int], tx_code: str
                       ) -> FailedBatch:
    """The verdicts for the members of a batch included as failed (the member at op_indexes[k]
    gets verdicts[k]), from the transaction's per-operation results.

    stellar-core applies every operation of a transaction and gives each its own result
    (TransactionFrame::applyOperations); the transaction is txFAILED, and nothing moves, when
    any of them failed. Results exist only for txFAILED (and txSUCCESS): any other code
    failed the transaction before its operations ran (Stellar-transaction.x, the union of
    TransactionResult: `OperationResult results<>` for txSUCCESS and txFAILED, void for every
    other code). So, by construction:

    - an operation that failed is guilty of its own failure: its payout fails at once for a
      permanent code (PERMANENT_OPERATION_FAULTS), else spends a counted attempt. That holds
      for CREATE_ACCOUNT_ALREADY_EXIST too (the account appeared after planning: someone else
      created it, or a node behind the ledger said it was missing): the next attempt is
      planned from the ledger, so it becomes a Payment, and counting it keeps the loop
      bounded by PAYOUTS_MAX_ATTEMPTS however long a lagging node keeps saying "missing".
    - an operation that succeeded is innocent: re-batched, no attempt spent. A member with no
      result of its own (a contract batch: one operation pays every member) is not proven
      innocent: counted.
    - no operation failed (no results, or none that names a failure): the source's fault;
      every member gets a counted retry.

    So every failed batch fails or counts at least one payout, or is a source fault; and no
    payout whose own operation succeeded ever spends an attempt (tests/unit/test_batches.py
    checks both over random result vectors)."""
    if all(code in SUCCESS_CODES for code in op_codes):
        retry = MemberVerdict(fail=False, code=tx_code, counts_as_attempt=True)
        return FailedBatch(verdicts=(retry,) * len(op_indexes), source_fault=True)
    return FailedBatch(verdicts=tuple(
        _member_verdict(op_codes[i] if 0 <= i < len(op_codes) else tx_code)
        for i in op_indexes), source_fault=False)


def _member_verdict(code: str) -> MemberVerdict:
    if code in SUCCESS_CODES:
        return MemberVerdict(fail=False, code=REBATCHED, counts_as_attempt=False)
    return MemberVerdict(fail=code in PERMANENT_OPERATION_FAULTS, code=code,
                         counts_as_attempt=True)


# Contract batch (BATCH_INTERFACE.md): `distribute_batch(from, Vec<(Address, i128)>)` writes the
# payer's balance entry and one entry per destination, so a transaction pays at most
# (txMaxWriteLedgerEntries - 1) payouts. Published per-transaction limit, stellar-docs
# "Resource Limits & Fees" (https://developers.stellar.org/docs/networks/resource-limits-fees):
# 50 written ledger entries, 100 footprint entries, 100 disk-read entries per transaction.
PUBLISHED_TX_WRITE_ENTRIES = 50
PUBLISHED_TX_FOOTPRINT_ENTRIES = 100
PUBLISHED_TX_DISK_READ_ENTRIES = 100


def contract_batch_capacity(
    write_entries: int = PUBLISHED_TX_WRITE_ENTRIES,
    footprint_entries: int = PUBLISHED_TX_FOOTPRINT_ENTRIES,
    disk_read_entries: int = PUBLISHED_TX_DISK_READ_ENTRIES,
) -> int:
    """Payouts per contract batch: the payer's entry plus one per destination must fit the
    written entries; the footprint also holds the contract instance and code; every G…
    destination's account is a disk read, as is the payer's."""
    return max(1, min(write_entries - 1, footprint_entries - 3, disk_read_entries - 1))


def build_contract_batch(
    params: TxParams, *, contract_id: str, method_name: str, payer: str,
    items: Sequence[BatchItem], operation_source: str | None,
    inclusion_fee: int = BASE_INCLUSION_FEE,
) -> TransactionEnvelope:
    """`method_name(from, payouts: Vec<(Address, i128)>)`, unsigned and unprepared: a Soroban
    tuple is an ScVal vector, so each item is SCV_VEC[SCV_ADDRESS, SCV_I128]. Item i pays
    items[i] (its op_index)."""
    if params.max_time <= 0:
        raise ValueError("every payout transaction needs a max_time (invariant 2)")
    if not items:
        raise ValueError("a contract batch pays at least one payout")
    builder = TransactionBuilder(
        Account(params.source_account, params.sequence - 1),
        network_passphrase=params.network_passphrase, base_fee=inclusion_fee,
    )
    builder.add_time_bounds(params.min_time, params.max_time)
    payouts = scval.to_vec([
        scval.to_vec([scval.to_address(i.destination), scval.to_int128(i.amount_stroops)])
        for i in items
    ])
    builder.append_invoke_contract_function_op(
        contract_id=contract_id, function_name=method_name,
        parameters=[scval.to_address(payer), payouts], source=operation_source,
    )
    return builder.build()
