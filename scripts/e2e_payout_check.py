"""End-to-end payout check against whatever Stellar RPC ``SOROBAN_RPC_URL`` names.

The same run for the local sandbox (CI: tests/integration/test_e2e_payout_check.py) and for
Stellar testnet (docs/operations.md, "Testnet profile"): nothing in it knows which one it talks to.

1. getHealth must be healthy; getNetwork gives the passphrase (``STELLAR_NETWORK_PASSPHRASE``,
   if set, must match) and the friendbot URL; getFeeStats is read.
2. signer-service starts on loopback (mTLS, a key generated on a throwaway SoftHSM2 token, or a
   hot key with --hot-key / without softhsm2), policy limited to the XLM SAC ``transfer``.
3. Friendbot (POST ?addr=) funds the signer's account and a fresh destination.
4. payout-service starts live against the RPC (PostgreSQL: ``DATABASE_URL`` or a throwaway
   cluster), and one payout of --amount XLM is created and followed to CONFIRMED.
5. The chain is the judge: getTransaction of the payout's hash is SUCCESS, getEvents shows the
   SAC transfer (from the signer to the destination, the exact amount), the destination's
   balance (getLedgerEntries) grew by exactly that amount, and the fee the service recorded is
   the transaction's feeCharged.

Prints one JSON summary line on stdout and exits 0; on any failure prints
``e2e-payout-check: FAIL: ...`` on stderr and exits 1. No secret is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from stellar_sdk import Asset, Keypair, SorobanServerAsync, scval, xdr
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.soroban_rpc import EventFilter, EventFilterType, GetTransactionStatus

from payout_service.config import load_config
from payout_service.embedded_postgres import EmbeddedPostgres
from payout_service.main import start_service
from signer_service.testing import running_signer
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

STROOPS_PER_XLM = 10_000_000


class CheckFailed(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


async def friendbot(url: str, address: str) -> None:
    """Fund ``address`` (real friendbot and the sandbox both take POST ?addr=)."""
    async with aiohttp.ClientSession() as session:
        async with session.post(url, params={"addr": address}) as resp:
            body = await resp.text()
            check(resp.status == 200, f"friendbot {resp.status} for {address}: {body[:300]}")


async def native_balance(server: SorobanServerAsync, address: str) -> int:
    account_key = xdr.LedgerKey(
        xdr.LedgerEntryType.ACCOUNT,
        account=xdr.LedgerKeyAccount(Keypair.from_public_key(address).xdr_account_id()),
    )
    found = await server.get_ledger_entries([account_key])
    check(bool(found.entries), f"account {address} not found on the network")
    assert found.entries is not None
    data = xdr.LedgerEntryData.from_xdr(found.entries[0].xdr)
    assert data.account is not None
    return data.account.balance.int64


async def wait_funded(server: SorobanServerAsync, address: str, deadline: float) -> int:
    while True:
        try:
            return await native_balance(server, address)
        except CheckFailed:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


async def follow(stub: Any, payout_id: str, deadline: float) -> pb.Payout:
    while True:
        payout = (await stub.GetPayout(pb.GetPayoutRequest(payout_id=payout_id))).payout
        if payout.state in (pb.PAYOUT_STATE_CONFIRMED, pb.PAYOUT_STATE_FAILED):
            return payout
        check(time.monotonic() < deadline,
              f"payout {payout_id} still {pb.PayoutState.Name(payout.state)} at the deadline")
        await asyncio.sleep(1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rpc_url = os.environ.get("SOROBAN_RPC_URL", "").strip()
    check(bool(rpc_url), "SOROBAN_RPC_URL is required (the Stellar RPC endpoint to check)")
    deadline = time.monotonic() + args.timeout
    amount = int(Decimal(args.amount) * STROOPS_PER_XLM)
    summary: dict[str, Any] = {"rpc_url": rpc_url}
    server = SorobanServerAsync(rpc_url, client=AiohttpClient())
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(server.close)
        health = await server.get_health()
        check(health.status == "healthy", f"getHealth: {health.status}")
        network = await server.get_network()
        passphrase = network.passphrase
        wanted = os.environ.get("STELLAR_NETWORK_PASSPHRASE", "").strip()
        check(not wanted or wanted == passphrase,
              f"STELLAR_NETWORK_PASSPHRASE {wanted!r} but the RPC serves {passphrase!r}")
        check(bool(network.friendbot_url),
              "the network has no friendbot: fund the accounts yourself "
              "(docs/operations.md, Testnet profile)")
        assert network.friendbot_url is not None
        fee_stats = await server.get_fee_stats()
        summary |= {"passphrase": passphrase, "protocol": network.protocol_version,
                    "fee_p90": fee_stats.soroban_inclusion_fee.p90}

        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="e2e-payout-")))
        xlm = Asset.native().contract_id(passphrase)
        backend = "hot" if args.hot_key or not shutil.which("softhsm2-util") else "pkcs11"
        signer = await stack.enter_async_context(running_signer(
            tmp, network_passphrase=passphrase, backend=backend, policy={
                "contract_ids": [xlm], "function_names": ["transfer"],
                "max_amount_stroops_per_tx": amount, "max_time_window_seconds": 300,
            }))
        destination = Keypair.random().public_key
        for address in (signer.public_key, destination):
            await friendbot(network.friendbot_url, address)
        await wait_funded(server, signer.public_key, deadline)
        before = await wait_funded(server, destination, deadline)

        database_url = os.environ.get("DATABASE_URL", "").strip()
        if not database_url:
            cluster = EmbeddedPostgres().start()
            stack.callback(cluster.stop)
            database_url = cluster.dsn
        service = await start_service(load_config({
            "DATABASE_URL": database_url, "PAYOUTS_LISTEN_ADDR": "127.0.0.1:0",
            "PAYOUTS_PLAINTEXT": "true", "PAYOUT_SOURCE_ACCOUNT": signer.public_key,
            "SOROBAN_RPC_URL": rpc_url, "STELLAR_NETWORK_PASSPHRASE": passphrase,
            "PAYOUTS_LIVE_EXECUTION": "true", "PAYOUTS_SIGNING_MODE": "signer",
            "PAYOUTS_SIGNER_ADDR": signer.address, "PAYOUTS_SIGNER_CA_CERT": str(signer.ca_cert),
            "PAYOUTS_SIGNER_CLIENT_CERT": str(signer.client_cert),
            "PAYOUTS_SIGNER_CLIENT_KEY": str(signer.client_key),
            "PAYOUTS_SIGNER_KEY_ID": signer.key_id, "PAYOUTS_TX_WINDOW_SECONDS": "60",
            "PAYOUTS_CONFIRM_POLL_MS": "1000",
        }))
        stack.push_async_callback(service.stop)
        payout_id = f"e2e-{int(time.time())}"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            await stub.CreatePayout(pb.CreatePayoutRequest(
                payout_id=payout_id, destination=destination, amount=args.amount,
                asset="XLM", idempotency_key=payout_id))
            payout = await follow(stub, payout_id, deadline)
        check(payout.state == pb.PAYOUT_STATE_CONFIRMED,
              f"payout {payout_id} FAILED: {payout.failure}")

        landed = await server.get_transaction(payout.tx_hash)
        check(landed.status == GetTransactionStatus.SUCCESS,
              f"getTransaction {payout.tx_hash}: {landed.status}")
        fee = xdr.TransactionResult.from_xdr(landed.result_xdr or "").fee_charged.int64
        check(payout.network_fee_stroops == fee,
              f"recorded fee {payout.network_fee_stroops} != feeCharged {fee}")
        events = await server.get_events(
            start_ledger=payout.ledger,
            filters=[EventFilter(event_type=EventFilterType.CONTRACT, contract_ids=[xlm],
                                 topics=[[scval.to_symbol("transfer").to_xdr(), "**"]])],
            limit=100,
        )
        moved = [e for e in events.events if e.transaction_hash == payout.tx_hash]
        check(len(moved) == 1, f"getEvents: {len(moved)} transfer events for the payout")
        topics = [scval.to_native(xdr.SCVal.from_xdr(t)) for t in moved[0].topic]
        check((topics[1].address, topics[2].address) == (signer.public_key, destination),
              "transfer event: not from the signer's account to the destination")
        check(scval.to_native(xdr.SCVal.from_xdr(moved[0].value)) == amount,
              "transfer event: wrong amount")
        after = await native_balance(server, destination)
        check(after - before == amount, f"destination balance moved by {after - before}")
        summary |= {"payout_id": payout_id, "tx_hash": payout.tx_hash, "ledger": payout.ledger,
                    "amount_stroops": amount, "fee_charged": fee, "signer_backend": backend,
                    "state": "CONFIRMED"}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/e2e-payout-check",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--amount", default="1.5", help="XLM to pay (default 1.5)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for the whole run")
    parser.add_argument("--hot-key", action="store_true",
                        help="sign with a hot key instead of a SoftHSM2 token")
    args = parser.parse_args()
    try:
        summary = asyncio.run(run(args))
    except CheckFailed as failure:
        print(f"e2e-payout-check: FAIL: {failure}", file=sys.stderr)
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - one line for the operator, not a traceback
        print(f"e2e-payout-check: FAIL: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
