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

from . import xdr_build as b
from .authority import address_credentials, check_address_entry, invocation_matches
from .contracts import ContractError, Invocation, TokenMove
from .entry_history import account_key, token_key
from .resources import entry_size, instructions_needed
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
    # The host used more than the transaction declared: RESOURCE_LIMIT_EXCEEDED, not TRAPPED.
    resource_limit_exceeded: bool = False

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
    ledger: Ledger,
    op: InvokeHostFunction,
    op_source: str,
    seq: int,
    resources: x.SorobanResources,
    *,
    fail_on_chain: bool,
) -> Execution:
    if fail_on_chain:
        return Execution(error="injected fault: fail_on_chain")
    try:
        call = contract_call(op)
        invocation = ledger.registry.interpret(call)
        nonce = require_auth(ledger, invocation.from_, call, op.auth, op_source, seq)
        check_invocation(ledger, invocation)
        written = written_entries(ledger, invocation)
        exceeded = _beyond_declared(resources, invocation, written)
        if exceeded is not None:
            return Execution(error=exceeded, resource_limit_exceeded=True)
        _within_footprint(resources.footprint, written, nonce, invocation.from_)
    except ContractError as exc:
        return Execution(error=str(exc))
    for move in invocation.moves:
        apply_move(ledger, move, seq)
    if nonce is not None:
        ledger.used_nonces.add((invocation.from_, nonce))
    return Execution(moves=list(invocation.moves))


@dataclass(frozen=True)
class WrittenEntry:
    holder: str
    key: x.LedgerKey
    after: x.LedgerEntryData


def _holders(ledger: Ledger, invocation: Invocation) -> list[str]:
    """Whose balance entries the invocation writes: ``from`` and each destination, once; the
    issuer of an issued asset mints and burns, so it has none."""
    asset = ledger.registry.assets[invocation.token_id]
    holders = dict.fromkeys([invocation.from_, *(m.to for m in invocation.moves)])
    return [h for h in holders if asset.is_native() or h != asset.issuer]


def written_entries(ledger: Ledger, invocation: Invocation) -> list[WrittenEntry]:
    """Native XLM of G accounts lives in account entries; everything else in SAC storage."""
    asset = ledger.registry.assets[invocation.token_id]
    deltas: dict[str, int] = {}
    for move in invocation.moves:
        deltas[move.from_] = deltas.get(move.from_, 0) - move.amount
        deltas[move.to] = deltas.get(move.to, 0) + move.amount
    written = []
    for holder in _holders(ledger, invocation):
        delta = deltas.get(holder, 0)
        if asset.is_native() and holder.startswith("G"):
            account = ledger.accounts[holder]  # check_invocation refused missing accounts
            key = b.account_key(holder)
            after = b.account_entry_data(
                holder, account.balance + delta, account.seq, account.num_sub_entries
            )
        else:
            key = b.balance_key(invocation.token_id, holder)
            held = ledger.token_balance(invocation.token_id, holder)
            after = b.balance_entry_data(invocation.token_id, holder, held + delta)
        written.append(WrittenEntry(holder, key, after))
    return written


def _beyond_declared(
    resources: x.SorobanResources, invocation: Invocation, written: list[WrittenEntry]
) -> str | None:
    """The host stops when it needs more than declared (InvokeHostFunctionOpFrame:
    INVOKE_HOST_FUNCTION_RESOURCE_LIMIT_EXCEEDED)."""
    needed = instructions_needed(len(invocation.moves))
    if needed > resources.instructions.uint32:
        return f"Error(Budget, ExceededLimit): {needed} instructions needed, declared less"
    write_bytes = sum(entry_size(w.after) for w in written)
    if write_bytes > resources.write_bytes.uint32:
        return f"write bytes {write_bytes} exceed the declared {resources.write_bytes.uint32}"
    return None


def _within_footprint(
    footprint: x.LedgerFootprint, written: list[WrittenEntry], nonce: int | None, from_: str
) -> None:
    """Writing a key the footprint does not declare read-write traps in the host."""
    declared = {k.to_xdr_bytes() for k in footprint.read_write}
    keys = [w.key for w in written]
    if nonce is not None:
        keys.append(b.nonce_key(from_, nonce))
    for key in keys:
        if key.to_xdr_bytes() not in declared:
            raise ContractError(
                "Error(Storage, ExceededLimit): trying to access a ledger entry outside of the "
                "read-write footprint"
            )


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


def check_invocation(ledger: Ledger, invocation: Invocation) -> None:
    """The whole call or nothing: ``from`` must cover the sum of its moves (a batch traps when
    it is underfunded for the sum), and every destination must be able to receive."""
    spendable = _spendable(ledger, invocation.token_id, invocation.from_)
    if spendable is not None and spendable < invocation.total:
        # SAC: "balance is not sufficient to spend" (Error(Contract, #10)).
        raise ContractError("Error(Contract, #10): balance is not sufficient to spend")
    asset = ledger.registry.assets[invocation.token_id]
    for move in invocation.moves:
        if asset.is_native() and move.to.startswith("G") and move.to not in ledger.accounts:
            # Native XLM lives in the account entry; the SAC cannot create accounts.
            raise ContractError(
                f"Error(Storage, MissingValue): destination account {move.to} does not exist"
            )
        for holder in (move.from_, move.to):
            if holder.startswith("G") and not asset.is_native() and holder not in ledger.accounts:
                raise ContractError(
                    f"Error(Storage, MissingValue): account {holder} does not exist"
                )


def _credit(ledger: Ledger, token_id: str, holder: str, delta: int, seq: int) -> None:
    asset = ledger.registry.assets[token_id]
    if not asset.is_native() and holder == asset.issuer:
        return  # issuer sends = mint, issuer receives = burn
    if asset.is_native() and holder.startswith("G"):
        ledger.before_write(account_key(holder))
        account = ledger.accounts[holder]
        account.balance += delta
        account.last_modified = seq
        return
    ledger.before_write(token_key(token_id, holder))
    held = ledger.tokens.setdefault((token_id, holder), TokenBalance(0, seq))
    held.amount += delta
    held.last_modified = seq


def apply_move(ledger: Ledger, move: TokenMove, seq: int) -> None:
    _credit(ledger, move.token_id, move.from_, -move.amount, seq)
    _credit(ledger, move.token_id, move.to, move.amount, seq)
