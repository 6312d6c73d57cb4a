"""Classic payment batches and the contract batch under deny by default (no I/O)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stellar_sdk import Account, Asset, Keypair, MuxedAccount, TransactionBuilder, scval
from stellar_sdk import xdr as sx

from signer_service.config import ConfigError, parse_config
from signer_service.policy import (
    MAX_OPERATIONS,
    NATIVE,
    TRANSFER_ARGS,
    Allow,
    ArgSpec,
    AssetLimits,
    CallRule,
    ChannelFunding,
    KeyPolicy,
    Refuse,
    check_transaction,
    served_payers,
)
from tests.signer.envelopes import DESTINATION, PASSPHRASE, SOURCE, XLM_SAC, now

ISSUER = Keypair.from_raw_ed25519_seed(bytes(range(2, 34))).public_key
OTHER = Keypair.from_raw_ed25519_seed(bytes(range(3, 35))).public_key
USDC = Asset("USDC", ISSUER)
USDC_NAME = f"USDC:{ISSUER}"
EURT = Asset("EURT", ISSUER)
PAYOUT_CONTRACT = "CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABSC4"
BATCH_ARGS = (ArgSpec("from", "address"), ArgSpec("payouts", "payouts"))
NATIVE_LIMITS = AssetLimits(per_op=1_000_000_000, per_tx=10_000_000_000,
                            per_day=50_000_000_000)
USDC_LIMITS = AssetLimits(per_op=5_000_000, per_tx=20_000_000, per_day=30_000_000)

POLICY = KeyPolicy(
    network_passphrase=PASSPHRASE,
    source_accounts=frozenset({SOURCE}),
    calls=(CallRule(frozenset({XLM_SAC}), "transfer", TRANSFER_ARGS),
           CallRule(frozenset({PAYOUT_CONTRACT}), "distribute_batch", BATCH_ARGS)),
    max_fee_stroops=20_000,
    max_amount_stroops_per_tx=NATIVE_LIMITS.per_tx,
    max_amount_stroops_per_day=NATIVE_LIMITS.per_day,
    max_time_window_seconds=300,
    max_amount_stroops_per_op=NATIVE_LIMITS.per_op,
    payment_assets={NATIVE: NATIVE_LIMITS, USDC_NAME: USDC_LIMITS},
)


def units(stroops: int) -> str:
    """stellar-sdk takes amounts as decimal strings: integer stroops, exactly."""
    return f"{stroops // 10**7}.{stroops % 10**7:07d}"


def batch(
    payments: list[tuple[str, Asset, int]], *, source: str = SOURCE, op_source: str | None = None,
    fee: int = 100, memo: str | None = None, bounded: bool = True,
) -> sx.Transaction:
    """A classic batch: ("pay" | "create", asset, stroops) per operation, to DESTINATION."""
    builder = TransactionBuilder(Account(source, 1), PASSPHRASE, base_fee=fee)
    for kind, asset, amount in payments:
        if kind == "create":
            builder.append_create_account_op(DESTINATION, units(amount), source=op_source)
        else:
            builder.append_payment_op(DESTINATION, asset, units(amount), source=op_source)
    if memo is not None:
        builder.add_text_memo(memo)
    if bounded:
        builder.set_timeout(60)
    else:
        builder.add_time_bounds(0, 0)
    return builder.build().transaction.to_xdr_object()


def decide(tx: sx.Transaction, *, spent: int = 0, policy: KeyPolicy = POLICY) -> Allow | Refuse:
    return check_transaction(tx, policy, network_passphrase=PASSPHRASE, spent_last_24h=spent,
                             now=now(), signer_account=SOURCE)


def refused(decision: Allow | Refuse, rule: str) -> str:
    assert isinstance(decision, Refuse), decision
    assert decision.rule == rule, decision
    return decision.detail


XLM = Asset.native()


# ------------------------------------------------------------------ classic batches


def test_a_batch_of_100_payments_and_create_accounts_is_allowed_with_its_sum():
    ops = [("pay", XLM, 1_000 + i) for i in range(99)] + [("create", XLM, 20_000_000)]
    assert decide(batch(ops, fee=100)) == Allow(sum(a for _, _, a in ops))


def test_an_explicit_operation_source_equal_to_the_key_is_allowed():
    assert decide(batch([("pay", XLM, 5)], op_source=SOURCE)) == Allow(5)


def test_a_channel_transaction_source_with_the_key_as_operation_source_is_allowed():
    policy = dataclasses.replace(POLICY, source_accounts=frozenset({SOURCE, OTHER}))
    tx = batch([("pay", XLM, 5)] * 3, source=OTHER, op_source=SOURCE)
    assert decide(tx, policy=policy) == Allow(15)


def test_one_operation_in_a_disallowed_asset_refuses_the_batch():
    detail = refused(decide(batch([("pay", XLM, 5), ("pay", EURT, 5)])), "assets")
    assert "op[1]" in detail and "EURT" in detail


def test_an_operation_source_that_is_another_account_is_refused():
    detail = refused(decide(batch([("pay", XLM, 5)], op_source=OTHER)), "source_accounts")
    assert OTHER in detail


def test_no_operation_source_under_a_channel_transaction_source_is_refused():
    policy = dataclasses.replace(POLICY, source_accounts=frozenset({SOURCE, OTHER}))
    refused(decide(batch([("pay", XLM, 5)], source=OTHER), policy=policy), "source_accounts")


def with_extra_operations(tx: sx.Transaction, extra: int) -> sx.Transaction:
    """stellar-sdk's XDR refuses to build (or decode) more than MAX_OPS_PER_TX operations, so
    an envelope with 101 never reaches the policy (INVALID_ARGUMENT); the policy refuses it
    anyway, should a decoder ever accept one."""
    tx.operations += [tx.operations[0]] * extra
    return tx


def test_101_operations_are_refused():
    tx = with_extra_operations(batch([("pay", XLM, 1)] * MAX_OPERATIONS), 1)
    assert "101" in refused(decide(tx), "operations")


def test_a_sum_over_the_per_transaction_limit_is_refused():
    each = NATIVE_LIMITS.per_tx // 10 + 1
    detail = refused(decide(batch([("pay", XLM, each)] * 10)), "max_amount_stroops_per_tx")
    assert str(each * 10) in detail


def test_one_operation_over_the_per_operation_limit_is_refused():
    refused(decide(batch([("pay", XLM, 5), ("pay", XLM, NATIVE_LIMITS.per_op + 1)])),
            "max_amount_stroops_per_op")


def test_a_batch_that_exhausts_the_daily_limit_is_refused():
    ops = [("pay", XLM, 100)] * 10
    assert isinstance(decide(batch(ops), spent=NATIVE_LIMITS.per_day - 1000), Allow)
    refused(decide(batch(ops), spent=NATIVE_LIMITS.per_day - 999), "max_amount_stroops_per_day")


def test_a_non_native_asset_counts_toward_its_own_limits():
    assert decide(batch([("pay", USDC, 5_000_000)] * 4)) == Allow(0, ((USDC_NAME, 20_000_000),))
    refused(decide(batch([("pay", USDC, 5_000_001)])), "max_amount_stroops_per_op")
    refused(decide(batch([("pay", USDC, 5_000_000)] * 5)), "max_amount_stroops_per_tx")
    tx = batch([("pay", USDC, 1_000_000)])
    spent = {NATIVE: 0, USDC_NAME: USDC_LIMITS.per_day}
    decision = check_transaction(tx, POLICY, network_passphrase=PASSPHRASE, spent_last_24h=0,
                                 now=now(), signer_account=SOURCE, spent_of_asset=spent.get)
    assert "USDC" in refused(decision, "max_amount_stroops_per_day")


def test_a_batch_mixing_two_allowed_assets_sums_each_against_its_own_limits():
    assert decide(batch([("pay", XLM, 5), ("pay", USDC, 6), ("create", XLM, 7)])) == \
        Allow(12, ((USDC_NAME, 6),))
    # USDC's per-tx limit is far below XLM's: 5 + 5 units of USDC exceed it, whatever XLM adds.
    mixed = batch([("pay", XLM, 1), ("pay", USDC, 5_000_000), ("pay", USDC, 5_000_000)] * 3)
    assert "USDC" in refused(decide(mixed), "max_amount_stroops_per_tx")


def test_a_mix_with_invoke_host_function_is_refused():
    builder = TransactionBuilder(Account(SOURCE, 1), PASSPHRASE, base_fee=100)
    builder.append_payment_op(DESTINATION, XLM, "1")
    builder.append_invoke_contract_function_op(
        XLM_SAC, "transfer", [scval.to_address(SOURCE), scval.to_address(DESTINATION),
                              scval.to_int128(5)])
    detail = refused(decide(builder.set_timeout(60).build().transaction.to_xdr_object()),
                     "operations")
    assert "INVOKE_HOST_FUNCTION" in detail


@pytest.mark.parametrize("append", [
    lambda b: b.append_manage_data_op("k", b"v"),
    lambda b: b.append_account_merge_op(DESTINATION),
    lambda b: b.append_change_trust_op(USDC),
    lambda b: b.append_set_options_op(master_weight=0),
    lambda b: b.append_path_payment_strict_send_op(DESTINATION, XLM, "1", USDC, "1", []),
])
def test_any_other_operation_type_in_a_batch_is_refused(append):  # noqa: ANN001
    builder = TransactionBuilder(Account(SOURCE, 1), PASSPHRASE, base_fee=100)
    builder.append_payment_op(DESTINATION, XLM, "1")
    append(builder)
    refused(decide(builder.set_timeout(60).build().transaction.to_xdr_object()), "operations")


def test_a_memo_is_refused_unless_allowed():
    refused(decide(batch([("pay", XLM, 5)], memo="hi")), "memo")
    allowing = dataclasses.replace(POLICY, allow_memo=True)
    assert decide(batch([("pay", XLM, 5)], memo="hi"), policy=allowing) == Allow(5)


def test_a_muxed_destination_is_refused_unless_allowed():
    muxed = MuxedAccount(DESTINATION, 7)
    builder = TransactionBuilder(Account(SOURCE, 1), PASSPHRASE, base_fee=100)
    tx = builder.append_payment_op(muxed, XLM, "1").set_timeout(60).build().transaction
    refused(decide(tx.to_xdr_object()), "destinations")
    allowing = dataclasses.replace(POLICY, allow_muxed_destinations=True)
    assert isinstance(decide(tx.to_xdr_object(), policy=allowing), Allow)


def test_a_sac_transfer_to_a_muxed_address_is_refused_unless_allowed():
    # Since protocol 23 the SAC `transfer` takes a MuxedAddress `to` (CAP-67): the policy's
    # muxed-destination rule holds for it as for a classic Payment.
    muxed = MuxedAccount(DESTINATION, 7).account_muxed
    builder = TransactionBuilder(Account(SOURCE, 1), PASSPHRASE, base_fee=100)
    builder.append_invoke_contract_function_op(XLM_SAC, "transfer", [
        scval.to_address(SOURCE), scval.to_address(muxed), scval.to_int128(5)])
    tx = builder.set_timeout(60).build().transaction.to_xdr_object()
    detail = refused(decide(tx), "destinations")
    assert muxed in detail and "argument to" in detail
    allowing = dataclasses.replace(POLICY, allow_muxed_destinations=True)
    assert decide(tx, policy=allowing) == Allow(5)


def test_a_muxed_address_in_a_contract_batch_is_refused_unless_allowed():
    muxed = MuxedAccount(DESTINATION, 9).account_muxed
    tx = contract_batch([item(10), item(20, to=muxed)])
    refused(decide(tx), "destinations")
    allowing = dataclasses.replace(POLICY, allow_muxed_destinations=True)
    assert decide(tx, policy=allowing) == Allow(30)


def test_missing_time_bounds_and_a_fee_over_the_cap_are_refused():
    refused(decide(batch([("pay", XLM, 5)], bounded=False)), "time_bounds")
    refused(decide(batch([("pay", XLM, 5)] * 2, fee=10_001)), "max_fee_stroops")


def test_a_key_without_payment_assets_signs_no_classic_operation():
    soroban_only = dataclasses.replace(POLICY, payment_assets={})
    detail = refused(decide(batch([("pay", XLM, 5)]), policy=soroban_only), "operations")
    assert "PAYMENT" in detail


# ------------------------------------------------------------------ contract batch


def contract_batch(items: list[sx.SCVal], *, function: str = "distribute_batch") -> sx.Transaction:
    builder = TransactionBuilder(Account(SOURCE, 1), PASSPHRASE, base_fee=100)
    builder.append_invoke_contract_function_op(
        PAYOUT_CONTRACT, function, [scval.to_address(SOURCE), scval.to_vec(items)])
    return builder.set_timeout(60).build().transaction.to_xdr_object()


def item(amount: int, *, to: str = DESTINATION) -> sx.SCVal:
    return scval.to_vec([scval.to_address(to), scval.to_int128(amount)])


def test_a_contract_batch_counts_every_item():
    tx = contract_batch([item(10), item(20), item(30, to=PAYOUT_CONTRACT)])
    assert decide(tx) == Allow(60)


@pytest.mark.parametrize("bad", [
    scval.to_vec([scval.to_address(DESTINATION), scval.to_int128(5), scval.to_int128(1)]),
    scval.to_vec([scval.to_address(DESTINATION), scval.to_uint128(5)]),
    scval.to_vec([scval.to_int128(5), scval.to_address(DESTINATION)]),
    scval.to_vec([scval.to_address(DESTINATION)]),
    scval.to_map({scval.to_address(DESTINATION): scval.to_int128(5)}),
    scval.to_vec([scval.to_address(DESTINATION), scval.to_int64(5)]),
], ids=["3-element", "u128", "swapped", "1-element", "map", "i64"])
def test_a_contract_batch_item_of_another_shape_is_refused(bad):  # noqa: ANN001
    detail = refused(decide(contract_batch([item(5), bad])), "arguments")
    assert "payouts" in detail


def test_an_empty_or_non_positive_contract_batch_is_refused():
    refused(decide(contract_batch([])), "arguments")
    refused(decide(contract_batch([item(5), item(0)])), "arguments")
    refused(decide(contract_batch([item(5), item(-5)])), "arguments")


def test_contract_batch_items_count_toward_every_limit():
    refused(decide(contract_batch([item(NATIVE_LIMITS.per_op + 1)])), "max_amount_stroops_per_op")
    each = NATIVE_LIMITS.per_op
    refused(decide(contract_batch([item(each)] * 11)), "max_amount_stroops_per_tx")
    refused(decide(contract_batch([item(600), item(400)]), spent=NATIVE_LIMITS.per_day - 999),
            "max_amount_stroops_per_day")


def test_a_batch_function_not_in_the_policy_is_refused():
    refused(decide(contract_batch([item(5)], function="distribute_batch2")), "function_names")


# ------------------------------------------------------------------ random batches vs an oracle

OP_KINDS = st.sampled_from(["pay-xlm", "create", "pay-usdc", "pay-eurt", "pay-other-source"])
OPS = st.lists(st.tuples(OP_KINDS, st.integers(1, 2 * USDC_LIMITS.per_op)), min_size=1,
               max_size=MAX_OPERATIONS + 3)


def oracle(ops: list[tuple[str, int]], spent: int) -> str:
    """The issue's rules written out once more, independently of the policy module."""
    if len(ops) > 100:
        return "operations"
    for kind, _ in ops:  # the first operation that breaks a rule names it
        if kind == "pay-other-source":
            return "source_accounts"
        if kind == "pay-eurt":
            return "assets"
    for asset, limits in (("xlm", NATIVE_LIMITS), ("usdc", USDC_LIMITS)):  # XLM first
        amounts = [a for kind, a in ops if ("usdc" if kind == "pay-usdc" else "xlm") == asset]
        if sum(amounts) > limits.per_tx:
            return "max_amount_stroops_per_tx"
        if any(amount > limits.per_op for amount in amounts):
            return "max_amount_stroops_per_op"
        if spent + sum(amounts) > limits.per_day:
            return "max_amount_stroops_per_day"
    return "allow"


