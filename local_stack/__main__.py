"""The whole stack on one machine, embedded defaults, no outside services (README command 1).

- PostgreSQL: a throwaway cluster from the machine's binaries (or DATABASE_URL),
- soroban-sandbox: the local Stellar RPC test harness, ledgers every --ledger-interval s,
- signer-service: its own process, mTLS, key generated on a throwaway SoftHSM2 token (a hot
  key with --hot-key or when softhsm2 is missing), policy limited to XLM SAC `transfer`,
- payout-service: live execution, automatic signing through the signer, mTLS for callers
  (certificates under .devstack/certs; `admin` is the admin identity), /metrics on 9464.

Ctrl-C stops everything and removes the throwaway database, token and keys; the caller
certificates stay under .devstack/ so the README's grpcurl lines keep working.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path

from stellar_sdk import Asset

from payout_service.config import load_config
from payout_service.embedded_postgres import EmbeddedPostgres
from payout_service.logs import configure_logging
from payout_service.main import start_service
from signer_service.certs import generate_dev_certs
from signer_service.testing import SOFTHSM_MODULE, running_signer
from soroban_sandbox.testing import RunningSandbox

XLM = 10_000_000
# A fixed, funded destination so the README's grpcurl lines work as written. A public
# address only (sha256 of a label): nobody holds its key, and none is needed to receive.
DEMO_DESTINATION = "GBRS5V6BMZW7K4ZTO4DKG27UFCY4KSOHTU3UVCOSQZ6QVDFP7GAAJ7OM"


def caller_env(certs_dir: Path, port: int, identity: str) -> dict[str, str]:
    """payoutctl's settings for a caller identity (the same files grpcurl takes)."""
    return {
        "PAYOUTCTL_TARGET": f"localhost:{port}",
        "PAYOUTCTL_CA_CERT": str(certs_dir / "ca.pem"),
        "PAYOUTCTL_CLIENT_CERT": str(certs_dir / f"client-{identity}.pem"),
        "PAYOUTCTL_CLIENT_KEY": str(certs_dir / f"client-{identity}.key"),
    }


def banner(args: argparse.Namespace, port: int, certs: Path, demo_dest: str,
           database_url: str, rpc_url: str, signer_backend: str) -> str:
    rel = os.path.relpath(certs)
    tls = "-plaintext" if args.plaintext else (
        f"-cacert {rel}/ca.pem -cert {rel}/client-operator.pem -key {rel}/client-operator.key")
    create = shlex.quote(
        f'{{"payout_id":"demo-1","destination":"{demo_dest}","amount":"12.5",'
        f'"asset":"XLM","idempotency_key":"demo-1"}}')
    return "\n".join([
        "",
        f"payout-service on localhost:{port} ({'PLAINTEXT' if args.plaintext else 'mTLS'}), "
        f"live execution, signer-service ({signer_backend}) over mTLS",
        f"  PostgreSQL {database_url}",
        f"  soroban-sandbox {rpc_url} (ledger every {args.ledger_interval}s)",
        f"  metrics http://127.0.0.1:{args.metrics_port}/metrics" if args.metrics_port else "",
        f"  funded demo destination {demo_dest}",
        "",
        f"  grpcurl {tls} localhost:{port} list",
        f"  grpcurl {tls} -d {create} localhost:{port} payout.v1.PayoutService/CreatePayout",
        f"  grpcurl {tls} -d '{{\"payout_id\":\"demo-1\"}}' localhost:{port} "
        "payout.v1.PayoutService/WatchPayout",
        "" if args.plaintext else f"  . {os.path.relpath(args.state_dir)}/operator.env && "
        f"payoutctl get demo-1",
        "Ctrl-C to stop.",
    ])


async def run(args: argparse.Namespace, state_dir: Path, backend: str) -> None:
    certs_dir = state_dir / "certs"
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stellar-payouts-")))
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            cluster = EmbeddedPostgres().start()
            stack.callback(cluster.stop)
            database_url = cluster.dsn
        sandbox = await stack.enter_async_context(
            RunningSandbox(ledger_interval=args.ledger_interval, seed=0))
        policy = {
            "contract_ids": [Asset.native().contract_id(sandbox.passphrase)],
            "function_names": ["transfer"],
            "max_amount_stroops_per_tx": 10_000 * XLM,
            "max_amount_stroops_per_day": 100_000 * XLM,
            "max_time_window_seconds": 300,
        }
        signer = await stack.enter_async_context(running_signer(
            tmp, network_passphrase=sandbox.passphrase, backend=backend, policy=policy))
        await sandbox.fund(signer.public_key)
        demo_dest = DEMO_DESTINATION
        await sandbox.fund(demo_dest)

        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PAYOUT")},
            "DATABASE_URL": database_url,
            "PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{args.port}",
            "PAYOUT_SOURCE_ACCOUNT": signer.public_key,
            "SOROBAN_RPC_URL": sandbox.rpc_url,
            "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
            "PAYOUTS_LIVE_EXECUTION": "true",
            "PAYOUTS_SIGNING_MODE": "signer",
            "PAYOUTS_SIGNER_ADDR": signer.address,
            "PAYOUTS_SIGNER_CA_CERT": str(signer.ca_cert),
            "PAYOUTS_SIGNER_CLIENT_CERT": str(signer.client_cert),
            "PAYOUTS_SIGNER_CLIENT_KEY": str(signer.client_key),
            "PAYOUTS_SIGNER_KEY_ID": signer.key_id,
            "PAYOUTS_TX_WINDOW_SECONDS": "60",
            "PAYOUTS_CONFIRM_POLL_MS": "500",
            "PAYOUTS_METRICS_PORT": str(args.metrics_port),
        }
        if args.plaintext:
            env["PAYOUTS_PLAINTEXT"] = "true"
        else:
            callers = generate_dev_certs(certs_dir, ["operator", "admin"],
                                         server_name="payout-service")
            env.update({
                "PAYOUTS_TLS_CERT": str(callers.server.cert),
                "PAYOUTS_TLS_KEY": str(callers.server.key),
                "PAYOUTS_TLS_CLIENT_CA": str(callers.ca_cert),
                "PAYOUTS_ADMIN_IDENTITIES": "admin",
            })
            for identity in ("operator", "admin"):
                lines = [f"export {k}={shlex.quote(v)}"
                         for k, v in caller_env(certs_dir, args.port, identity).items()]
                (state_dir / f"{identity}.env").write_text("\n".join(lines) + "\n")
        service = await start_service(load_config(env))
        stack.push_async_callback(service.stop)
        print(banner(args, service.port, certs_dir, demo_dest, database_url, sandbox.rpc_url,
                     backend), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/dev-stack", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--metrics-port", type=int, default=9464, help="0 turns /metrics off")
    parser.add_argument("--ledger-interval", type=float, default=1.0)
    parser.add_argument("--plaintext", action="store_true",
                        help="serve callers without TLS (admin RPCs open)")
    parser.add_argument("--hot-key", action="store_true",
                        help="signer uses a hot key instead of a SoftHSM2 token")
    parser.add_argument("--state-dir", default=".devstack",
                        help="where caller certificates and payoutctl env files are written")
    args = parser.parse_args()
    configure_logging("dev-stack", os.environ.get("PAYOUTS_LOG_LEVEL", "WARNING"))
    state_dir = Path(args.state_dir).resolve()
    (state_dir / "certs").mkdir(parents=True, exist_ok=True)
    backend = "hot" if args.hot_key or not Path(SOFTHSM_MODULE).exists() else "pkcs11"
    try:
        asyncio.run(run(args, state_dir, backend))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
