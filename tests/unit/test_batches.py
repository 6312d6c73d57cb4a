"""Batch planning and the per-operation verdicts (payout_service/core/batches.py)."""

from __future__ import annotations

from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stellar_sdk import Keypair, Network
from stellar_sdk.operation import CreateAccount, InvokeHostFunction, Payment

from payout_service.core.batches import (
    MAX_OPERATIONS_PER_TX,
    MIN_STARTING_BALANCE_STROOPS,
    PERMANENT_OPERATION_FAULTS,
    REBATCHED,
    SUCCESS_CODES,
    BatchItem,
    MemberVerdict,
    OpKind,
    build_classic_batch,
    build_contract_batch,
    contract_batch_capacity,
    judge_failed_batch,
    plan_classic_batch,
    stroops_to_amount,
)
from payout_service.core.transactions import TxParams

PASS = Network.TESTNET_NETWORK_PASSPHRASE


def item(dest: str | None = None, asset: str = "XLM", amount: int = 20_000_000) -> BatchItem:
    return BatchItem(uuid4(), dest or Keypair.random().public_key, asset, amount)


def test_existing_destinations_get_payments_missing_xlm_ones_create_account() -> None:
    paid, new = item(), item()
    plan = plan_classic_batch([paid, new], {paid.destination}, 100)
    assert [(op.item, op.kind) for op in plan.operations] == [
        (paid, OpKind.PAYMENT), (new, OpKind.CREATE_ACCOUNT)]
    assert plan.refused == [] and plan.deferred == []


def test_a_payout_that_cannot_be_paid_is_refused_before_batching_with_its_reason() -> None:
    issuer = Keypair.random().public_key
    missing_asset = item(asset=f"USD:{issuer}")
    too_small = item(amount=MIN_STARTING_BALANCE_STROOPS - 1)
    contract = item(dest="CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC")
    plan = plan_classic_batch([missing_asset, too_small, contract], set(), 100)
    assert plan.operations == []
    assert [(r.item, r.code) for r in plan.refused] == [
        (missing_asset, "DESTINATION_MISSING"), (too_small, "DESTINATION_BELOW_RESERVE"),
        (contract, "CLASSIC_NEEDS_ACCOUNT")]


def test_a_second_payout_to_an_account_the_batch_creates_waits_for_the_next_batch() -> None:
    first = item()
    second = item(dest=first.destination)
    plan = plan_classic_batch([first, second], set(), 100)
    assert [op.item for op in plan.operations] == [first]
    assert plan.deferred == [second]


def test_a_payout_to_an_account_being_created_elsewhere_waits_for_a_later_pass() -> None:
    """Another batch (this pass, an earlier one, another replica) creates the account: no
    second CreateAccount; once it exists the payout gets a Payment."""
    waiting, other = item(), item()
    plan = plan_classic_batch([waiting, other], set(), 100,
                              being_created={waiting.destination})
    assert [(op.item, op.kind) for op in plan.operations] == [(other, OpKind.CREATE_ACCOUNT)]
    assert plan.waiting == [waiting] and plan.deferred == []
    later = plan_classic_batch([waiting], {waiting.destination}, 100,
                               being_created={waiting.destination})
    assert [(op.item, op.kind) for op in later.operations] == [(waiting, OpKind.PAYMENT)]


def test_the_batch_holds_at_most_max_payouts_and_defers_the_rest() -> None:
    items = [item() for _ in range(5)]
    plan = plan_classic_batch(items, {i.destination for i in items}, 3)
    assert [op.item for op in plan.operations] == items[:3]
    assert plan.deferred == items[3:]
    with pytest.raises(ValueError):
        plan_classic_batch(items, set(), 101)
    spared = plan_classic_batch(items, {i.destination for i in items}, 2, spare=2)
    assert [op.item for op in spared.operations] == items[:4], "spare candidates planned too"
    assert spared.deferred == items[4:]


def test_classic_batch_transaction_pays_operation_i_to_payout_i() -> None:
    channel, payer = Keypair.random().public_key, Keypair.random().public_key
    paid, new = item(amount=12_345_678), item()
    plan = plan_classic_batch([paid, new], {paid.destination}, 100)
    envelope = build_classic_batch(TxParams(channel, 7, 0, 1_000, PASS), plan.operations,
                                   operation_source=payer, inclusion_fee=150)
    tx = envelope.transaction
    assert tx.sequence == 7 and tx.fee == 300  # the bid per operation
    pay, create = tx.operations
    assert isinstance(pay, Payment) and isinstance(create, CreateAccount)
    assert pay.destination.account_id == paid.destination and pay.amount == "1.2345678"
    assert create.destination == new.destination
    assert pay.source is not None and pay.source.account_id == payer
    with pytest.raises(ValueError):
        build_classic_batch(TxParams(channel, 7, 0, 0, PASS), plan.operations,
                            operation_source=None)


