"""CreatePayout and CreatePayoutBatch under concurrent callers, against a no-op gRPC server
measured in the same run on the same machine.

Three processes: payout-service (live mode, external signing, no reachable Stellar RPC, so its
loops back off and the measurement is the API), a no-op PayoutService that answers
CreatePayout with an empty response, and the load client (this script with --client), which
runs `--concurrency` callers, each sending its next request when the last one returned. Not a
test: nothing is asserted on timings. Needs DATABASE_URL (or the machine's PostgreSQL binaries).

    python bench/bench_api.py --calls 20000 --concurrency 64 --batch-items 1000
    python bench/bench_api.py --profile cprofile   # server under cProfile, summary printed

The profile counts SQL round trips per call (asyncpg protocol calls) and names the functions
where the server's CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from stellar_sdk import Keypair

from payout_service.adapters.embedded_postgres import EmbeddedPostgres, free_port
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

sys.path.insert(0, os.path.dirname(__file__))
from bench_payouts import fresh_database  # noqa: E402 - a sibling script, not a package

HERE = Path(__file__).resolve()


# --- the no-op server ------------------------------------------------------------------------

class NoopPayouts(payout_pb2_grpc.PayoutServiceServicer):  # type: ignore[misc]
    async def CreatePayout(self, request: pb.CreatePayoutRequest,  # noqa: N802
                           context: grpc.aio.ServicerContext) -> pb.CreatePayoutResponse:
        return pb.CreatePayoutResponse(created=True)

    async def CreatePayoutBatch(self, request: pb.CreatePayoutBatchRequest,  # noqa: N802
                                context: grpc.aio.ServicerContext,
                                ) -> pb.CreatePayoutBatchResponse:
        return pb.CreatePayoutBatchResponse(batch_id=request.batch_id)


async def serve_noop(port: int) -> None:
    server = grpc.aio.server()
    payout_pb2_grpc.add_PayoutServiceServicer_to_server(NoopPayouts(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


# --- the load client -------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def load(target: str, calls: int, concurrency: int, batch_items: int, tag: str,
               rate: float = 0.0) -> dict[str, float]:
    """Closed loop: `concurrency` callers share `calls` requests, each sending its next when
    the last returned. With `rate`, open loop: the n-th request is due at n / rate seconds
    (callers take turns), and its latency counts from when it was due, so a slow server
    cannot hide its queue (no coordinated omission). batch_items > 0 sends CreatePayoutBatch
    requests of that many items instead of CreatePayout."""
    dests = [Keypair.random().public_key for _ in range(64)]
    latencies: list[float] = []
    failures = 0
    counter = iter(range(calls))

    def single(n: int) -> pb.CreatePayoutRequest:
        return pb.CreatePayoutRequest(
            payout_id=f"{tag}-{n}", destination=dests[n % len(dests)], amount="1.5",
            asset="XLM", idempotency_key=f"{tag}-{n}", metadata={"round": "7"})

    async with grpc.aio.insecure_channel(target) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        await stub.CreatePayout(single(-1), timeout=30)  # warm: connection, caches

        async def caller() -> None:
            nonlocal failures
            for n in counter:
                started = time.perf_counter()
                if rate:
                    due = begin + n / rate
                    if due > started:
                        await asyncio.sleep(due - started)
                    started = due
                try:
                    if batch_items:
                        request = pb.CreatePayoutBatchRequest(
                            batch_id=f"{tag}-b{n}",
                            items=[single(n * batch_items + i) for i in range(batch_items)])
                        await stub.CreatePayoutBatch(request, timeout=120)
                    else:
                        await stub.CreatePayout(single(n), timeout=30)
                except grpc.aio.AioRpcError:
                    failures += 1
                latencies.append(time.perf_counter() - started)

        begin = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - begin
    per_call = max(1, batch_items)
    return {
        "calls": calls, "failures": failures, "seconds": elapsed,
        "rate": calls * per_call / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def run_client(target: str, calls: int, concurrency: int, batch_items: int, rate: float = 0.0,
               ) -> dict[str, float]:
    """The client in its own process, so it does not share the server's interpreter."""
    out = subprocess.run(
        [sys.executable, str(HERE), "--client", target, "--calls", str(calls),
         "--concurrency", str(concurrency), "--batch-items", str(batch_items),
         "--rate", str(rate)],
        check=True, capture_output=True, text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --- orchestration ---------------------------------------------------------------------------

def wait_for_port(target: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        while True:
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server on {target} did not start") from None


def serve_service(profile: str, out: Path) -> None:
    """payout-service's own main(), with SQL round trips counted (each simple query and each
    bind/execute of asyncpg is one round trip; SIGUSR1 writes the count to `out`.trips) and,
    if asked, under cProfile."""
    import asyncpg.connection

    from payout_service import main as service_main

    trips = [0]
    conn_class = asyncpg.connection.Connection
    plain_execute, bound_execute = conn_class.execute, conn_class._execute

    async def execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if not args:
            trips[0] += 1  # with args, execute goes through _execute (counted there)
        return await plain_execute(self, query, *args, **kwargs)

    async def _execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        trips[0] += 1
        return await bound_execute(self, *args, **kwargs)

    conn_class.execute, conn_class._execute = execute, _execute
    # Group commit: how many statements, for how many calls (so the mean group size shows).
    from payout_service.app.desk import GroupCommit

    groups = [0, 0]
    plain_commit = GroupCommit._commit

    async def commit(self: Any, conn: Any, group: list[Any]) -> bool:
        groups[0] += 1
        groups[1] += len(group)
        return await plain_commit(self, conn, group)

    GroupCommit._commit = commit  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR1, lambda *_: out.with_suffix(".trips").write_text(
        f"{trips[0]} {groups[0]} {groups[1]}"))
    if profile != "cprofile":
        service_main.main()
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        service_main.main()
    finally:
        profiler.disable()
        profiler.dump_stats(str(out.with_suffix(".prof")))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc), to split where a call's time goes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_trips(service: subprocess.Popen[bytes], log_file: Path) -> tuple[int, int, int]:
    """SQL round trips, group-commit statements and the calls they carried, so far."""
    trips = log_file.with_suffix(".trips")
    trips.unlink(missing_ok=True)
    service.send_signal(signal.SIGUSR1)
    for _ in range(100):
        if trips.exists() and trips.read_text():
            count, groups, grouped = (int(n) for n in trips.read_text().split())
            return count, groups, grouped
        time.sleep(0.05)
    raise SystemExit("payout-service did not report its SQL round trips")