def build_random(ops: list[tuple[str, int]]) -> sx.Transaction:
    builder = TransactionBuilder(Account(SOURCE, 1), PASSPHRASE, base_fee=100)
    for kind, amount in ops[:MAX_OPERATIONS]:
        if kind == "create":
            builder.append_create_account_op(DESTINATION, units(amount))
        else:
            asset = {"pay-usdc": USDC, "pay-eurt": EURT}.get(kind, XLM)
            source = OTHER if kind == "pay-other-source" else None
            builder.append_payment_op(DESTINATION, asset, units(amount), source=source)
    tx = builder.set_timeout(60).build().transaction.to_xdr_object()
    tx.operations += build_random(ops[MAX_OPERATIONS:]).operations if ops[MAX_OPERATIONS:] else []
    return tx


@settings(max_examples=150, deadline=None)
@given(ops=OPS, spent=st.integers(0, USDC_LIMITS.per_day))
def test_random_batches_are_decided_as_the_oracle_says(ops, spent):  # noqa: ANN001
    decision = decide(build_random(ops), spent=spent)
    expected = oracle(ops, spent)
    if expected == "allow":
        usdc = sum(a for kind, a in ops if kind == "pay-usdc")
        assert decision == Allow(sum(a for _, a in ops) - usdc,
                                 ((USDC_NAME, usdc),) if usdc else ())
    else:
        assert isinstance(decision, Refuse) and decision.rule == expected, (expected, decision)