def test_contract_batch_is_one_call_with_a_vector_of_address_amount_pairs() -> None:
    payer = Keypair.random().public_key
    items = [item(amount=n) for n in (1, 2, 3)]
    envelope = build_contract_batch(
        TxParams(payer, 2, 0, 1_000, PASS), contract_id=(
            "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"),
        method_name="distribute_batch", payer=payer, items=items, operation_source=None)
    (op,) = envelope.transaction.operations
    assert isinstance(op, InvokeHostFunction)
    args = op.host_function.invoke_contract.args
    assert op.host_function.invoke_contract.function_name.sc_symbol == b"distribute_batch"
    pairs = args[1].vec.sc_vec
    assert [p.vec.sc_vec[1].i128.lo.uint64 for p in pairs] == [1, 2, 3]


def test_contract_batch_size_comes_from_the_write_entry_limit() -> None:
    assert contract_batch_capacity() == 49  # 50 written entries: the payer + 49 destinations
    assert contract_batch_capacity(write_entries=10) == 9
    assert contract_batch_capacity(write_entries=200, footprint_entries=40) == 37


def test_amounts_are_formatted_from_integer_stroops() -> None:
    assert stroops_to_amount(1) == "0.0000001"
    assert stroops_to_amount(10_000_000) == "1.0000000"
    with pytest.raises(ValueError):
        stroops_to_amount(0)


CODES = ["PAYMENT_SUCCESS", "PAYMENT_NO_DESTINATION", "PAYMENT_NO_TRUST", "PAYMENT_UNDERFUNDED",
         "CREATE_ACCOUNT_SUCCESS", "PAYMENT_LINE_FULL"]


TX_FAILED = "txFAILED"


def judge(codes: list[str], tx_code: str = TX_FAILED) -> list[MemberVerdict]:
    return list(judge_failed_batch(codes, range(len(codes)), tx_code).verdicts)


@pytest.mark.parametrize(("index", "fail", "code"), [
    (1, True, "PAYMENT_NO_DESTINATION"), (2, True, "PAYMENT_NO_TRUST"),
    (3, True, "PAYMENT_UNDERFUNDED"), (5, True, "PAYMENT_LINE_FULL"),
])
def test_guilty_payouts_fail_with_their_operations_code(index: int, fail: bool, code: str
                                                        ) -> None:
    verdict = judge(CODES)[index]
    assert verdict.fail is fail and verdict.code == code


def test_innocent_payouts_are_rebatched_without_spending_an_attempt() -> None:
    for index in (0, 4):
        verdict = judge(CODES)[index]
        assert not verdict.fail and verdict.code == REBATCHED and not verdict.counts_as_attempt


def test_an_account_created_meanwhile_counts_against_its_create_only() -> None:
    """CREATE_ACCOUNT_ALREADY_EXIST is no known fault, but it is this operation's failure:
    a counted retry (planned from the ledger, it becomes a Payment); the others are innocent."""
    created, paid = judge(["CREATE_ACCOUNT_ALREADY_EXIST", "PAYMENT_SUCCESS"])
    assert (created.fail, created.counts_as_attempt, created.code) == (
        False, True, "CREATE_ACCOUNT_ALREADY_EXIST")
    assert (paid.fail, paid.counts_as_attempt, paid.code) == (False, False, REBATCHED)


def test_an_unknown_operation_failure_blames_its_own_payout() -> None:
    unknown, ok = judge(["opNO_ACCOUNT", "CREATE_ACCOUNT_SUCCESS"])
    assert unknown.counts_as_attempt and not unknown.fail and unknown.code == "opNO_ACCOUNT"
    assert not ok.counts_as_attempt and ok.code == REBATCHED


def test_a_failure_without_operation_results_is_the_sources_fault() -> None:
    judged = judge_failed_batch([], [0, 1], "txINSUFFICIENT_BALANCE")
    assert judged.source_fault
    assert [(v.fail, v.counts_as_attempt, v.code) for v in judged.verdicts] == [
        (False, True, "txINSUFFICIENT_BALANCE")] * 2
    assert not judge_failed_batch(["opNO_ACCOUNT"], [0], TX_FAILED).source_fault


def test_a_contract_batch_failure_counts_every_member() -> None:
    """One operation pays every member: none has a result of its own that proves it innocent."""
    judged = judge_failed_batch(["INVOKE_HOST_FUNCTION_TRAPPED"], [0, 1, 2], TX_FAILED)
    assert not judged.source_fault
    assert all(v.counts_as_attempt and not v.fail for v in judged.verdicts)


