"""CreatePayoutBatch with N items (one SQL transaction, bulk inserts) against a baseline of the
same N payouts made by N CreatePayout calls, one after the other, in the same run.

payout-service runs in live mode (payouts are created ACCEPTED for the pipeline; its loops
find no Stellar RPC and back off, which this measurement does not involve). Not a test:
nothing is asserted on timings. Needs DATABASE_URL (or the machine's PostgreSQL binaries).

    python bench/bench_batch.py --items 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time

import grpc
from stellar_sdk import Keypair

from payout_service.adapters.embedded_postgres import EmbeddedPostgres, free_port
from payout_service.config import load_config
from payout_service.main import start_service
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

sys.path.insert(0, os.path.dirname(__file__))
from bench_payouts import fresh_database  # noqa: E402 - a sibling script, not a package


def item(prefix: str, n: int, dest: str) -> pb.CreatePayoutRequest:
    return pb.CreatePayoutRequest(payout_id=f"{prefix}-{n}", destination=dest, amount="1.5",
                                  asset="XLM", idempotency_key=f"{prefix}-{n}",
                                  reference=f"{prefix}-ref-{n}")


async def measure(admin_url: str, items: int) -> tuple[float, float]:
    service = await start_service(load_config({
        "PAYOUTS_MAX_BULK_ITEMS": str(items),
        "DATABASE_URL": await fresh_database(admin_url),
        "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
        "PAYOUTS_LISTEN_ADDR": "127.0.0.1:0", "PAYOUTS_PLAINTEXT": "true",
        "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_SIGNING_MODE": "external",
        "SOROBAN_RPC_URL": f"http://127.0.0.1:{free_port()}",
        "PAYOUTS_LOG_LEVEL": "WARNING",
    }))
    dests = [Keypair.random().public_key for _ in range(16)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            await stub.CreatePayout(item("warm", 0, dests[0]))
            request = pb.CreatePayoutBatchRequest(
                items=[item("batch", n, dests[n % 16]) for n in range(items)])
            started = time.perf_counter()
            reply = await stub.CreatePayoutBatch(request, timeout=120)
            batch = time.perf_counter() - started
            assert len(reply.results) == items
            started = time.perf_counter()
            for n in range(items):
                await stub.CreatePayout(item("single", n, dests[n % 16]), timeout=30)
            singles = time.perf_counter() - started
    finally:
        await service.stop(grace=0)
    return batch, singles


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    embedded = None
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url:
        embedded = EmbeddedPostgres().start()
        admin_url = embedded.dsn
    try:
        batch, singles = await measure(admin_url, args.items)
    finally:
        if embedded is not None:
            embedded.stop()
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(f"CreatePayoutBatch, {args.items} items, one SQL transaction: {batch:.3f} s "
          f"({args.items / batch:,.0f} payouts/s)")
    print(f"baseline, {args.items} CreatePayout calls in turn:          {singles:.3f} s "
          f"({args.items / singles:,.0f} payouts/s)")
    print(f"ratio baseline / batch: {singles / batch:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
