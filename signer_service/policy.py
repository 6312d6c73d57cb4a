"""Per-key signing policy: pure decisions on decoded Stellar objects. No I/O, no clock.

Deny by default over the whole authorisation tree: the operation's root call, every node of
every auth entry (sub-invocations at any depth) and every SignAuthorizationEntry must be an
allowed (contract, function) whose arguments decode by that function's schema in the policy.
Every `amount` argument anywhere counts toward the per-transaction and daily limits.

Classic payment batches are the other shape a key may sign: 1..100 `Payment` /
`CreateAccount` operations paid by the key's own account in allowed assets, nothing else.
Every operation's amount counts toward the per-operation, per-transaction and daily limits of
its asset (each asset its own sums: stroops of different assets are not added up).

Every refusal names the rule (the policy setting) that refused it, so operators can match a
`PERMISSION_DENIED` to one line of the signer's configuration.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from stellar_sdk import Address, StrKey
from stellar_sdk import xdr as sx

from signer_service.ledger_claims import LedgerClaim

WILDCARD = "*"
# In source_accounts: any account of this signer's role = "channel" keys, so a channel added
# to the signer needs no edit of the paying key's policy.
CHANNEL_KEYS = "@channel_keys"

# stellar-core MAX_OPS_PER_TX: a transaction carries at most 100 operations.
MAX_OPERATIONS = 100

NATIVE = "native"
CLASSIC_PAYMENTS = frozenset({sx.OperationType.PAYMENT, sx.OperationType.CREATE_ACCOUNT})


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


def _typed(kind: sx.SCValType) -> Callable[[sx.SCVal], tuple[int, ...] | None]:
    return lambda v: () if v.type == kind else None


def _amount(v: sx.SCVal) -> tuple[int, ...] | None:
    amount = _i128(v)
    return None if amount is None else (amount,)


def _payouts(v: sx.SCVal) -> tuple[int, ...] | None:
    """`Vec<(Address, i128)>`: a Soroban tuple is an ScVal::Vec, so SCV_VEC of 2-element
    SCV_VEC [SCV_ADDRESS, SCV_I128] (BATCH_INTERFACE.md). Empty is not a batch."""
    if v.type != sx.SCValType.SCV_VEC or v.vec is None or not v.vec.sc_vec:
        return None
    amounts: list[int] = []
    for item in v.vec.sc_vec:
        if item.type != sx.SCValType.SCV_VEC or item.vec is None or len(item.vec.sc_vec) != 2:
            return None
        to, amount = item.vec.sc_vec
        value = _i128(amount)
        if not _is_address(to) or value is None:
            return None
        amounts.append(value)
    return tuple(amounts)


# Argument types a schema may name: a decoder from the SCVal to the amounts it carries (None
# when the value has another shape; () when it carries no money). Every amount must be
# positive and counts toward the limits: `amount` is an i128 (the SEP-41 token amount type),
# `payouts` a batch `vec<(address, amount)>` whose every item counts as one operation.
ARG_TYPES: dict[str, Callable[[sx.SCVal], tuple[int, ...] | None]] = {
    "address": lambda v: () if _is_address(v) else None,
    "amount": _amount,
    "payouts": _payouts,
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
class AssetLimits:
    """Limits in stroops of one asset (1e-7 of a unit, as every classic asset): each operation
    (or contract batch item), each transaction's sum, and the rolling 24 h."""

    per_op: int
    per_tx: int
    per_day: int


@dataclass(frozen=True)
class ChannelFunding:
    """A funding key: native CreateAccount / Payment batches to this signer's own channel keys
    only, each bounded (CHANNELS_SIGNER_NEEDS.md)."""

    max_starting_balance_stroops: int
    max_top_up_stroops: int


