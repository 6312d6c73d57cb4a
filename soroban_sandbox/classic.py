"""Classic operations as stellar-core applies them: ``Payment`` (XLM, and issued assets through
trustlines), ``CreateAccount`` and ``AccountMerge`` (up to 100 operations per transaction).

stellar-core TransactionFrame::applyOperations applies every operation in order inside one
nested LedgerTxn, each operation seeing what the earlier ones did, records each operation's own
result, and rolls the whole transaction back when any failed (txFAILED with the full results
array; the fee and the sequence number stay consumed). Here the nested LedgerTxn is a scratch
view committed only when every operation succeeded.

- Payment (src/transactions/PaymentOpFrame.cpp): XLM to oneself succeeds at once; otherwise it
  is a PathPaymentStrictReceive with an empty path (PathPaymentStrictReceiveOpFrame.cpp,
  PathPaymentOpFrameBase.cpp): the destination must exist (unless it is the asset's issuer,
  shouldBypassIssuerCheck) → NO_DESTINATION; the destination is credited first (XLM over
  INT64_MAX, or a trustline over its limit → LINE_FULL; no trustline → NO_TRUST; not
  authorised → NOT_AUTHORIZED); then the source is debited (XLM above its minimum balance, else
  UNDERFUNDED; no trustline → SRC_NO_TRUST; not authorised → SRC_NOT_AUTHORIZED; trustline
  balance short → UNDERFUNDED). The issuer mints and burns: it needs no trustline.
- CreateAccount (src/transactions/CreateAccountOpFrame.cpp, protocol 14+): the destination
  exists → ALREADY_EXIST; a starting balance below the new account's minimum balance
  (2 base reserves) → LOW_RESERVE; the source's available balance short → UNDERFUNDED; the new
  account starts at sequence number ledger << 32 (getStartingSequenceNumber).
- AccountMerge (src/transactions/MergeOpFrame.cpp, doApplyFromV16; merging into oneself is
  MALFORMED at submission, doCheckValid): the destination does not exist → NO_ACCOUNT; the
  source holds sub-entries other than signers (here: trustlines) → HAS_SUB_ENTRIES; the
  source's sequence number is at or above the ledger's starting sequence number (ledger << 32,
  isSeqnumTooFar: re-creating the account would make its sequence go backwards) →
  SEQNUM_TOO_FAR; the destination's balance would pass INT64_MAX → DEST_FULL. Then the whole
  balance moves to the destination and the source account is deleted; later operations of the
  transaction with it as source fail opNO_ACCOUNT, payments to it NO_DESTINATION.
  IMMUTABLE_SET (AUTH_IMMUTABLE flag) and IS_SPONSOR (sponsorships) never happen here: the
  sandbox models neither account flags nor sponsorship.
- An operation whose source account does not exist at apply time: opNO_ACCOUNT
  (OperationFrame::checkValid with forApply).

Since protocol 23 (CAP-67) each payment, account creation and merge emits the asset's SAC
event (``asset_events.py``). A Payment's or AccountMerge's destination may be a muxed ``M...``
account: the G account is credited and the event carries the muxed id; CreateAccount's
destination is an AccountID, never muxed (Stellar-transaction.x ``CreateAccountOp``). To a
plain destination the event carries the transaction memo instead, if it has one (CAP-67 rule
2; stellar-core EventManager.cpp ``getPossibleMuxedData``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stellar_sdk import Asset, MuxedAccount
from stellar_sdk import xdr as x
from stellar_sdk.memo import Memo, NoneMemo
from stellar_sdk.operation import AccountMerge, CreateAccount, Operation, Payment

from . import xdr_build as b
from .asset_events import memo_muxed_id
from .contracts import MuxedId, TokenMove, asset_name
from .entry_history import account_key, trustline_key
from .ledger_state import LedgerState
from .records import INT64_MAX, NEW_ACCOUNT_MIN_BALANCE, Account, Trustline, min_balance

Pay = x.PaymentResultCode
Create = x.CreateAccountResultCode
Merge = x.AccountMergeResultCode


@dataclass
class ClassicRun:
    results: list[x.OperationResult] = field(default_factory=list)
    moves: list[TokenMove] = field(default_factory=list)  # successful ones, in order
    op_indexes: list[int] = field(default_factory=list)  # the operation of each move
    successful: bool = True


@dataclass
class _Scratch:
    """The nested LedgerTxn: what the transaction's operations changed so far."""

    ledger: LedgerState
    memo: Memo
    balances: dict[str, int] = field(default_factory=dict)
    lines: dict[tuple[str, str], int] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    merged: set[str] = field(default_factory=set)  # deleted by an AccountMerge

    def exists(self, account_id: str) -> bool:
        if account_id in self.created:
            return True
        return account_id in self.ledger.accounts and account_id not in self.merged

    def sequence(self, account_id: str, seq: int) -> int:
        if account_id in self.created:
            return seq << 32  # created by this transaction: getStartingSequenceNumber
        return self.ledger.accounts[account_id].seq

    def native(self, account_id: str) -> int:
        if account_id not in self.balances:
            self.balances[account_id] = self.ledger.accounts[account_id].balance
        return self.balances[account_id]

    def sub_entries(self, account_id: str) -> int:
        account = self.ledger.accounts.get(account_id)
        if account is None or account_id in self.created:
            return 0
        return account.num_sub_entries

    def available(self, account_id: str) -> int:
        """stellar-core getAvailableBalance: balance minus the minimum balance."""
        return self.native(account_id) - min_balance(self.sub_entries(account_id))

    def line(self, account_id: str, asset: str) -> Trustline | None:
        return self.ledger.trustlines.get((account_id, asset))

    def line_balance(self, account_id: str, asset: str, line: Trustline) -> int:
        return self.lines.get((account_id, asset), line.balance)

    def to_muxed_id(self, destination: MuxedAccount | None) -> MuxedId | None:
        """CAP-67: a muxed destination's id (rule 1), else the transaction memo (rule 2)."""
        if destination is not None and destination.account_muxed_id is not None:
            return MuxedId("u64", destination.account_muxed_id)
        return memo_muxed_id(self.memo)


