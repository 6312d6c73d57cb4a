"""The channel pool's pure core: the state table, the lifecycle transactions, the size plan."""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair, TransactionEnvelope
from stellar_sdk.operation import AccountMerge, CreateAccount, Payment

from payout_service.config import ConfigError, load_config
from payout_service.core.channel_plan import (
    PlanError,
    PoolLoad,
    per_ledger_from_backlog,
    plan_pool,
    resize,
)
from payout_service.core.channels import (
    MAX_OPS_PER_TX,
    TRANSITIONS,
    ChannelState,
    IllegalChannelTransition,
    KeyRole,
    LifecycleTx,
    OperationKind,
    build_lifecycle_transaction,
    channel_outcome,
    check_transition,
    chunks,
    created_account_sequence,
    role_fault,
    role_faults,
    sources_of,
    top_up_amount,
)

S = ChannelState
PASS = "Standalone Network ; February 2017"
XLM = 10_000_000


# ---- states ---------------------------------------------------------------------------------

def test_only_an_active_channel_can_start_draining_and_a_merged_one_never_comes_back():
    assert sources_of(S.DRAINING) == {S.ACTIVE}
    assert TRANSITIONS[S.MERGED] == frozenset()
    assert S.ACTIVE not in {t for s in (S.PENDING, S.FUNDING) for t in TRANSITIONS[s]} - {S.ACTIVE}
    with pytest.raises(IllegalChannelTransition, match="merged; it cannot become active"):
        check_transition("G...", S.MERGED, S.ACTIVE)
    with pytest.raises(IllegalChannelTransition):
        check_transition("G...", S.PENDING, S.ACTIVE)  # only through funding (a landed create)
    check_transition("G...", S.RETIRED, S.ACTIVE)  # still funded: can come back


def test_every_state_is_reachable_from_pending_or_an_existing_account():
    reached, frontier = {S.PENDING, S.ACTIVE}, [S.PENDING, S.ACTIVE]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached == set(ChannelState)


def test_a_failed_create_sends_channels_back_to_pending_and_a_failed_merge_keeps_them_retired():
    assert channel_outcome(OperationKind.CREATE, True).state_to is S.ACTIVE
    assert channel_outcome(OperationKind.CREATE, False).state_to is S.PENDING
    assert channel_outcome(OperationKind.MERGE, True).state_to is S.MERGED
    assert channel_outcome(OperationKind.MERGE, False).state_to is S.RETIRED
    assert channel_outcome(OperationKind.TOP_UP, True).state_to is None
    for kind in OperationKind:
        for ok in (True, False):
            o = channel_outcome(kind, ok)
            if o.state_to is not None:
                assert o.state_from is not None
                assert o.state_to in TRANSITIONS[o.state_from]


def test_top_up_brings_a_channel_below_the_threshold_back_to_the_target():
    assert top_up_amount(4 * XLM, 5 * XLM, 20 * XLM) == 16 * XLM
    assert top_up_amount(5 * XLM, 5 * XLM, 20 * XLM) == 0
    assert top_up_amount(0, 5 * XLM, 20 * XLM) == 20 * XLM


def test_a_new_account_starts_at_the_ledger_sequence_shifted_32_bits():
    assert created_account_sequence(7) == 7 * 2**32


# ---- lifecycle transactions -----------------------------------------------------------------

def _decode(xdr: str) -> TransactionEnvelope:
    return TransactionEnvelope.from_xdr(xdr, PASS)


def test_create_puts_up_to_100_create_account_ops_in_one_transaction_from_the_funding_account():
    funding = Keypair.random().public_key
    channels = [(Keypair.random().public_key, 2 * XLM + n) for n in range(250)]
    batches = chunks(channels)
    assert [len(b) for b in batches] == [100, 100, 50]
    built = build_lifecycle_transaction(
        OperationKind.CREATE, LifecycleTx(funding, 42, 1_000, PASS), batches[0],
        funding_account=funding,
    )
    tx = _decode(built.envelope_xdr).transaction
    assert tx.source.account_id == funding and tx.sequence == 42
    assert tx.preconditions.time_bounds.max_time == 1_000
    assert all(isinstance(op, CreateAccount) for op in tx.operations)
    assert [(op.destination, op.starting_balance) for op in tx.operations][:2] == [
        (channels[0][0], "2"), (channels[1][0], "2.0000001")]
    assert built.fee_stroops == 100 * 100  # classic: base fee per operation
    assert built.tx_hash == _decode(built.envelope_xdr).hash_hex()


