"""The watchdog, invariant 9 of docs/design.md: every outflow of the paying, channel and funding
accounts, as the chain records it, is matched to one payout attempt or channel operation;
anything else is a critical finding (alert, webhook, metric, log) and can pause sending.

Every part is real: PostgreSQL, the service's own loops started by start_service, a
signer-service over mTLS, the sandbox as a process of its own over HTTP. Ledgers are counted
through the sandbox, never by wall time.
"""

from __future__ import annotations

import json
from uuid import UUID

import aiohttp
import grpc
import pytest
from aiohttp import web
from stellar_sdk import Keypair

from payout_service.adapters.embedded_postgres import free_port
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import admin_pb2_grpc, payout_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.integration.test_live_against_sandbox import wait_for_state
from tests.integration.test_live_with_signer import pay_all
from tests.integration.test_operator_tools import payoutctl
from tests.integration.watchdog_world import (
    XLM,
    confirmations_checked,
    eventually,
    eventually_found,
    findings,
    unmatched_confirmed,
    verified_through,
    watchdog_state,
    world,
)


async def settled_clean(w, service) -> None:
    """The watchdog read every ledger up to now and judged every confirmation, and found
    nothing; every CONFIRMED payout was matched to the transaction that paid it."""
    latest = await w.latest_ledger()
    await verified_through(service.pool, latest)
    await confirmations_checked(service.pool)
    assert await findings(service.pool) == []
    assert await unmatched_confirmed(service.pool) == []
    confirmed = await service.pool.fetch(
        """SELECT p.id, a.tx_hash, a.ledger FROM payouts p
           JOIN payout_attempts a ON a.payout_id = p.id AND a.status = 'included'
           WHERE p.state = 'CONFIRMED'""")
    paid = await service.pool.fetch("SELECT payout_id, tx_hash, ledger FROM chain_payments")
    assert sorted((r["id"], r["tx_hash"], r["ledger"]) for r in confirmed) == \
        sorted((r["payout_id"], r["tx_hash"], r["ledger"]) for r in paid), \
        "each confirmed payout paid once, by its own transaction, in its recorded ledger"
    state = await watchdog_state(service.pool)
    assert state["verified_ledger"] >= max(r["ledger"] for r in confirmed)


@pytest.mark.parametrize("mode", ["single", "classic_batch_channels"])
async def test_a_clean_run_raises_nothing_and_matches_every_confirmed_payout(
    payout_service_factory, tmp_path, mode
):
    batch = mode != "single"
    async with world(tmp_path, channels=2 if batch else 0, batch=batch) as w:
        extra = {"PAYOUTS_BATCH_MODE": "classic"} if batch else {}
        service = await payout_service_factory(**w.env(**extra))
        state = await eventually(lambda: watchdog_state(service.pool), "the watchdog started")
        dests = [Keypair.random().public_key for _ in range(24 if batch else 4)]
        for d in dests[::2]:
            await w.sandbox.fund(d)  # the others are created by the payout (batch mode)
        if not batch:
            for d in dests[1::2]:
                await w.sandbox.fund(d)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            await pay_all(payout_pb2_grpc.PayoutServiceStub(channel), mode, dests, amount="2")
        await settled_clean(w, service)
        transfers = await w.sandbox.transfers()
        payouts = [t for t in transfers if t["from"] == w.payer.public_key]
        assert sorted(t["to"] for t in payouts) == sorted(dests), "each paid exactly once"
        if batch:
            sources = await service.pool.fetch(
                "SELECT DISTINCT source_account FROM payout_attempts WHERE status = 'included'")
            assert {r["source_account"] for r in sources} <= \
                {k.public_key for k in w.channels.values()}, "the channels carried them"
            transactions = await service.pool.fetchval(
                "SELECT count(DISTINCT tx_hash) FROM chain_payments")
            assert transactions < len(dests) / 4, "several payouts per transaction"
        final = await watchdog_state(service.pool)
        assert final["start_ledger"] == state["start_ledger"]
        assert final["fees_charged_stroops"] > 0, "the fees of our own transactions counted"


