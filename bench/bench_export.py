"""ExportPayouts memory: loads N payouts straight into PostgreSQL, starts payout-service as a
process of its own, streams one export of every payout over loopback gRPC, and prints the
service's peak resident memory during the export against its resident memory just before
(the ratio should stay near 1 whatever N: the export holds one page at a time).

Not a test: nothing is asserted. Needs DATABASE_URL (or the machine's PostgreSQL binaries).

    python bench/bench_export.py                       # N = 1,000,000, CSV
    python bench/bench_export.py --payouts 100000 --format jsonl

The load is bench/read_load.py's (generate_series inside PostgreSQL, indexes built after the
insert, VACUUM ANALYZE): the same rows the service would hold, in minutes for 10^7. The
service's memory is read from /proc/PID/status: VmRSS sampled every 20 ms during the export,
and VmHWM (the kernel's own peak) after it was reset through /proc/PID/clear_refs just
before the export, where the kernel allows that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from stellar_sdk import Keypair, StrKey

from payout_service.adapters.embedded_postgres import EmbeddedPostgres, free_port
from payout_service.adapters.migrations import apply_migrations
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

sys.path.insert(0, os.path.dirname(__file__))
from bench_payouts import fresh_database  # noqa: E402 - a sibling script, not a package
from read_load import load_payouts  # noqa: E402

SAMPLE_SECONDS = 0.02


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> bool:
    """Resets VmHWM to the current VmRSS (Linux 4.0+, "5" to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def load(database_url: str, n: int) -> float:
    destinations = [StrKey.encode_ed25519_public_key(secrets.token_bytes(32))
                    for _ in range(max(1, min(100_000, n // 10)))]
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn)
        return sum((await load_payouts(conn, n, destinations, datetime.now(UTC))).values())
    finally:
        await conn.close()


async def start_service(database_url: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url,
           "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
           "PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{port}", "PAYOUTS_PLAINTEXT": "true",
           "PAYOUTS_LIVE_EXECUTION": "false", "PAYOUTS_METRICS_PORT": "0",
           "PAYOUTS_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "payout_service", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 60)
    return proc, port


async def export_all(port: int, fmt: int, rows_per_chunk: int) -> tuple[int, int, float]:
    rows = size = 0
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)]) as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        async for chunk in stub.ExportPayouts(pb.ExportPayoutsRequest(
                format=fmt, rows_per_chunk=rows_per_chunk)):
            rows += chunk.row_count
            size += len(chunk.data)
    return rows, size, time.perf_counter() - started


async def measure(admin_url: str, args: argparse.Namespace) -> None:
    database_url = await fresh_database(admin_url)
    print(f"loading {args.payouts:,} payouts ...", flush=True)
    print(f"loaded in {await load(database_url, args.payouts):.1f} s", flush=True)
    proc, port = await start_service(database_url)
    try:
        fmt = pb.EXPORT_FORMAT_CSV if args.format == "csv" else pb.EXPORT_FORMAT_JSONL
        # A small export first, so the baseline includes what any first call allocates.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            async for _ in stub.ExportPayouts(pb.ExportPayoutsRequest(
                    format=fmt, rows_per_chunk=args.rows_per_chunk,
                    created_before=Timestamp(
                        seconds=int(time.time()) - 29 * 86400))):
                pass
        await asyncio.sleep(1)
        baseline = memory_kib(proc.pid, "VmRSS")
        kernel_peak = reset_peak(proc.pid)
        sampled = baseline
        export = asyncio.create_task(export_all(port, fmt, args.rows_per_chunk))
        while not export.done():
            sampled = max(sampled, memory_kib(proc.pid, "VmRSS"))
            await asyncio.sleep(SAMPLE_SECONDS)
        rows, size, seconds = await export
        peak = max(sampled, memory_kib(proc.pid, "VmHWM") if kernel_peak else 0)
    finally:
        proc.terminate()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(proc.wait(), 30)
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(
                f'DROP DATABASE IF EXISTS "{database_url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"exported {rows:,} payouts ({size / 1e6:,.1f} MB {args.format}) in {seconds:.1f} s "
          f"({rows / seconds:,.0f} rows/s)")
    print(f"service RSS: baseline {baseline / 1024:.1f} MiB before the export, peak "
          f"{peak / 1024:.1f} MiB during it: {peak / baseline:.2f}x "
          f"(peak from {'VmHWM and ' if kernel_peak else ''}VmRSS samples)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payouts", type=int, default=1_000_000, help="N (default 1,000,000)")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--rows-per-chunk", type=int, default=500)
    args = parser.parse_args()
    given_url = os.environ.get("DATABASE_URL")
    embedded = None if given_url else EmbeddedPostgres().start()
    try:
        await measure(given_url or embedded.dsn, args)  # type: ignore[union-attr]
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    asyncio.run(main())