@dataclass(frozen=True)
class ApprovalRule:
    """Approver public keys (G...), how many must approve, and per asset ("native",
    "CODE:ISSUER", or a token contract's C... id for contract calls) the amount in stroops
    above which an operation needs approval. An asset without a threshold needs approval for
    every amount: the rule is deny by default once it names approvers."""

    approvers: frozenset[str]
    required: int
    thresholds: Mapping[str, int]

    def needs_approval(self, asset: str, amount: int) -> bool:
        return amount > self.thresholds.get(asset, 0)


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
    # Optional: the most one amount (a payment, a batch item, a transfer) may move; native.
    max_amount_stroops_per_op: int | None = None
    # Classic payment batches: asset ("native" or "CODE:ISSUER") -> its limits. Empty: no
    # classic operation is signed (deny by default). Native's limits are the key's own.
    payment_assets: Mapping[str, AssetLimits] = field(default_factory=dict)
    allow_muxed_destinations: bool = False
    allow_memo: bool = False
    # A channel key: the one account its AccountMerge may pay into (the funding account).
    merge_into: str | None = None
    channel_funding: ChannelFunding | None = None
    # Four-eyes approvals (signer_service.approvals); None: no approval is asked for.
    approvals: ApprovalRule | None = None

    def native_limits(self) -> AssetLimits:
        per_op = self.max_amount_stroops_per_op or self.max_amount_stroops_per_tx
        return AssetLimits(per_op, self.max_amount_stroops_per_tx,
                           self.max_amount_stroops_per_day)


@dataclass(frozen=True)
class Allow:
    # Native amount this signature moves; it counts against the key's rolling daily limit.
    amount_stroops: int
    # Classic batches in issued assets: (CODE:ISSUER, sum), each against its own daily limit.
    asset_amounts: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Refuse:
    rule: str
    detail: str
    # source_accounts: the account that was not allowed (a transaction source, an operation
    # source, an auth entry's address or a `from` argument), for the caller to act on.
    account: str = ""

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
    asset: str = NATIVE  # whose limits the amounts count toward
    payers: tuple[str, ...] = ()  # the addresses of its `from` arguments (whose money)


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
    return judge_call(call, policy)[0]


# The argument name that says whose money a call moves (SEP-41 `transfer(from, to, amount)`,
# the payout contract's methods): a channel key serves only the payers it knows.
PAYER_ARG = "from"


def judge_call(call: sx.InvokeContractArgs, policy: KeyPolicy
               ) -> tuple[tuple[int, ...] | Refuse, tuple[str, ...]]:
    """check_call's verdict and the addresses of the call's `from` arguments."""
    rule = _call_rule(call, policy)
    if isinstance(rule, Refuse):
        return rule, ()
    judged = decode_args(call.args, rule)
    if isinstance(judged, Refuse):
        return judged, ()
    if not policy.allow_muxed_destinations and (muxed := _muxed_argument(call.args, rule)):
        return muxed, ()
    payers = []
    for value, spec in zip(call.args, rule.args, strict=True):
        if spec.name == PAYER_ARG and value.address is not None:
            try:
                payers.append(address_text(value.address))
            except ValueError:
                payers.append("(not an account)")
    return judged, tuple(payers)


def _is_muxed(v: sx.SCVal) -> bool:
    return (v.address is not None
            and v.address.type == sx.SCAddressType.SC_ADDRESS_TYPE_MUXED_ACCOUNT)


def _muxed_argument(args: list[sx.SCVal], rule: CallRule) -> Refuse | None:
    """The refusal of a muxed (M...) address among the call's addresses, when the key's policy
    does not allow muxed destinations: since protocol 23 the SAC `transfer` takes one as `to`
    (CAP-67), so the classic rule (a Payment's muxed destination) holds for calls too."""
    for value, spec in zip(args, rule.args, strict=True):
        items = [value]
        if spec.type == "payouts" and value.vec is not None:
            items = [item.vec.sc_vec[0] for item in value.vec.sc_vec if item.vec is not None]
        for item in items:
            if item.type == sx.SCValType.SCV_ADDRESS and _is_muxed(item):
                assert item.address is not None  # noqa: S101 - _is_muxed checked it
                return Refuse("destinations", f"{rule.function} argument {spec.name}: muxed "
                              f"destination {address_text(item.address)} is not allowed")
    return None


def _call_rule(call: sx.InvokeContractArgs, policy: KeyPolicy) -> CallRule | Refuse:
    try:
        contract = address_text(call.contract_address)
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
    return rule


