"""Reconcile: CONFIRMED payouts re-checked against the chain with a lookup function."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import grpc
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.ledger import Included, LedgerUnavailable, NotFound
from payout_service.adapters.migrations import apply_migrations
from payout_service.app import reconcile as reconcile_module
from payout_service.app.reconcile import confirmed_since
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

from .conftest import confirm
from .helpers import confirmed_history
from .test_aggregates import Recording, scanned_tables


class FakeLedger:
    """Answers lookup(tx_hash) from a table, like LedgerGateway.lookup."""

    def __init__(self) -> None:
        self.answers: dict[str, object] = {}
        self.asked: list[str] = []

    async def lookup(self, tx_hash: str):
        self.asked.append(tx_hash)
        return self.answers.get(tx_hash, NotFound(2000, 0, 1))


async def confirmed(stack, n: int, ledger: int = 1000) -> str:
    await stack.payouts.CreatePayout(pb.CreatePayoutRequest(
        payout_id=f"p-{n}", destination=Keypair.random().public_key, amount="1",
        asset="XLM", idempotency_key=f"k-{n}",
    ))
    return await confirm(stack.pool, f"p-{n}", ledger=ledger)


async def test_reconcile_reports_missing_failed_and_moved_transactions(stack_factory):
    ledger = FakeLedger()
    stack = await stack_factory(ledger=ledger)
    ok = await confirmed(stack, 1)
    missing = await confirmed(stack, 2)
    failed = await confirmed(stack, 3)
    moved = await confirmed(stack, 4)
    old = await confirmed(stack, 5)
    await stack.pool.execute(
        "UPDATE payouts SET confirmed_at = now() - interval '48 hours' WHERE payout_id = 'p-5'"
    )
    ledger.answers = {
        ok: Included(True, 1000, "txSUCCESS", 100),
        failed: Included(False, 1000, "txFAILED", 100),
        moved: Included(True, 1001, "txSUCCESS", 100),
        old: NotFound(2000, 0, 1),
    }
    response = await stack.admin.Reconcile(apb.ReconcileRequest())
    assert response.checked == 4 and old not in ledger.asked
    problems = {m.payout_id: (m.tx_hash, m.problem) for m in response.mismatches}
    assert problems == {
        "p-2": (missing, "not found on chain"),
        "p-3": (failed, "failed on chain (txFAILED)"),
        "p-4": (moved, "included in ledger 1001, recorded as ledger 1000"),
    }
    wider = await stack.admin.Reconcile(apb.ReconcileRequest(lookback_hours=72))
    assert wider.checked == 5 and len(wider.mismatches) == 4


async def test_a_not_found_from_a_node_whose_history_misses_the_ledger_is_unverified(
        stack_factory):
    """A node restarted without its history (oldest ledger after the recorded one), or one
    behind it, proves nothing missing: asked again (another node may answer), and counted
    unverified if none covers it, never reported as a mismatch. One that covers it is."""
    healed_answers = iter([NotFound(2000, 0, 1500), Included(True, 1000, "txSUCCESS", 100)])

    class TwoNodes(FakeLedger):
        async def lookup(self, tx_hash: str):
            if tx_hash == healed:  # the second node asked has the history the first lost
                self.asked.append(tx_hash)
                return next(healed_answers)
            return await super().lookup(tx_hash)

    ledger = TwoNodes()
    stack = await stack_factory(ledger=ledger)
    restarted = await confirmed(stack, 1, ledger=1000)
    lagging = await confirmed(stack, 2, ledger=1000)
    healed = await confirmed(stack, 3, ledger=1000)
    missing = await confirmed(stack, 4, ledger=1000)
    ledger.answers = {
        restarted: NotFound(2000, 0, 1500),
        lagging: NotFound(1000, 0, 1),  # its latest ledger may not have been searched
        missing: NotFound(1001, 0, 1000),
    }
    response = await stack.admin.Reconcile(apb.ReconcileRequest())
    assert response.checked == 4 and response.unverified == 2
    assert {m.payout_id: m.problem for m in response.mismatches} == {
        "p-4": "not found on chain"}
    assert ledger.asked.count(restarted) == reconcile_module.LOOKUP_TRIES
    assert ledger.asked.count(healed) == 2


async def test_reconcile_without_a_ledger_is_failed_precondition(stack):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.admin.Reconcile(apb.ReconcileRequest())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SOROBAN_RPC_URL" in err.value.details()


async def test_the_periodic_job_exports_and_logs_what_it_found(stack_factory, caplog):
    from payout_service import metrics
    from payout_service.app.reconcile import job_lookback_hours, reconcile_job

    ledger = FakeLedger()
    stack = await stack_factory(ledger=ledger)
    ok = await confirmed(stack, 1)
    missing = await confirmed(stack, 2)
    ledger.answers = {ok: Included(True, 1000, "txSUCCESS", 100)}
    with caplog.at_level("INFO", logger="payout_service.app.reconcile"):
        await reconcile_job(stack.pool, ledger.lookup, interval_seconds=3600)
    assert metrics.RECONCILE_MISMATCHES._value.get() == 1
    errors = [r for r in caplog.records if r.msg == "reconciliation mismatch"]
    assert [(r.payout_id, r.tx_hash) for r in errors] == [("p-2", missing)]
    ledger.answers[missing] = Included(True, 1000, "txSUCCESS", 100)
    await reconcile_job(stack.pool, ledger.lookup, interval_seconds=3600)
    assert metrics.RECONCILE_MISMATCHES._value.get() == 0, "the gauge clears once fixed"
    assert job_lookback_hours(3600) == 2 and job_lookback_hours(60) == 1
    assert job_lookback_hours(10**9) == 24 * 7


class FlakyLedger(FakeLedger):
    """Answers HTTP 503 (LedgerUnavailable) `failures` times before answering."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def lookup(self, tx_hash: str):
        if self.failures:
            self.failures -= 1
            raise LedgerUnavailable("HTTP 503")
        return await super().lookup(tx_hash)