# ------------------------------------------------------------------ configuration


def config_with(payments: dict, tmp_path) -> dict:  # noqa: ANN001
    for name in ("c", "k", "ca"):
        (tmp_path / name).write_text("x")
    return {
        "server": {"listen_addr": "127.0.0.1:0", "network_passphrase": PASSPHRASE},
        "tls": {"cert": str(tmp_path / "c"), "key": str(tmp_path / "k"),
                "client_ca": str(tmp_path / "ca")},
        "audit": {"path": str(tmp_path / "audit.log")},
        "keys": [{"id": "k", "backend": "hot", "allowed_clients": ["p"], "policy": {
            "network_passphrase": PASSPHRASE, "source_accounts": [SOURCE],
            "max_fee_stroops": 1000, "max_amount_stroops_per_tx": 100,
            "max_amount_stroops_per_day": 1000, "max_time_window_seconds": 60,
            "payments": payments}}],
    }


def test_the_payments_table_parses_with_per_asset_limits(tmp_path):
    limits = {"max_amount_stroops_per_op": 1, "max_amount_stroops_per_tx": 2,
              "max_amount_stroops_per_day": 3}
    policy = parse_config(config_with(
        {"assets": ["native", USDC_NAME], "limits": {USDC_NAME: limits}}, tmp_path,
    )).keys[0].policy
    assert policy.payment_assets == {NATIVE: AssetLimits(100, 100, 1000),
                                     USDC_NAME: AssetLimits(1, 2, 3)}
    assert policy.calls == ()  # a payments-only key (a funding key) needs no calls