def start_payout_service(database_url: str, port: int, profile: str, log_file: Path,
                         ) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url, "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
        "PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{port}", "PAYOUTS_PLAINTEXT": "true",
        "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_SIGNING_MODE": "external",
        "SOROBAN_RPC_URL": f"http://127.0.0.1:{free_port()}",
        "PAYOUTS_MAX_BULK_ITEMS": "1000", "PAYOUTS_METRICS_PORT": "0",
    }
    command = [sys.executable, str(HERE), "--serve-service", profile, str(log_file)]
    if profile == "pyinstrument":
        command = [sys.executable, "-m", "pyinstrument", "--async-mode", "enabled", "-r", "text",
                   "-o", str(log_file.with_suffix(".txt")), "-m", "payout_service.main"]
    with log_file.open("wb") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)  # payout-service drains and exits; profilers write
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def profile_summary(prof: Path) -> list[str]:
    """The server's top functions by own time (a coroutine's ncalls counts its resumptions)."""
    import pstats

    stats = pstats.Stats(str(prof))
    raw = stats.stats  # type: ignore[attr-defined]
    lines = []
    ranked = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:45]
    total = sum(v[2] for v in raw.values()) or 1.0
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in ranked:
        short = "/".join(filename.split("/")[-2:])
        lines.append(f"  {tottime / total:6.1%} own  {cumtime:8.2f}s cum  {ncalls:8d}  "
                     f"{short}:{line}({name})")
    return lines