def decode_args(args: list[sx.SCVal], rule: CallRule) -> tuple[int, ...] | Refuse:
    expected = ", ".join(f"{a.name}: {a.type}" for a in rule.args)
    if len(args) != len(rule.args):
        return Refuse("arguments", f"{rule.function} got {len(args)} arguments, "
                                   f"expected ({expected})")
    amounts: list[int] = []
    for value, spec in zip(args, rule.args, strict=True):
        carried = ARG_TYPES[spec.type](value)
        if carried is None:
            return Refuse("arguments", f"{rule.function} argument {spec.name} must be "
                                       f"{spec.type}, got {_shape(value)}")
        for amount in carried:
            if amount <= 0:
                return Refuse("arguments", f"{rule.function} {spec.name} {amount} must be "
                                           "positive")
        amounts += carried
    return tuple(amounts)


def _shape(value: sx.SCVal, depth: int = 0) -> str:
    """SCVal type, with a vector's item types (first 3), for a refusal that says what came."""
    name = value.type.name
    if value.type != sx.SCValType.SCV_VEC or value.vec is None or depth > 1:
        return name
    items = value.vec.sc_vec
    inner = ", ".join(_shape(i, depth + 1) for i in items[:3])
    return f"{name}[{inner}{', ...' if len(items) > 3 else ''}]"


def _call_name(call: sx.InvokeContractArgs) -> str:
    try:
        contract = address_text(call.contract_address)
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
        judged, payers = judge_call(fn.contract_fn, policy)
        name = _call_name(fn.contract_fn)
        if isinstance(judged, Refuse):
            walk.verdicts.append(NodeVerdict(where, name, refusal=Refuse(
                judged.rule, f"{judged.detail} (at {where})")))
        else:
            walk.verdicts.append(NodeVerdict(where, name, judged, payers=payers))
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


# StrKey text of raw keys, memoised: base32 with its checksum was most of a decision's CPU
# (a transfer names the same few accounts and contracts over and over). Bounded.
@functools.lru_cache(maxsize=4096)
def _account_text(raw: bytes) -> str:
    return StrKey.encode_ed25519_public_key(raw)


@functools.lru_cache(maxsize=4096)
def _contract_text(raw: bytes) -> str:
    return StrKey.encode_contract(raw)


def address_text(address: sx.SCAddress) -> str:
    """G.../C... (or another StrKey) of an SCAddress; ValueError when it has none."""
    if address.type == sx.SCAddressType.SC_ADDRESS_TYPE_ACCOUNT and \
            address.account_id is not None and address.account_id.account_id.ed25519 is not None:
        return _account_text(address.account_id.account_id.ed25519.uint256)
    if address.type == sx.SCAddressType.SC_ADDRESS_TYPE_CONTRACT and \
            address.contract_id is not None:
        return _contract_text(address.contract_id.contract_id.hash)
    return Address.from_xdr_sc_address(address).address


def account_id(account: sx.MuxedAccount) -> tuple[str, bool]:
    """(G... address, whether it was muxed) of an XDR MuxedAccount."""
    if account.type == sx.CryptoKeyType.KEY_TYPE_MUXED_ED25519 and account.med25519 is not None:
        return _account_text(account.med25519.ed25519.uint256), True
    assert account.ed25519 is not None
    return _account_text(account.ed25519.uint256), False


def account_key(account: sx.AccountID) -> str:
    """G... of an XDR AccountID (its only arm is an ed25519 key)."""
    key = account.account_id.ed25519
    assert key is not None
    return _account_text(key.uint256)


def asset_name(asset: sx.Asset) -> str:
    """"native" or "CODE:ISSUER", the spelling of the policy's asset allow-list."""
    if asset.type == sx.AssetType.ASSET_TYPE_NATIVE:
        return NATIVE
    alpha = asset.alpha_num4 or asset.alpha_num12
    assert alpha is not None
    code = alpha.asset_code
    raw = code.asset_code4 if isinstance(code, sx.AssetCode4) else code.asset_code12
    issuer = account_key(alpha.issuer)
    text = raw.rstrip(b"\0").decode("ascii", "replace")
    return f"{text}:{issuer}"


def _is_soroban(tx: sx.Transaction) -> bool:
    return len(tx.operations) == 1 and \
        tx.operations[0].body.type == sx.OperationType.INVOKE_HOST_FUNCTION