@pytest.mark.parametrize(("payments", "message"), [
    ({"assets": [USDC_NAME]}, "has no limits table"),
    ({"assets": ["USDC"]}, "is not 'native' or CODE:ISSUER"),
    ({"assets": ["native"], "allow_memo": "yes"}, "allow_memo must be true or false"),
    ({"assets": ["native"], "max": 1}, "unknown setting 'max'"),
    ({"assets": ["native"], "limits": {"native": {}}}, "is not in assets"),
])
def test_payment_setting_mistakes_fail_at_start(tmp_path, payments, message):  # noqa: ANN001
    with pytest.raises(ConfigError, match=message):
        parse_config(config_with(payments, tmp_path))


def test_spending_is_rebuilt_from_the_audit_log_per_asset():
    from signer_service.spending import SpentLedger, spending_bucket

    records = [{"decision": "allow", "key_id": "k", "time": 100.0, "amount_stroops": 7},
               {"decision": "allow", "key_id": "k", "time": 101.0, "amount_stroops": 0,
                "asset_amounts": {USDC_NAME: 5}},
               {"decision": "refuse", "key_id": "k", "time": 102.0, "amount_stroops": 0,
                "asset_amounts": {USDC_NAME: 9}}]
    ledger = SpentLedger.from_audit(records)
    assert ledger.spent(spending_bucket("k", NATIVE), 200.0) == 7
    assert ledger.spent(spending_bucket("k", USDC_NAME), 200.0) == 5


