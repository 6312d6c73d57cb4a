"""The local stack with embedded defaults: no outside services, nothing to configure.

Starts a throwaway PostgreSQL (or uses DATABASE_URL), then payout-service in build-only mode
on 127.0.0.1:50051 with a generated source account, and prints how to talk to it.
Ctrl-C stops everything and removes the throwaway database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from stellar_sdk import StrKey

from payout_service.config import load_config
from payout_service.embedded_postgres import EmbeddedPostgres
from payout_service.logs import configure_logging
from payout_service.main import start_service


def _dev_source_account() -> str:
    # A public address only: build-only mode needs no key. Derived from random bytes so the
    # payout process never creates a keypair.
    return StrKey.encode_ed25519_public_key(os.urandom(32))


async def _run(port: int) -> None:
    cluster = None
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        cluster = EmbeddedPostgres().start()
        database_url = cluster.dsn
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{port}",
        "PAYOUTS_PLAINTEXT": "true",
        "PAYOUT_SOURCE_ACCOUNT": os.environ.get("PAYOUT_SOURCE_ACCOUNT")
        or _dev_source_account(),
    }
    service = await start_service(load_config(env))
    print(
        f"\npayout-service (build-only) on 127.0.0.1:{service.port}; PostgreSQL {database_url}\n"
        f"  grpcurl -plaintext 127.0.0.1:{service.port} list\n"
        f"  payoutctl --target 127.0.0.1:{service.port} create demo-1 "
        f"{_dev_source_account()} 12.5\n"
        "Ctrl-C to stop.",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await service.stop()
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=50051)
    args = parser.parse_args()
    configure_logging("devstack", os.environ.get("PAYOUTS_LOG_LEVEL", "WARNING"))
    try:
        asyncio.run(_run(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