OPERATION_CODES = st.one_of(
    st.sampled_from(sorted(SUCCESS_CODES)),
    st.sampled_from(sorted(PERMANENT_OPERATION_FAULTS)),
    st.sampled_from(["CREATE_ACCOUNT_ALREADY_EXIST", "CREATE_ACCOUNT_MALFORMED",
                     "PAYMENT_MALFORMED", "opNO_ACCOUNT", "opBAD_AUTH", "opNOT_SUPPORTED",
                     "opTOO_MANY_SUBENTRIES", "INVOKE_HOST_FUNCTION_TRAPPED"]),
    st.text(min_size=1, max_size=30),
)
TX_CODES = st.sampled_from([TX_FAILED, "txINSUFFICIENT_BALANCE", "txBAD_AUTH", "txNO_ACCOUNT",
                            "txTOO_LATE", "txBAD_SEQ", "txINTERNAL_ERROR"])


@given(codes=st.lists(OPERATION_CODES, max_size=MAX_OPERATIONS_PER_TX), tx_code=TX_CODES)
@settings(max_examples=500, deadline=None)
def test_every_failed_batch_blames_a_member_or_its_source_and_never_an_innocent(
    codes: list[str], tx_code: str
) -> None:
    """Over random operation results: a failed batch fails or counts at least one payout,
    unless no operation failed (the source's fault: every payout retried, counted); no payout
    whose own operation succeeded is failed or counted; each failed operation's payout is."""
    judged = judge_failed_batch(codes, range(len(codes)), tx_code)
    verdicts = judged.verdicts
    assert len(verdicts) == len(codes)
    failed_ops = [i for i, code in enumerate(codes) if code not in SUCCESS_CODES]
    assert judged.source_fault == (not failed_ops)
    if judged.source_fault:
        assert all(v.counts_as_attempt and not v.fail for v in verdicts)
        return
    assert any(v.fail or v.counts_as_attempt for v in verdicts), "nobody blamed"
    for i, (code, verdict) in enumerate(zip(codes, verdicts, strict=True)):
        if i in failed_ops:
            assert verdict.counts_as_attempt, f"op {i} failed ({code}) but was not counted"
            assert verdict.fail == (code in PERMANENT_OPERATION_FAULTS)
        else:
            assert not verdict.counts_as_attempt and not verdict.fail, \
                f"op {i} succeeded but its payout was blamed"
            assert verdict.code == REBATCHED


CONFIG = {"DATABASE_URL": "postgresql://x/y", "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
          "PAYOUTS_PLAINTEXT": "true"}
CONTRACT = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"PAYOUTS_BATCH_MODE": "sometimes"}, "PAYOUTS_BATCH_MODE"),
    ({"PAYOUTS_BATCH_MODE": "classic", "PAYOUTS_MAX_PAYOUTS_PER_TX": "101"},
     "PAYOUTS_MAX_PAYOUTS_PER_TX"),
    ({"PAYOUTS_BATCH_MODE": "classic", "PAYOUTS_MAX_PAYOUTS_PER_TX": "0"},
     "PAYOUTS_MAX_PAYOUTS_PER_TX"),
    ({"PAYOUTS_BATCH_MODE": "contract"}, "PAYOUT_CONTRACT_ID"),
    ({"PAYOUTS_BATCH_MODE": "classic", "PAYOUTS_SIGNING_MODE": "external"},
     "PAYOUTS_BATCH_MODE"),
])
def test_bad_batch_config_names_the_variable(overrides: dict[str, str], variable: str) -> None:
    from payout_service.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=variable):
        load_config({**CONFIG, **overrides})


def test_batch_size_defaults_and_the_contract_cap() -> None:
    from payout_service.config import load_config

    assert load_config(CONFIG).max_payouts_per_tx == 1
    assert load_config({**CONFIG, "PAYOUTS_BATCH_MODE": "classic"}).max_payouts_per_tx == 100
    contract = load_config({**CONFIG, "PAYOUTS_BATCH_MODE": "contract",
                            "PAYOUT_CONTRACT_ID": CONTRACT})
    assert contract.max_payouts_per_tx == 49 and contract.batch_method_name == "distribute_batch"
    small = load_config({**CONFIG, "PAYOUTS_BATCH_MODE": "contract", "PAYOUT_CONTRACT_ID": CONTRACT,
                         "PAYOUTS_TX_MAX_WRITE_ENTRIES": "11", "PAYOUTS_MAX_PAYOUTS_PER_TX": "40"})
    assert small.max_payouts_per_tx == 10