# ------------------------------------------------------------------ channel retirement (merge)

FUNDING = OTHER
CHANNEL_POLICY = dataclasses.replace(POLICY, merge_into=FUNDING, payment_assets={})


def merge(into: str | MuxedAccount = FUNDING, *, source: str = SOURCE,
          op_source: str | None = None, extra: bool = False) -> sx.Transaction:
    builder = TransactionBuilder(Account(source, 1), PASSPHRASE, base_fee=100)
    builder.append_account_merge_op(into, source=op_source)
    if extra:
        builder.append_account_merge_op(into)
    return builder.set_timeout(60).build().transaction.to_xdr_object()


def test_a_channel_key_merges_into_the_funding_account_only():
    assert decide(merge(), policy=CHANNEL_POLICY) == Allow(0)
    assert DESTINATION in refused(decide(merge(DESTINATION), policy=CHANNEL_POLICY),
                                  "merge_destination")
    refused(decide(merge(MuxedAccount(FUNDING, 1)), policy=CHANNEL_POLICY), "merge_destination")


def test_a_merge_of_another_account_or_two_merges_are_refused():
    refused(decide(merge(op_source=DESTINATION), policy=CHANNEL_POLICY), "source_accounts")
    refused(decide(merge(extra=True), policy=CHANNEL_POLICY), "operations")