def _channel_funding_refusal(
    funding: ChannelFunding, kind: str, destination: str, amount: int, where: str,
    channels: frozenset[str],
) -> Refuse | None:
    if destination not in channels:
        return Refuse("channel_destinations", f"{where} pays {destination}, not one of this "
                                              "signer's channel keys")
    bound = funding.max_starting_balance_stroops if kind == "CREATE_ACCOUNT" else \
        funding.max_top_up_stroops
    if amount > bound:
        return Refuse("channel_funding", f"{where} {kind} {amount} > {bound}")
    return None


def served_payers(policy: KeyPolicy, payout_accounts: frozenset[str]) -> frozenset[str]:
    """Whose money a channel key's transactions may move: the accounts its source_accounts
    names (never "*") and the accounts of this signer's payout keys."""
    return (policy.source_accounts - {WILDCARD, CHANNEL_KEYS}) | payout_accounts


def _classic_operation(
    op: sx.Operation, where: str, policy: KeyPolicy, payer: str, channels: frozenset[str],
    payers: frozenset[str],
) -> tuple[str, str, int] | Refuse:
    """(description, asset, amount) of one Payment / CreateAccount the payer may sign, or the
    rule it breaks. The only place a classic operation is judged."""
    if op.source_account is not None:
        source, muxed = account_id(op.source_account)
        if muxed or source not in payers:
            return Refuse("source_accounts", f"{where} source {source} is not a payer of "
                                             f"key {payer}", source)
    body = op.body
    if body.type == sx.OperationType.PAYMENT and body.payment_op is not None:
        destination, muxed = account_id(body.payment_op.destination)
        asset, amount = asset_name(body.payment_op.asset), body.payment_op.amount.int64
        kind = "PAYMENT"
    elif body.type == sx.OperationType.CREATE_ACCOUNT and body.create_account_op is not None:
        destination = account_key(body.create_account_op.destination)
        muxed, asset = False, NATIVE
        amount, kind = body.create_account_op.starting_balance.int64, "CREATE_ACCOUNT"
    else:  # classic_walk lets only CLASSIC_PAYMENTS through
        return Refuse("operations", f"{where} {body.type.name} is not allowed")
    if muxed and not policy.allow_muxed_destinations:
        return Refuse("destinations", f"{where} muxed destination {destination} is not allowed")
    if asset not in policy.payment_assets:
        return Refuse("assets", f"{where} asset {_short(asset)} is not allowed")
    if amount <= 0:
        return Refuse("operations", f"{where} amount {amount} must be positive")
    if policy.channel_funding is not None:
        refusal = _channel_funding_refusal(policy.channel_funding, kind, destination, amount,
                                           where, channels)
        if refusal is not None:
            return refusal
    return f"{kind} {amount} {_short(asset, 16)} to {destination}", asset, amount


def classic_walk(
    tx: sx.Transaction, policy: KeyPolicy, payer: str, channels: frozenset[str] = frozenset(),
    channel_payers: frozenset[str] | None = None,
) -> TreeWalk | Refuse:
    """Every operation of a classic payment batch, one verdict each. `payer` is the key's
    account: the source of every operation (explicit, or the transaction's when absent). A
    channel key (`channel_payers` given; it is the transaction source) signs only operations
    whose explicit source is one of `channel_payers`: its signature covers the sequence
    number and the fee, each operation still needs its own source's signature, and its
    amount counts here too. The channel's own balance never pays."""
    if not policy.payment_assets:
        kinds = ", ".join(sorted({op.body.type.name for op in tx.operations}))
        return Refuse("operations", f"operations {kinds}: this key signs only one "
                                    "INVOKE_HOST_FUNCTION (no payment assets configured)")
    if not 1 <= len(tx.operations) <= MAX_OPERATIONS:
        return Refuse("operations", f"{len(tx.operations)} operations, at most "
                                    f"{MAX_OPERATIONS} allowed")
    if tx.memo.type != sx.MemoType.MEMO_NONE and not policy.allow_memo:
        return Refuse("memo", f"{tx.memo.type.name} is not allowed")
    if policy.channel_funding is not None and len({op.body.type for op in tx.operations}) > 1:
        return Refuse("channel_funding", "a funding transaction is all CREATE_ACCOUNT or all "
                                         "PAYMENT")
    walk = TreeWalk()
    payers = frozenset({payer}) if channel_payers is None else channel_payers
    for i, op in enumerate(tx.operations):
        where = f"op[{i}]"
        if op.body.type not in CLASSIC_PAYMENTS:
            walk.verdicts.append(NodeVerdict(where, op.body.type.name, refusal=Refuse(
                "operations", f"{where} {op.body.type.name} is not allowed (only PAYMENT and "
                              "CREATE_ACCOUNT batches, or one INVOKE_HOST_FUNCTION)")))
            continue
        if op.source_account is None:
            source, _ = account_id(tx.source_account)
            if source != payer or channel_payers is not None:
                walk.verdicts.append(NodeVerdict(where, op.body.type.name, refusal=Refuse(
                    "source_accounts", f"{where} has no source and the transaction source "
                                       f"{source} is not a payer of key {payer}", source)))
                continue
        judged = _classic_operation(op, where, policy, payer, channels, payers)
        if isinstance(judged, Refuse):
            walk.verdicts.append(NodeVerdict(where, op.body.type.name, refusal=judged))
            continue
        description, asset, amount = judged
        walk.verdicts.append(NodeVerdict(where, description, (amount,), asset=asset))
    return walk


