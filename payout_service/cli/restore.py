"""The restore drill's tool: hold sending, reconcile a restored database with the chain and
the signer's audit log, release (deploy/README.md, "Backup and restore").

    python -m payout_service.cli.restore hold --reason TEXT --restore-point 2025-01-31T02:00:00Z
    python -m payout_service.cli.restore reconcile --signer-audit-log audit.jsonl [--wait]
    python -m payout_service.cli.restore release
    python -m payout_service.cli.restore status

It reads the service's own environment (DATABASE_URL, SOROBAN_RPC_URL, ...; load_config) and
talks to PostgreSQL and Stellar RPC directly: it is run while sending is held, by an operator.
`hold` applies the migrations first (a restored database may predate the hold's table).
The reconciliation's rules are core/restore.py's; its writes are adapters/restore_store.py's.
Exit status: 0 done, 2 usage or configuration, 3 something needs an operator (the report says
what), 4 not yet quiet (envelopes signed before the hold may still land: wait, or --wait),
5 Stellar RPC unavailable (run again: each write is one transaction, and a second run judges
what the first one attached as the database's own attempt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from payout_service.adapters.database import create_pool
from payout_service.adapters.ledger import LedgerGateway, LedgerUnavailable
from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.restore_store import hold_sending, release_sending, sending_hold
from payout_service.app.restore import NeedsOperator, reconcile, signing_window_seconds
from payout_service.config import Config, ConfigError, load_config, warn_renamed


async def _run(args: argparse.Namespace, config: Config) -> int:
    pool = await create_pool(config.database_url, min_size=1, max_size=4)
    ledger = LedgerGateway(config.rpc_url or "", timeout_seconds=config.rpc_timeout_seconds)
    try:
        if args.command == "hold":
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            latest = await ledger.latest_ledger()
            # Replicas still running notice the hold within one health-check interval.
            quiet_after = max(int(time.time()), latest.close_time) + \
                signing_window_seconds(config) + math.ceil(config.health_check_seconds)
            hold = await hold_sending(pool, reason=args.reason,
                                      restore_point=args.restore_point, quiet_after=quiet_after)
            _print({"held": True, "reason": hold.reason, "quiet_after": hold.quiet_after,
                    "restore_point": hold.restore_point.isoformat() if hold.restore_point
                    else None})
            return 0
        if args.command == "status":
            current = await sending_hold(pool)
            _print({"held": current is not None, **({
                "reason": current.reason, "quiet_after": current.quiet_after,
                "reconciled": current.reconciled_at is not None} if current else {})})
            return 0
        if args.command == "release":
            released = await release_sending(pool, force=args.force)
            _print({"released": released})
            return 0 if released else 3
        report = await reconcile(pool, ledger, config, args.signer_audit_log, wait=args.wait)
        _print(report.__dict__)
        return 0 if report.reconciled else 3
    except NeedsOperator as err:
        _print({"error": str(err)})
        return 4 if str(err).startswith("not yet quiet") else 3
    except LedgerUnavailable as err:
        _print({"error": f"Stellar RPC unavailable ({err}): nothing half-done; run again"})
        return 5
    finally:
        await ledger.close()
        await pool.close()


def _print(value: dict[str, Any]) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m payout_service.cli.restore",
                                  description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    hold = sub.add_parser("hold", help="stop every replica sending (migrations first)")
    hold.add_argument("--reason", required=True)
    hold.add_argument("--restore-point", type=_time,
                      help="the backup's time (pg_dump's start, or the PITR target)")
    rec = sub.add_parser("reconcile", help="attach what the chain says was sent after the "
                                           "restore point; re-sync sequence numbers")
    rec.add_argument("--signer-audit-log", type=Path, action="append", required=True,
                     help="a signer instance's audit log (repeat for each instance)")
    rec.add_argument("--wait", action="store_true",
                     help="wait until envelopes signed before the hold can no longer land")
    rel = sub.add_parser("release", help="lift the hold (only after a clean reconcile)")
    rel.add_argument("--force", action="store_true",
                     help="lift it without a reconciliation (an operator decided)")
    sub.add_parser("status")
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        config = load_config()
        if config.rpc_url is None:
            raise ConfigError("SOROBAN_RPC_URL is required")
    except ConfigError as err:
        print(f"payout-restore: configuration error: {err}", file=sys.stderr)
        sys.exit(2)
    warn_renamed(config)
    sys.exit(asyncio.run(_run(args, config)))


if __name__ == "__main__":
    main()