def test_a_key_without_merge_into_signs_no_merge():
    refused(decide(merge()), "operations")


def test_a_channel_key_role_needs_merge_into(tmp_path):
    config = config_with({}, tmp_path)
    key = config["keys"][0]
    key["policy"]["calls"] = [{"contract_ids": [XLM_SAC], "function": "transfer",
                               "args": ["from: address", "to: address", "amount: amount"]}]
    key["role"] = "channel"
    with pytest.raises(ConfigError, match="needs policy.merge_into"):
        parse_config(config)
    key["policy"]["merge_into"] = FUNDING
    parsed = parse_config(config).keys[0]
    assert (parsed.role, parsed.policy.merge_into) == ("channel", FUNDING)
    key["role"] = "boss"
    with pytest.raises(ConfigError, match="role must be"):
        parse_config(config)


# ------------------------------------------------------------------ the funding key

CHANNEL_A = Keypair.from_raw_ed25519_seed(bytes(range(4, 36))).public_key
CHANNEL_B = Keypair.from_raw_ed25519_seed(bytes(range(5, 37))).public_key
FUNDING_POLICY = dataclasses.replace(
    POLICY, payment_assets={NATIVE: NATIVE_LIMITS},
    channel_funding=ChannelFunding(max_starting_balance_stroops=50_000_000,
                                   max_top_up_stroops=20_000_000))


def fund(ops: list[tuple[str, str, int]]) -> sx.Transaction:
    builder = TransactionBuilder(Account(SOURCE, 1), PASSPHRASE, base_fee=100)
    for kind, to, amount in ops:
        if kind == "create":
            builder.append_create_account_op(to, units(amount))
        else:
            builder.append_payment_op(to, XLM, units(amount))
    return builder.set_timeout(60).build().transaction.to_xdr_object()