async def fresh(admin_url: str) -> str:
    return await fresh_database(admin_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="offered CreatePayout/s of the open-loop run (0: skip it)")
    parser.add_argument("--batch-items", type=int, default=1000)
    parser.add_argument("--batch-calls", type=int, default=20)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--profile", choices=("none", "cprofile", "pyinstrument"),
                        default="none")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--serve-noop", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-service", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_service:
        serve_service(args.serve_service[0], Path(args.serve_service[1]))
        return
    if args.serve_noop:
        asyncio.run(serve_noop(args.serve_noop))
        return
    if args.client:
        result = asyncio.run(load(args.client, args.calls, args.concurrency, args.batch_items,
                                  uuid.uuid4().hex[:8], args.rate))
        print(json.dumps(result))
        return

    given_url = os.environ.get("DATABASE_URL")
    embedded = None if given_url else EmbeddedPostgres().start()
    admin_url = given_url or embedded.dsn  # type: ignore[union-attr]
    tmp = Path(tempfile.mkdtemp(prefix="bench_api_"))
    try:
        database_url = asyncio.run(fresh(admin_url))
        noop_port, service_port = free_port(), free_port()
        noop = subprocess.Popen([sys.executable, str(HERE), "--serve-noop", str(noop_port)])
        service = start_payout_service(database_url, service_port, args.profile,
                                       tmp / "service.log")
        try:
            wait_for_port(f"127.0.0.1:{noop_port}", noop)
            wait_for_port(f"127.0.0.1:{service_port}", service)
            noop_cpu_before = cpu_seconds(noop.pid)
            base = run_client(f"127.0.0.1:{noop_port}", args.calls, args.concurrency, 0)
            noop_cpu = cpu_seconds(noop.pid) - noop_cpu_before
            trips_before = round_trips(service, tmp / "service.log")
            cpu_before = cpu_seconds(service.pid)
            single = run_client(f"127.0.0.1:{service_port}", args.calls, args.concurrency, 0)
            service_cpu = cpu_seconds(service.pid) - cpu_before
            trips_after = round_trips(service, tmp / "service.log")
            trips, groups, grouped = (a - b for a, b in zip(trips_after, trips_before,
                                                             strict=True))
            paced = {name: run_client(target, args.calls, args.concurrency, 0, args.rate)
                     for name, target in (("no-op", f"127.0.0.1:{noop_port}"),
                                          ("service", f"127.0.0.1:{service_port}"))
                     } if args.rate else {}
            batch = (run_client(f"127.0.0.1:{service_port}", args.batch_calls,
                                args.batch_concurrency, args.batch_items)
                     if args.batch_items else None)
        finally:
            stop(noop)
            stop(service)
        print(f"command: {shlex.join([sys.executable, *sys.argv])}")
        print(f"cores: {os.cpu_count()}; concurrency {args.concurrency}; "
              f"{args.calls} calls each")
        for name, r in (("no-op gRPC server, CreatePayout", base),
                        ("payout-service, CreatePayout", single)):
            print(f"{name:36s} {r['rate']:8,.0f}/s  p50 {r['p50_ms']:6.1f} ms  "
                  f"p99 {r['p99_ms']:6.1f} ms  failures {r['failures']:.0f}")
        print(f"ratio CreatePayout / no-op: {single['rate'] / base['rate']:.2f}")
        for name, r in paced.items():
            print(f"open loop at {args.rate:,.0f}/s offered, {name:8s}: "
                  f"{r['rate']:8,.0f}/s done  p50 {r['p50_ms']:6.1f} ms  "
                  f"p99 {r['p99_ms']:6.1f} ms  failures {r['failures']:.0f}")
        print(f"server CPU per CreatePayout: payout-service "
              f"{service_cpu / args.calls * 1e3:.2f} ms, no-op server "
              f"{noop_cpu / args.calls * 1e3:.2f} ms (all threads)")
        print(f"SQL round trips per CreatePayout (background loops included): "
              f"{trips / (args.calls + 1):.2f}; group commits: {groups}, "
              f"{grouped / max(1, groups):.1f} calls each")
        if batch is not None:
            print(f"payout-service, CreatePayoutBatch of {args.batch_items} "
                  f"({args.batch_concurrency} callers): {batch['rate']:8,.0f} payouts/s  "
                  f"p50 {batch['p50_ms']:.0f} ms  p99 {batch['p99_ms']:.0f} ms  "
                  f"failures {batch['failures']:.0f}")
        if args.profile == "cprofile":
            print("\n".join(profile_summary((tmp / "service.log").with_suffix(".prof"),
                                            )))
        elif args.profile == "pyinstrument":
            print((tmp / "service.log").with_suffix(".txt").read_text())
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