def apply_classic(
    ledger: LedgerState, tx_source: str, ops: list[Operation], seq: int, *, memo: Memo | None = None
) -> ClassicRun:
    run = ClassicRun()
    scratch = _Scratch(ledger, memo or NoneMemo())
    for index, op in enumerate(ops):
        source = op.source.account_id if op.source else tx_source
        moves: list[TokenMove] = []
        if not scratch.exists(source):
            result = b.op_code_result(x.OperationResultCode.opNO_ACCOUNT)
            ok = False
        elif isinstance(op, CreateAccount):
            code = _create_account(scratch, source, op, seq, moves)
            result, ok = b.create_account_result(code), code == Create.CREATE_ACCOUNT_SUCCESS
        elif isinstance(op, AccountMerge):
            merge_code, moved = _account_merge(scratch, source, op, seq, moves)
            result = b.account_merge_result(merge_code, moved)
            ok = merge_code == Merge.ACCOUNT_MERGE_SUCCESS
        else:
            assert isinstance(op, Payment)
            pay_code = _payment(scratch, source, op, moves)
            result, ok = b.payment_result(pay_code), pay_code == Pay.PAYMENT_SUCCESS
        run.results.append(result)
        run.successful = run.successful and ok
        run.moves.extend(moves)
        run.op_indexes.extend([index] * len(moves))
    if run.successful:
        _commit(scratch, seq)
    else:
        run.moves, run.op_indexes = [], []
    return run


def _payment(scratch: _Scratch, source: str, op: Payment, moves: list[TokenMove]) -> Pay:
    destination = op.destination.account_id
    body = op.to_xdr_object().body.payment_op
    assert body is not None
    amount = body.amount.int64
    asset = op.asset
    muxed = scratch.to_muxed_id(op.destination)
    move = _move(scratch.ledger, asset, "payment", source, destination, amount, muxed)
    if asset.is_native():
        if destination == source:
            moves.append(move)  # PaymentOpFrame: instant success
            return Pay.PAYMENT_SUCCESS
        if not scratch.exists(destination):
            return Pay.PAYMENT_NO_DESTINATION
        if scratch.native(destination) > INT64_MAX - amount:
            return Pay.PAYMENT_LINE_FULL
        if amount > scratch.available(source):
            return Pay.PAYMENT_UNDERFUNDED
        scratch.balances[destination] = scratch.native(destination) + amount
        scratch.balances[source] = scratch.native(source) - amount
        moves.append(move)
        return Pay.PAYMENT_SUCCESS
    name = asset_name(asset)
    issuer = asset.issuer
    if destination != issuer:  # shouldBypassIssuerCheck: paying the issuer back
        if not scratch.exists(destination):
            return Pay.PAYMENT_NO_DESTINATION
        code = _credit_line(scratch, destination, name, amount)
        if code is not None:
            return code
    if source != issuer:
        code = _debit_line(scratch, source, name, amount)
        if code is not None:
            return code
    moves.append(move)
    return Pay.PAYMENT_SUCCESS