def decide_funding(tx: sx.Transaction, spent: int = 0) -> Allow | Refuse:
    return check_transaction(tx, FUNDING_POLICY, network_passphrase=PASSPHRASE,
                             spent_last_24h=spent, now=now(), signer_account=SOURCE,
                             channel_accounts=frozenset({CHANNEL_A, CHANNEL_B}))


def test_the_funding_key_creates_and_tops_up_this_signers_channels_within_bounds():
    assert decide_funding(fund([("create", CHANNEL_A, 50_000_000),
                                ("create", CHANNEL_B, 1)])) == Allow(50_000_001)
    assert decide_funding(fund([("pay", CHANNEL_A, 20_000_000)])) == Allow(20_000_000)


def test_the_funding_key_refuses_other_destinations_and_amounts_over_the_bounds():
    assert DESTINATION in refused(
        decide_funding(fund([("create", CHANNEL_A, 5), ("create", DESTINATION, 5)])),
        "channel_destinations")
    refused(decide_funding(fund([("create", CHANNEL_A, 50_000_001)])), "channel_funding")
    refused(decide_funding(fund([("pay", CHANNEL_A, 20_000_001)])), "channel_funding")
    refused(decide_funding(fund([("create", CHANNEL_A, 5), ("pay", CHANNEL_B, 5)])),
            "channel_funding")


def test_channel_funding_counts_toward_the_daily_limit():
    refused(decide_funding(fund([("pay", CHANNEL_A, 1_000)] * 2),
                           spent=NATIVE_LIMITS.per_day - 1_999), "max_amount_stroops_per_day")


def test_a_funding_key_needs_channel_funding_in_xlm_only(tmp_path):
    config = config_with({"assets": ["native"]}, tmp_path)
    key = config["keys"][0]
    key["role"] = "funding"
    with pytest.raises(ConfigError, match="needs policy.channel_funding"):
        parse_config(config)
    key["policy"]["channel_funding"] = {"max_starting_balance_stroops": 5,
                                        "max_top_up_stroops": 3}
    assert parse_config(config).keys[0].policy.channel_funding == ChannelFunding(5, 3)
    key["policy"]["payments"] = {"assets": ["native", USDC_NAME],
                                 "limits": {USDC_NAME: {"max_amount_stroops_per_op": 1,
                                                        "max_amount_stroops_per_tx": 1,
                                                        "max_amount_stroops_per_day": 1}}}
    with pytest.raises(ConfigError, match="channels are funded in XLM only"):
        parse_config(config)


# ------------------------------------------------------------------ random contract batches

ITEM_SHAPES = st.sampled_from(["ok", "ok", "ok", "3-element", "u128", "swapped"])
ITEMS = st.lists(st.tuples(ITEM_SHAPES, st.integers(-5, 2 * NATIVE_LIMITS.per_op)),
                 min_size=0, max_size=30)


def random_item(shape: str, amount: int) -> sx.SCVal:
    to, value = scval.to_address(DESTINATION), scval.to_int128(amount)
    if shape == "3-element":
        return scval.to_vec([to, value, value])
    if shape == "u128":
        return scval.to_vec([to, scval.to_uint128(abs(amount))])
    if shape == "swapped":
        return scval.to_vec([value, to])
    return scval.to_vec([to, value])


def contract_oracle(items: list[tuple[str, int]], spent: int) -> str:
    """distribute_batch's schema and limits, written out independently of the policy."""
    if not items or any(shape != "ok" for shape, _ in items):
        return "arguments"
    if any(amount <= 0 for _, amount in items):
        return "arguments"
    total = sum(amount for _, amount in items)
    if total > NATIVE_LIMITS.per_tx:
        return "max_amount_stroops_per_tx"
    if any(amount > NATIVE_LIMITS.per_op for _, amount in items):
        return "max_amount_stroops_per_op"
    if spent + total > NATIVE_LIMITS.per_day:
        return "max_amount_stroops_per_day"
    return "allow"


