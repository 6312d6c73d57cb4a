"""The `approvals` rule: four-eyes approvals checked on the decoded transaction. Pure.

The payout service may be compromised, so the signer trusts nothing it says about a payment:
it rebuilds each operation's approval statement (payout_approvals.statement) from the decoded
operation (source of funds, destination, muxed id, the transaction's memo, asset, amount) and
takes only the payout id and the expiry from the approval itself. An operation above its
asset's threshold is signed only with N distinct listed approvers' valid, unexpired
signatures over that statement. Run after the rest of the policy allowed the transaction, so
every operation here is one the policy already decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

from stellar_sdk import xdr as sx

from payout_approvals.statement import (
    Approval,
    Payment,
    approvers_who_approved,
    is_valid,
    memo_text,
)
from signer_service.policy import (
    NATIVE,
    ApprovalRule,
    KeyPolicy,
    Refuse,
    account_id,
    account_key,
    address_text,
    asset_name,
    i128_value,
)

RULE = "approvals"


def tx_memo(tx: sx.Transaction) -> str:
    memo = tx.memo
    if memo.type == sx.MemoType.MEMO_TEXT and memo.text is not None:
        return memo_text("text", memo.text)
    if memo.type == sx.MemoType.MEMO_ID and memo.id is not None:
        return memo_text("id", memo.id.uint64)
    if memo.type == sx.MemoType.MEMO_HASH and memo.hash is not None:
        return memo_text("hash", memo.hash.hash)
    if memo.type == sx.MemoType.MEMO_RETURN and memo.ret_hash is not None:
        return memo_text("return", memo.ret_hash.hash)
    return memo_text("none")


def _classic_payment(tx: sx.Transaction, op: sx.Operation, passphrase: str) -> Payment | None:
    treasury, _ = account_id(op.source_account or tx.source_account)
    body = op.body
    if body.type == sx.OperationType.PAYMENT and body.payment_op is not None:
        pay = body.payment_op
        destination, muxed = account_id(pay.destination)
        muxed_id = None
        if muxed and pay.destination.med25519 is not None:
            muxed_id = pay.destination.med25519.id.uint64
        return Payment(passphrase, treasury, destination, muxed_id, tx_memo(tx),
                       asset_name(pay.asset), pay.amount.int64)
    if body.type == sx.OperationType.CREATE_ACCOUNT and body.create_account_op is not None:
        create = body.create_account_op
        return Payment(passphrase, treasury, account_key(create.destination), None, tx_memo(tx),
                       NATIVE, create.starting_balance.int64)
    return None


def _address(value: sx.SCVal) -> tuple[str, int | None] | None:
    address = value.address
    if value.type != sx.SCValType.SCV_ADDRESS or address is None:
        return None
    if address.type == sx.SCAddressType.SC_ADDRESS_TYPE_MUXED_ACCOUNT and \
            address.muxed_account is not None:
        muxed = address.muxed_account
        return account_key(sx.AccountID(sx.PublicKey(
            sx.PublicKeyType.PUBLIC_KEY_TYPE_ED25519, muxed.ed25519))), muxed.id.uint64
    return address_text(address), None


def _transfer_payment(tx: sx.Transaction, passphrase: str) -> tuple[Payment | None, int]:
    """The one contract call as a payment when it has the SEP-41 transfer shape
    (from: address, to: address, amount: i128); else (None, the largest i128 argument)."""
    fn = tx.operations[0].body.invoke_host_function_op
    call = fn.host_function.invoke_contract if fn is not None else None
    if call is None:
        return None, 0
    args = call.args
    amounts = [i128_value(a.i128) for a in args
               if a.type == sx.SCValType.SCV_I128 and a.i128 is not None]
    if call.function_name.sc_symbol != b"transfer" or len(args) != 3:
        return None, max(amounts, default=0)
    source, destination = _address(args[0]), _address(args[1])
    if source is None or destination is None or args[2].i128 is None or \
            args[2].type != sx.SCValType.SCV_I128:
        return None, max(amounts, default=0)
    amount = i128_value(args[2].i128)
    return Payment(passphrase, source[0], destination[0], destination[1], tx_memo(tx),
                   address_text(call.contract_address), amount), amount


def approvals_refusal(
    tx: sx.Transaction, policy: KeyPolicy, passphrase: str,
    approvals: Sequence[tuple[int, Approval]], now: int,
) -> Refuse | None:
    """The `approvals` refusal of the first operation above its threshold without N valid
    approvals by distinct listed approvers, or None. `approvals` are (operation index,
    approval) as the request carries them."""
    rule: ApprovalRule | None = policy.approvals
    if rule is None:
        return None
    by_op: dict[int, list[Approval]] = {}
    for index, approval in approvals:
        by_op.setdefault(index, []).append(approval)
    ops = tx.operations
    if len(ops) == 1 and ops[0].body.type == sx.OperationType.INVOKE_HOST_FUNCTION:
        payment, amount = _transfer_payment(tx, passphrase)
        if payment is None:
            # A call the rule cannot bind to one destination and asset; its amounts may be
            # nested where no decoder here looks (a batch call's vector), so none is signed.
            return Refuse(RULE, "op[0] is a contract call that is not a transfer (from, to, "
                                f"amount){f' moving {amount}' if amount else ''}: no approval "
                                "can cover it")
        payments = [(0, payment)]
    else:
        payments = [(i, p) for i, op in enumerate(ops)
                    if (p := _classic_payment(tx, op, passphrase)) is not None]
    used_by: dict[str, int] = {}  # payout id -> the operation whose approvals name it
    for index, payment in payments:
        if not rule.needs_approval(payment.asset, payment.amount_stroops):
            continue
        valid = [a for a in by_op.get(index, ())
                 if a.approver in rule.approvers and is_valid(payment, a, now)]
        approved = approvers_who_approved(payment, valid, rule.approvers, now)
        if len(approved) < rule.required:
            return Refuse(RULE, f"op[{index}] pays {payment.amount_stroops} "
                                f"{payment.asset[:16]} to {payment.destination}: "
                                f"{len(approved)} of {rule.required} approvals valid")
        # An approval is for one payout: the same approval (or another one naming the same
        # payout) at two operations would pay that payout twice in one transaction.
        for payout_id in {a.payout_id for a in valid}:
            if used_by.setdefault(payout_id, index) != index:
                return Refuse(RULE, f"op[{used_by[payout_id]}] and op[{index}] are both "
                                    f"approved as payout {payout_id[:64]!r}")
    return None