def merge_walk(tx: sx.Transaction, merge_into: str, account: str) -> TreeWalk:
    """A channel retired: its one AccountMerge, from the key's own account (the transaction
    source, no other operation source), into the configured funding account only. It moves
    the channel's own balance home, so it counts no amount."""
    op, where = tx.operations[0], "op[0]"
    walk = TreeWalk()
    source, _ = account_id(op.source_account or tx.source_account)
    destination, muxed = account_id(op.body.destination) if op.body.destination else ("", False)
    refusal = None
    if source != account:
        refusal = Refuse("source_accounts", f"{where} merges {source}, not the key's account "
                                            f"{account}", source)
    elif muxed or destination != merge_into:
        refusal = Refuse("merge_destination", f"{where} merges into {destination}, only "
                                              f"{merge_into} is allowed")
    walk.verdicts.append(NodeVerdict(where, f"ACCOUNT_MERGE {source} into {destination}",
                                     refusal=refusal))
    return walk


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
            return Refuse("source_accounts", f"operation source {address} is not allowed",
                          address)
    fn = op.host_function
    if fn.type != sx.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT or not fn.invoke_contract:
        return Refuse("operations", f"host function {fn.type.name} is not INVOKE_CONTRACT")
    walk = TreeWalk()
    root = fn.invoke_contract
    judged, payers = judge_call(root, policy)
    walk.verdicts.append(NodeVerdict("call", _call_name(root), () if isinstance(judged, Refuse)
                                     else judged, judged if isinstance(judged, Refuse) else None,
                                     payers=payers))
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
                                               (), first_node.refusal,
                                               payers=first_node.payers)
    return walk


def _limits(amounts: list[int], limits: AssetLimits, spent_last_24h: int,
            asset: str = NATIVE) -> Decision:
    """Per transaction (the sum), per operation (each amount), rolling day (spent + sum),
    in stroops of `asset`; the refusal names the key's setting (per asset when not native)."""
    of = "" if asset == NATIVE else f" ({_short(asset, 16)})"
    biggest, amount = max(amounts, default=0), sum(amounts)
    if amount > limits.per_tx:
        return Refuse("max_amount_stroops_per_tx",
                      f"amount {amount} > {limits.per_tx}{of}")
    if biggest > limits.per_op:
        return Refuse("max_amount_stroops_per_op",
                      f"one amount {biggest} > {limits.per_op}{of}")
    if spent_last_24h + amount > limits.per_day:
        return Refuse(
            "max_amount_stroops_per_day",
            f"{spent_last_24h} spent in 24h + amount {amount} > {limits.per_day}{of}",
        )
    return Allow(amount)


def walk_amounts(walk: TreeWalk) -> list[int]:
    return [a for v in walk.verdicts for a in v.amounts]


def amounts_by_asset(walk: TreeWalk) -> dict[str, list[int]]:
    """Each asset's amounts, native first (the key's own limits are checked first)."""
    by_asset: dict[str, list[int]] = {NATIVE: []}
    for v in walk.verdicts:
        by_asset.setdefault(v.asset, []).extend(v.amounts)
    return by_asset