def test_top_up_is_native_payments_and_merge_is_one_account_merge_into_the_funding_account():
    funding, channel = Keypair.random().public_key, Keypair.random().public_key
    top_up = build_lifecycle_transaction(
        OperationKind.TOP_UP, LifecycleTx(funding, 9, 1_000, PASS), [(channel, 5 * XLM)],
        funding_account=funding,
    )
    (op,) = _decode(top_up.envelope_xdr).transaction.operations
    assert isinstance(op, Payment) and op.asset.is_native() and op.amount == "5"
    merge = build_lifecycle_transaction(
        OperationKind.MERGE, LifecycleTx(channel, 77, 1_000, PASS), [(channel, 0)],
        funding_account=funding,
    )
    tx = _decode(merge.envelope_xdr).transaction
    (op,) = tx.operations
    assert tx.source.account_id == channel
    assert isinstance(op, AccountMerge) and op.destination.account_id == funding


@pytest.mark.parametrize(("kind", "items", "max_time", "error"), [
    (OperationKind.CREATE, [], 1_000, "1 to 100"),
    (OperationKind.CREATE, [("G", 1)] * (MAX_OPS_PER_TX + 1), 1_000, "1 to 100"),
    (OperationKind.MERGE, [("G", 0), ("G", 0)], 1_000, "exactly one"),
    (OperationKind.TOP_UP, [("G", 1)], 0, "max_time"),
])
def test_lifecycle_transactions_refuse_what_stellar_or_our_invariants_forbid(
    kind, items, max_time, error
):
    funding = Keypair.random().public_key
    with pytest.raises(ValueError, match=error):
        build_lifecycle_transaction(kind, LifecycleTx(funding, 1, max_time, PASS), items,
                                    funding_account=funding)


# ---- the size plan --------------------------------------------------------------------------

def test_one_payout_per_transaction_needs_a_channel_per_payout_per_ledger_cycle():
    plan = plan_pool(PoolLoad(queued_payouts_per_ledger=50, payouts_per_transaction=1,
                              close_time_ms=5000), 0, 1000)
    assert (plan.needed, plan.target, plan.transactions_per_ledger) == (100, 100, 50)
    # 100 channels, each one transaction every 2 ledgers of 5 s: 10 payouts/s = 600/min.
    assert plan.ceiling_payouts_per_minute == 600 and plan.limited_by == "load"


def test_batched_transactions_divide_the_channels_needed():
    plan = plan_pool(PoolLoad(1000, 100, 1000), 0, 1000)
    assert (plan.transactions_per_ledger, plan.needed) == (10, 20)
    assert plan.ceiling_payouts_per_minute == 20 * 100 * 60 // 2
    plan = plan_pool(PoolLoad(1001, 100, 1000), 0, 1000)
    assert plan.transactions_per_ledger == 11  # rounded up: a partial batch still needs a tx


def test_the_plan_stays_within_the_bounds_and_says_which_bound_held_it():
    assert plan_pool(PoolLoad(0, 1, 5000), 4, 10).target == 4
    assert plan_pool(PoolLoad(0, 1, 5000), 4, 10).limited_by == "minimum"
    capped = plan_pool(PoolLoad(500, 1, 5000), 4, 10)
    assert (capped.needed, capped.target, capped.limited_by) == (1000, 10, "maximum")
    net = plan_pool(PoolLoad(5000, 100, 5000, network_payouts_per_ledger=1000), 0, 10_000)
    assert (net.transactions_per_ledger, net.limited_by) == (10, "network")


def test_a_backlog_is_spread_over_the_ledgers_of_the_drain_window():
    assert per_ledger_from_backlog(10_000, 60, 5000) == 834  # 12 ledgers, rounded up
    assert per_ledger_from_backlog(10, 1, 5000) == 10  # shorter than a ledger: one ledger
    assert per_ledger_from_backlog(0, 60, 1000) == 0


