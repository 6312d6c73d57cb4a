"""Classic native XLM payments (up to 100 per transaction), as stellar-core applies them.

Every operation of the transaction is applied in order against a scratch view; each gets its
own PaymentResult; if any fails the transaction is txFAILED and nothing moves (the fee and the
sequence number are consumed by the caller either way). Since protocol 23 (CAP-67) a native
payment emits the XLM SAC ``transfer`` event. Anything but native payments is refused at
submission (txNOT_SUPPORTED).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stellar_sdk import xdr as x
from stellar_sdk.operation import Payment

from . import xdr_build as b
from .contracts import TokenMove
from .execution import MIN_BALANCE

if TYPE_CHECKING:
    from .ledger import Ledger

Code = x.PaymentResultCode


@dataclass
class ClassicRun:
    results: list[x.OperationResult] = field(default_factory=list)
    moves: list[TokenMove] = field(default_factory=list)  # successful ones, in order
    op_indexes: list[int] = field(default_factory=list)  # the operation of each move

    @property
    def successful(self) -> bool:
        return all(
            r.tr is not None
            and r.tr.payment_result is not None
            and r.tr.payment_result.code == Code.PAYMENT_SUCCESS
            for r in self.results
        )


def apply_payments(
    ledger: Ledger, tx_source: str, payments: list[Payment], seq: int
) -> ClassicRun:
    run = ClassicRun()
    native = ledger.registry.native_id
    balances: dict[str, int] = {}

    def balance(account_id: str) -> int:
        if account_id not in balances:
            balances[account_id] = ledger.accounts[account_id].balance
        return balances[account_id]

    for index, op in enumerate(payments):
        source = op.source.account_id if op.source else tx_source
        destination = op.destination.account_id
        amount = _stroops(str(op.amount))
        code = Code.PAYMENT_SUCCESS
        if destination not in ledger.accounts:
            code = Code.PAYMENT_NO_DESTINATION
        elif source not in ledger.accounts or balance(source) - MIN_BALANCE < amount:
            code = Code.PAYMENT_UNDERFUNDED
        else:
            balances[source] = balance(source) - amount
            balances[destination] = balance(destination) + amount
            run.moves.append(
                TokenMove(native, "payment", native, "native", source, destination, amount)
            )
            run.op_indexes.append(index)
        run.results.append(b.payment_result(code))
    if run.successful:
        for account_id, value in balances.items():
            ledger.accounts[account_id].balance = value
            ledger.accounts[account_id].last_modified = seq
    else:
        run.moves, run.op_indexes = [], []
    return run


def _stroops(amount: str) -> int:
    """stellar-sdk's 7-decimal amount string ("1.5") in stroops, without floats."""
    whole, _, fraction = amount.partition(".")
    return int(whole) * 10_000_000 + int((fraction + "0000000")[:7])