def check_transaction(
    tx: sx.Transaction,
    policy: KeyPolicy,
    *,
    network_passphrase: str,
    spent_last_24h: int,
    now: int,
    signer_account: str | None = None,
    spent_of_asset: Callable[[str], int] | None = None,
    channel_accounts: frozenset[str] = frozenset(),
    channel_payers: frozenset[str] | None = None,
) -> Decision:
    """Decide on a transaction whose hash was computed for `network_passphrase`.

    `signer_account` is the key's G... account, the only payer of classic operations (None:
    the policy's single listed source account). `spent_of_asset(asset)` is what the key
    signed in that asset in the last 24 h (default: `spent_last_24h` for any asset).
    `channel_accounts` are this signer's channel keys, a funding key's only destinations.
    `channel_payers`, for a channel key only: whose money its transactions may move
    (served_payers); see channel_refusal."""
    if network_passphrase != policy.network_passphrase:
        return Refuse("network_passphrase", "the signer's network is not this key's network")
    source, muxed = account_id(tx.source_account)
    if muxed:
        # Soroban transactions may not have a muxed source (txSOROBAN_INVALID).
        return Refuse("source_accounts", "muxed transaction source is not allowed", source)
    if not _allowed(policy.source_accounts, source) and not (
        CHANNEL_KEYS in policy.source_accounts and source in channel_accounts
    ):
        return Refuse("source_accounts", f"transaction source {source} is not allowed", source)
    if channel_payers is not None and source != signer_account:
        return Refuse("source_accounts", f"a channel key signs only as the transaction source; "
                                         f"the source is {source}", source)
    walk = operations_walk(tx, policy, signer_account, channel_accounts, channel_payers)
    if isinstance(walk, Refuse):
        return walk
    if walk.refusal is not None:
        return walk.refusal
    if channel_payers is not None and _is_soroban(tx):
        refusal = channel_refusal(tx, walk, channel_payers)
        if refusal is not None:
            return refusal
    totals: dict[str, int] = {}
    for asset, amounts in amounts_by_asset(walk).items():
        limits = policy.native_limits() if asset == NATIVE else policy.payment_assets[asset]
        spent = spent_of_asset(asset) if spent_of_asset is not None else spent_last_24h
        judged = _limits(amounts, limits, spent, asset)
        if isinstance(judged, Refuse):
            return judged
        totals[asset] = judged.amount_stroops
    native = totals.pop(NATIVE)
    decision = Allow(native, tuple((a, n) for a, n in sorted(totals.items()) if n))
    fee = tx.fee.uint32
    if fee > policy.max_fee_stroops:
        return Refuse("max_fee_stroops", f"fee {fee} > {policy.max_fee_stroops}")
    return _check_time_bounds(tx, policy, now) or decision


def operations_walk(
    tx: sx.Transaction, policy: KeyPolicy, signer_account: str | None,
    channel_accounts: frozenset[str] = frozenset(),
    channel_payers: frozenset[str] | None = None,
) -> TreeWalk | Refuse:
    """The verdict on every node: one InvokeHostFunction's tree, or a classic batch."""
    if _is_soroban(tx):
        return transaction_walk(tx, policy)
    if len(tx.operations) == 1 and tx.operations[0].body.type == sx.OperationType.ACCOUNT_MERGE \
            and policy.merge_into is not None:
        return merge_walk(tx, policy.merge_into, signer_account or _single_source(policy))
    return classic_walk(tx, policy, signer_account or _single_source(policy), channel_accounts,
                        channel_payers)