class Receiver:
    """A webhook endpoint on loopback: every POST body it got."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> Receiver:
        async def take(request: web.Request) -> web.Response:
            self.bodies.append(json.loads(await request.read()))
            return web.Response(status=204)
        app = web.Application()
        app.router.add_post("/hook", take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            return await resp.text()


async def test_a_payment_that_bypasses_the_service_is_caught_when_its_ledger_is_read_and_pauses(
    payout_service_factory, tmp_path
):
    """Someone holding the paying key pays a payout's destination a second time, outside the
    service: the watchdog raises unexplained_outflow as it reads that ledger, the metric, health and
    an alert.raised webhook say so, and sending stops until an operator resumes it."""
    metrics_port = free_port()
    async with world(tmp_path) as w, Receiver() as hooks:
        service = await payout_service_factory(**w.env(
            PAYOUTS_WATCHDOG_PAUSE_ON_FINDING="true", PAYOUTS_METRICS_PORT=metrics_port,
            PAYOUTS_WEBHOOK_SECRET="watchdog-test-secret", PAYOUTS_OUTBOX_INTERVAL_SECONDS="0.1"))
        dest, later = Keypair.random().public_key, Keypair.random().public_key
        for d in (dest, later):
            await w.sandbox.fund(d)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
            config = (await admin.GetAlertConfig(apb.GetAlertConfigRequest())).config
            config.webhook_urls.append(hooks.url)
            await admin.UpdateAlertConfig(apb.UpdateAlertConfigRequest(config=config))
            await pay_all(stub, "paid-once", [dest], amount="3")
            await settled_clean(w, service)

            tx_hash, landed = await w.pay_directly(w.payer, dest, 3 * XLM)
            # The finding is written in the SQL transaction that moves the watchdog past the
            # ledger holding the payment: once it has read that ledger, the finding is there,
            # however slow the machine. How many ledgers the watchdog trails the chain is a
            # figure of bench/bench_payouts.py ("watchdog: ... verified ... N ledger(s) after").
            await verified_through(service.pool, landed, within=120)
            [finding] = await findings(service.pool, "unexplained_outflow")
            assert (finding["tx_hash"], finding["ledger"]) == (tx_hash, landed)
            assert finding["accounts"] == [w.payer.public_key]
            assert (finding["amount"], finding["asset"]) == (3 * XLM, "native")
            assert finding["status"] == "open"

            health = await admin.GetSystemHealth(apb.GetSystemHealthRequest())
            assert health.level == apb.HEALTH_LEVEL_CRITICAL
            kinds = {a.kind for a in health.active_alerts}
            assert {apb.ALERT_KIND_UNEXPLAINED_OUTFLOW, apb.ALERT_KIND_SENDING_PAUSED} <= kinds
            assert health.metrics.open_watchdog_findings["unexplained_outflow"] == 1
            assert health.metrics.sending_paused

            async def webhook() -> list[dict]:
                return [b for b in hooks.bodies if b["type"] == "alert.raised"
                        and b["data"]["kind"] == "UNEXPLAINED_OUTFLOW"]
            [raised] = await eventually(webhook, "the alert.raised webhook")
            assert raised["data"]["severity"] == "CRITICAL"

            async def exported() -> bool:
                text = await scrape(metrics_port)
                return 'payouts_watchdog_open_findings{kind="unexplained_outflow"} 1.0' in text \
                    and "payouts_sending_paused 1.0" in text
            await eventually(exported, "the metrics", within=30, every=0.5)
            text = await scrape(metrics_port)
            counted = [line for line in text.splitlines() if line.startswith(
                'payouts_watchdog_findings_total{kind="unexplained_outflow"}')]
            assert counted and float(counted[0].split()[-1]) >= 1

            status = await admin.GetWatchdogStatus(apb.GetWatchdogStatusRequest())
            assert status.sending.paused and status.sending.changed_by == "watchdog"
            assert status.sending.finding_id == finding["id"]
            assert [f.tx_hash for f in status.open_findings] == [tx_hash]

            # Paused: a new payout is never sent (nor built), however many ledgers close.
            await stub.CreatePayout(pb.CreatePayoutRequest(
                payout_id="while-paused", destination=later, amount="1", asset="XLM",
                idempotency_key="while-paused"))
            start = await w.latest_ledger()
            await eventually(lambda: _ledger_at_least(w, start + 10), "10 more ledgers",
                             every=0.1)
            held = (await stub.GetPayout(pb.GetPayoutRequest(payout_id="while-paused"))).payout
            assert held.state in (pb.PAYOUT_STATE_ACCEPTED, pb.PAYOUT_STATE_QUEUED)
            assert not await service.pool.fetchval(
                "SELECT count(*) FROM payout_attempts WHERE status NOT IN ('built', 'signed') "
                "AND payout_id = $1", _uuid(held.id))

            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.ResumeSending(apb.ResumeSendingRequest(reason="  "))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "reason" in refused.value.details()
            resumed = await admin.ResumeSending(apb.ResumeSendingRequest(
                reason="the payer's key was rotated; the second payment is being recovered"))
            assert not resumed.sending.paused
            await wait_for_state(stub, "while-paused", pb.PAYOUT_STATE_CONFIRMED, within=30)
        audit = await service.pool.fetch(
            "SELECT paused, actor, reason FROM sending_pause_audit ORDER BY id")
        assert [(r["paused"], r["actor"] == "watchdog") for r in audit] == \
            [(True, True), (False, False)]
        assert audit[1]["actor"].startswith("ipv4:127.0.0.1"), "the caller is recorded"


async def _ledger_at_least(w, ledger: int) -> bool:
    return await w.latest_ledger() >= ledger


def _uuid(text: str) -> UUID:
    return UUID(text)


async def test_a_payout_the_pipeline_pays_again_is_reported_paid_twice(
    payout_service_factory, tmp_path
):
    """The first line of defence fails: a payout's confirmed attempt is taken for dead (the
    test writes that wrong proof into the database, as a bug would) and the pipeline pays the
    payout again, for real, with a second transaction. Both hashes are the service's own; the
    watchdog reports the payout paid twice and pauses sending."""
    async with world(tmp_path) as w:
        service = await payout_service_factory(**w.env(PAYOUTS_WATCHDOG_PAUSE_ON_FINDING="true"))
        dest = Keypair.random().public_key
        await w.sandbox.fund(dest)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            await pay_all(stub, "twice", [dest], amount="4")
            await settled_clean(w, service)
            first = await service.pool.fetchrow(
                """SELECT a.payout_id, a.tx_hash FROM payout_attempts a
                   JOIN payouts p ON p.id = a.payout_id WHERE p.payout_id = 'twice-0'""")
            async with service.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """UPDATE payout_attempts SET status = 'dead',
                           proof = 'a wrong proof of death (written by the test)'
                       WHERE payout_id = $1""", first["payout_id"])
                await conn.execute(
                    """UPDATE payouts SET state = 'QUEUED', needs_attempt = true,
                           next_attempt_at = now(), confirmed_at = NULL WHERE id = $1""",
                    first["payout_id"])
            found = await eventually_found(service.pool, "paid_twice")
        second = await service.pool.fetchval(
            "SELECT tx_hash FROM payout_attempts WHERE payout_id = $1 AND number = 2",
            first["payout_id"])
        [finding] = found
        assert finding["payout_id"] == first["payout_id"]
        assert finding["tx_hash"] == second
        assert first["tx_hash"] in finding["detail"] and second in finding["detail"]
        transfers = [t for t in await w.sandbox.transfers() if t["to"] == dest]
        assert sorted(t["tx_hash"] for t in transfers) == sorted([first["tx_hash"], second]), \
            "the chain really paid it twice"
        assert await service.pool.fetchval("SELECT paused FROM sending_pause")
        assert await findings(service.pool, "unexplained_outflow") == [], \
            "both transactions are the service's own"


async def test_a_confirmation_the_chain_does_not_show_is_reported(
    payout_service_factory, tmp_path
):
    """The record says CONFIRMED by a hash the chain never saw (the test writes it, as a
    confirmer fooled by a lying node would): confirmed_unseen, critical, without pausing."""
    async with world(tmp_path) as w:
        service = await payout_service_factory(**w.env(PAYOUTS_WATCHDOG_PAUSE_ON_FINDING="true"))
        dest = Keypair.random().public_key
        await w.sandbox.fund(dest)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
            await pay_all(stub, "unseen", [dest])
            await settled_clean(w, service)
            forged = "ab" * 32
            async with service.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """UPDATE payout_attempts a SET tx_hash = $1 FROM payouts p
                       WHERE p.id = a.payout_id AND p.payout_id = 'unseen-0'""", forged)
                await conn.execute(
                    "UPDATE payouts SET confirmed_at = now() WHERE payout_id = 'unseen-0'")
            [finding] = await eventually_found(service.pool, "confirmed_unseen")
            assert finding["tx_hash"] == forged
            health = await admin.GetSystemHealth(apb.GetSystemHealthRequest())
            assert health.level == apb.HEALTH_LEVEL_CRITICAL
            assert apb.ALERT_KIND_CONFIRMED_UNSEEN in {a.kind for a in health.active_alerts}
        assert not await service.pool.fetchval("SELECT paused FROM sending_pause"), \
            "no money is leaving: sending goes on"


async def test_a_restart_resumes_from_the_cursor_without_reading_history_again(
    payout_service_factory, tmp_path
):
    """The position is in PostgreSQL: a new process reads on from it. Every transaction on
    chain since the watchdog started is read exactly once across the two processes (other
    people's transactions too, made while the service was down)."""
    async with world(tmp_path) as w:
        first = await payout_service_factory(**w.env())
        dests = [Keypair.random().public_key for _ in range(3)]
        stranger, friend = Keypair.random(), Keypair.random()
        for address in (*dests, stranger.public_key, friend.public_key):
            await w.sandbox.fund(address)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            await pay_all(payout_pb2_grpc.PayoutServiceStub(channel), "before", dests[:2])
        await settled_clean(w, first)
        before = await watchdog_state(first.pool)
        await first.stop()
        # While nobody watches: other people's payments, and ledgers closing.
        for _ in range(2):
            await w.pay_directly(stranger, friend.public_key, XLM)

        second = await payout_service_factory(**w.env())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            await pay_all(payout_pb2_grpc.PayoutServiceStub(channel), "after", dests[2:])
        await settled_clean(w, second)
        after = await watchdog_state(second.pool)
        on_chain = await w.chain_transactions(after["start_ledger"], after["verified_ledger"])
    assert after["start_ledger"] == before["start_ledger"], "it did not begin again"
    assert after["lease_owner"] != before["lease_owner"]
    assert on_chain >= 5, "two payouts, two strangers' payments, one more payout"
    assert after["transactions_read"] == on_chain, "each transaction read exactly once"


async def test_history_lost_before_it_was_read_is_a_gap_finding(
    payout_service_factory, tmp_path
):
    """The RPC keeps 12 ledgers here; the service is down longer than that. On restart the
    cursor is older than the RPC's history: a watchdog_gap finding names the ledgers nobody
    verified, and the watchdog moves on from the oldest ledger the RPC has."""
    async with world(tmp_path, sandbox_args=["--retention-ledgers", "12"]) as w:
        first = await payout_service_factory(**w.env())
        await verified_through(first.pool, await w.latest_ledger())
        before = await watchdog_state(first.pool)
        await first.stop()

        async def history_moved_on() -> int:
            async with aiohttp.ClientSession() as session:
                async with session.post(w.sandbox.rpc_url, json={
                        "jsonrpc": "2.0", "id": 1, "method": "getHealth"}) as resp:
                    oldest = int((await resp.json())["result"]["oldestLedger"])
            return oldest if oldest > before["verified_ledger"] + 1 else 0
        oldest = await eventually(history_moved_on, "the RPC's history past the cursor")

        second = await payout_service_factory(**w.env())
        [gap] = await eventually_found(second.pool, "watchdog_gap")
        assert gap["ledger"] == before["verified_ledger"] + 1
        assert gap["ledger_to"] >= oldest - 1
        await verified_through(second.pool, await w.latest_ledger())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
            admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
            health = await admin.GetSystemHealth(apb.GetSystemHealthRequest())
        assert apb.ALERT_KIND_WATCHDOG_GAP in {a.kind for a in health.active_alerts}
        assert health.level == apb.HEALTH_LEVEL_CRITICAL


async def test_operators_pause_resume_and_work_findings_from_payoutctl(payout_service):
    """payoutctl watchdog …, and the admin RPCs' answers to bad input: INVALID_ARGUMENT naming
    the field, NOT_FOUND, FAILED_PRECONDITION; every change recorded with the caller."""
    target = {"PAYOUTCTL_TARGET": f"127.0.0.1:{payout_service.port}"}
    pool = payout_service.pool
    ids = [await pool.fetchval(
        """INSERT INTO watchdog_findings (kind, dedupe_key, tx_hash, ledger, accounts, amount,
               asset, detail)
           VALUES ('unexplained_outflow', $1, $2, 7, $3, 50000000, 'native', 'test finding')
           RETURNING id""", f"k{n}", f"{n}" * 64, [Keypair.random().public_key])
        for n in range(3)]

    code, out, err = await payoutctl("watchdog", "pause", "--reason", "incident 12", env=target)
    assert code == 0, err
    assert json.loads(out)["sending"]["paused"] is True
    code, out, err = await payoutctl("-o", "table", "watchdog", "status", env=target)
    assert code == 0, err
    assert "PAUSED by ipv4:127.0.0.1" in out and "incident 12" in out
    assert "not started" in out, "build-only: no watchdog runs, the switch still works"
    code, out, err = await payoutctl("watchdog", "findings", "--limit", "2", env=target)
    page = json.loads(out)
    assert [int(f["finding_id"]) for f in page["findings"]] == ids[:0:-1]
    code, out, err = await payoutctl("watchdog", "findings", "--page-token",
                                     page["next_page_token"], env=target)
    assert [int(f["finding_id"]) for f in json.loads(out)["findings"]] == ids[:1]
    code, out, err = await payoutctl("watchdog", "acknowledge", str(ids[0]), env=target)
    assert code == 0 and json.loads(out)["finding"]["status"] == \
        "WATCHDOG_FINDING_STATUS_ACKNOWLEDGED"
    code, out, err = await payoutctl("watchdog", "resolve", str(ids[0]), "--reason",
                                     "our own sweep to cold storage", env=target)
    assert code == 0, err
    resolved = json.loads(out)["finding"]
    assert resolved["resolution"] == "our own sweep to cold storage"
    assert resolved["resolved_by"].startswith("ipv4:127.0.0.1")
    code, out, err = await payoutctl("watchdog", "resolve", str(ids[0]), "--reason", "again",
                                     env=target)
    assert code == 1 and "FAILED_PRECONDITION" in err and "RESOLVED" in err
    code, out, err = await payoutctl("watchdog", "resume", "--reason", "contained", env=target)
    assert code == 0 and json.loads(out)["sending"].get("paused") is None  # false: omitted

    async with grpc.aio.insecure_channel(target["PAYOUTCTL_TARGET"]) as channel:
        admin = admin_pb2_grpc.PayoutAdminServiceStub(channel)
        bad = [
            (admin.AcknowledgeWatchdogFinding(apb.AcknowledgeWatchdogFindingRequest()),
             grpc.StatusCode.INVALID_ARGUMENT, "finding_id"),
            (admin.ResolveWatchdogFinding(apb.ResolveWatchdogFindingRequest(finding_id=ids[1])),
             grpc.StatusCode.INVALID_ARGUMENT, "reason"),
            (admin.PauseSending(apb.PauseSendingRequest()), grpc.StatusCode.INVALID_ARGUMENT,
             "reason"),
            (admin.ListWatchdogFindings(apb.ListWatchdogFindingsRequest(page_size=501)),
             grpc.StatusCode.INVALID_ARGUMENT, "page_size"),
            (admin.ListWatchdogFindings(apb.ListWatchdogFindingsRequest(page_token="x1")),
             grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
            (admin.ListWatchdogFindings(apb.ListWatchdogFindingsRequest(kinds=[99])),
             grpc.StatusCode.INVALID_ARGUMENT, "kinds"),
            (admin.AcknowledgeWatchdogFinding(apb.AcknowledgeWatchdogFindingRequest(
                finding_id=10**9)), grpc.StatusCode.NOT_FOUND, "not found"),
        ]
        for call, status, named in bad:
            with pytest.raises(grpc.aio.AioRpcError) as err_info:
                await call
            assert err_info.value.code() == status, named
            assert named in err_info.value.details(), err_info.value.details()
    audit = await pool.fetch("SELECT paused, actor, reason FROM sending_pause_audit ORDER BY id")
    assert [(r["paused"], r["reason"]) for r in audit] == \
        [(True, "incident 12"), (False, "contained")]
    assert await pool.fetchval("SELECT count(*) FROM watchdog_findings WHERE status = 'open'") == 2


async def test_behind_a_balancer_the_watchdog_reports_exactly_what_the_chain_paid_twice(
    payout_service_factory, tmp_path
):
    """The sandbox lies as a real deployment does: half the answers from a node two ledgers
    behind, every node's transaction store a ledger behind its core. Answers from behind never
    move the watchdog past what they cover, so it reads every transaction exactly once, and
    what it reports is the chain's truth: the payouts the ledger shows paid more than once
    (the first line of defence can be fooled by these lies into proving a landed batch dead
    and paying it again) are exactly its paid_twice findings, and nothing else is found."""
    lies = {"node_lags": [0, 2], "tx_store_lag_ledgers": 1}
    async with world(tmp_path, channels=2, batch=True, faults=lies) as w:
        service = await payout_service_factory(**w.env(PAYOUTS_BATCH_MODE="classic"))
        await eventually(lambda: watchdog_state(service.pool), "the watchdog started")
        dests = [Keypair.random().public_key for _ in range(12)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            await pay_all(payout_pb2_grpc.PayoutServiceStub(channel), "lies", dests, amount="2")
        await verified_through(service.pool, await w.latest_ledger())
        await confirmations_checked(service.pool)
        state = await watchdog_state(service.pool)
        on_chain = await w.chain_transactions(state["start_ledger"], state["verified_ledger"])
        payments: dict[str, set[str]] = {}
        for t in await w.sandbox.transfers():
            if t["from"] == w.payer.public_key:
                payments.setdefault(t["to"], set()).add(t["tx_hash"])
        payouts = {r["destination"]: r["id"] for r in await service.pool.fetch(
            "SELECT id, destination FROM payouts")}
        found = await findings(service.pool)
        assert await unmatched_confirmed(service.pool) == []
    assert set(payments) == set(dests), "every payout paid"
    paid_more_than_once = {payouts[d] for d, hashes in payments.items() if len(hashes) > 1}
    assert {f["kind"] for f in found} <= {"paid_twice"}, [f["detail"] for f in found]
    assert {f["payout_id"] for f in found} == paid_more_than_once
    assert state["transactions_read"] == on_chain, "each transaction read exactly once"


async def test_a_restarted_node_behind_a_balancer_is_no_gap(payout_service_factory, tmp_path):
    """Two nodes; one restarts with an empty history while the service is down. Behind the
    balancer the other one still has the ledgers the watchdog has not read: it reads them
    there (no watchdog_gap), each transaction once."""
    async with world(tmp_path, faults={"node_lags": [0, 0]}) as w:
        first = await payout_service_factory(**w.env())
        dest = Keypair.random().public_key
        await w.sandbox.fund(dest)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
            await pay_all(payout_pb2_grpc.PayoutServiceStub(channel), "before", [dest])
        await settled_clean(w, first)
        before = await watchdog_state(first.pool)
        await first.stop()
        stranger, friend = Keypair.random(), Keypair.random()
        for kp in (stranger, friend):
            await w.sandbox.fund(kp.public_key)
        _, landed = await w.pay_directly(stranger, friend.public_key, XLM)
        await eventually(lambda: _ledger_at_least(w, landed + 2), "2 more ledgers")
        restarted = await w.sandbox.restart_node(1)  # node 0 alone keeps the stranger's tx
        assert restarted["oldest_ledger"] > before["verified_ledger"] + 1, \
            "node 1 lost ledgers the watchdog has not read"
        start = await w.latest_ledger()
        await eventually(lambda: _ledger_at_least(w, start + 4), "4 more ledgers")

        second = await payout_service_factory(**w.env())
        await settled_clean(w, second)
        state = await watchdog_state(second.pool)
        on_chain = await w.chain_transactions(state["start_ledger"], state["verified_ledger"])
    assert await findings(second.pool) == [], f"no gap: node 1 restarted at {restarted}"
    assert state["transactions_read"] == on_chain
