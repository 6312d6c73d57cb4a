"""The whole stack on one machine, embedded defaults, no outside services (README command 1).

- PostgreSQL: a throwaway cluster from the machine's binaries (or DATABASE_URL),
- soroban-sandbox: the local Stellar RPC test harness, ledgers every --ledger-interval s,
- signer-service: its own process, mTLS, key generated on a throwaway SoftHSM2 token (a hot
  key with --hot-key or when softhsm2 is missing), policy limited to XLM SAC `transfer`,
- payout-service: live execution, automatic signing through the signer (or, with
  --external-signing, signatures brought back with SubmitSignedTransaction), mTLS for callers
  (certificates under .devstack/certs; `admin` is the admin identity), /metrics on 9464.

Ctrl-C stops everything and removes the throwaway database, token and keys; the caller
certificates stay under .devstack/ so the README's grpcurl lines keep working. No CA private
key is kept: each is deleted as soon as its certificates are issued, so nobody can mint an
`admin` certificate from what the dev stack leaves behind. Tracing settings
(PAYOUTS_OTLP_ENDPOINT, PAYOUTS_SIGNER_OTLP_ENDPOINT, OTEL_*) reach both services.
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
from collections.abc import Iterator
from pathlib import Path

from stellar_sdk import Asset, Keypair

from payout_service.config import load_config
from payout_service.embedded_postgres import EmbeddedPostgres
from payout_service.logs import configure_logging
from payout_service.main import start_service
from payout_service.tracing import configure_tracing
from signer_service.certs import generate_dev_certs
from signer_service.testing import SOFTHSM_MODULE, running_signer
from soroban_sandbox.testing import RunningSandbox

XLM = 10_000_000
# A fixed, funded destination so the README's grpcurl lines work as written. A public
# address only (sha256 of a label): nobody holds its key, and none is needed to receive.
DEMO_DESTINATION = "GBRS5V6BMZW7K4ZTO4DKG27UFCY4KSOHTU3UVCOSQZ6QVDFP7GAAJ7OM"
# --external-signing: the paying account's secret, for local_stack.sign; deleted on Ctrl-C.
EXTERNAL_KEY_FILE = "external-signer.secret"


def caller_env(certs_dir: Path, port: int, identity: str) -> dict[str, str]:
    """payoutctl's settings for a caller identity (the same files grpcurl takes)."""
    return {
        "PAYOUTCTL_TARGET": f"localhost:{port}",
        "PAYOUTCTL_CA_CERT": str(certs_dir / "ca.pem"),
        "PAYOUTCTL_CLIENT_CERT": str(certs_dir / f"client-{identity}.pem"),
        "PAYOUTCTL_CLIENT_KEY": str(certs_dir / f"client-{identity}.key"),
    }


def env_file(settings: dict[str, str]) -> str:
    """A file to source from a fresh shell: the settings, and .venv/bin (grpcurl, payoutctl)
    on PATH, since a new shell does not have the virtualenv active."""
    bin_dir = shlex.quote(str(Path(sys.executable).parent))
    lines = [f"export PATH={bin_dir}:\"$PATH\""]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def drop_ca_key(ca_cert: Path) -> None:
    """Whoever reads a CA key can issue any identity (`admin` included): none is kept."""
    (ca_cert.parent / "ca.key").unlink(missing_ok=True)


@contextlib.contextmanager
def signer_tracing_env() -> Iterator[None]:
    """The signer reads OTEL_EXPORTER_OTLP_ENDPOINT (or PAYOUTS_SIGNER_OTLP_ENDPOINT, which
    its launcher does not pass on): hand it the signer-specific one while it starts."""
    wanted = os.environ.get("PAYOUTS_SIGNER_OTLP_ENDPOINT")
    before = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if wanted:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = wanted
    try:
        yield
    finally:
        if wanted and before is None:
            del os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
        elif wanted and before is not None:
            os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = before


