"""``soroban-sandbox``: run the local Stellar RPC test harness (NOT a Stellar node).

Example::

    soroban-sandbox --port 8000 --ledger-interval 1 --seed 7 --fault drop_rate=0.1

Once listening it prints one line ``SOROBAN_SANDBOX_READY http://HOST:PORT`` on stdout (with
``--port 0`` the OS picks the port), which ``soroban_sandbox.testing.RunningSandbox`` waits for.
JSON-RPC is served on ``POST /``; friendbot on ``GET /friendbot?addr=G...``; the admin API
under ``/admin`` (see README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from aiohttp import web
from stellar_sdk import Asset, StrKey

from .faults import FaultError, Faults, updated
from .ledger import LedgerLimits
from .protocol import NEWEST, OLDEST
from .resources import PUBLISHED_TX_LIMITS, TxLimits
from .server import Sandbox, SandboxConfig

READY_MARKER = "SOROBAN_SANDBOX_READY"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="soroban-sandbox",
        description="Local Stellar RPC test harness (not a node; in-memory; no real funds).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 lets the OS choose")
    parser.add_argument("--ledger-interval", type=float, default=5.0, help="seconds per ledger")
    parser.add_argument("--network-passphrase", default="Standalone Network ; February 2017")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault random stream")
    parser.add_argument("--payout-contract-id", default=None, help="C... id of the payout contract")
    parser.add_argument("--payout-method", default="distribute_winnings")
    parser.add_argument(
        "--payout-batch-method",
        default="distribute_batch",
        help="the payout contract's batch method (from: Address, payouts: Vec<(Address, i128)>)",
    )
    parser.add_argument("--retention-ledgers", type=int, default=120_960)
    parser.add_argument(
        "--protocol",
        type=int,
        default=NEWEST,
        help=f"the protocol version modelled, {OLDEST} to {NEWEST} (default {NEWEST}); 26 "
        "brings CAP-73 and CAP-77, 27 CAP-71's ADDRESS_V2 credentials",
    )
    parser.add_argument(
        "--soroban-txs-per-ledger",
        type=int,
        default=2_000,
        help="Soroban transactions per ledger before surge pricing (testnet: 2,000)",
    )
    parser.add_argument(
        "--classic-ops-per-ledger",
        type=int,
        default=200,
        help="classic operations per ledger before surge pricing (testnet: 200, mainnet: 1,000)",
    )
    parser.add_argument(
        "--max-healthy-ledger-latency",
        type=float,
        default=30.0,
        help="seconds since the last close after which getHealth is unhealthy (stellar-rpc: 30)",
    )
    parser.add_argument(
        "--asset",
        action="append",
        default=[],
        metavar="CODE:ISSUER",
        help="deploy the Stellar Asset Contract of an issued asset (repeatable)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="initial fault setting as JSON, e.g. drop_rate=0.1, stall_ledgers=true or "
        "node_lags=[0,2] (repeatable)",
    )
    _add_limit_flags(parser)
    args = parser.parse_args(argv)
    if args.ledger_interval <= 0:
        parser.error("--ledger-interval must be positive")
    if args.soroban_txs_per_ledger < 1:
        parser.error("--soroban-txs-per-ledger must be at least 1")
    if args.classic_ops_per_ledger < 100:
        parser.error("--classic-ops-per-ledger must be at least 100 (one full transaction)")
    if args.max_healthy_ledger_latency <= 0:
        parser.error("--max-healthy-ledger-latency must be positive")
    if not OLDEST <= args.protocol <= NEWEST:
        parser.error(f"--protocol must be {OLDEST} to {NEWEST} (the protocols the sandbox models)")
    args.tx_limits = TxLimits(**{f: getattr(args, f"tx_max_{f}") for f in TX_LIMIT_FIELDS})
    for limit, tx_field in LEDGER_OVER_TX.items():
        if getattr(args, limit) < getattr(args.tx_limits, tx_field):
            parser.error(f"--{limit.replace('_', '-')} must be at least the per-transaction limit")
    try:
        args.faults = updated(Faults(), dict(_fault_pair(raw) for raw in args.fault))
    except FaultError as exc:
        parser.error(f"--fault: {exc}")
    if args.payout_contract_id and not StrKey.is_valid_contract(args.payout_contract_id):
        parser.error("--payout-contract-id must be a C... contract id")
    try:
        args.assets = [Asset(*spec.split(":", 1)) for spec in args.asset]
    except (TypeError, ValueError) as exc:
        parser.error(f"--asset must be CODE:ISSUER with a G... issuer: {exc}")
    return args


TX_LIMIT_FIELDS = [f.name for f in fields(TxLimits)]
# Each ledger-wide limit and the per-transaction limit it must hold (stellar-core refuses a
# network configuration whose ledger limit is below the transaction limit).
LEDGER_OVER_TX = {
    "ledger_instructions": "instructions",
    "ledger_write_entries": "write_entries",
    "ledger_disk_read_entries": "disk_read_entries",
    "ledger_write_bytes": "write_bytes",
    "ledger_tx_size_bytes": "size_bytes",
}


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    """Soroban resource limits, defaults from stellar-docs "Resource Limits & Fees"."""
    for name in TX_LIMIT_FIELDS:
        parser.add_argument(
            f"--tx-max-{name.replace('_', '-')}",
            dest=f"tx_max_{name}",
            type=_positive_int,
            default=getattr(PUBLISHED_TX_LIMITS, name),
            help=f"per-transaction Soroban limit ({getattr(PUBLISHED_TX_LIMITS, name):,})",
        )
    for name in LEDGER_OVER_TX:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=_positive_int,
            default=getattr(LedgerLimits, name),
            help=f"ledger-wide Soroban limit ({getattr(LedgerLimits, name):,})",
        )


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _fault_pair(raw: str) -> tuple[str, Any]:
    name, sep, value = raw.partition("=")
    if not sep:
        raise FaultError(f"expected NAME=VALUE, got {raw!r}")
    try:
        return name.strip(), json.loads(value)
    except ValueError as exc:
        raise FaultError(
            f"{name}: value {value!r} is not JSON (a number, true/false or a list such as [0,2])"
        ) from exc


async def serve(args: argparse.Namespace) -> None:
    config = SandboxConfig(
        passphrase=args.network_passphrase,
        ledger_interval=args.ledger_interval,
        seed=args.seed,
        payout_contract_id=args.payout_contract_id,
        payout_method=args.payout_method,
        payout_batch_method=args.payout_batch_method,
        tx_limits=args.tx_limits,
        **{name: getattr(args, name) for name in LEDGER_OVER_TX},
        retention_ledgers=args.retention_ledgers,
        soroban_txs_per_ledger=args.soroban_txs_per_ledger,
        classic_ops_per_ledger=args.classic_ops_per_ledger,
        max_healthy_latency=args.max_healthy_ledger_latency,
        protocol=args.protocol,
    )
    sandbox = Sandbox(config, args.faults)
    for asset in args.assets:
        sandbox.ledger.registry.register_asset(asset)
    runner = web.AppRunner(sandbox.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://{args.host}:{port}"
    sandbox.set_public_url(url)
    print(f"{READY_MARKER} {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
