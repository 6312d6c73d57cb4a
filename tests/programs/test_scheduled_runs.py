"""Earnings, schedule and scheduled runs through PayoutAdminService."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from stellar_sdk import Keypair

from payout_service.app.scheduled_runs import RUN_LOCK_ID
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

from .helpers import field_violations

A, B, C = (Keypair.random().public_key for _ in range(3))


async def earn(stack, earning_id: str, dest: str, amount: str) -> int:
    response = await stack.admin.RecordEarning(apb.RecordEarningRequest(
        earning_id=earning_id, destination=dest, amount=amount, asset="XLM",
    ))
    return int(response.balance.stroops)


async def set_threshold(stack, decimal: str, **fields: object) -> apb.Schedule:
    values: dict[str, object] = {
        "enabled": False, "frequency": apb.SCHEDULE_FREQUENCY_DAILY, "hour": 9,
        "timezone": "UTC", "minimum_threshold": pb.Amount(decimal=decimal), **fields,
    }
    schedule = apb.Schedule(**values)  # type: ignore[arg-type]
    return (await stack.admin.UpdateSchedule(apb.UpdateScheduleRequest(schedule=schedule))).schedule


async def trigger(stack, dry_run: bool = False) -> apb.Run:
    request = apb.TriggerScheduledRunRequest(dry_run=dry_run)
    response = await stack.admin.TriggerScheduledRun(request)
    return response.run


async def test_record_earning_is_idempotent_per_earning_id(stack):
    assert await earn(stack, "e-1", A, "10") == 100_000_000
    assert await earn(stack, "e-1", A, "10") == 100_000_000, "a retry records nothing"
    assert await earn(stack, "e-2", A, "2.5") == 125_000_000
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await earn(stack, "e-1", A, "11")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await earn(stack, "", "GBAD", "0")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(err.value)) == {"earning_id", "destination", "amount"}


async def test_schedule_round_trips_with_next_run_and_rejects_bad_fields(stack):
    default = (await stack.admin.GetSchedule(apb.GetScheduleRequest())).schedule
    assert not default.enabled and default.frequency == apb.SCHEDULE_FREQUENCY_MONTHLY
    saved = await set_threshold(stack, "25", enabled=True, day_of_week=0)
    assert saved.enabled and saved.minimum_threshold.stroops == 250_000_000
    next_run = saved.next_run_at.ToDatetime(tzinfo=UTC)
    assert datetime.now(UTC) < next_run <= datetime.now(UTC) + timedelta(days=1)
    assert (next_run.hour, next_run.minute) == (9, 0)

    bad = apb.Schedule(frequency=apb.SCHEDULE_FREQUENCY_MONTHLY, day_of_month=31, hour=25,
                       timezone="Nowhere/City")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.admin.UpdateSchedule(apb.UpdateScheduleRequest(schedule=bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(err.value)) == {
        "schedule.day_of_month", "schedule.hour", "schedule.timezone",
    }
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.admin.UpdateSchedule(apb.UpdateScheduleRequest(
            schedule=apb.Schedule(timezone="UTC")
        ))
    assert "schedule.frequency" in field_violations(err.value)


async def test_dry_run_reports_what_would_be_paid_and_writes_no_payout(stack):
    await set_threshold(stack, "5")
    await earn(stack, "e-1", A, "3")
    await earn(stack, "e-2", A, "4")
    await earn(stack, "e-3", B, "1")
    run = await trigger(stack, dry_run=True)
    assert run.dry_run and run.payout_count == 1 and run.skipped_below_threshold == 1
    assert run.total.stroops == 70_000_000
    (would,) = run.payouts
    assert would.destination == A and would.gross.stroops == 70_000_000 and not would.id
    assert await stack.pool.fetchval("SELECT count(*) FROM payouts") == 0
    assert await stack.pool.fetchval("SELECT count(*) FROM earnings WHERE run_id IS NULL") == 3
    assert await earn(stack, "e-1", A, "3") == 70_000_000, "balance untouched"


async def test_real_run_pays_each_balance_over_the_threshold_and_carries_the_rest(stack):
    await set_threshold(stack, "5")
    await earn(stack, "e-1", A, "3")
    await earn(stack, "e-2", A, "4")
    await earn(stack, "e-3", B, "1")
    run = await trigger(stack)
    assert not run.dry_run and run.payout_count == 1 and run.skipped_below_threshold == 1
    (paid,) = run.payouts
    assert paid.destination == A and paid.gross.stroops == 70_000_000
    assert paid.idempotency_key == f"{run.run_id}:{A}:XLM" and paid.batch_id == run.run_id
    assert paid.state == pb.PAYOUT_STATE_BUILT
    assert await earn(stack, "e-4", A, "1") == 10_000_000, "A's earnings were marked paid"

    # B's 1 XLM was carried over; with 4.5 more it is over the threshold next time.
    assert await earn(stack, "e-5", B, "4.5") == 55_000_000
    second = await trigger(stack)
    assert {p.destination for p in second.payouts} == {B}
    assert second.payouts[0].gross.stroops == 55_000_000
    assert second.skipped_below_threshold == 1  # A's new 1 XLM
    paid_ids = await stack.pool.fetch("SELECT earning_id, run_id FROM earnings ORDER BY 1")
    assert {r["earning_id"]: r["run_id"] for r in paid_ids} == {
        "e-1": run.run_id, "e-2": run.run_id, "e-3": second.run_id, "e-4": None,
        "e-5": second.run_id,
    }

    history = (await stack.admin.ListRuns(apb.ListRunsRequest(limit=10))).runs
    assert [r.run_id for r in history] == [second.run_id, run.run_id]
    assert history[1].payout_count == 1 and history[1].HasField("finished_at")
    assert history[1].trigger == "manual" and history[1].correlation_id


async def test_a_destination_that_cannot_be_paid_is_reported_not_fatal(stack):
    from .conftest import SOURCE

    await set_threshold(stack, "1")
    await earn(stack, "e-1", SOURCE, "5")  # paying the source account itself is refused
    await earn(stack, "e-2", A, "5")
    run = await trigger(stack)
    assert [p.destination for p in run.payouts] == [A]
    (error,) = run.errors
    assert error.destination == SOURCE and "destination" in error.message
    assert await stack.pool.fetchval(
        "SELECT count(*) FROM earnings WHERE run_id IS NULL AND destination = $1", SOURCE
    ) == 1


async def test_another_replica_running_means_failed_precondition(stack):
    """A run holds a PostgreSQL advisory lock; a replica holding it blocks every other."""
    holder = await stack.pool.acquire()
    try:
        assert await holder.fetchval("SELECT pg_try_advisory_lock($1)", RUN_LOCK_ID)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await trigger(stack)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details() == "a run is already in progress"
    finally:
        await holder.execute("SELECT pg_advisory_unlock($1)", RUN_LOCK_ID)
        await stack.pool.release(holder)
    await trigger(stack)


async def test_two_concurrent_triggers_run_once(stack):
    """The scheduled_runs table is locked by the test, so whichever trigger takes the advisory
    lock first is held inside its run while the other one arrives."""
    await set_threshold(stack, "1")
    await earn(stack, "e-1", A, "5")
    blocker = await stack.pool.acquire()
    tx = blocker.transaction()
    await tx.start()
    await blocker.execute("LOCK TABLE scheduled_runs IN ACCESS EXCLUSIVE MODE")
    calls = [asyncio.create_task(trigger(stack)) for _ in range(2)]
    done, _ = await asyncio.wait(calls, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    (refused,) = done
    assert refused.exception().code() == grpc.StatusCode.FAILED_PRECONDITION
    await tx.rollback()
    await stack.pool.release(blocker)
    (winner,) = [c for c in calls if c is not refused]
    run = await winner
    assert run.payout_count == 1
    assert await stack.pool.fetchval("SELECT count(*) FROM payouts") == 1


async def test_scheduler_runs_a_due_schedule_once_and_moves_next_run(stack):
    await set_threshold(stack, "1", enabled=True)
    await earn(stack, "e-1", A, "5")
    await stack.pool.execute(
        "UPDATE payout_schedule SET next_run_at = now() - interval '1 minute'"
    )
    results = await asyncio.gather(*(stack.programs.runs.run_if_due() for _ in range(3)))
    ran = [r for r in results if r is not None]
    assert len(ran) == 1 and ran[0].record.trigger == "schedule"
    assert await stack.pool.fetchval("SELECT count(*) FROM payouts") == 1
    schedule = (await stack.admin.GetSchedule(apb.GetScheduleRequest())).schedule
    assert schedule.next_run_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    assert await stack.programs.runs.run_if_due() is None, "not due any more"


async def test_a_run_statement_counts_the_payouts_the_run_created(stack):
    import io
    import json

    from payout_service.cli import payoutctl
    from payout_service.cli import statements as cli_statements

    await set_threshold(stack, "1")
    await earn(stack, "e-1", A, "3")
    await earn(stack, "e-2", B, "2")
    run = await trigger(stack)
    got = await stack.payouts.GetPayoutStatement(pb.GetPayoutStatementRequest(run_id=run.run_id))
    assert [(ln.state, ln.count, ln.gross.stroops) for ln in got.lines] == [
        (pb.PAYOUT_STATE_BUILT, 2, 50_000_000)]
    args = payoutctl.parser().parse_args(["runs", "statement", run.run_id, "--summary-only"])
    out = io.StringIO()
    assert await cli_statements.run(stack.channel, args, out, io.StringIO()) == 0
    found = json.loads(out.getvalue())
    assert found["statement"]["run_id"] == run.run_id and "payouts" not in found
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.payouts.GetPayoutStatement(pb.GetPayoutStatementRequest(run_id="no-run"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