def banner(args: argparse.Namespace, port: int, certs: Path, demo_dest: str,
           database_url: str, rpc_url: str, signer_backend: str, paying: str) -> str:
    rel = os.path.relpath(certs)
    tls = "-plaintext" if args.plaintext else (
        f"-cacert {rel}/ca.pem -cert {rel}/client-operator.pem -key {rel}/client-operator.key")
    create = shlex.quote(
        f'{{"payout_id":"demo-1","destination":"{demo_dest}","amount":"12.5",'
        f'"asset":"XLM","idempotency_key":"demo-1"}}')
    state = os.path.relpath(args.state_dir)
    signing = (f"external signing (key in {state}/{EXTERNAL_KEY_FILE}, mode 0600)"
               if args.external_signing else f"signer-service ({signer_backend}) over mTLS")
    external = [
        f"  sign and submit: payoutctl unsigned demo-1 | python -m local_stack.sign "
        f"{state}/{EXTERNAL_KEY_FILE} | payoutctl submit-signed demo-1 -",
    ] if args.external_signing else []
    return "\n".join([
        "",
        f"payout-service on localhost:{port} ({'PLAINTEXT' if args.plaintext else 'mTLS'}), "
        f"live execution, {signing}",
        f"  paying account {paying} (funded on the sandbox)",
        f"  PostgreSQL {database_url}",
        f"  soroban-sandbox {rpc_url} (ledger every {args.ledger_interval}s)",
        f"  metrics http://127.0.0.1:{args.metrics_port}/metrics" if args.metrics_port else "",
        f"  funded demo destination {demo_dest}",
        "",
        f"  grpcurl {tls} localhost:{port} list",
        f"  grpcurl {tls} -d {create} localhost:{port} payout.v1.PayoutService/CreatePayout",
        f"  grpcurl {tls} -d '{{\"payout_id\":\"demo-1\"}}' localhost:{port} "
        "payout.v1.PayoutService/WatchPayout",
        "" if args.plaintext else f"  . {state}/operator.env && payoutctl get demo-1",
        *external,
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
        # The caller's tracing endpoint goes through; other PAYOUT* settings are the stack's.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PAYOUT") or k == "PAYOUTS_OTLP_ENDPOINT"}
        if args.external_signing:
            paying = Keypair.random()
            secret_file = state_dir / EXTERNAL_KEY_FILE
            secret_file.unlink(missing_ok=True)
            secret_file.touch(mode=0o600)  # created private, before the secret is written
            secret_file.write_text(paying.secret + "\n")
            stack.callback(secret_file.unlink, missing_ok=True)
            paying_account = paying.public_key
            env.update({"PAYOUTS_SIGNING_MODE": "external",
                        "PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS": "600"})
        else:
            policy = {
                "contract_ids": [Asset.native().contract_id(sandbox.passphrase)],
                "function_names": ["transfer"],
                "max_amount_stroops_per_tx": 10_000 * XLM,
                "max_amount_stroops_per_day": 100_000 * XLM,
                "max_time_window_seconds": 300,
            }
            with signer_tracing_env():
                signer = await stack.enter_async_context(running_signer(
                    tmp, network_passphrase=sandbox.passphrase, backend=backend, policy=policy))
            drop_ca_key(signer.ca_cert)
            paying_account = signer.public_key
            env.update({
                "PAYOUTS_SIGNING_MODE": "signer",
                "PAYOUTS_SIGNER_ADDR": signer.address,
                "PAYOUTS_SIGNER_CA_CERT": str(signer.ca_cert),
                "PAYOUTS_SIGNER_CLIENT_CERT": str(signer.client_cert),
                "PAYOUTS_SIGNER_CLIENT_KEY": str(signer.client_key),
                "PAYOUTS_SIGNER_KEY_ID": signer.key_id,
            })
        await sandbox.fund(paying_account)
        demo_dest = DEMO_DESTINATION
        await sandbox.fund(demo_dest)

        env.update({
            "DATABASE_URL": database_url,
            "PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{args.port}",
            "PAYOUT_SOURCE_ACCOUNT": paying_account,
            "SOROBAN_RPC_URL": sandbox.rpc_url,
            "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
            "PAYOUTS_LIVE_EXECUTION": "true",
            "PAYOUTS_TX_WINDOW_SECONDS": "60",
            "PAYOUTS_CONFIRM_POLL_MS": "500",
            "PAYOUTS_METRICS_PORT": str(args.metrics_port),
        })
        if args.plaintext:
            env["PAYOUTS_PLAINTEXT"] = "true"
        else:
            callers = generate_dev_certs(certs_dir, ["operator", "admin"],
                                         server_name="payout-service")
            drop_ca_key(callers.ca_cert)
            env.update({
                "PAYOUTS_TLS_CERT": str(callers.server.cert),
                "PAYOUTS_TLS_KEY": str(callers.server.key),
                "PAYOUTS_TLS_CLIENT_CA": str(callers.ca_cert),
                "PAYOUTS_ADMIN_IDENTITIES": "admin",
            })
            for identity in ("operator", "admin"):
                settings = caller_env(certs_dir, args.port, identity)
                settings["STELLAR_NETWORK_PASSPHRASE"] = sandbox.passphrase
                (state_dir / f"{identity}.env").write_text(env_file(settings))
        config = load_config(env)
        configure_tracing("payout-service", config.otlp_endpoint)
        service = await start_service(config)
        stack.push_async_callback(service.stop)
        print(banner(args, service.port, certs_dir, demo_dest, database_url, sandbox.rpc_url,
                     backend, paying_account), flush=True)
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
    parser.add_argument("--external-signing", action="store_true",
                        help="no signer: payouts wait in AWAITING_SIGNATURE; sign them with "
                             "python -m local_stack.sign (the banner shows the pipeline)")
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
