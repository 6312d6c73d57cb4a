"""Deny by default over the whole authorisation tree, pure policy.

Each test builds one transaction or entry a policy that checked only the root call would sign,
and shows it refused with the rule named; the property test compares the signer's decision on
random trees with a small independent specification written over plain Python values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stellar_sdk import Address, Keypair, scval
from stellar_sdk import xdr as sx

from signer_service.ledger_claims import (
    LEDGER_CLAIM_SLACK,
    LedgerAnchor,
    LedgerClaim,
    ledger_ceiling,
)
from signer_service.policy import (
    TRANSFER_ARGS,
    Allow,
    ArgSpec,
    CallRule,
    KeyPolicy,
    Refuse,
    check_authorization,
    check_transaction,
)
from tests.signer.envelopes import (
    DESTINATION,
    OTHER_CONTRACT,
    PASSPHRASE,
    SOURCE,
    XLM_SAC,
    build_tx,
    now,
)

STRANGER = Keypair.from_raw_ed25519_seed(bytes(range(2, 34))).public_key
THIRD_CONTRACT = "CBBEEQSCIJBEEQSCIJBEEQSCIJBEEQSCIJBEEQSCIJBEEQSCIJBEE5XW"
LIMIT = 10_000_000_000

POLICY = KeyPolicy(
    network_passphrase=PASSPHRASE,
    source_accounts=frozenset({SOURCE}),
    calls=(CallRule(frozenset({XLM_SAC}), "transfer", TRANSFER_ARGS),),
    max_fee_stroops=2_000_000,
    max_amount_stroops_per_tx=LIMIT,
    max_amount_stroops_per_day=5 * LIMIT,
    max_time_window_seconds=300,
    max_signature_expiration_ledgers=100,
)


# ---------------------------------------------------------------- building trees

def call(contract: str, function: str, args: list[sx.SCVal]) -> sx.InvokeContractArgs:
    return sx.InvokeContractArgs(
        contract_address=Address(contract).to_xdr_sc_address(),
        function_name=sx.SCSymbol(function.encode()), args=args,
    )


def node(contract_fn: sx.InvokeContractArgs, *subs: sx.SorobanAuthorizedInvocation
         ) -> sx.SorobanAuthorizedInvocation:
    return sx.SorobanAuthorizedInvocation(
        function=sx.SorobanAuthorizedFunction(
            sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
            contract_fn=contract_fn),
        sub_invocations=list(subs),
    )


def transfer(amount: sx.SCVal | int, *, contract: str = XLM_SAC, function: str = "transfer",
             extra: list[sx.SCVal] | None = None) -> sx.InvokeContractArgs:
    value = scval.to_int128(amount) if isinstance(amount, int) else amount
    return call(contract, function, [scval.to_address(SOURCE), scval.to_address(DESTINATION),
                                     value, *(extra or [])])


def source_entry(root: sx.SorobanAuthorizedInvocation) -> sx.SorobanAuthorizationEntry:
    return sx.SorobanAuthorizationEntry(
        credentials=sx.SorobanCredentials(
            sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT),
        root_invocation=root)


def address_entry(root: sx.SorobanAuthorizedInvocation, address: str = SOURCE,
                  expiration: int = 0) -> sx.SorobanAuthorizationEntry:
    return sx.SorobanAuthorizationEntry(
        credentials=sx.SorobanCredentials(
            sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS,
            address=sx.SorobanAddressCredentials(
                address=Address(address).to_xdr_sc_address(), nonce=sx.Int64(7),
                signature_expiration_ledger=sx.Uint32(expiration), signature=scval.to_void())),
        root_invocation=root)


def create_contract_node(v2: bool = False) -> sx.SorobanAuthorizedInvocation:
    preimage = sx.ContractIDPreimage(
        sx.ContractIDPreimageType.CONTRACT_ID_PREIMAGE_FROM_ADDRESS,
        from_address=sx.ContractIDPreimageFromAddress(
            address=Address(SOURCE).to_xdr_sc_address(), salt=sx.Uint256(bytes(32))))
    executable = sx.ContractExecutable(
        sx.ContractExecutableType.CONTRACT_EXECUTABLE_WASM, wasm_hash=sx.Hash(bytes(32)))
    if v2:
        fn = sx.SorobanAuthorizedFunction(
            sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CREATE_CONTRACT_V2_HOST_FN,
            create_contract_v2_host_fn=sx.CreateContractArgsV2(
                contract_id_preimage=preimage, executable=executable, constructor_args=[]))
    else:
        fn = sx.SorobanAuthorizedFunction(
            sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CREATE_CONTRACT_HOST_FN,
            create_contract_host_fn=sx.CreateContractArgs(
                contract_id_preimage=preimage, executable=executable))
    return sx.SorobanAuthorizedInvocation(function=fn, sub_invocations=[])


def tx_with(root: sx.InvokeContractArgs, *entries: sx.SorobanAuthorizationEntry):  # noqa: ANN201
    tx = build_tx()
    tx.operations[0].host_function = sx.HostFunction(
        sx.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT, invoke_contract=root)
    tx.operations[0].auth = list(entries)
    return tx


def decide_tx(tx, policy: KeyPolicy = POLICY, spent: int = 0) -> Allow | Refuse:  # noqa: ANN001
    return check_transaction(tx.to_xdr_object(), policy, network_passphrase=PASSPHRASE,
                             spent_last_24h=spent, now=now())


def decide_entry(entry: sx.SorobanAuthorizationEntry, *, spent: int = 0,
                 ledgers: LedgerClaim | None = None) -> Allow | Refuse:
    return check_authorization(
        entry, POLICY, network_passphrase=PASSPHRASE, signer_account=SOURCE,
        spent_last_24h=spent, ledgers=ledgers or LedgerClaim(1000, 1050, 5000))


def rule(decision: Allow | Refuse) -> str:
    assert isinstance(decision, Refuse), decision
    return decision.rule


APPROVE = call(XLM_SAC, "approve", [scval.to_address(SOURCE), scval.to_address(STRANGER),
                                    scval.to_int128(2**100), scval.to_uint32(10**9)])
TRANSFER_FROM = call(XLM_SAC, "transfer_from", [
    scval.to_address(STRANGER), scval.to_address(SOURCE), scval.to_address(STRANGER),
    scval.to_int128(5)])

# Every sub-invocation a root-only check would let through under a legitimate root transfer(5).
NESTED_HOLES = {
    "approve 2^100": (node(APPROVE), "function_names"),
    "transfer with u128 amount": (node(transfer(scval.to_uint128(10**10))), "arguments"),
    "transfer with i256 amount": (node(transfer(scval.to_int256(10**10))), "arguments"),
    "transfer with a fourth argument": (node(transfer(5, extra=[scval.to_int128(1)])),
                                        "arguments"),
    "transfer_from": (node(TRANSFER_FROM), "function_names"),
    "transfer on a contract outside the allow list": (node(transfer(5, contract=OTHER_CONTRACT)),
                                                      "contract_ids"),
    "create_contract": (create_contract_node(), "function_names"),
    "create_contract_v2": (create_contract_node(v2=True), "function_names"),
}


@pytest.mark.parametrize("name", list(NESTED_HOLES))
def test_a_sub_invocation_outside_the_policy_is_refused_at_any_depth(name):
    hole, expected = NESTED_HOLES[name]
    for depth in (1, 2, 5):
        tree = hole
        for _ in range(depth - 1):
            tree = node(transfer(1), tree)  # allowed wrappers around the hole
        tx = tx_with(transfer(5), source_entry(node(transfer(5), tree)))
        d = decide_tx(tx)
        assert rule(d) == expected, (name, depth, d)
        assert "auth[0]" in d.detail  # type: ignore[union-attr] - names where in the tree
        # SignAuthorizationEntry has the same hole and the same answer.
        assert rule(decide_entry(address_entry(node(transfer(5), tree)))) == expected


@pytest.mark.parametrize("name", list(NESTED_HOLES))
def test_an_extra_entry_outside_the_policy_is_refused(name):
    hole, expected = NESTED_HOLES[name]
    tx = tx_with(transfer(5), source_entry(node(transfer(5))), source_entry(hole))
    assert rule(decide_tx(tx)) == expected
    tx = tx_with(transfer(5), source_entry(node(transfer(5))), address_entry(hole, STRANGER))
    assert rule(decide_tx(tx)) == expected


def test_a_create_contract_host_function_is_refused():
    tx = build_tx()
    fn = create_contract_node().function.create_contract_host_fn
    tx.operations[0].host_function = sx.HostFunction(
        sx.HostFunctionType.HOST_FUNCTION_TYPE_CREATE_CONTRACT, create_contract=fn)
    assert rule(decide_tx(tx)) == "operations"


@pytest.mark.parametrize("amount", [
    scval.to_uint128(5), scval.to_int256(5), scval.to_uint256(5), scval.to_int64(5),
    scval.to_uint64(5), scval.to_uint32(5), scval.to_int32(5), scval.to_int128(0),
    scval.to_int128(-5), scval.to_string("5"), scval.to_symbol("five"),
])
def test_every_other_integer_type_or_a_non_positive_amount_is_refused_at_root_and_nested(amount):
    assert rule(decide_tx(tx_with(transfer(amount)))) == "arguments"
    tx = tx_with(transfer(5), source_entry(node(transfer(5), node(transfer(amount)))))
    assert rule(decide_tx(tx)) == "arguments"


def test_every_amount_in_the_tree_counts_and_the_root_with_its_own_entry_counts_once():
    # Root transfer(5) and the SOURCE_ACCOUNT entry that authorises it: one transfer of 5.
    assert decide_tx(tx_with(transfer(5), source_entry(node(transfer(5))))) == Allow(5)
    # A root of 1 stroop cannot hide a nested 1e10 behind it: 1 + 1e10 > the per-tx limit.
    hidden = tx_with(transfer(1), source_entry(node(transfer(1), node(transfer(LIMIT)))))
    assert rule(decide_tx(hidden)) == "max_amount_stroops_per_tx"
    # An entry whose root differs from the call counts in full beside it.
    assert decide_tx(tx_with(transfer(5), source_entry(node(transfer(7))))) == Allow(12)
    # Two identical entries: only one is the root's own; the other counts.
    assert decide_tx(tx_with(transfer(5), source_entry(node(transfer(5))),
                             source_entry(node(transfer(5))))) == Allow(10)


def test_nested_amounts_count_toward_the_daily_limit():
    # The issue: four transactions, each a nested 1e10 under a 1-stroop root; the day rose by 4.
    policy = dataclasses.replace(POLICY, max_amount_stroops_per_tx=2 * LIMIT,
                                 max_amount_stroops_per_day=3 * LIMIT)
    tx = tx_with(transfer(1), source_entry(node(transfer(1), node(transfer(LIMIT)))))
    spent = 0
    decisions = []
    for _ in range(4):
        d = decide_tx(tx, policy, spent)
        decisions.append(d)
        if isinstance(d, Allow):
            spent += d.amount_stroops
    assert decisions[:2] == [Allow(LIMIT + 1)] * 2
    assert [rule(d) for d in decisions[2:]] == ["max_amount_stroops_per_day"] * 2


def test_other_credential_types_are_refused():
    entry = source_entry(node(transfer(5)))
    entry.credentials = sx.SorobanCredentials(
        sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2,
        address_v2=address_entry(node(transfer(5))).credentials.address)
    assert rule(decide_tx(tx_with(transfer(5), entry))) == "credentials"


# ---------------------------------------------------------------- expiration ledger

def test_an_expiration_of_2_pow_32_minus_1_is_refused():
    entry = address_entry(node(transfer(5)))
    d = decide_entry(entry, ledgers=LedgerClaim(1000, 2**32 - 1, 5000))
    assert rule(d) == "max_signature_expiration_ledgers"
    # Nor can the caller claim the network is at ledger 2^32 - 101 to make it look near.
    ceiling = ledger_ceiling(now(), None)
    d = decide_entry(entry, ledgers=LedgerClaim(2**32 - 101, 2**32 - 1, ceiling))
    assert rule(d) == "max_signature_expiration_ledgers"
    assert decide_entry(entry, ledgers=LedgerClaim(1000, 1100, 5000)) == Allow(5)
    assert rule(decide_entry(entry, ledgers=LedgerClaim(1000, 1101, 5000))) == \
        "max_signature_expiration_ledgers"
    assert rule(decide_entry(entry, ledgers=LedgerClaim(1000, 999, 5000))) == \
        "max_signature_expiration_ledgers"


def test_the_ledger_ceiling_grows_at_most_one_ledger_a_second_from_the_anchor():
    t, slack = 1_800_000_000.0, LEDGER_CLAIM_SLACK
    assert ledger_ceiling(t, None) == int(t) - 1_443_571_200
    anchor = LedgerAnchor(50_000_000, t)
    assert ledger_ceiling(t + 10, anchor) == 50_000_010 + slack
    assert ledger_ceiling(t + 10.9, anchor) == 50_000_010 + slack
    assert ledger_ceiling(t, LedgerAnchor(50_000_000, t + 5)) == 50_000_000 + slack  # clock back
    # An operator who knows the network closes a ledger every 5 s at most tightens the pace.
    assert ledger_ceiling(t + 50, anchor, min_close_seconds=5) == 50_000_010 + slack


# ---------------------------------------------------------------- property test

# A plain-Python model of a call tree, judged by an independent specification.
KINDS = ["address", "i128", "u128", "i256", "i64", "u32", "symbol"]
CONTRACTS = [XLM_SAC, OTHER_CONTRACT, THIRD_CONTRACT]
FUNCTIONS = ["transfer", "approve", "transfer_from", "distribute_winnings", "burn", "pay"]


@dataclass(frozen=True)
class Node:
    contract: str  # "" = a create_contract host function node
    function: str
    args: tuple[tuple[str, int], ...]  # (kind, value)
    subs: tuple[Node, ...] = ()


# The specification: allowed (contract, function) pairs and their argument kinds.
SPEC = {
    (XLM_SAC, "transfer"): ("address", "address", "i128"),
    (THIRD_CONTRACT, "distribute_winnings"): ("address", "address", "i128"),
    (THIRD_CONTRACT, "pay"): ("address", "u32", "i128", "symbol"),
}
PROPERTY_POLICY = dataclasses.replace(
    POLICY, max_amount_stroops_per_tx=10**12, max_amount_stroops_per_day=10**13, calls=(
    CallRule(frozenset({XLM_SAC}), "transfer", TRANSFER_ARGS),
    CallRule(frozenset({THIRD_CONTRACT}), "distribute_winnings", TRANSFER_ARGS),
    CallRule(frozenset({THIRD_CONTRACT}), "pay", (
        ArgSpec("to", "address"), ArgSpec("memo_id", "u32"), ArgSpec("amount", "amount"),
        ArgSpec("reason", "symbol"))),
))


def spec_amount(n: Node) -> int | None:
    """The money a node moves, or None if the specification forbids it."""
    kinds = SPEC.get((n.contract, n.function))
    if kinds is None or tuple(k for k, _ in n.args) != kinds:
        return None
    amounts = [v for k, v in n.args if k == "i128"]
    if any(v <= 0 for v in amounts):
        return None
    return sum(amounts)


def spec_tree_amounts(n: Node) -> list[int | None]:
    out = [spec_amount(n)]
    for s in n.subs:
        out += spec_tree_amounts(s)
    return out


def spec_decision(root: Node, entries: list[Node]) -> int | None:
    amounts = [spec_amount(root)]
    duplicate_dropped = False
    for e in entries:
        tree = spec_tree_amounts(e)
        if not duplicate_dropped and e.contract == root.contract and \
                e.function == root.function and e.args == root.args:
            duplicate_dropped = True
            tree = tree[1:] + [0 if tree[0] is not None else None]
        amounts += tree
    if any(a is None for a in amounts):
        return None
    total = sum(a for a in amounts if a is not None)
    return total if total <= PROPERTY_POLICY.max_amount_stroops_per_tx else None


def normal(kind: str, value: int) -> tuple[str, int]:
    """One plain value per distinct XDR value, so the specification compares like the host."""
    if kind == "address":
        return kind, value % 2
    if kind in ("u128", "u32", "symbol"):
        return kind, abs(value) % (2**32 if kind == "u32" else 100 if kind == "symbol" else 2**64)
    return kind, value


def to_scval(kind: str, value: int) -> sx.SCVal:
    return {
        "address": lambda: scval.to_address(SOURCE if value % 2 else DESTINATION),
        "i128": lambda: scval.to_int128(value),
        "u128": lambda: scval.to_uint128(abs(value)),
        "i256": lambda: scval.to_int256(value),
        "i64": lambda: scval.to_int64(value),
        "u32": lambda: scval.to_uint32(abs(value) % 2**32),
        "symbol": lambda: scval.to_symbol(f"s{abs(value) % 100}"),
    }[kind]()


def to_invocation(n: Node) -> sx.SorobanAuthorizedInvocation:
    if not n.contract:
        root = create_contract_node()
    else:
        root = node(call(n.contract, n.function, [to_scval(k, v) for k, v in n.args]))
    root.sub_invocations = [to_invocation(s) for s in n.subs]
    return root


def well_formed(contract: str, function: str) -> st.SearchStrategy[tuple[tuple[str, int], ...]]:
    """Mostly the right argument kinds for the pair (so allowed trees are common), sometimes
    anything."""
    kinds = SPEC.get((contract, function), ("address", "address", "i128"))
    amount = st.integers(min_value=-3, max_value=10**11)
    right = st.tuples(*(st.tuples(st.just(k), amount) for k in kinds))
    anything = st.lists(st.tuples(st.sampled_from(KINDS), amount), max_size=5).map(tuple)
    return st.one_of(right, right, right, anything).map(
        lambda args: tuple(normal(k, v) for k, v in args))


@st.composite
def nodes(draw: st.DrawFn, depth: int = 3) -> Node:
    if draw(st.integers(0, 30)) == 0:
        return Node("", "create_contract", ())
    any_pair = st.tuples(st.sampled_from(CONTRACTS), st.sampled_from(FUNCTIONS))
    contract, function = draw(st.one_of(st.sampled_from(list(SPEC)), any_pair))
    args = draw(well_formed(contract, function))
    subs = tuple(draw(st.lists(nodes(depth - 1), max_size=2))) if depth > 0 else ()
    return Node(contract, function, args, subs)


@st.composite
def allowed_leaning_root(draw: st.DrawFn) -> Node:
    pair = draw(st.sampled_from([*SPEC, (OTHER_CONTRACT, "transfer"), (XLM_SAC, "approve")]))
    return Node(pair[0], pair[1], draw(well_formed(*pair)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(root=allowed_leaning_root(), entries=st.lists(nodes(), max_size=3),
       copy_root=st.booleans())
def test_random_auth_trees_are_signed_exactly_when_the_specification_allows(
    root, entries, copy_root
):
    if copy_root:  # the usual shape: the first entry authorises the root call itself
        entries = [Node(root.contract, root.function, root.args,
                        entries[0].subs if entries else ()), *entries[1:]]
    expected = spec_decision(root, entries)
    if not root.contract:
        return
    root_call = to_invocation(Node(root.contract, root.function, root.args)).function.contract_fn
    tx = tx_with(root_call, *(source_entry(to_invocation(e)) for e in entries))
    decision = check_transaction(tx.to_xdr_object(), PROPERTY_POLICY,
                                 network_passphrase=PASSPHRASE, spent_last_24h=0, now=now())
    if expected is None:
        assert isinstance(decision, Refuse), (root, entries, decision)
    else:
        assert decision == Allow(expected), (root, entries, decision)


@settings(max_examples=200, deadline=None)
@given(tree=nodes())
def test_random_authorization_entries_are_signed_exactly_when_the_specification_allows(tree):
    amounts = spec_tree_amounts(tree)
    forbidden = any(a is None for a in amounts) or not tree.contract
    total = sum(a for a in amounts if a is not None)
    decision = check_authorization(
        address_entry(to_invocation(tree)), PROPERTY_POLICY, network_passphrase=PASSPHRASE,
        signer_account=SOURCE, spent_last_24h=0, ledgers=LedgerClaim(1000, 1010, 5000))
    if forbidden or total > PROPERTY_POLICY.max_amount_stroops_per_tx:
        assert isinstance(decision, Refuse), (tree, decision)
    else:
        assert decision == Allow(total), (tree, decision)