def _credit_line(scratch: _Scratch, holder: str, name: str, amount: int) -> Pay | None:
    line = scratch.line(holder, name)
    if line is None:
        return Pay.PAYMENT_NO_TRUST
    if not line.authorized:
        return Pay.PAYMENT_NOT_AUTHORIZED
    held = scratch.line_balance(holder, name, line)
    if held > line.limit - amount:
        return Pay.PAYMENT_LINE_FULL
    scratch.lines[(holder, name)] = held + amount
    return None


def _debit_line(scratch: _Scratch, holder: str, name: str, amount: int) -> Pay | None:
    line = scratch.line(holder, name)
    if line is None:
        return Pay.PAYMENT_SRC_NO_TRUST
    if not line.authorized:
        return Pay.PAYMENT_SRC_NOT_AUTHORIZED
    held = scratch.line_balance(holder, name, line)
    if held < amount:
        return Pay.PAYMENT_UNDERFUNDED
    scratch.lines[(holder, name)] = held - amount
    return None


def _create_account(
    scratch: _Scratch, source: str, op: CreateAccount, seq: int, moves: list[TokenMove]
) -> Create:
    destination = op.destination
    body = op.to_xdr_object().body.create_account_op
    assert body is not None
    starting = body.starting_balance.int64
    if scratch.exists(destination):
        return Create.CREATE_ACCOUNT_ALREADY_EXIST
    if starting < NEW_ACCOUNT_MIN_BALANCE:
        return Create.CREATE_ACCOUNT_LOW_RESERVE
    if scratch.available(source) < starting:
        return Create.CREATE_ACCOUNT_UNDERFUNDED
    scratch.balances[source] = scratch.native(source) - starting
    scratch.merged.discard(destination)  # merged earlier in this transaction, now re-created
    scratch.created.add(destination)
    scratch.balances[destination] = starting
    muxed = scratch.to_muxed_id(None)  # CreateAccountOp.destination is never muxed
    moves.append(
        _move(
            scratch.ledger, Asset.native(), "create_account", source, destination, starting, muxed
        )
    )
    return Create.CREATE_ACCOUNT_SUCCESS


def _account_merge(
    scratch: _Scratch, source: str, op: AccountMerge, seq: int, moves: list[TokenMove]
) -> tuple[Merge, int]:
    """MergeOpFrame::doApplyFromV16, in its order of checks. Returns the code and, on
    success, the balance moved (the result's sourceAccountBalance)."""
    destination = op.destination.account_id
    if not scratch.exists(destination):
        return Merge.ACCOUNT_MERGE_NO_ACCOUNT, 0
    if scratch.sub_entries(source) != 0:  # numSubEntries != signers.size(); no signers here
        return Merge.ACCOUNT_MERGE_HAS_SUB_ENTRIES, 0
    if scratch.sequence(source, seq) >= seq << 32:
        return Merge.ACCOUNT_MERGE_SEQNUM_TOO_FAR, 0
    balance = scratch.native(source)
    if scratch.native(destination) > INT64_MAX - balance:
        return Merge.ACCOUNT_MERGE_DEST_FULL, 0
    scratch.balances[destination] = scratch.native(destination) + balance
    del scratch.balances[source]
    scratch.created.discard(source)
    scratch.merged.add(source)
    muxed = scratch.to_muxed_id(op.destination)
    moves.append(
        _move(scratch.ledger, Asset.native(), "account_merge", source, destination, balance, muxed)
    )
    return Merge.ACCOUNT_MERGE_SUCCESS, balance


def _move(
    ledger: LedgerState,
    asset: Asset,
    function: str,
    source: str,
    destination: str,
    amount: int,
    to_muxed_id: MuxedId | None,
) -> TokenMove:
    token_id = (
        ledger.registry.native_id if asset.is_native() else asset.contract_id(ledger.passphrase)
    )
    name = asset_name(asset)
    return TokenMove(token_id, function, token_id, name, source, destination, amount, to_muxed_id)


def _commit(scratch: _Scratch, seq: int) -> None:
    ledger = scratch.ledger
    ledger.before_write(
        *(account_key(a) for a in scratch.merged | scratch.created | set(scratch.balances)),
        *(trustline_key(holder, asset) for holder, asset in scratch.lines),
    )
    for account_id in scratch.merged:
        del ledger.accounts[account_id]
    for account_id in scratch.created:
        # getStartingSequenceNumber: the ledger being closed, shifted 32 bits.
        ledger.accounts[account_id] = Account(account_id, 0, seq << 32, seq)
    for account_id, value in scratch.balances.items():
        ledger.accounts[account_id].balance = value
        ledger.accounts[account_id].last_modified = seq
    for key, value in scratch.lines.items():
        ledger.trustlines[key].balance = value
        ledger.trustlines[key].last_modified = seq
