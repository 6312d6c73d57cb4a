"""Per-key signing policy: pure decisions on decoded Stellar objects. No I/O, no clock.

Deny by default over the whole authorisation tree: the operation's root call, every node of
every auth entry (sub-invocations at any depth) and every SignAuthorizationEntry must be an
allowed (contract, function) whose arguments decode by that function's schema in the policy.
Every `amount` argument anywhere counts toward the per-transaction and daily limits.

Every refusal names the rule (the policy setting) that refused it, so operators can match a
`PERMISSION_DENIED` to one line of the signer's configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from stellar_sdk import Address, StrKey
from stellar_sdk import xdr as sx

WILDCARD = "*"

# Stellar's first ledger closed on 2015-09-30; close times rise by at least one second a
# ledger (stellar-core), so no network's ledger number can exceed the seconds since then.
STELLAR_EPOCH = 1_443_571_200


@dataclass(frozen=True)
class ArgSpec:
    name: str
    type: str  # a key of ARG_TYPES


def _is_address(v: sx.SCVal) -> bool:
    return v.type == sx.SCValType.SCV_ADDRESS and v.address is not None


def _i128(v: sx.SCVal) -> int | None:
    if v.type != sx.SCValType.SCV_I128 or v.i128 is None:
        return None
    return i128_value(v.i128)


def _typed(kind: sx.SCValType) -> Callable[[sx.SCVal], bool]:
    return lambda v: v.type == kind


# Argument types a schema may name: a predicate on the SCVal. `amount` is special: an i128
# (the SEP-41 token amount type) that must be positive and counts toward the limits. New
# shapes (e.g. a batch `vec<(address, amount)>`) are added here as one more entry.
ARG_TYPES: dict[str, Callable[[sx.SCVal], bool]] = {
    "address": _is_address,
    "amount": lambda v: _i128(v) is not None,
    "u32": _typed(sx.SCValType.SCV_U32),
    "u64": _typed(sx.SCValType.SCV_U64),
    "i64": _typed(sx.SCValType.SCV_I64),
    "bool": _typed(sx.SCValType.SCV_BOOL),
    "symbol": _typed(sx.SCValType.SCV_SYMBOL),
    "string": _typed(sx.SCValType.SCV_STRING),
    "bytes": _typed(sx.SCValType.SCV_BYTES),
}

# The shape of SAC `transfer` and of the payout contract's method; the shorthand
# `contract_ids` x `function_names` gives every listed function this schema.
TRANSFER_ARGS = (ArgSpec("from", "address"), ArgSpec("to", "address"),
                 ArgSpec("amount", "amount"))


@dataclass(frozen=True)
class CallRule:
    """One allowed function on a set of contracts, with its exact argument schema."""

    contract_ids: frozenset[str]  # C... ids, or {"*"}
    function: str
    args: tuple[ArgSpec, ...]


@dataclass(frozen=True)
class KeyPolicy:
    network_passphrase: str
    source_accounts: frozenset[str]
    calls: tuple[CallRule, ...]
    max_fee_stroops: int
    max_amount_stroops_per_tx: int
    max_amount_stroops_per_day: int
    max_time_window_seconds: int
    # Address credentials: signature_expiration_ledger - current ledger may not exceed this.
    max_signature_expiration_ledgers: int = 120


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


@dataclass(frozen=True)
class NodeVerdict:
    """One node of the tree, for `signerctl policy check`: where, what, and the verdict."""

    path: str
    call: str
    amounts: tuple[int, ...] = ()
    refusal: Refuse | None = None


@dataclass
class TreeWalk:
    verdicts: list[NodeVerdict] = field(default_factory=list)

    @property
    def refusal(self) -> Refuse | None:
        return next((v.refusal for v in self.verdicts if v.refusal), None)


def _allowed(allowed: frozenset[str], value: str) -> bool:
    return WILDCARD in allowed or value in allowed


def _short(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def check_call(call: sx.InvokeContractArgs, policy: KeyPolicy) -> tuple[int, ...] | Refuse:
    """The amounts of one contract call, or the rule it breaks. The only place a node of any
    tree (root call, auth entry, sub-invocation) is judged."""
    try:
        contract = Address.from_xdr_sc_address(call.contract_address).address
    except ValueError:
        return Refuse("contract_ids", "the called address is not a contract")
    function = call.function_name.sc_symbol.decode("utf-8", "replace")
    if not contract.startswith("C"):
        return Refuse("contract_ids", f"{contract} is not a contract")
    rules = [r for r in policy.calls if _allowed(r.contract_ids, contract)]
    if not rules:
        return Refuse("contract_ids", f"contract {contract} is not allowed")
    rule = next((r for r in rules if r.function == function), None)
    if rule is None:
        return Refuse("function_names", f"function {_short(function)!r} is not allowed on "
                                        f"contract {contract}")
    return decode_args(call.args, rule)


def decode_args(args: list[sx.SCVal], rule: CallRule) -> tuple[int, ...] | Refuse:
    expected = ", ".join(f"{a.name}: {a.type}" for a in rule.args)
    if len(args) != len(rule.args):
        return Refuse("arguments", f"{rule.function} got {len(args)} arguments, "
                                   f"expected ({expected})")
    amounts: list[int] = []
    for value, spec in zip(args, rule.args, strict=True):
        if not ARG_TYPES[spec.type](value):
            return Refuse("arguments", f"{rule.function} argument {spec.name} must be "
                                       f"{spec.type}, got {value.type.name}")
        if spec.type == "amount":
            amount = _i128(value)
            assert amount is not None  # ARG_TYPES["amount"] checked it
            if amount <= 0:
                return Refuse("arguments", f"{rule.function} {spec.name} {amount} must be "
                                           "positive")
            amounts.append(amount)
    return tuple(amounts)


def _call_name(call: sx.InvokeContractArgs) -> str:
    try:
        contract = Address.from_xdr_sc_address(call.contract_address).address
    except ValueError:
        contract = "(not an address)"
    return f"{contract}.{_short(call.function_name.sc_symbol.decode('utf-8', 'replace'))}"


def walk_invocation(
    invocation: sx.SorobanAuthorizedInvocation, policy: KeyPolicy, path: str, walk: TreeWalk
) -> None:
    """Judge every node of an authorised call tree (iterative: depth is the caller's choice)."""
    stack: list[tuple[str, sx.SorobanAuthorizedInvocation]] = [(path, invocation)]
    while stack:
        where, node = stack.pop()
        fn = node.function
        if (fn.type != sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN
                or fn.contract_fn is None):
            walk.verdicts.append(NodeVerdict(where, fn.type.name, refusal=Refuse(
                "function_names", f"authorised {fn.type.name} at {where} is not a contract call")))
            continue
        judged = check_call(fn.contract_fn, policy)
        name = _call_name(fn.contract_fn)
        if isinstance(judged, Refuse):
            walk.verdicts.append(NodeVerdict(where, name, refusal=Refuse(
                judged.rule, f"{judged.detail} (at {where})")))
        else:
            walk.verdicts.append(NodeVerdict(where, name, judged))
        for i, sub in reversed(list(enumerate(node.sub_invocations))):
            stack.append((f"{where}.sub[{i}]", sub))


def _credentials_refusal(entry: sx.SorobanAuthorizationEntry, where: str) -> Refuse | None:
    kind = entry.credentials.type
    if kind == sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT:
        return None
    if kind == sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS and \
            entry.credentials.address is not None:
        return None
    return Refuse("credentials", f"{kind.name} at {where} is not a credential type the signer "
                                 "accepts")


def account_id(account: sx.MuxedAccount) -> tuple[str, bool]:
    """(G... address, whether it was muxed) of an XDR MuxedAccount."""
    if account.type == sx.CryptoKeyType.KEY_TYPE_MUXED_ED25519 and account.med25519 is not None:
        return StrKey.encode_ed25519_public_key(account.med25519.ed25519.uint256), True
    assert account.ed25519 is not None
    return StrKey.encode_ed25519_public_key(account.ed25519.uint256), False


def transaction_walk(tx: sx.Transaction, policy: KeyPolicy) -> TreeWalk | Refuse:
    """Every node of the transaction's one InvokeHostFunction: its root call and its auth trees.

    Counting: the root call and an auth entry whose root invocation is that exact call (same
    contract, function and arguments, as the host matches them) are one transfer, counted once;
    the entry's sub-invocations and every other entry count in full. So a different nested
    amount never hides behind the root: it is either an exact duplicate or it is summed.
    """
    if len(tx.operations) != 1:
        return Refuse("operations", f"{len(tx.operations)} operations, exactly 1 allowed")
    body = tx.operations[0].body
    op = body.invoke_host_function_op
    if body.type != sx.OperationType.INVOKE_HOST_FUNCTION or op is None:
        return Refuse("operations", f"operation {body.type.name} is not INVOKE_HOST_FUNCTION")
    op_source = tx.operations[0].source_account
    if op_source is not None:
        address, _ = account_id(op_source)
        if not _allowed(policy.source_accounts, address):
            return Refuse("source_accounts", f"operation source {address} is not allowed")
    fn = op.host_function
    if fn.type != sx.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT or not fn.invoke_contract:
        return Refuse("operations", f"host function {fn.type.name} is not INVOKE_CONTRACT")
    walk = TreeWalk()
    root = fn.invoke_contract
    judged = check_call(root, policy)
    walk.verdicts.append(NodeVerdict("call", _call_name(root), () if isinstance(judged, Refuse)
                                     else judged, judged if isinstance(judged, Refuse) else None))
    root_counted_by_entry = False
    for i, entry in enumerate(op.auth):
        where = f"auth[{i}]"
        refusal = _credentials_refusal(entry, where)
        if refusal is not None:
            walk.verdicts.append(NodeVerdict(where, entry.credentials.type.name, refusal=refusal))
            continue
        first = len(walk.verdicts)
        walk_invocation(entry.root_invocation, policy, where, walk)
        contract_fn = entry.root_invocation.function.contract_fn
        if not root_counted_by_entry and contract_fn == root:
            # The host authorises the root call with this entry: the same transfer, once.
            root_counted_by_entry = True
            first_node = walk.verdicts[first]
            walk.verdicts[first] = NodeVerdict(first_node.path, first_node.call + " (= call)",
                                               (), first_node.refusal)
    return walk


def tree_amount(walk: TreeWalk) -> int:
    return sum(sum(v.amounts) for v in walk.verdicts)


def _limits(amount: int, policy: KeyPolicy, spent_last_24h: int) -> Decision:
    if amount > policy.max_amount_stroops_per_tx:
        return Refuse("max_amount_stroops_per_tx",
                      f"amount {amount} > {policy.max_amount_stroops_per_tx}")
    if spent_last_24h + amount > policy.max_amount_stroops_per_day:
        return Refuse(
            "max_amount_stroops_per_day",
            f"{spent_last_24h} spent in 24h + amount {amount}"
            f" > {policy.max_amount_stroops_per_day}",
        )
    return Allow(amount)


def check_transaction(
    tx: sx.Transaction,
    policy: KeyPolicy,
    *,
    network_passphrase: str,
    spent_last_24h: int,
    now: int,
) -> Decision:
    """Decide on a transaction whose hash was computed for `network_passphrase`."""
    if network_passphrase != policy.network_passphrase:
        return Refuse("network_passphrase", "the signer's network is not this key's network")
    source, muxed = account_id(tx.source_account)
    if muxed:
        # Soroban transactions may not have a muxed source (txSOROBAN_INVALID).
        return Refuse("source_accounts", "muxed transaction source is not allowed")
    if not _allowed(policy.source_accounts, source):
        return Refuse("source_accounts", f"transaction source {source} is not allowed")
    walk = transaction_walk(tx, policy)
    if isinstance(walk, Refuse):
        return walk
    if walk.refusal is not None:
        return walk.refusal
    decision = _limits(tree_amount(walk), policy, spent_last_24h)
    if isinstance(decision, Refuse):
        return decision
    fee = tx.fee.uint32
    if fee > policy.max_fee_stroops:
        return Refuse("max_fee_stroops", f"fee {fee} > {policy.max_fee_stroops}")
    return _check_time_bounds(tx, policy, now) or decision


def _max_time(cond: sx.Preconditions) -> int:
    """The transaction's max_time, 0 when it has none (PRECOND_NONE or unbounded)."""
    bounds = cond.time_bounds
    if cond.type == sx.PreconditionType.PRECOND_V2 and cond.v2 is not None:
        bounds = cond.v2.time_bounds
    return bounds.max_time.time_point.uint64 if bounds is not None else 0


def _check_time_bounds(tx: sx.Transaction, policy: KeyPolicy, now: int) -> Refuse | None:
    # DESIGN.md §3 invariant 2: a bounded max_time is what lets the payout service prove an
    # attempt dead, so the signer never signs an unbounded transaction.
    max_time = _max_time(tx.cond)
    if max_time == 0:
        return Refuse("time_bounds", "time bounds with a max_time are required")
    if max_time <= now:
        return Refuse("time_bounds", f"max_time {max_time} has passed (now {now})")
    if max_time - now > policy.max_time_window_seconds:
        return Refuse(
            "max_time_window_seconds",
            f"max_time is {max_time - now}s ahead > {policy.max_time_window_seconds}s",
        )
    return None


@dataclass(frozen=True)
class LedgerClaim:
    """What SignAuthorizationEntry knows about ledgers: the caller's claimed current ledger,
    the expiration it asks for, and the highest ledger the signer believes possible now."""

    current: int
    expiration: int
    ceiling: int


def ledger_ceiling(now: float, watermark: tuple[int, float] | None) -> int:
    """The highest current ledger plausible at `now`: ledgers close at most once a second, so
    never more than the seconds since Stellar's epoch, nor more than the seconds elapsed since
    the highest ledger already accepted (`watermark` = (ledger, unix time accepted))."""
    ceiling = int(now) - STELLAR_EPOCH
    if watermark is not None:
        ledger, at = watermark
        ceiling = min(ceiling, ledger + max(0, int(now - at)) + 1)
    return ceiling


def check_expiration(claim: LedgerClaim, policy: KeyPolicy) -> Refuse | None:
    rule = "max_signature_expiration_ledgers"
    if claim.current > claim.ceiling:
        return Refuse(rule, f"current ledger {claim.current} is ahead of what time allows "
                            f"({claim.ceiling})")
    if claim.expiration < claim.current:
        return Refuse(rule, f"expiration ledger {claim.expiration} is before the current "
                            f"ledger {claim.current}")
    if claim.expiration - claim.current > policy.max_signature_expiration_ledgers:
        return Refuse(rule, f"expiration ledger is {claim.expiration - claim.current} ledgers "
                            f"ahead > {policy.max_signature_expiration_ledgers}")
    return None


def authorization_walk(entry: sx.SorobanAuthorizationEntry, policy: KeyPolicy) -> TreeWalk:
    walk = TreeWalk()
    walk_invocation(entry.root_invocation, policy, "entry", walk)
    return walk


def check_authorization(
    entry: sx.SorobanAuthorizationEntry,
    policy: KeyPolicy,
    *,
    network_passphrase: str,
    signer_account: str,
    spent_last_24h: int,
    ledgers: LedgerClaim,
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
    expiry = check_expiration(ledgers, policy)
    if expiry is not None:
        return expiry
    walk = authorization_walk(entry, policy)
    if walk.refusal is not None:
        return walk.refusal
    return _limits(tree_amount(walk), policy, spent_last_24h)


def iter_nodes(walk: TreeWalk) -> Iterator[str]:
    """Human-readable lines, one per node, for `signerctl policy check`."""
    for v in walk.verdicts:
        verdict = f"REFUSED {v.refusal.message}" if v.refusal else \
            ("ok, amounts " + ", ".join(map(str, v.amounts)) if v.amounts else "ok")
        yield f"{v.path:<24} {v.call}: {verdict}"


def i128_value(parts: sx.Int128Parts) -> int:
    # hi is signed, lo unsigned: value = hi * 2**64 + lo (two's complement over 128 bits).
    return (parts.hi.int64 << 64) | parts.lo.uint64