async def test_a_transient_rpc_error_does_not_abort_a_run(stack_factory):
    ledger = FlakyLedger()
    stack = await stack_factory(ledger=ledger)
    tx_hash = await confirmed(stack, 1)
    ledger.answers = {tx_hash: Included(True, 1000, "txSUCCESS", 100)}
    ledger.failures = 1
    response = await stack.admin.Reconcile(apb.ReconcileRequest())
    assert response.checked == 1 and not response.mismatches
    assert ledger.asked == [tx_hash] and ledger.failures == 0


async def test_a_lasting_outage_stops_every_lookup_of_the_run(stack_factory, monkeypatch):
    """The run aborts at the first lookup that fails for good; the other payouts of the
    window are not looked up afterwards in the background (7,000 of them at 10^7)."""
    monkeypatch.setattr(reconcile_module, "LOOKUP_BACKOFF_SECONDS", 0)
    ledger = FlakyLedger()
    stack = await stack_factory(ledger=ledger)
    window = 6 * reconcile_module.CONCURRENT_LOOKUPS
    for n in range(window):
        await confirmed(stack, n)
    ledger.failures = always = 10**9

    def asked() -> int:
        return always - ledger.failures  # every lookup fails: count the failures

    with pytest.raises(LedgerUnavailable):
        await reconcile_module.reconcile(stack.pool, ledger.lookup, 1)
    asked_by_the_run = asked()
    await asyncio.sleep(0.2)  # lookups left running (no backoff here) would ask again by now
    assert asked() == asked_by_the_run
    assert asked_by_the_run < window * reconcile_module.LOOKUP_TRIES


async def test_the_window_read_uses_its_index_when_most_history_is_confirmed(fresh_database):
    """At 10^7 payouts the planner guessed a third of all CONFIRMED payouts were in the
    window (no statistics for a partial index's expression) and scanned the whole table;
    migration 100's statistics on the expression give it the window's real share."""
    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn)
        await confirmed_history(conn)
        await conn.execute("ANALYZE payouts")
        rec = Recording(conn)  # type: ignore[arg-type]
        in_window = len(await confirmed_since(rec, 2))  # type: ignore[arg-type]
        assert in_window > 100
        [(sql, args)] = rec.queries

        async def plan() -> tuple[set[str], float, str]:
            found = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            top = found[0]["Plan"]
            return scanned_tables(top), top["Plan Rows"], json.dumps(found)

        scanned, estimate, text = await plan()
        assert "payouts" not in scanned and "payouts_confirmed_at_idx" in text, text
        assert estimate < 5 * in_window, "the planner knows the window is small"
        # The check can fail: without the statistics the planner takes a third of all
        # CONFIRMED payouts for the window (at 10^7 it then scanned the table).
        await conn.execute("DROP STATISTICS payouts_confirmed_window_stats")
        await conn.execute("ANALYZE payouts")
        scanned, estimate, text = await plan()
        assert estimate > 50 * in_window, text
    finally:
        await conn.close()
