"""The per-key policy, rule by rule, on real decoded transactions (no I/O)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stellar_sdk import Address, Keypair, Network, scval
from stellar_sdk import xdr as sx

from signer_service.ledger_claims import LedgerClaim
from signer_service.policy import (
    TRANSFER_ARGS,
    Allow,
    ApprovalRule,
    CallRule,
    KeyPolicy,
    Refuse,
    check_authorization,
    check_transaction,
    i128_value,
)
from tests.signer.envelopes import (
    DESTINATION,
    OTHER_CONTRACT,
    PASSPHRASE,
    SOURCE,
    XLM_SAC,
    build_tx,
    now,
    transfer_args,
)

POLICY = KeyPolicy(
    network_passphrase=PASSPHRASE,
    source_accounts=frozenset({SOURCE}),
    calls=(CallRule(frozenset({XLM_SAC}), "transfer", TRANSFER_ARGS),
           CallRule(frozenset({XLM_SAC}), "distribute_winnings", TRANSFER_ARGS)),
    max_fee_stroops=2_000_000,
    max_amount_stroops_per_tx=10_000_000_000,
    max_amount_stroops_per_day=50_000_000_000,
    max_time_window_seconds=300,
)


def decide(spent: int = 0, policy: KeyPolicy = POLICY, at: int | None = None,
           passphrase: str = PASSPHRASE, **tx: object) -> Allow | Refuse:
    return check_transaction(
        build_tx(**tx).to_xdr_object(), policy,  # type: ignore[arg-type]
        network_passphrase=passphrase,
        spent_last_24h=spent, now=at if at is not None else now(),
    )


def decide_sdk_tx(tx) -> Allow | Refuse:  # noqa: ANN001 - a stellar_sdk Transaction
    return check_transaction(tx.to_xdr_object(), POLICY, network_passphrase=PASSPHRASE,
                             spent_last_24h=0, now=now())


def refused_by(decision: Allow | Refuse) -> str:
    assert isinstance(decision, Refuse), decision
    return decision.rule


def test_a_transfer_within_every_limit_is_allowed_with_its_amount():
    assert decide(amount=123_456_789) == Allow(123_456_789)


def test_distribute_winnings_is_allowed_like_transfer():
    assert decide(function="distribute_winnings", amount=5) == Allow(5)


def test_another_network_is_refused_by_network_passphrase():
    assert refused_by(decide(passphrase=Network.PUBLIC_NETWORK_PASSPHRASE)) == "network_passphrase"


def test_an_unlisted_source_account_is_refused():
    other = Keypair.random().public_key
    d = decide(source=other)
    assert refused_by(d) == "source_accounts"
    assert other in d.message  # type: ignore[union-attr]


def test_an_unlisted_operation_source_is_refused():
    tx = build_tx()
    tx.operations[0].source = sx_muxed(Keypair.random().public_key)
    d = decide_sdk_tx(tx)
    assert refused_by(d) == "source_accounts"


def sx_muxed(account: str):  # noqa: ANN201
    from stellar_sdk import MuxedAccount

    return MuxedAccount(account)


def test_two_operations_are_refused():
    assert refused_by(decide(extra_payment=True)) == "operations"


def test_a_payment_operation_is_refused():
    d = decide(payment_only=True)
    assert refused_by(d) == "operations"
    assert "PAYMENT" in d.message  # type: ignore[union-attr]


def test_an_upload_wasm_host_function_is_refused():
    tx = build_tx()
    tx.operations[0].host_function = sx.HostFunction(
        sx.HostFunctionType.HOST_FUNCTION_TYPE_UPLOAD_CONTRACT_WASM, wasm=b"\0asm"
    )
    d = decide_sdk_tx(tx)
    assert refused_by(d) == "operations"


def test_an_unlisted_contract_is_refused():
    assert refused_by(decide(contract=OTHER_CONTRACT)) == "contract_ids"


def test_an_unlisted_function_is_refused():
    d = decide(function="approve")
    assert refused_by(d) == "function_names"
    assert "approve" in d.message  # type: ignore[union-attr]


@pytest.mark.parametrize("args", [
    [],
    [scval.to_address(SOURCE), scval.to_address(DESTINATION)],
    transfer_args(1) + [scval.to_int128(1)],
    [scval.to_symbol("x"), scval.to_address(DESTINATION), scval.to_int128(1)],
    [scval.to_address(SOURCE), scval.to_address(DESTINATION), scval.to_int64(1)],
    [scval.to_address(SOURCE), scval.to_address(DESTINATION), scval.to_uint128(1)],
    [scval.to_address(SOURCE), scval.to_address(DESTINATION), scval.to_int128(0)],
    [scval.to_address(SOURCE), scval.to_address(DESTINATION), scval.to_int128(-5)],
])
def test_arguments_that_are_not_from_to_positive_i128_amount_are_refused(args):
    assert refused_by(decide(args=args)) == "arguments"


def test_amount_over_the_per_transaction_limit_is_refused():
    d = decide(amount=POLICY.max_amount_stroops_per_tx + 1)
    assert refused_by(d) == "max_amount_stroops_per_tx"
    limit = POLICY.max_amount_stroops_per_tx
    assert decide(amount=limit) == Allow(limit)


def test_amount_over_the_rolling_day_is_refused():
    spent = POLICY.max_amount_stroops_per_day - 10
    assert decide(spent=spent, amount=10) == Allow(10)
    assert refused_by(decide(spent=spent, amount=11)) == "max_amount_stroops_per_day"


def test_fee_over_the_cap_is_refused_with_the_numbers():
    d = decide(fee=5_000_000)
    assert isinstance(d, Refuse)
    assert d.message == "policy rule max_fee_stroops refused: fee 5000000 > 2000000"


def test_missing_time_bounds_are_refused():
    assert refused_by(decide(timeout=None)) == "time_bounds"


def test_unbounded_max_time_is_refused():
    assert refused_by(decide(max_time=0)) == "time_bounds"


def test_an_expired_max_time_is_refused():
    t = now()
    assert refused_by(decide(max_time=t - 1, at=t)) == "time_bounds"
    assert refused_by(decide(max_time=t, at=t)) == "time_bounds"


def test_max_time_beyond_the_window_is_refused():
    t = now()
    assert decide(max_time=t + 300, at=t) == Allow(1_000_000)
    assert refused_by(decide(max_time=t + 301, at=t)) == "max_time_window_seconds"


def test_wildcards_allow_any_source_and_contract_but_only_the_listed_functions():
    open_policy = dataclasses.replace(
        POLICY, source_accounts=frozenset("*"),
        calls=(CallRule(frozenset("*"), "transfer", TRANSFER_ARGS),),
    )
    assert decide(policy=open_policy, source=Keypair.random().public_key,
                  contract=OTHER_CONTRACT, amount=7) == Allow(7)
    assert refused_by(decide(policy=open_policy, contract=OTHER_CONTRACT,
                             function="anything")) == "function_names"


@given(st.integers(min_value=-(2**127), max_value=2**127 - 1))
def test_i128_decoding_round_trips(value):
    assert i128_value(scval.to_int128(value).i128) == value


@settings(max_examples=60, deadline=None)
@given(
    amount=st.integers(min_value=1, max_value=2**127 - 1),
    spent=st.integers(min_value=0, max_value=10**12),
    per_tx=st.integers(min_value=1, max_value=10**12),
    per_day=st.integers(min_value=1, max_value=10**12),
)
def test_amount_rules_allow_exactly_what_fits_both_limits(amount, spent, per_tx, per_day):
    policy = dataclasses.replace(
        POLICY, max_amount_stroops_per_tx=per_tx, max_amount_stroops_per_day=per_day
    )
    d = decide(policy=policy, spent=spent, amount=amount)
    if amount > per_tx:
        assert refused_by(d) == "max_amount_stroops_per_tx"
    elif spent + amount > per_day:
        assert refused_by(d) == "max_amount_stroops_per_day"
    else:
        assert d == Allow(amount)


@settings(max_examples=40, deadline=None)
@given(offset=st.integers(min_value=-10**6, max_value=10**6))
def test_time_window_property(offset):
    t = 1_800_000_000
    d = decide(max_time=max(t + offset, 1), at=t)
    if t + offset <= t:
        assert refused_by(d) == "time_bounds"
    elif offset > POLICY.max_time_window_seconds:
        assert refused_by(d) == "max_time_window_seconds"
    else:
        assert isinstance(d, Allow)


def auth_entry(address: str, *, contract: str = XLM_SAC, function: str = "transfer",
               amount: int = 1_000) -> sx.SorobanAuthorizationEntry:
    invocation = sx.SorobanAuthorizedInvocation(
        function=sx.SorobanAuthorizedFunction(
            sx.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
            contract_fn=sx.InvokeContractArgs(
                contract_address=Address(contract).to_xdr_sc_address(),
                function_name=sx.SCSymbol(function.encode()),
                args=transfer_args(amount, source=address),
            ),
        ),
        sub_invocations=[],
    )
    credentials = sx.SorobanCredentials(
        sx.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS,
        address=sx.SorobanAddressCredentials(
            address=Address(address).to_xdr_sc_address(), nonce=sx.Int64(42),
            signature_expiration_ledger=sx.Uint32(0), signature=scval.to_void(),
        ),
    )
    return sx.SorobanAuthorizationEntry(credentials=credentials, root_invocation=invocation)


LEDGERS = LedgerClaim(current=1_000, expiration=1_050, ceiling=2_000)


def decide_auth(entry: sx.SorobanAuthorizationEntry, spent: int = 0,
                ledgers: LedgerClaim = LEDGERS) -> Allow | Refuse:
    return check_authorization(entry, POLICY, network_passphrase=PASSPHRASE,
                               signer_account=SOURCE, spent_last_24h=spent, ledgers=ledgers)


def test_authorization_entry_rules_follow_the_transaction_rules():
    assert decide_auth(auth_entry(SOURCE, amount=77)) == Allow(77)
    assert refused_by(decide_auth(auth_entry(SOURCE, contract=OTHER_CONTRACT))) == "contract_ids"
    assert refused_by(decide_auth(auth_entry(SOURCE, function="burn"))) == "function_names"
    big = POLICY.max_amount_stroops_per_tx + 1
    assert refused_by(decide_auth(auth_entry(SOURCE, amount=big))) == "max_amount_stroops_per_tx"
    assert refused_by(decide_auth(auth_entry(SOURCE), spent=POLICY.max_amount_stroops_per_day)) \
        == "max_amount_stroops_per_day"


def test_authorization_for_another_address_is_refused():
    d = decide_auth(auth_entry(DESTINATION))
    assert refused_by(d) == "credentials"


def with_sub_invocation(entry: sx.SorobanAuthorizationEntry, amount: int):
    sub = auth_entry(SOURCE, amount=amount).root_invocation
    entry.root_invocation.sub_invocations.append(sub)
    return entry


def test_a_nested_authorised_transfer_over_the_limit_is_refused():
    big = POLICY.max_amount_stroops_per_tx + 1
    d = decide_auth(with_sub_invocation(auth_entry(SOURCE, amount=1), big))
    assert refused_by(d) == "max_amount_stroops_per_tx"
    # Every amount in the tree counts: root 5 + nested 5.
    assert decide_auth(with_sub_invocation(auth_entry(SOURCE, amount=5), 5)) == Allow(10)


def test_a_transaction_whose_auth_entries_move_too_much_is_refused():
    tx = build_tx(amount=1)
    entry = auth_entry(SOURCE, amount=POLICY.max_amount_stroops_per_tx + 1)
    tx.operations[0].auth = [entry]
    d = decide_sdk_tx(tx)
    assert refused_by(d) == "max_amount_stroops_per_tx"
    tx.operations[0].auth = [auth_entry(SOURCE, amount=1)]
    assert decide_sdk_tx(tx) == Allow(1)


def test_a_key_whose_payments_need_approval_authorises_no_amount_above_it_by_entry():
    """An authorization entry carries no approvals and can be put in any transaction: with
    an approvals rule, an entry moving more than the threshold is refused, below it allowed."""
    rule = ApprovalRule(frozenset({Keypair.random().public_key}), 1,
                        {"native": 100, XLM_SAC: 100})
    policy = dataclasses.replace(POLICY, approvals=rule)

    def decide(amount: int) -> Allow | Refuse:
        return check_authorization(auth_entry(SOURCE, amount=amount), policy,
                                   network_passphrase=PASSPHRASE, signer_account=SOURCE,
                                   spent_last_24h=0, ledgers=LEDGERS)

    assert decide(100) == Allow(100)
    assert refused_by(decide(101)) == "approvals"