def channel_refusal(tx: sx.Transaction, walk: TreeWalk, payers: frozenset[str]
                    ) -> Refuse | None:
    """Deny by default for a channel key (already checked to be the transaction source) on
    a Soroban transaction: the operation's source, every account an auth entry authorises
    and every `from` argument in the tree must be a payer it serves. A SOURCE_ACCOUNT entry
    authorises the operation's source, so that too is a payer, never the channel: the
    channel's signature pays the fee and moves nobody else's money."""
    op = tx.operations[0]
    op_source = account_id(op.source_account)[0] if op.source_account is not None else ""
    if op_source not in payers:
        who = op_source or "absent (the channel itself)"
        return Refuse("source_accounts", f"operation source {who} is not a payer this channel "
                                         "key serves", op_source or account_id(
                                             tx.source_account)[0])
    invoke = op.body.invoke_host_function_op
    for i, entry in enumerate(invoke.auth if invoke is not None else []):
        creds = entry.credentials.address
        if creds is None:
            continue  # SOURCE_ACCOUNT: the operation's source, checked above
        try:
            address = address_text(creds.address)
        except ValueError:
            address = "(not an account)"
        if address not in payers:
            return Refuse("source_accounts", f"auth[{i}] authorises {address}, not a payer "
                                             "this channel key serves", address)
    for verdict in walk.verdicts:
        for payer in verdict.payers:
            if payer not in payers:
                return Refuse("source_accounts", f"{verdict.path} moves money from {payer}, "
                                                 "not a payer this channel key serves", payer)
    return None


def _single_source(policy: KeyPolicy) -> str:
    """Without the key's account (policy check), the one listed source account; with "*" or
    several, no account matches, so classic operations are refused."""
    listed = [a for a in policy.source_accounts if a not in (WILDCARD, CHANNEL_KEYS)]
    return listed[0] if len(listed) == 1 else "(the key's account)"


def _max_time(cond: sx.Preconditions) -> int:
    """The transaction's max_time, 0 when it has none (PRECOND_NONE or unbounded)."""
    bounds = cond.time_bounds
    if cond.type == sx.PreconditionType.PRECOND_V2 and cond.v2 is not None:
        bounds = cond.v2.time_bounds
    return bounds.max_time.time_point.uint64 if bounds is not None else 0


def _check_time_bounds(tx: sx.Transaction, policy: KeyPolicy, now: int) -> Refuse | None:
    # docs/design.md, invariant 2: a bounded max_time is what lets the payout service prove an
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
    channel: bool = False,
) -> Decision:
    """Decide on an address-credentials authorization entry signed by `signer_account`. A
    channel key (`channel`) signs none: a channel pays fees as a transaction source and
    authorises nothing (its auth would move its own balance)."""
    if network_passphrase != policy.network_passphrase:
        return Refuse("network_passphrase", "the signer's network is not this key's network")
    if channel:
        return Refuse("credentials", "a channel key signs transactions as their source, never "
                                     "an authorization entry")
    creds = entry.credentials.address
    if entry.credentials.type != sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS or not creds:
        return Refuse("credentials", "only SOROBAN_CREDENTIALS_ADDRESS entries are signed")
    try:
        address = address_text(creds.address)
    except ValueError:
        address = f"(a {creds.address.type.name} address)"
    if address != signer_account:
        # A muxed M... address, a contract or another account: only the key's own G... signs.
        return Refuse("credentials", f"entry address {address} is not this key's account")
    expiry = check_expiration(ledgers, policy)
    if expiry is not None:
        return expiry
    walk = authorization_walk(entry, policy)
    if walk.refusal is not None:
        return walk.refusal
    if policy.approvals is not None:
        # An entry carries no approvals, and it can be put in any transaction: a key whose
        # payments need approval authorises no amount above its threshold this way.
        over = next(((v, a) for v in walk.verdicts for a in v.amounts
                     if policy.approvals.needs_approval(v.asset, a)), None)
        if over is not None:
            return Refuse("approvals", f"{over[0].path} {over[0].call} moves {over[1]}: an "
                                       "authorization entry carries no approvals")
    return _limits(walk_amounts(walk), policy.native_limits(), spent_last_24h)


def iter_nodes(walk: TreeWalk) -> Iterator[str]:
    """Human-readable lines, one per node, for `signerctl policy check`."""
    for v in walk.verdicts:
        verdict = f"REFUSED {v.refusal.message}" if v.refusal else \
            ("ok, amounts " + ", ".join(map(str, v.amounts)) if v.amounts else "ok")
        yield f"{v.path:<24} {v.call}: {verdict}"


def i128_value(parts: sx.Int128Parts) -> int:
    # hi is signed, lo unsigned: value = hi * 2**64 + lo (two's complement over 128 bits).
    return (parts.hi.int64 << 64) | parts.lo.uint64