@pytest.mark.parametrize(("load", "field"), [
    (PoolLoad(-1, 1, 5000), "queued_payouts_per_ledger"),
    (PoolLoad(1, 0, 5000), "payouts_per_transaction"),
    (PoolLoad(1, 101, 5000), "payouts_per_transaction"),
    (PoolLoad(1, 1, 0), "close_time_ms"),
    (PoolLoad(1, 1, 5000, ledgers_per_cycle=0), "ledgers_per_cycle"),
])
def test_a_load_that_cannot_be_planned_names_its_field(load, field):
    with pytest.raises(PlanError) as err:
        plan_pool(load, 0, 10)
    assert err.value.field == field


def test_resize_grows_from_spare_channels_first_and_shrinks_only_beyond_the_slack():
    assert resize(10, 4, 3) == resize(10, 4, 3)
    grow = resize(10, 4, 3)
    assert (grow.reactivate, grow.drain, grow.create) == (3, 0, 3)
    assert resize(10, 12, 0, slack=2) == resize(10, 10, 0)  # within slack: no change
    shrink = resize(10, 13, 0, slack=2)
    assert (shrink.reactivate, shrink.drain, shrink.create) == (0, 3, 0)


# ---- configuration --------------------------------------------------------------------------

BASE = {
    "DATABASE_URL": "postgresql://x/y",
    "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
    "PAYOUTS_PLAINTEXT": "true",
}


def test_the_funding_account_defaults_to_the_paying_account():
    pool = load_config(BASE).channel_pool
    assert pool is not None and pool.funding_account == BASE["PAYOUT_SOURCE_ACCOUNT"]
    assert pool.maximum == 0 and pool.top_up_below_stroops == 0  # automation off by default


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"PAYOUTS_CHANNEL_FUNDING_ACCOUNT": "GABC"}, "PAYOUTS_CHANNEL_FUNDING_ACCOUNT"),
    ({"PAYOUTS_CHANNEL_POOL_MIN": "5", "PAYOUTS_CHANNEL_POOL_MAX": "2"},
     "PAYOUTS_CHANNEL_POOL_MAX"),
    ({"PAYOUTS_CHANNEL_TOP_UP_BELOW": "5", "PAYOUTS_CHANNEL_TOP_UP_TO": "5"},
     "PAYOUTS_CHANNEL_TOP_UP_TO"),
    ({"PAYOUTS_CHANNEL_TOP_UP_BELOW": "lots"}, "PAYOUTS_CHANNEL_TOP_UP_BELOW"),
    ({"PAYOUTS_CHANNEL_PLAN_CLOSE_TIME_MS": "0"}, "PAYOUTS_CHANNEL_PLAN_CLOSE_TIME_MS"),
])
def test_bad_channel_pool_settings_fail_at_start_up_naming_the_variable(overrides, variable):
    with pytest.raises(ConfigError, match=variable):
        load_config({**BASE, **overrides})


def test_a_key_serves_only_in_its_own_role_and_the_fault_says_how_to_get_one():
    assert role_fault("channel-1", KeyRole.CHANNEL, KeyRole.CHANNEL) is None
    fault = role_fault("payout", KeyRole.PAYOUT, KeyRole.CHANNEL)
    assert fault is not None and "role 'payout', a channel key needs role 'channel'" in fault
    assert "signerctl channel-keys generate" in fault
    funding = role_fault("payout", KeyRole.PAYOUT, KeyRole.FUNDING)
    assert funding is not None and "a funding key needs role 'funding'" in funding


def test_role_faults_judge_only_the_keys_the_signer_lists():
    wanted = {"ch-1": KeyRole.CHANNEL, "ch-2": KeyRole.CHANNEL, "gone": KeyRole.CHANNEL,
              "fund": KeyRole.FUNDING}
    held = {"ch-1": KeyRole.CHANNEL, "ch-2": KeyRole.UNSPECIFIED, "fund": KeyRole.PAYOUT}
    faults = role_faults(wanted, held)
    assert [f.split()[3] for f in faults] == ["ch-2", "fund"]