@settings(max_examples=150, deadline=None)
@given(items=ITEMS, spent=st.integers(0, NATIVE_LIMITS.per_day))
def test_random_contract_batches_are_decided_as_the_oracle_says(items, spent):  # noqa: ANN001
    decision = decide(contract_batch([random_item(s, a) for s, a in items]), spent=spent)
    expected = contract_oracle(items, spent)
    if expected == "allow":
        assert decision == Allow(sum(a for _, a in items))
    else:
        assert isinstance(decision, Refuse) and decision.rule == expected, (expected, decision)


def test_channel_keys_token_allows_this_signers_channels_as_transaction_source():
    policy = dataclasses.replace(POLICY, source_accounts=frozenset({SOURCE, "@channel_keys"}))
    tx = batch([("pay", XLM, 5)], source=CHANNEL_A, op_source=SOURCE)

    def with_channels(channels: frozenset[str]) -> Allow | Refuse:
        return check_transaction(tx, policy, network_passphrase=PASSPHRASE, spent_last_24h=0,
                                 now=now(), signer_account=SOURCE, channel_accounts=channels)

    assert with_channels(frozenset({CHANNEL_A})) == Allow(5)
    assert CHANNEL_A in refused(with_channels(frozenset({CHANNEL_B})), "source_accounts")
    refused(decide(tx), "source_accounts")  # not listed, no channels


def test_source_accounts_accepts_the_channel_keys_token(tmp_path):
    config = config_with({}, tmp_path)
    policy_t = config["keys"][0]["policy"]
    policy_t["source_accounts"] = [SOURCE, "@channel_keys"]
    policy_t["payments"] = {"assets": ["native"]}
    assert parse_config(config).keys[0].policy.source_accounts == {SOURCE, "@channel_keys"}
    policy_t["source_accounts"] = ["@channel"]
    with pytest.raises(ConfigError, match="is not a G... account"):
        parse_config(config)


def test_a_channel_key_signs_the_batch_it_is_the_transaction_source_of_paid_by_a_listed_account():
    """The channel's signature covers its sequence number and the fee; the payer's own
    signature is still needed for the operations (payout-service asks for both)."""
    policy = dataclasses.replace(POLICY, source_accounts=frozenset({SOURCE, "@channel_keys"}))
    tx = batch([("pay", XLM, 5), ("pay", USDC, 7)], source=CHANNEL_A, op_source=SOURCE)

    def as_channel(tx: sx.Transaction, *, key: str = CHANNEL_A, channel: bool = True,
                   policy: KeyPolicy = policy,
                   payout_accounts: frozenset[str] = frozenset()) -> Allow | Refuse:
        payers = served_payers(policy, payout_accounts) if channel else None
        return check_transaction(tx, policy, network_passphrase=PASSPHRASE, spent_last_24h=0,
                                 now=now(), signer_account=key,
                                 channel_accounts=frozenset({CHANNEL_A, CHANNEL_B}),
                                 channel_payers=payers)

    assert as_channel(tx) == Allow(5, ((USDC_NAME, 7),))
    # Deny by default around it: an operation source the policy does not name, a key that
    # is not a channel key, a channel key that is not the transaction source, no operation
    # source (the channel's own balance would pay).
    assert OTHER in refused(as_channel(batch([("pay", XLM, 5)], source=CHANNEL_A,
                                             op_source=OTHER)), "source_accounts")
    refused(as_channel(tx, channel=False), "source_accounts")
    assert CHANNEL_A in refused(as_channel(tx, key=CHANNEL_B), "source_accounts")
    refused(as_channel(batch([("pay", XLM, 5)], source=CHANNEL_A)), "source_accounts")
    # "*" names no payer; the account of one of this signer's payout keys is one.
    wildcard = dataclasses.replace(POLICY, source_accounts=frozenset({"*"}))
    refused(as_channel(tx, policy=wildcard), "source_accounts")
    assert as_channel(tx, policy=wildcard, payout_accounts=frozenset({SOURCE})) == \
        Allow(5, ((USDC_NAME, 7),))
