"""Running one InvokeHostFunction against the ledger: authorization, then the balance move.

A host failure rolls back everything the invocation did (balances, consumed nonces); the caller
has already charged the fee and consumed the sequence number, as stellar-core does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stellar_sdk import xdr as x
from stellar_sdk.address import Address
from stellar_sdk.operation import InvokeHostFunction

from .authority import address_credentials, check_address_entry, invocation_matches
from .contracts import ContractError, TokenMove
from .xdr_build import BASE_RESERVE

if TYPE_CHECKING:
    from .ledger import Ledger


def min_balance(num_sub_entries: int) -> int:
    """stellar-core getMinBalance: (2 + sub-entries) base reserves; with none, 1 XLM."""
    return (2 + num_sub_entries) * BASE_RESERVE


MIN_BALANCE = min_balance(0)  # an account with no sub-entries must keep 1 XLM


@dataclass
class TokenBalance:
    """A SAC balance kept in contract storage (contract holders, issued assets)."""

    amount: int
    last_modified: int


@dataclass
class Execution:
    error: str | None = None
    moves: list[TokenMove] = field(default_factory=list)

    @property
    def move(self) -> TokenMove | None:
        return self.moves[0] if self.moves else None


def contract_call(op: InvokeHostFunction) -> x.InvokeContractArgs:
    fn = op.host_function
    if (
        fn.type != x.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT
        or fn.invoke_contract is None
    ):
        raise ContractError("only contract invocations are supported by the sandbox")
    return fn.invoke_contract


def execute(
    ledger: Ledger, op: InvokeHostFunction, op_source: str, seq: int, *, fail_on_chain: bool
) -> Execution:
    if fail_on_chain:
        return Execution(error="injected fault: fail_on_chain")
    try:
        call = contract_call(op)
        move = ledger.registry.interpret(call)
        nonce = require_auth(ledger, move.from_, call, op.auth, op_source, seq)
        check_move(ledger, move)
    except ContractError as exc:
        return Execution(error=str(exc))
    apply_move(ledger, move, seq)
    if nonce is not None:
        ledger.used_nonces.add((move.from_, nonce))
    return Execution(moves=[move])


def require_auth(
    ledger: Ledger,
    address: str,
    call: x.InvokeContractArgs,
    entries: list[x.SorobanAuthorizationEntry],
    op_source: str,
    seq: int,
) -> int | None:
    """``address.require_auth()`` for this exact call. Returns the nonce an address entry spends.

    Source-account credentials stand for the operation's source (covered by the transaction
    signature); any other address needs an address-credential entry it signed.
    """
    problems: list[str] = []
    for entry in entries:
        if not invocation_matches(entry, call):
            continue
        creds = address_credentials(entry)
        if creds is None:
            if address == op_source:
                return None
            continue
        if Address.from_xdr_sc_address(creds.address).address != address:
            continue
        nonce = creds.nonce.int64
        if (address, nonce) in ledger.used_nonces:
            problems.append("nonce already used")
            continue
        reason = check_address_entry(entry, passphrase=ledger.passphrase, ledger_seq=seq)
        if reason is None:
            return nonce
        problems.append(reason)
    detail = "; ".join(problems) or "no matching authorization entry"
    raise ContractError(f"Error(Auth, InvalidAction): {address} did not authorize: {detail}")


def _spendable(ledger: Ledger, token_id: str, holder: str) -> int | None:
    """What ``holder`` can send; None means unlimited (the issuer mints)."""
    asset = ledger.registry.assets[token_id]
    if not asset.is_native() and holder == asset.issuer:
        return None
    if asset.is_native() and holder.startswith("G"):
        account = ledger.accounts.get(holder)
        return account.balance - min_balance(account.num_sub_entries) if account else 0
    return ledger.token_balance(token_id, holder)


def check_move(ledger: Ledger, move: TokenMove) -> None:
    spendable = _spendable(ledger, move.token_id, move.from_)
    if spendable is not None and spendable < move.amount:
        # SAC: "balance is not sufficient to spend" (Error(Contract, #10)).
        raise ContractError("Error(Contract, #10): balance is not sufficient to spend")
    asset = ledger.registry.assets[move.token_id]
    if asset.is_native() and move.to.startswith("G") and move.to not in ledger.accounts:
        # Native XLM lives in the account entry; the SAC cannot create accounts.
        raise ContractError("Error(Storage, MissingValue): destination account does not exist")
    for holder in (move.from_, move.to):
        if holder.startswith("G") and not asset.is_native() and holder not in ledger.accounts:
            raise ContractError(f"Error(Storage, MissingValue): account {holder} does not exist")


def _credit(ledger: Ledger, token_id: str, holder: str, delta: int, seq: int) -> None:
    asset = ledger.registry.assets[token_id]
    if not asset.is_native() and holder == asset.issuer:
        return  # issuer sends = mint, issuer receives = burn
    if asset.is_native() and holder.startswith("G"):
        account = ledger.accounts[holder]
        account.balance += delta
        account.last_modified = seq
        return
    held = ledger.tokens.setdefault((token_id, holder), TokenBalance(0, seq))
    held.amount += delta
    held.last_modified = seq


def apply_move(ledger: Ledger, move: TokenMove, seq: int) -> None:
    _credit(ledger, move.token_id, move.from_, -move.amount, seq)
    _credit(ledger, move.token_id, move.to, move.amount, seq)
