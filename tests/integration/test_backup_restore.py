"""The backup and restore drill of deploy/README.md, end to end: a live replica pays through
channel accounts and the real signer; the database is backed up (pg_dump) while some payouts
are accepted but not yet built, and the signer's audit log with its checkpoint is copied;
those payouts are then paid, and more are created and paid after the backup. The database is
lost and restored from the backup, which knows nothing of what was paid after it.

Restored as the runbook says (hold sending, reconcile against the chain and the signer's
audit log, release), nobody is paid twice: the payouts paid after the backup are recorded
CONFIRMED with the transactions the chain has, those created after the backup are reported
(their callers hold acknowledgements this database cannot answer; one created again by its
caller while sending is held is attached to its payment instead), Reconcile agrees with the
chain, and the audit log's copy verifies against its checkpoint."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import grpc
from stellar_sdk import Keypair

from payout_service.adapters.embedded_postgres import find_pg_bin
from payout_service.adapters.restore_store import hold_sending, release_sending
from signer_service.testing import run_signerctl
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import admin_pb2, admin_pb2_grpc, payout_pb2_grpc
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from tests.integration.live_stack import live_channel_env
from tests.integration.retrying_callers import (
    CallerLog,
    create_acknowledged,
    paid_per_destination,
    settled,
)
from tests.integration.test_crash_safety import ServiceProcess
from tests.integration.test_live_against_sandbox import wait_for_state

BEFORE, UNBUILT_AT_BACKUP, AFTER = 3, 4, 2


async def restore_tool(env: dict[str, str], *args: str) -> tuple[int, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "payout_service.cli.restore", *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    assert out, err.decode()
    return proc.returncode, json.loads(out)


async def pg(program: str, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(find_pg_bin() / program), *args, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def answer(stub: payout_pb2_grpc.PayoutServiceStub, payout_id: str) -> grpc.StatusCode:
    try:
        await stub.GetPayout(pb.GetPayoutRequest(payout_id=payout_id))
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_a_restore_older_than_the_last_payouts_pays_nobody_twice(fresh_database, tmp_path):
    log = CallerLog()
    dump = tmp_path / "payouts.dump"
    audit_backup = tmp_path / "audit-backup"
    async with contextlib.AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(RunningSandbox(ledger_interval=0.25, seed=51))
        world, signer, env = await live_channel_env(
            stack, sandbox, tmp_path, fresh_database, payouts=BEFORE + UNBUILT_AT_BACKUP + AFTER)
        dests = iter(enumerate(world.dests))
        replica = ServiceProcess(env, tmp_path / "replica.log")
        try:
            await replica.start()
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}"))
            stubs = [payout_pb2_grpc.PayoutServiceStub(channel)]

            destination: dict[str, str] = {}

            async def pay(prefix: str, count: int) -> list[str]:
                ids = []
                for _ in range(count):
                    n, dest = next(dests)
                    ids.append(f"{prefix}-{n}")
                    destination[ids[-1]] = dest
                    await create_acknowledged(stubs, ids[-1], dest, log)
                return ids

            await pay("before", BEFORE)
            await settled(stubs, BEFORE, log)
            # Accepted and acknowledged, but not built when the backup is taken: the preparer
            # waits on a lock of the attempts table (pg_dump only reads, so it passes).
            blocker = await asyncpg.connect(fresh_database)
            block = blocker.transaction()
            await block.start()
            await blocker.execute("LOCK TABLE payout_attempts IN EXCLUSIVE MODE")
            unbuilt = await pay("unbuilt", UNBUILT_AT_BACKUP)
            restore_point = datetime.now(UTC)
            await pg("pg_dump", "--format=custom", f"--file={dump}", fresh_database)
            await block.rollback()
            await blocker.close()
            after = await pay("after", AFTER)
            await settled(stubs, BEFORE + UNBUILT_AT_BACKUP + AFTER, log)
            # The signer's audit log: its checkpoint first, then the log (a log may be longer
            # than its checkpoint, never shorter).
            audit_backup.mkdir()
            checkpoint = signer.audit_log.with_name(signer.audit_log.name + ".checkpoint")
            shutil.copy2(checkpoint, audit_backup / checkpoint.name)
            shutil.copy2(signer.audit_log, audit_backup / signer.audit_log.name)
            paid_before_loss = paid_per_destination(await sandbox.transfers())

            # The database is lost; the backup is restored.
            await replica.stop()
            admin = await asyncpg.connect(fresh_database.rsplit("/", 1)[0] + "/postgres")
            name = fresh_database.rsplit("/", 1)[1]
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
            await pg("pg_restore", "--exit-on-error", f"--dbname={fresh_database}", str(dump))

            code, held = await restore_tool(env, "hold", "--reason", "restore drill",
                                            "--restore-point", restore_point.isoformat())
            assert (code, held["held"]) == (0, True), held
            await replica.start()  # serves; builds nothing while held
            assert "sending paused" in replica.log_path.read_text()
            # What the callers of the payouts created after the backup now see; one of them
            # creates it again (same request), while sending is held.
            assert [await answer(stubs[0], p) for p in after] == [grpc.StatusCode.NOT_FOUND] * AFTER
            recreated, *unknown = after
            await create_acknowledged(stubs, recreated, destination[recreated], log)
            code, report = await restore_tool(
                env, "reconcile", "--wait",
                "--signer-audit-log", str(audit_backup / signer.audit_log.name))
            assert code == 3, report  # a payout created after the backup needs an operator
            assert [p["payout_id"] for p in report["needs_operator"]] == unknown
            assert {p["verdict"] for p in report["needs_operator"]} == {"unknown_payout_paid"}
            attached = {a["payout_id"]: a for a in report["actions"]}
            assert sorted(attached) == sorted([*unbuilt, recreated]), report
            code, refused = await restore_tool(env, "release")
            assert (code, refused["released"]) == (3, False), "not without a clean reconcile"
            # The operator told those callers; sending resumes.
            code, released = await restore_tool(env, "release", "--force")
            assert (code, released["released"]) == (0, True)
            states = await settled(stubs, BEFORE + UNBUILT_AT_BACKUP + 1, log)
            reconciliation = await admin_pb2_grpc.PayoutAdminServiceStub(channel).Reconcile(
                admin_pb2.ReconcileRequest(lookback_hours=1))
            hashes = {}
            for payout_id in [*unbuilt, recreated]:
                got = await stubs[0].GetPayout(pb.GetPayoutRequest(payout_id=payout_id))
                hashes[payout_id] = got.payout.tx_hash
        finally:
            await replica.stop()
        paid = paid_per_destination(await sandbox.transfers())
        verified = await run_signerctl(signer.env, "audit", "verify", "--config",
                                       str(signer.config_path), "--log",
                                       str(audit_backup / signer.audit_log.name))
    assert paid == paid_before_loss, "nothing paid again after the restore"
    assert sorted(paid.get(d, 0) for d in world.dests) == [1] * len(world.dests), paid
    assert set(states) == {*log.acknowledged} - set(unknown)
    assert set(states.values()) == {pb.PAYOUT_STATE_CONFIRMED}, states
    assert all(hashes[p] == attached[p]["tx_hash"] for p in hashes), (hashes, attached)
    assert reconciliation.checked == BEFORE + UNBUILT_AT_BACKUP + 1
    assert list(reconciliation.mismatches) == [], reconciliation
    assert verified.startswith("ok:"), verified


async def test_a_hold_set_or_lifted_while_replicas_run_stops_and_resumes_what_sends(
    payout_service_factory
):
    """The hold is read by running replicas too (within one health-check interval): the
    pipeline stops, and a payout created meanwhile is built only once the hold is lifted."""
    async with RunningSandbox(ledger_interval=0.2, seed=52) as sandbox:
        source, dest = Keypair.random(), Keypair.random()
        await sandbox.fund(source.public_key)
        await sandbox.fund(dest.public_key)
        service = await payout_service_factory(
            PAYOUT_SOURCE_ACCOUNT=source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_SIGNING_MODE="external", PAYOUTS_HEALTH_CHECK_MS="100")
        assert service.pipeline is not None
        await hold_sending(service.pool, reason="drill", restore_point=None, quiet_after=0)
        await until(lambda: service.pipeline is None)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            created = await stub.CreatePayout(pb.CreatePayoutRequest(
                payout_id="held-1", destination=dest.public_key, amount="1", asset="XLM",
                idempotency_key="held-1"))
            assert created.payout.state == pb.PAYOUT_STATE_ACCEPTED
            assert await release_sending(service.pool, force=True)
            await until(lambda: service.pipeline is not None)
            await wait_for_state(stub, "held-1", pb.PAYOUT_STATE_AWAITING_SIGNATURE)


async def until(condition: Callable[[], bool], within: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.05)
