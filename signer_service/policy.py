"""Per-key signing policy: pure decisions on decoded Stellar objects. No I/O, no clock.

Every refusal names the rule (the policy setting) that refused it, so operators can match a
`PERMISSION_DENIED` to one line of the signer's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import Address, Transaction
from stellar_sdk import xdr as sx
from stellar_sdk.operation import InvokeHostFunction

WILDCARD = "*"


@dataclass(frozen=True)
class KeyPolicy:
    network_passphrase: str
    source_accounts: frozenset[str]
    contract_ids: frozenset[str]
    function_names: frozenset[str]
    max_fee_stroops: int
    max_amount_stroops_per_tx: int
    max_amount_stroops_per_day: int
    max_time_window_seconds: int


@dataclass(frozen=True)
class Allow:
    # Amount this signature moves; it counts against the rolling daily limit.
    amount_stroops: int


@dataclass(frozen=True)
class Refuse:
    rule: str
    detail: str

    @property
    def message(self) -> str:
        return f"policy rule {self.rule} refused: {self.detail}"


Decision = Allow | Refuse


def _allowed(allowed: frozenset[str], value: str) -> bool:
    return WILDCARD in allowed or value in allowed


def check_transaction(
    tx: Transaction,
    policy: KeyPolicy,
    *,
    network_passphrase: str,
    spent_last_24h: int,
    now: int,
) -> Decision:
    """Decide on a transaction whose hash was computed for `network_passphrase`."""
    if network_passphrase != policy.network_passphrase:
        return Refuse("network_passphrase", "the signer's network is not this key's network")
    source = tx.source.account_id
    if tx.source.account_muxed_id is not None:
        # Soroban transactions may not have a muxed source (txSOROBAN_INVALID).
        return Refuse("source_accounts", "muxed transaction source is not allowed")
    if not _allowed(policy.source_accounts, source):
        return Refuse("source_accounts", f"transaction source {source} is not allowed")
    if len(tx.operations) != 1:
        return Refuse("operations", f"{len(tx.operations)} operations, exactly 1 allowed")
    op = tx.operations[0]
    if not isinstance(op, InvokeHostFunction):
        return Refuse("operations", f"operation {type(op).__name__} is not InvokeHostFunction")
    if op.source is not None and not _allowed(policy.source_accounts, op.source.account_id):
        return Refuse("source_accounts", f"operation source {op.source.account_id} is not allowed")
    fn = op.host_function
    if fn.type != sx.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT or not fn.invoke_contract:
        return Refuse("operations", f"host function {fn.type.name} is not INVOKE_CONTRACT")
    decision = check_contract_call(fn.invoke_contract, policy, spent_last_24h=spent_last_24h)
    if isinstance(decision, Refuse):
        return decision
    for entry in op.auth:
        # Signing the transaction also signs its source-account auth entries: whatever they
        # authorise must stay within the per-transaction amount too.
        nested = nested_amount(entry.root_invocation, policy)
        if isinstance(nested, Refuse):
            return nested
    if tx.fee > policy.max_fee_stroops:
        return Refuse("max_fee_stroops", f"fee {tx.fee} > {policy.max_fee_stroops}")
    return _check_time_bounds(tx, policy, now) or decision


def _check_time_bounds(tx: Transaction, policy: KeyPolicy, now: int) -> Refuse | None:
    # DESIGN.md §3 invariant 2: a bounded max_time is what lets the payout service prove an
    # attempt dead, so the signer never signs an unbounded transaction.
    bounds = tx.preconditions.time_bounds if tx.preconditions else None
    if bounds is None or bounds.max_time == 0:
        return Refuse("time_bounds", "time bounds with a max_time are required")
    if bounds.max_time <= now:
        return Refuse("time_bounds", f"max_time {bounds.max_time} has passed (now {now})")
    if bounds.max_time - now > policy.max_time_window_seconds:
        return Refuse(
            "max_time_window_seconds",
            f"max_time is {bounds.max_time - now}s ahead > {policy.max_time_window_seconds}s",
        )
    return None


def check_authorization(
    entry: sx.SorobanAuthorizationEntry,
    policy: KeyPolicy,
    *,
    network_passphrase: str,
    signer_account: str,
    spent_last_24h: int,
) -> Decision:
    """Decide on an address-credentials authorization entry signed by `signer_account`."""
    if network_passphrase != policy.network_passphrase:
        return Refuse("network_passphrase", "the signer's network is not this key's network")
    creds = entry.credentials.address
    if entry.credentials.type != sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS or not creds:
        return Refuse("credentials", "only SOROBAN_CREDENTIALS_ADDRESS entries are signed")
    address = Address.from_xdr_sc_address(creds.address).address
    if address != signer_account:
        return Refuse("credentials", f"entry address {address} is not this key's account")
    fn = entry.root_invocation.function
    if (
        fn.type != sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN
        or not fn.contract_fn
    ):
        return Refuse("operations", f"authorized function {fn.type.name} is not a contract call")
    decision = check_contract_call(fn.contract_fn, policy, spent_last_24h=spent_last_24h)
    if isinstance(decision, Refuse):
        return decision
    nested = nested_amount(entry.root_invocation, policy)
    return nested if isinstance(nested, Refuse) else decision


def nested_amount(invocation: sx.SorobanAuthorizedInvocation, policy: KeyPolicy) -> int | Refuse:
    """Largest transfer-shaped amount in an authorised call tree, checked against the per-tx
    limit: a payout contract's nested SAC `transfer` moves the same money as its root call,
    so nodes are bounded one by one rather than summed. Other call shapes are not decoded."""
    largest, stack = 0, [invocation]
    while stack:
        node = stack.pop()
        stack.extend(node.sub_invocations)
        call = node.function.contract_fn
        if call is None:
            continue
        amount = transfer_amount(call.args)
        if isinstance(amount, Refuse):
            continue
        if amount > policy.max_amount_stroops_per_tx:
            name = call.function_name.sc_symbol.decode("utf-8", "replace")
            return Refuse(
                "max_amount_stroops_per_tx",
                f"authorised call {name!r} amount {amount} > {policy.max_amount_stroops_per_tx}",
            )
        largest = max(largest, amount)
    return largest


def check_contract_call(
    call: sx.InvokeContractArgs, policy: KeyPolicy, *, spent_last_24h: int
) -> Decision:
    """Contract id, function name and the i128 amount of `fn(from, to, amount)`."""
    try:
        contract = Address.from_xdr_sc_address(call.contract_address).address
    except ValueError:
        return Refuse("contract_ids", "the called address is not a contract")
    if not contract.startswith("C") or not _allowed(policy.contract_ids, contract):
        return Refuse("contract_ids", f"contract {contract} is not allowed")
    function = call.function_name.sc_symbol.decode("utf-8", "replace")
    if not _allowed(policy.function_names, function):
        return Refuse("function_names", f"function {function!r} is not allowed")
    amount = transfer_amount(call.args)
    if isinstance(amount, Refuse):
        return amount
    if amount > policy.max_amount_stroops_per_tx:
        return Refuse(
            "max_amount_stroops_per_tx", f"amount {amount} > {policy.max_amount_stroops_per_tx}"
        )
    if spent_last_24h + amount > policy.max_amount_stroops_per_day:
        return Refuse(
            "max_amount_stroops_per_day",
            f"{spent_last_24h} spent in 24h + amount {amount}"
            f" > {policy.max_amount_stroops_per_day}",
        )
    return Allow(amount)


def transfer_amount(args: list[sx.SCVal]) -> int | Refuse:
    """The amount of `fn(from: Address, to: Address, amount: i128)`, in stroops."""
    if len(args) != 3:
        return Refuse("arguments", f"{len(args)} arguments, expected (from, to, amount)")
    if any(a.type != sx.SCValType.SCV_ADDRESS for a in args[:2]):
        return Refuse("arguments", "from and to must be addresses")
    value = args[2]
    if value.type != sx.SCValType.SCV_I128 or value.i128 is None:
        return Refuse("arguments", f"amount must be i128, got {value.type.name}")
    amount = i128_value(value.i128)
    if amount <= 0:
        return Refuse("arguments", f"amount {amount} must be positive")
    return amount


def i128_value(parts: sx.Int128Parts) -> int:
    # hi is signed, lo unsigned: value = hi * 2**64 + lo (two's complement over 128 bits).
    return (parts.hi.int64 << 64) | parts.lo.uint64
