"""PostgreSQL failover: a primary with a synchronous standby (real servers, streaming
replication), the primary killed or fenced and the standby promoted. payout-service finds the
new primary through its multi-host DATABASE_URL, answers UNAVAILABLE (never INTERNAL) while
there is none, loses no acknowledged payout and pays each exactly once (judged by the
sandbox's ledger)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stellar_sdk import Keypair

from payout_service.adapters.database import create_pool, database_unavailable
from payout_service.adapters.embedded_postgres import free_port
from payout_service.config import load_config
from payout_service.main import start_service
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.live_stack import live_channel_env
from tests.integration.replicated_db import DATABASE, replicated_database
from tests.integration.retrying_callers import (
    CallerLog,
    create_acknowledged,
    paid_per_destination,
    settled,
)
from tests.integration.rpcs import all_rpcs
from tests.integration.test_crash_safety import ServiceProcess

PAYOUTS = 24
MAX_FAILED_WRITES = 12  # pool size (3) x a few: each stale session fails at most twice


async def write_until_it_lands(pool: asyncpg.Pool, n: int, failures: list[str]) -> str:
    """One write, retried as a loop step would be; every failure must be one a caller may
    retry (UNAVAILABLE), and there must not be an endless run of them."""
    while True:
        try:
            port: str = await pool.fetchval(
                "INSERT INTO writes (n) VALUES ($1) RETURNING port", n)
            return port
        except Exception as err:  # noqa: BLE001 - judged below
            assert database_unavailable(err), f"{type(err).__name__}: {err}"
            failures.append(type(err).__name__)
            assert len(failures) <= MAX_FAILED_WRITES, f"an error loop: {failures}"
            await asyncio.sleep(0.05)


async def test_a_fenced_primary_sends_the_pool_to_the_promoted_standby_not_into_an_error_loop():
    """The old primary stays up but read-only (fenced with default_transaction_read_only, as
    a manager does before a switchover): its pooled sessions live on and would answer
    read_only_sql_transaction for ever. The pool drops them and reconnects, through the host
    list, to the standby once it is promoted."""
    async with replicated_database() as db:
        pair = db.pair
        # The standby first: a session there is refused for writes at connect time.
        url = (f"postgresql://postgres@127.0.0.1:{pair.standby.port},"
               f"127.0.0.1:{pair.primary.port}/{DATABASE}?target_session_attrs=read-write")
        pool = await create_pool(url, min_size=3, max_size=3)
        try:
            await pool.execute("""CREATE TABLE writes (
                n int, port text NOT NULL DEFAULT current_setting('port'))""")
            assert await pool.fetchval("SHOW port") == str(pair.primary.port)
            admin = await asyncpg.connect(pair.node_url(pair.primary))
            try:
                await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                await admin.execute("SELECT pg_reload_conf()")
            finally:
                await admin.close()
            failures: list[str] = []
            n = 0
            # Sessions see the fence from their next command on; until the first refusal a
            # write may still commit on the old primary (its synchronous standby has it).
            while not failures:
                n += 1
                await write_until_it_lands_or_fails(pool, n, failures)
            await asyncio.to_thread(pair.promote_standby)
            landed_on = {await write_until_it_lands(pool, n + k, failures) for k in range(20)}
            assert landed_on == {str(pair.standby.port)}, landed_on
        finally:
            await pool.close()


async def write_until_it_lands_or_fails(pool: asyncpg.Pool, n: int, failures: list[str]
                                        ) -> None:
    try:
        await pool.execute("INSERT INTO writes (n) VALUES ($1)", n)
    except Exception as err:  # noqa: BLE001 - judged below
        assert database_unavailable(err), f"{type(err).__name__}: {err}"
        failures.append(type(err).__name__)


async def test_a_host_that_never_answers_costs_its_own_connect_timeout_only(fresh_database):
    """A first host that accepts TCP and then says nothing (a hung or black-holed server) gets
    `connect_timeout` seconds; the next host is then tried. (asyncpg alone gives all hosts
    one timeout together, so the first would use it up and the second never be tried.)"""
    silent: list[asyncio.StreamWriter] = []

    async def say_nothing(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    hung = await asyncio.start_server(say_nothing, "127.0.0.1", free_port())
    hung_port = hung.sockets[0].getsockname()[1]
    real = fresh_database.split("@", 1)[1]  # host:port/database
    url = f"postgresql://postgres@127.0.0.1:{hung_port},{real}?connect_timeout=1"
    try:
        pool = await asyncio.wait_for(create_pool(url, min_size=2, max_size=2), 45)
        try:
            assert await pool.fetchval("SELECT 1") == 1
        finally:
            await pool.close()
        assert silent, "the silent host was tried first"
    finally:
        for writer in silent:
            writer.close()
        hung.close()


@pytest.mark.parametrize("outage", ["primary killed", "primary fenced"])
async def test_every_rpc_answers_unavailable_while_no_primary_takes_writes(
    outage, source_account
):
    """Before the standby is promoted there is no primary: every RPC that needs the database
    answers UNAVAILABLE (retryable with the same idempotency key), none INTERNAL or
    UNKNOWN."""
    async with replicated_database() as db:
        service = await start_service(load_config({
            "DATABASE_URL": db.url, "PAYOUT_SOURCE_ACCOUNT": source_account,
            "PAYOUTS_LISTEN_ADDR": "127.0.0.1:0", "PAYOUTS_PLAINTEXT": "true",
        }))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
                before = await answers(channel)
                assert before["PayoutService/ListPayouts"] == grpc.StatusCode.OK
                if outage == "primary killed":
                    await asyncio.to_thread(db.pair.kill_primary)
                else:
                    admin = await asyncpg.connect(db.pair.node_url(db.pair.primary))
                    try:
                        await admin.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                        await admin.execute("SELECT pg_reload_conf()")
                    finally:
                        await admin.close()
                # Two rounds: the first may still find pooled sessions that have not yet seen
                # the outage; by the second every path has met it.
                await answers(channel)
                during = await answers(channel)
        finally:
            await service.stop(grace=0)
    wrong = {name: code for name, code in during.items()
             if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)}
    assert wrong == {}, wrong
    reached_database = {name for name, code in before.items() if code == grpc.StatusCode.OK}
    assert {during[name] for name in reached_database} == {grpc.StatusCode.UNAVAILABLE}, \
        {name: during[name] for name in reached_database}


PLAUSIBLE = {"payout_id": "p-1", "destination": Keypair.random().public_key, "amount": "1",
             "asset": "XLM", "idempotency_key": "k-1", "round_id": "r-1", "run_id": "run-1",
             "reason": "drill", "name": "n-1"}


async def answers(channel: grpc.aio.Channel) -> dict[str, grpc.StatusCode]:
    """Every RPC once, with plausible values in the string fields it has."""
    found: dict[str, grpc.StatusCode] = {}
    for rpc in all_rpcs():
        request = rpc.request_class()
        for field in request.DESCRIPTOR.fields:
            if field.name in PLAUSIBLE and field.type == field.TYPE_STRING \
                    and not field.is_repeated:
                setattr(request, field.name, PLAUSIBLE[field.name])
        try:
            await rpc.call(channel, request, deadline=5)
            found[rpc.name] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as err:
            found[rpc.name] = err.code()
    return found


async def test_primary_killed_mid_run_loses_no_acknowledged_payout_and_pays_each_once(tmp_path):
    """Two replicas pay through channel accounts and the real signer while callers create
    payouts; the primary is SIGKILLed mid-run and the standby promoted. Every payout
    acknowledged to a caller exists afterwards and is confirmed, none is paid twice (the
    sandbox's ledger), and callers saw nothing but retryable answers. A replica restarted
    afterwards migrates (advisory lock) against the new primary."""
    log = CallerLog()
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(replicated_database())
        sandbox = await stack.enter_async_context(RunningSandbox(ledger_interval=0.25, seed=31))
        world, _, env = await live_channel_env(stack, sandbox, tmp_path, db.url,
                                               payouts=PAYOUTS, PAYOUTS_HEALTH_CHECK_MS=200)
        replicas = [ServiceProcess(env, tmp_path / f"replica-{i}.log") for i in range(2)]
        try:
            for replica in replicas:
                await replica.start()
            channels = [await stack.enter_async_context(
                grpc.aio.insecure_channel(f"127.0.0.1:{r.port}")) for r in replicas]
            stubs = [payout_pb2_grpc.PayoutServiceStub(c) for c in channels]

            async def callers() -> None:
                for n, dest in enumerate(world.dests):
                    await create_acknowledged(stubs, f"fo-{n}", dest, log)
                    await asyncio.sleep(0.05)

            creating = asyncio.create_task(callers())
            while len(log.acknowledged) < PAYOUTS // 3:
                assert not creating.done(), creating
                await asyncio.sleep(0.05)
            await asyncio.to_thread(db.pair.kill_primary)
            # No primary for a while: the replicas notice (health NOT_SERVING) and callers
            # are answered UNAVAILABLE, before the standby takes over.
            for channel in channels:
                await wait_for_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
            while log.retried.get("UNAVAILABLE", 0) < 5:
                assert not creating.done(), creating
                await asyncio.sleep(0.05)
            await asyncio.to_thread(db.pair.promote_standby)
            await creating
            await replicas[1].stop()  # SIGKILL, then a fresh start: migrations on the new
            await replicas[1].start()  # primary, the dead host first in the list
            states = await settled(stubs, PAYOUTS, log)
            logs = "".join(r.log_path.read_text() for r in replicas)
        finally:
            for replica in replicas:
                await replica.stop()
        transfers = await sandbox.transfers()
        assert await db.standby_is_primary()
    assert set(states) == set(log.acknowledged), "every acknowledged payout exists, no other"
    paid = paid_per_destination(transfers)
    by_payout = {f"fo-{n}": paid.get(dest, 0) for n, dest in enumerate(world.dests)}
    assert all(count == 1 for count in by_payout.values()), f"paid once each: {by_payout}"
    assert set(states.values()) == {pb.PAYOUT_STATE_CONFIRMED}, states
    assert "unhandled error" not in logs, "no call was answered INTERNAL"


async def wait_for_health(channel: grpc.aio.Channel, want: int, within: float = 30) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(grpc.aio.AioRpcError):
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            if reply.status == want:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health never became {want}")
