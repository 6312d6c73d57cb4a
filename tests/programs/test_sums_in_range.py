"""Sums of int64 amounts pass int64: every total is computed in numeric and reported exactly
(Amount.decimal), with Amount.stroops saturated; earnings stop at what one payout can carry."""

from __future__ import annotations

import grpc
import pytest
from stellar_sdk import Keypair

from payout_service.core.amounts import INT64_MAX, format_amount
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import rounds_pb2 as rpb
from tests.programs.helpers import field_violations

LARGEST = format_amount(INT64_MAX)  # "922337203685.4775807"


async def test_two_largest_payouts_keep_health_stats_and_monitoring_answering(stack):
    for i in range(2):
        await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
            payout_id=f"big-{i}", idempotency_key=f"big-{i}", destination=Keypair.random()
            .public_key, amount=LARGEST, asset="XLM"))
    stats = (await stack.payouts.GetPayoutStats(pb.GetPayoutStatsRequest())).stats
    assert stats.total_gross.decimal == format_amount(2 * INT64_MAX)
    assert stats.total_gross.stroops == INT64_MAX  # saturated; the decimal is exact
    health = await stack.admin.GetSystemHealth(apb.GetSystemHealthRequest())
    assert health.metrics.amount_last_24h.decimal == format_amount(2 * INT64_MAX)
    alerts = await stack.programs.monitor.evaluate()  # the monitoring loop's step
    assert any(a.kind == "AMOUNT_THRESHOLD" for a in alerts)


async def test_resolve_round_with_winners_summing_past_int64(stack):
    await stack.rounds.CreateRound(rpb.CreateRoundRequest(round_id="huge"))
    await stack.rounds.CloseRound(rpb.CloseRoundRequest(round_id="huge"))
    winners = [rpb.Winner(rank=r, destination=Keypair.random().public_key, amount=LARGEST)
               for r in (1, 2, 3)]
    resolved = await stack.rounds.ResolveRound(
        rpb.ResolveRoundRequest(round_id="huge", winners=winners))
    assert resolved.round.total.decimal == format_amount(3 * INT64_MAX)
    again = await stack.rounds.GetRound(rpb.GetRoundRequest(round_id="huge"))
    assert again.round.total.stroops == INT64_MAX and len(again.payouts) == 3


async def test_an_earning_past_the_largest_payout_is_refused_and_not_stored(stack):
    dest = Keypair.random().public_key
    first = await stack.admin.RecordEarning(apb.RecordEarningRequest(
        destination=dest, amount=LARGEST, earning_id="e-1"))
    assert first.balance.stroops == INT64_MAX
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.admin.RecordEarning(apb.RecordEarningRequest(
            destination=dest, amount="0.0000001", earning_id="e-2"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "largest payout" in field_violations(caught.value)["amount"]
    stored = await stack.pool.fetchval("SELECT count(*) FROM earnings")
    assert stored == 1
    # The same earning id replayed still answers with the balance.
    replay = await stack.admin.RecordEarning(apb.RecordEarningRequest(
        destination=dest, amount=LARGEST, earning_id="e-1"))
    assert replay.balance.stroops == INT64_MAX


async def test_earning_conflict_names_the_request_field(stack):
    dest = Keypair.random().public_key
    await stack.admin.RecordEarning(apb.RecordEarningRequest(
        destination=dest, amount="1", earning_id="e-1"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.admin.RecordEarning(apb.RecordEarningRequest(
            destination=dest, amount="2", earning_id="e-1"))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert set(field_violations(caught.value)) == {"amount"}


async def test_balances_over_int64_from_before_the_cap_leave_every_run_finished(stack):
    dest = Keypair.random().public_key
    # Rows as an older version could leave them: two earnings whose sum passes int64.
    await stack.pool.execute(
        """INSERT INTO earnings (earning_id, destination, asset, amount_stroops)
           VALUES ('old-1', $1, 'XLM', $2), ('old-2', $1, 'XLM', $2)""", dest, INT64_MAX)
    await stack.admin.UpdateSchedule(apb.UpdateScheduleRequest(schedule=apb.Schedule(
        frequency=apb.SCHEDULE_FREQUENCY_DAILY, timezone="UTC")))
    for dry_run in (True, False):
        run = (await stack.admin.TriggerScheduledRun(
            apb.TriggerScheduledRunRequest(dry_run=dry_run))).run
        assert run.payout_count == 0 and len(run.errors) == 1
        assert run.errors[0].destination == dest
    unfinished = await stack.pool.fetchval(
        "SELECT count(*) FROM scheduled_runs WHERE finished_at IS NULL")
    assert unfinished == 0
    # A replayed earning reports that balance exactly, not INTERNAL.
    replay = await stack.admin.RecordEarning(apb.RecordEarningRequest(
        destination=dest, amount=LARGEST, earning_id="old-1"))
    assert replay.balance.decimal == format_amount(2 * INT64_MAX)


async def test_list_runs_shows_each_runs_payouts(stack):
    dest = Keypair.random().public_key
    await stack.admin.RecordEarning(apb.RecordEarningRequest(
        destination=dest, amount="30", earning_id="e-1"))
    dry = (await stack.admin.TriggerScheduledRun(
        apb.TriggerScheduledRunRequest(dry_run=True))).run
    real = (await stack.admin.TriggerScheduledRun(
        apb.TriggerScheduledRunRequest(dry_run=False))).run
    listed = {r.run_id: r for r in (await stack.admin.ListRuns(apb.ListRunsRequest())).runs}
    assert [p.destination for p in listed[dry.run_id].payouts] == [dest]
    assert listed[dry.run_id].payouts[0].gross.stroops == 300_000_000
    assert [p.payout_id for p in listed[real.run_id].payouts] \
        == [p.payout_id for p in real.payouts]
    assert listed[real.run_id].payouts[0].id  # a stored payout, with its server id


async def test_an_abandoned_run_is_closed_by_the_next_one(stack):
    await stack.pool.execute(
        """INSERT INTO scheduled_runs (run_id, dry_run, trigger) VALUES ('run-cut', false,
           'schedule')""")
    await stack.admin.TriggerScheduledRun(apb.TriggerScheduledRunRequest(dry_run=True))
    row = await stack.pool.fetchrow("SELECT * FROM scheduled_runs WHERE run_id = 'run-cut'")
    assert row["finished_at"] is not None
    assert "abandoned" in row["errors"][-1]["message"]


async def test_concurrent_earnings_never_pass_the_cap_together(stack):
    import asyncio

    dest = Keypair.random().public_key
    await stack.admin.RecordEarning(apb.RecordEarningRequest(
        destination=dest, amount=format_amount(INT64_MAX - 10), earning_id="base"))

    async def one(n: int) -> bool:
        try:
            await stack.admin.RecordEarning(apb.RecordEarningRequest(
                destination=dest, amount="0.0000001", earning_id=f"tip-{n}"))
            return True
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
            return False

    accepted = await asyncio.gather(*(one(n) for n in range(30)))
    assert sum(accepted) == 10
    balance = await stack.pool.fetchval(
        "SELECT sum(amount_stroops) FROM earnings WHERE destination = $1", dest)
    assert balance == INT64_MAX
