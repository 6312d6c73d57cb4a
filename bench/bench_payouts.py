"""Payouts per second, create latency and time to confirm: payout-service vs a plain loop.

One run, one sandbox (fast ledger), two source accounts, measured in turn:
- service: payout-service (automatic signing through signer-service over mTLS, PKCS#11 on a
  SoftHSM token by default) takes N CreatePayout calls from C concurrent callers, then its
  loops prepare, sign, send and confirm them; once with the paying account as the only
  transaction source, once with --channels channel accounts as sources.
- baseline: a plain stellar-sdk loop that, for each payout in turn, loads the account,
  simulates, signs in process, sends and polls getTransaction until it is included.

All face the same rule a real Stellar node applies: one pending transaction per source
account, so no run can beat one payout per ledger per source account. The ratio shows what the
service's durability (PostgreSQL rows, audit, the signer hop) costs or saves against that.
Not a test: nothing is asserted on timings. Needs DATABASE_URL or the machine's PostgreSQL
binaries (an embedded cluster is started), and SoftHSM2 for --backend pkcs11.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from stellar_sdk import Asset, Keypair, SorobanServerAsync, TransactionBuilder, scval
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.soroban_rpc import GetTransactionStatus, SendTransactionStatus
from stellar_sdk.xdr import TransactionResult

from payout_service.adapters.embedded_postgres import EmbeddedPostgres
from payout_service.config import load_config
from payout_service.main import start_service
from signer_service.testing import SignerFixture, running_signer
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

# The batch run's pipeline processes and signer policy live with the tests (repository root).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.integration.batch_signing import batch_policy  # noqa: E402
from tests.integration.test_live_with_signer import signer_env  # noqa: E402

AMOUNT = "1.5"
AMOUNT_STROOPS = 15_000_000
CLASSIC_OPS_PER_LEDGER = 200  # soroban_sandbox LedgerLimits default (published testnet)


def fault_setting(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=JSON") from None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def fresh_database(admin_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def run_service(
    sandbox: RunningSandbox, database_url: str, tmp: Path, args: argparse.Namespace,
    dests: list[str], channels: int,
) -> dict[str, float]:
    source = Keypair.random()
    channel_keys = {f"channel-{i}": Keypair.random() for i in range(channels)}
    for account in (source, *channel_keys.values()):
        await sandbox.fund(account.public_key)
    # The fast sandbox's close time runs ahead of the signer's clock: a wide time-bound policy.
    async with running_signer(tmp, network_passphrase=sandbox.passphrase, backend=args.backend,
                              hot_secret=source.secret,
                              extra_keys={k: kp.secret for k, kp in channel_keys.items()},
                              policy={"max_time_window_seconds": 3600}) as signer:
        channel_setting = ",".join(f"{k}={kp.public_key}" for k, kp in channel_keys.items())
        service = await start_service(load_config({
            "PAYOUTS_CHANNEL_ACCOUNTS": channel_setting,
            "DATABASE_URL": database_url, "PAYOUT_SOURCE_ACCOUNT": source.public_key,
            "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
            "PAYOUTS_LISTEN_ADDR": "127.0.0.1:0", "PAYOUTS_PLAINTEXT": "true",
            "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_SIGNING_MODE": "signer",
            "PAYOUTS_SIGNER_ADDR": signer.address, "PAYOUTS_SIGNER_CA_CERT": str(signer.ca_cert),
            "PAYOUTS_SIGNER_CLIENT_CERT": str(signer.client_cert),
            "PAYOUTS_SIGNER_CLIENT_KEY": str(signer.client_key),
            "PAYOUTS_SIGNER_KEY_ID": signer.key_id, "PAYOUTS_CONFIRM_POLL_MS": "50",
            "PAYOUTS_TX_WINDOW_SECONDS": "60",
        }))
        try:
            latencies: list[float] = []
            queue: asyncio.Queue[int] = asyncio.Queue()
            for n in range(len(dests)):
                queue.put_nowait(n)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
                stub = payout_pb2_grpc.PayoutServiceStub(channel)

                async def caller() -> None:
                    while not queue.empty():
                        n = queue.get_nowait()
                        t0 = time.perf_counter()
                        await stub.CreatePayout(pb.CreatePayoutRequest(
                            payout_id=f"bench-{channels}-{n}", destination=dests[n],
                            amount=AMOUNT, asset="XLM", idempotency_key=f"bench-{channels}-{n}"))
                        latencies.append(time.perf_counter() - t0)

                start = time.perf_counter()
                await asyncio.gather(*(caller() for _ in range(args.concurrency)))
                while await service.pool.fetchval(
                    "SELECT count(*) FROM payouts WHERE state = 'CONFIRMED' AND payout_id LIKE $1",
                    f"bench-{channels}-%",
                ) < len(dests):
                    failed = await service.pool.fetchval(
                        "SELECT count(*) FROM payouts WHERE state = 'FAILED'")
                    if failed:
                        raise RuntimeError(f"{failed} payouts FAILED during the benchmark")
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - start
            confirm = [float(row["s"]) for row in await service.pool.fetch(
                """SELECT EXTRACT(EPOCH FROM confirmed_at - created_at) AS s FROM payouts
                   WHERE payout_id LIKE $1""", f"bench-{channels}-%",
            )]
        finally:
            await service.stop(grace=1)
    return {"elapsed": elapsed, "create_p50": percentile(latencies, 50),
            "create_p99": percentile(latencies, 99), "confirm_p50": percentile(confirm, 50),
            "confirm_p99": percentile(confirm, 99)}


async def run_baseline(sandbox: RunningSandbox, dests: list[str]) -> dict[str, float]:
    """The simplest correct client: one payout at a time, each waited for before the next."""
    source = Keypair.random()
    await sandbox.fund(source.public_key)
    contract = Asset.native().contract_id(sandbox.passphrase)
    confirm: list[float] = []
    fees = 0
    since_start: list[float] = []  # as if all N requests arrived together, as in the service run
    async with SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient()) as server:
        start = time.perf_counter()
        for dest in dests:
            t0 = time.perf_counter()
            account = await server.load_account(source.public_key)
            tx = (
                TransactionBuilder(account, sandbox.passphrase, base_fee=100)
                .append_invoke_contract_function_op(contract, "transfer", [
                    scval.to_address(source.public_key), scval.to_address(dest),
                    scval.to_int128(AMOUNT_STROOPS)])
                .set_timeout(60)
                .build()
            )
            tx = await server.prepare_transaction(tx)
            tx.sign(source)
            sent = await server.send_transaction(tx)
            if sent.status != SendTransactionStatus.PENDING:
                raise RuntimeError(f"baseline send: {sent.status}")
            while True:
                got = await server.get_transaction(sent.hash)
                if got.status == GetTransactionStatus.SUCCESS:
                    break
                if got.status == GetTransactionStatus.FAILED:
                    raise RuntimeError("baseline payout failed on chain")
                await asyncio.sleep(0.05)
            fees += TransactionResult.from_xdr(got.result_xdr).fee_charged.int64
            confirm.append(time.perf_counter() - t0)
            since_start.append(time.perf_counter() - start)
        elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "confirm_p50": percentile(confirm, 50),
            "confirm_p99": percentile(confirm, 99), "queued_p50": percentile(since_start, 50),
            "queued_p99": percentile(since_start, 99), "fee_per_payout": fees / len(dests)}


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of every core since boot (/proc/stat), for the share of the
    machine a run kept busy: PostgreSQL, the sandbox and the signer included."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def latest_ledger(sandbox: RunningSandbox) -> int:
    async with SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient()) as server:
        return int((await server.get_latest_ledger()).sequence)


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def run_batched(sandbox: RunningSandbox, database_url: str, args: argparse.Namespace,
                      ) -> dict[str, float]:
    """The batch benchmark: N payouts through CreatePayout and CreatePayoutBatch (gRPC), paid
    in classic batches by `--workers` pipeline processes over `--channels` channel accounts,
    every batch signed by signer-service over mTLS (its channel key, then the payer's, on a
    SoftHSM2 token with --backend pkcs11) under a policy that allows these batches only.

    The pipeline processes are tests/integration/batch_worker.py (payout-service's pipeline
    with the real signer client). The API process serves the create calls only (its own
    pipeline is stopped), as a replica dedicated to the API would."""
    source = Keypair.random()
    channel_keys = {f"channel-{i}": Keypair.random() for i in range(args.channels)}
    for account in (source, *channel_keys.values()):
        await sandbox.fund(account.public_key)
    await sandbox.set_balance(source.public_key, (args.payouts * AMOUNT_STROOPS) * 2 + 10**11)
    # New accounts: every payout is a CreateAccount (1.5 XLM covers the 1 XLM reserve).
    dests = [Keypair.random().public_key for _ in range(args.payouts)]
    policy = batch_policy(source.public_key, f"USD:{Keypair.random().public_key}",
                          sandbox.passphrase)
    policy["max_amount_stroops_per_day"] = args.payouts * AMOUNT_STROOPS * 2
    async with running_signer(
        Path(tempfile.mkdtemp()), network_passphrase=sandbox.passphrase, backend=args.backend,
        hot_secret=source.secret, policy=policy,
        extra_keys={key_id: kp.secret for key_id, kp in channel_keys.items()},
        key_settings={key_id: {"role": "channel", "policy": {"merge_into": source.public_key}}
                      for key_id in channel_keys},
    ) as signer:
        return await _run_batched(sandbox, database_url, args, signer, source, channel_keys,
                                  dests)


async def _run_batched(sandbox: RunningSandbox, database_url: str, args: argparse.Namespace,
                       signer: SignerFixture, source: Keypair, channel_keys: dict[str, Keypair],
                       dests: list[str]) -> dict[str, float]:
    env = {
        **signer_env(signer),
        "DATABASE_URL": database_url, "PAYOUT_SOURCE_ACCOUNT": source.public_key,
        "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
        "PAYOUTS_LISTEN_ADDR": "127.0.0.1:0", "PAYOUTS_PLAINTEXT": "true",
        "PAYOUTS_LIVE_EXECUTION": "true",
        "PAYOUTS_CONFIRM_POLL_MS": "250", "PAYOUTS_TX_WINDOW_SECONDS": "60",
        "PAYOUTS_BATCH_MODE": "classic", "PAYOUTS_MAX_PAYOUTS_PER_TX": str(args.max_per_tx),
        "PAYOUTS_CHANNEL_ACCOUNTS": ",".join(
            f"{k}={kp.public_key}" for k, kp in channel_keys.items()),
        # The watchdog runs in a process of its own (--watchdog process), so its CPU is its
        # own; the API process does not run one.
        "PAYOUTS_WATCHDOG_ENABLED": "false",
    }
    service = await start_service(load_config(env))
    assert service.pipeline is not None
    await service.pipeline.stop()
    workers: list[asyncio.subprocess.Process] = []
    watchdog = None
    if args.watchdog == "process":
        watchdog = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).with_name("watchdog_process.py")),
            env={**os.environ, **env, "PAYOUTS_WATCHDOG_ENABLED": "true"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        while True:  # it starts at the latest ledger: before the first payout
            if await service.pool.fetchval("SELECT count(*) FROM watchdog_state"):
                break
            await asyncio.sleep(0.05)
    cpu_children = cpu_seconds(resource.RUSAGE_CHILDREN)
    cpu_self = cpu_seconds(resource.RUSAGE_SELF)
    try:
        worker_env = {**os.environ, **env}
        for _ in range(args.workers):
            workers.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.integration.batch_worker", env=worker_env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))
        latencies: list[float] = []
        singles: list[float] = []
        first_ledger = await latest_ledger(sandbox)
        busy_before, total_before = machine_cpu()
        start = time.perf_counter()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)

            def request(n: int) -> pb.CreatePayoutRequest:
                return pb.CreatePayoutRequest(
                    payout_id=f"b-{n}", destination=dests[n], amount=AMOUNT, asset="XLM",
                    idempotency_key=f"b-{n}")

            # The first --single-calls payouts one CreatePayout each, from --concurrency
            # callers at once; the rest through CreatePayoutBatch.
            queue = list(range(min(args.single_calls, len(dests))))[::-1]

            async def caller() -> None:
                while queue:
                    n = queue.pop()
                    t0 = time.perf_counter()
                    await stub.CreatePayout(request(n))
                    singles.append(time.perf_counter() - t0)

            await asyncio.gather(*(caller() for _ in range(args.concurrency)))
            singles_seconds = time.perf_counter() - start
            batch_start = time.perf_counter()
            for first in range(len(singles), len(dests), args.request_items):
                items = [request(n)
                         for n in range(first, min(len(dests), first + args.request_items))]
                t0 = time.perf_counter()
                await stub.CreatePayoutBatch(pb.CreatePayoutBatchRequest(items=items))
                latencies.append(time.perf_counter() - t0)
            batch_seconds = time.perf_counter() - batch_start
        created = time.perf_counter() - start
        while True:
            counts = {r["state"]: r["n"] for r in await service.pool.fetch(
                "SELECT state, count(*) AS n FROM payouts GROUP BY state")}
            if counts.get("FAILED"):
                raise RuntimeError(f"{counts['FAILED']} payouts FAILED during the benchmark")
            if counts.get("CONFIRMED", 0) == len(dests):
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        ledgers = await latest_ledger(sandbox) - first_ledger
        busy_after, total_after = machine_cpu()
        fees = await service.pool.fetchrow(
            """SELECT sum(network_fee_stroops) AS fees, count(DISTINCT a.tx_hash) AS txs
               FROM payouts p JOIN payout_attempts a ON a.payout_id = p.id
               AND a.status = 'included'""")
        watched = await watchdog_verdict(service.pool, sandbox, watchdog, len(dests)) \
            if watchdog is not None else {}
    finally:
        for worker in workers:
            worker.kill()
            await worker.wait()
        if watchdog is not None and watchdog.returncode is None:
            watchdog.kill()
            await watchdog.wait()
        cpu_children = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_children \
            - watched.get("cpu_total", 0.0)
        cpu_self = cpu_seconds(resource.RUSAGE_SELF) - cpu_self
        await service.stop(grace=1)
    sample = [(await sandbox.balances(d)).get("native") for d in dests[:50]]
    if sample != [AMOUNT_STROOPS] * len(sample):
        raise RuntimeError("a sampled destination was not paid exactly its amount")
    return {"elapsed": elapsed, "create_seconds": created, "ledgers": float(ledgers),
            "machine_busy": (busy_after - busy_before) / max(1.0, total_after - total_before),
            "singles": len(singles), "singles_rate": len(singles) / singles_seconds,
            "singles_p50": percentile(singles, 50) if singles else 0.0,
            "singles_p99": percentile(singles, 99) if singles else 0.0,
            "batch_rate": (len(dests) - len(singles)) / batch_seconds,
            "request_p99": percentile(latencies, 99), "fees": float(fees["fees"]),
            "txs": float(fees["txs"]), "cpu_workers": cpu_children, "cpu_api": cpu_self,
            **{f"watchdog_{k}": v for k, v in watched.items()}}


async def watchdog_verdict(pool: asyncpg.Pool, sandbox: RunningSandbox,
                           watchdog: asyncio.subprocess.Process, payouts: int
                           ) -> dict[str, float]:
    """Once every payout is confirmed: how many ledgers later the watchdog had read the last
    one and judged every confirmation, what it found, and its CPU (then it is stopped)."""
    done_at = await latest_ledger(sandbox)
    while True:
        if await pool.fetchval(
                """SELECT s.verified_ledger >= $1 AND s.confirmed_checked_until >=
                          (SELECT max(confirmed_at) FROM payouts)
                   FROM watchdog_state s""", done_at):
            break
        await asyncio.sleep(0.05)
    trailing = await latest_ledger(sandbox) - done_at
    state = await pool.fetchrow(
        """SELECT transactions_read, pages_read,
                  (SELECT count(*) FROM chain_payments) AS matched,
                  (SELECT count(*) FROM watchdog_findings) AS findings
           FROM watchdog_state""")
    watchdog.send_signal(signal.SIGTERM)
    out, _ = await watchdog.communicate()
    cpu = json.loads(out.decode().strip().splitlines()[-1])
    if state["matched"] != payouts or state["findings"]:
        raise RuntimeError(f"the watchdog matched {state['matched']} of {payouts} payouts and "
                           f"found {state['findings']} things on a clean run")
    return {"cpu": cpu["cpu_seconds"], "cpu_total": cpu["cpu_total"],
            "steps": float(cpu["steps"]), "trailing_ledgers": float(trailing),
            "transactions": float(state["transactions_read"]),
            "pages": float(state["pages_read"])}


async def main_batched(args: argparse.Namespace) -> None:
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url:
        raise SystemExit("--batch classic needs DATABASE_URL (a running PostgreSQL)")
    async with RunningSandbox(ledger_interval=args.ledger_interval, seed=1, extra_args=[
            "--classic-ops-per-ledger", str(args.classic_ops_per_ledger)]) as sandbox:
        baseline_dests = [Keypair.random().public_key for _ in range(args.baseline_payouts)]
        for d in baseline_dests:
            await sandbox.fund(d)
        # The plain loop is the baseline of an honest network: against lagging nodes it
        # would fail (a stale sequence number), which is what the service is built to survive.
        baseline = await run_baseline(sandbox, baseline_dests)
        if args.fault:
            await sandbox.set_faults(**dict(args.fault))
        run = await run_batched(sandbox, await fresh_database(admin_url), args)
        answers = list((await sandbox.submissions()).values())
    n = args.payouts
    rate = n / run["elapsed"]
    # Classic lane: 200 operations per ledger (sandbox default, the published testnet setting).
    per_ledger = min(args.channels * args.max_per_tx, args.classic_ops_per_ledger)
    ceiling = per_ledger / args.ledger_interval
    baseline_rate = args.baseline_payouts / baseline["elapsed"]
    cpu = run["cpu_workers"] + run["cpu_api"]
    if args.fault:
        print("sandbox faults       : " + ", ".join(f"{k}={json.dumps(v)}" for k, v in args.fault))
    print(f"payouts={n} ledger_interval={args.ledger_interval}s channels={args.channels} "
          f"payouts/tx<={args.max_per_tx} workers={args.workers} (classic batches, ledger "
          f"limits on: {args.classic_ops_per_ledger} classic operations per ledger)")
    print(f"confirmed end to end : {rate:8.2f} payouts/s ({run['elapsed']:.1f}s from the first "
          f"CreatePayoutBatch to the last confirmation)")
    print(f"ceiling              : {ceiling:8.2f} payouts/s = min({args.channels} channels x "
          f"{args.max_per_tx}, {args.classic_ops_per_ledger} ops/ledger) / {args.ledger_interval}s;"
          f" ratio {rate / ceiling:.2f}")
    # The sandbox closes late when the machine is busy: the ceiling at the close time it
    # actually kept during the run says how full the ledgers were.
    close = run["elapsed"] / max(1.0, run["ledgers"])
    print(f"ceiling at the close time measured in this run ({run['ledgers']:.0f} ledgers, "
          f"{close:.2f}s each): {per_ledger / close:8.2f} payouts/s; ratio "
          f"{rate / (per_ledger / close):.2f}")
    print(f"plain stellar-sdk loop: {baseline_rate:8.2f} payouts/s over "
          f"{args.baseline_payouts} payouts (one SAC transfer per transaction, each awaited); "
          f"ratio {rate / baseline_rate:.1f}x")
    print(f"fees                 : {run['fees'] / n:.0f} stroops/payout in {run['txs']:.0f} "
          f"transactions ({n / run['txs']:.1f} payouts/tx) vs {baseline['fee_per_payout']:.0f} "
          f"stroops/payout one payout per transaction (the loop's SAC transfers)")
    print(f"CreatePayout         : {run['singles_rate']:8.0f} calls/s over {run['singles']:.0f} "
          f"calls from {args.concurrency} callers, p50 {run['singles_p50'] * 1e3:.1f}ms p99 "
          f"{run['singles_p99'] * 1e3:.1f}ms (while the pipeline ran)")
    print(f"CreatePayoutBatch    : {run['batch_rate']:8.0f} payouts/s "
          f"({args.request_items} items/request, request p99 {run['request_p99'] * 1e3:.0f}ms, "
          "while the pipeline ran)")
    print(f"CPU per confirmed payout: {cpu / n * 1e3:.2f} ms (pipeline processes "
          f"{run['cpu_workers']:.1f}s + API process {run['cpu_api']:.1f}s; PostgreSQL and the "
          "sandbox not counted)")
    if "watchdog_cpu" in run:
        print(f"watchdog             : {run['watchdog_cpu'] / n * 1e6:.0f} us CPU per confirmed "
              f"payout ({run['watchdog_cpu']:.2f}s in its own process over "
              f"{run['watchdog_steps']:.0f} steps, {run['watchdog_pages']:.0f} pages, "
              f"{run['watchdog_transactions']:.0f} transactions; start-up not counted); every "
              f"payout matched, nothing found; it had verified the last confirmation's ledger "
              f"{run['watchdog_trailing_ledgers']:.0f} ledger(s) after it")
    busy = run["machine_busy"]
    print(f"machine CPU busy     : {busy:.0%} of {os.cpu_count()} cores during the run (every "
          f"process: service, PostgreSQL, sandbox, signer); CPU bound of this machine about "
          f"{rate / max(busy, 0.01):.0f} payouts/s")
    print(f"signer hop           : every batch signed by signer-service over mTLS "
          f"(--backend {args.backend}: channel key, then the payer's; its CPU not counted above)")
    # What the network was offered (the sandbox counts every sendTransaction answer; the
    # baseline loop's few transactions are in these counts too).
    sends = sum(sum(c.values()) for c in answers)
    queue_refused = sum(c.get("ERROR txINSUFFICIENT_FEE", 0) for c in answers)
    later = sum(c.get("TRY_AGAIN_LATER", 0) for c in answers)
    print(f"sendTransaction calls: {sends} for {len(answers)} transactions "
          f"({sends / max(1, len(answers)):.2f} each); refused by the queue limit "
          f"(txINSUFFICIENT_FEE) {queue_refused}, TRY_AGAIN_LATER (banned or busy) {later}")
    print("rerun: " + shlex.join([sys.executable, *sys.argv]))


async def main(args: argparse.Namespace) -> None:
    embedded = None
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url:
        embedded = EmbeddedPostgres().start()
        admin_url = embedded.dsn
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with RunningSandbox(ledger_interval=args.ledger_interval, seed=1) as sandbox:
                dests = [Keypair.random().public_key for _ in range(args.payouts)]
                for d in dests:
                    await sandbox.fund(d)
                baseline = await run_baseline(sandbox, dests)
                single = await run_service(sandbox, await fresh_database(admin_url),
                                           Path(tmp) / "single", args, dests, channels=0)
                pooled = await run_service(sandbox, await fresh_database(admin_url),
                                           Path(tmp) / "channels", args, dests,
                                           channels=args.channels)
                paid = await sandbox.transfers()
    finally:
        if embedded is not None:
            embedded.stop()
    if len(paid) != 3 * args.payouts:
        raise SystemExit(f"expected {3 * args.payouts} transfers on the ledger, saw {len(paid)}")
    n = args.payouts
    print(f"payouts={n} ledger_interval={args.ledger_interval}s backend={args.backend} "
          f"concurrency={args.concurrency} (one source account each)")
    print(f"ledger bound: {1 / args.ledger_interval:.1f} payouts/s per source account")
    print("time-to-confirm counts from when all N requests were made (both queue behind the")
    print("one-pending-transaction rule); the baseline's own per-payout round trip is shown too")
    print(f"baseline loop : {n / baseline['elapsed']:6.2f} payouts/s  "
          f"time-to-confirm p50 {baseline['queued_p50']:.3f}s p99 {baseline['queued_p99']:.3f}s  "
          f"(one payout's round trip p50 {baseline['confirm_p50']:.3f}s "
          f"p99 {baseline['confirm_p99']:.3f}s)")
    for label, run in (("payout-service, 1 source", single),
                       (f"payout-service, {args.channels} channels", pooled)):
        print(f"{label}: {n / run['elapsed']:6.2f} payouts/s  "
              f"time-to-confirm p50 {run['confirm_p50']:.3f}s p99 {run['confirm_p99']:.3f}s  "
              f"create p50 {run['create_p50'] * 1e3:.1f}ms p99 {run['create_p99'] * 1e3:.1f}ms  "
              f"throughput ratio vs baseline {baseline['elapsed'] / run['elapsed']:.2f}")
    print("rerun: " + shlex.join([sys.executable, *sys.argv]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payouts", type=int, default=20)
    # Sub-second ledgers make the sandbox's whole-second close times run ahead of the clock
    # until its slip limit holds them to one a second: 1 s keeps both runs on equal terms.
    parser.add_argument("--ledger-interval", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8,
                        help="concurrent CreatePayout callers (batch mode: use 64)")
    parser.add_argument("--single-calls", type=int, default=1000,
                        help="batch mode: payouts created one CreatePayout each, first")
    parser.add_argument("--channels", type=int, default=4,
                        help="channel accounts for the second service run")
    parser.add_argument("--backend", choices=["pkcs11", "hot"], default="pkcs11")
    parser.add_argument("--batch", choices=["off", "classic"], default="off",
                        help="classic: the batch benchmark (payouts in classic batches)")
    parser.add_argument("--max-per-tx", type=int, default=100)
    parser.add_argument("--classic-ops-per-ledger", type=int, default=CLASSIC_OPS_PER_LEDGER,
                        help="the sandbox's classic lane limit (testnet 200 by default)")
    parser.add_argument("--workers", type=int, default=2, help="pipeline processes (batch)")
    parser.add_argument(
        "--fault", type=fault_setting, action="append", default=[], metavar="NAME=JSON",
        help="a sandbox fault for the batch run, e.g. node_lags=[0,2] (half the calls answered "
             "by a node two ledgers behind: soroban_sandbox/README.md, Faults); repeatable")
    parser.add_argument("--request-items", type=int, default=500,
                        help="payouts per CreatePayoutBatch (PAYOUTS_MAX_BULK_ITEMS caps it)")
    parser.add_argument("--baseline-payouts", type=int, default=15,
                        help="payouts of the plain loop in batch mode")
    parser.add_argument("--watchdog", choices=["process", "off"], default="process",
                        help="batch mode: the watchdog in a process of its own (its CPU "
                             "measured), or not at all")
    parsed = parser.parse_args()
    asyncio.run(main_batched(parsed) if parsed.batch == "classic" else main(parsed))
