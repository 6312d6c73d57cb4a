"""The whole stack on one machine, embedded defaults, no outside services (README command 1).

- PostgreSQL: a throwaway cluster from the machine's binaries (or DATABASE_URL),
- soroban-sandbox: the local Stellar RPC test harness, ledgers every --ledger-interval s,
- signer-service: its own process, mTLS, key generated on a throwaway SoftHSM2 token (a hot
  key with --hot-key or when softhsm2 is missing), policy limited to XLM SAC `transfer` (and,
  with --channels or --batch, the channel keys and the batch shapes those modes build),
- payout-service: live execution, automatic signing through the signer (or, with
  --external-signing, signatures brought back with SubmitSignedTransaction), mTLS for callers
  (certificates under .devstack/certs; `admin` is the admin identity), /metrics on 9464;
  with --channels N, N funded channel accounts (keys on the signer's token) as transaction
  sources, and with --batch classic|contract up to 100 payouts per transaction.

Ctrl-C stops everything and removes the throwaway database, token and keys; the caller
certificates stay under .devstack/ so the README's grpcurl lines keep working. No CA private
key is kept: each is deleted as soon as its certificates are issued, so nobody can mint an
`admin` certificate from what the dev stack leaves behind. Tracing settings
(PAYOUTS_OTLP_ENDPOINT, PAYOUTS_SIGNER_OTLP_ENDPOINT, OTEL_*) reach both services, and the
webhook, alert, watchdog, retention and log-level settings reach payout-service
(CALLER_SETTINGS).
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
from typing import Any

from stellar_sdk import Asset, Keypair

from payout_service.adapters.embedded_postgres import EmbeddedPostgres
from payout_service.config import load_config
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
# --channels / --batch: the payer holds enough for many thousand demo payouts.
PAYER_BALANCE_STROOPS = 1_000_000 * XLM
ADDRESS_TO_AMOUNT = ["from: address", "to: address", "amount: amount"]

# Settings of the caller's environment that reach payout-service: what to tell (webhooks,
# alerts, tracing, watchdog) and how much to log. Every other PAYOUT* setting is the stack's,
# so a stray PAYOUT_SOURCE_ACCOUNT or batch mode in a shell cannot break it.
CALLER_SETTINGS = ("PAYOUTS_WEBHOOK_", "PAYOUTS_ALERT_", "PAYOUTS_OTLP_ENDPOINT",
                   "PAYOUTS_WATCHDOG_", "PAYOUTS_LOG_LEVEL", "PAYOUTS_EVENTS_RETENTION_")


def passed_through(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The caller's environment as payout-service gets it, before the stack's settings."""
    return {k: v for k, v in environ.items()
            if not k.startswith("PAYOUT") or k.startswith(CALLER_SETTINGS)}


def signer_policy(passphrase: str, payer: str, channels: int, batch: str,
                  payout_contract: str) -> dict[str, Any]:
    """Deny by default: the shapes this stack's settings build and nothing else. A single
    payout is the XLM contract's `transfer` (the payout contract's `distribute_winnings` in
    contract mode); a classic batch is native Payment/CreateAccount operations; a contract
    batch is `distribute_batch(from, payouts)`. With channels, the channel keys' accounts may
    be the transaction source while the payer stays the source of the money."""
    calls: list[dict[str, Any]] = [{
        "contract_ids": [Asset.native().contract_id(passphrase)], "function": "transfer",
        "args": ADDRESS_TO_AMOUNT}]
    if batch == "contract":
        calls += [
            {"contract_ids": [payout_contract], "function": "distribute_winnings",
             "args": ADDRESS_TO_AMOUNT},
            {"contract_ids": [payout_contract], "function": "distribute_batch",
             "args": ["from: address", "payouts: payouts"]},
        ]
    policy: dict[str, Any] = {
        "source_accounts": [payer, "@channel_keys"] if channels else [payer],
        "contract_ids": None, "function_names": None, "calls": calls,
        "max_fee_stroops": 10 * XLM,
        "max_amount_stroops_per_op": 10_000 * XLM,
        "max_amount_stroops_per_tx": 100_000 * XLM,
        "max_amount_stroops_per_day": 1_000_000 * XLM,
        "max_time_window_seconds": 300,
    }
    if batch == "classic":
        policy["payments"] = {"assets": ["native"]}
    return policy


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


def pool_line(args: argparse.Namespace) -> str:
    sources = (f"{args.channels} channel accounts as transaction sources" if args.channels
               else "the paying account as the only transaction source")
    batching = (f"{args.batch} batches of up to {args.max_payouts_per_tx} payouts"
                if args.batch != "off" else "one payout per transaction")
    return f"{sources}, {batching}"


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
        f"  {pool_line(args)}",
        "",
        f"  grpcurl {tls} localhost:{port} list",
        f"  grpcurl {tls} -d {create} localhost:{port} payout.v1.PayoutService/CreatePayout",
        f"  grpcurl {tls} -d '{{\"payout_id\":\"demo-1\"}}' localhost:{port} "
        "payout.v1.PayoutService/WatchPayout",
        "" if args.plaintext else f"  . {state}/operator.env && payoutctl get demo-1",
        *external,
        "Ctrl-C to stop.",
    ])


def pool_settings(args: argparse.Namespace, channel_keys: dict[str, Keypair],
                  payout_contract: str) -> dict[str, str]:
    """payout-service's settings for --channels and --batch."""
    settings: dict[str, str] = {}
    if channel_keys:
        settings["PAYOUTS_CHANNEL_ACCOUNTS"] = ",".join(
            f"{key_id}={kp.public_key}" for key_id, kp in channel_keys.items())
    if args.batch != "off":
        settings["PAYOUTS_BATCH_MODE"] = args.batch
        settings["PAYOUTS_MAX_PAYOUTS_PER_TX"] = str(args.max_payouts_per_tx)
    if args.batch == "contract":
        settings["PAYOUT_CONTRACT_ID"] = payout_contract
    return settings


def signer_setup(args: argparse.Namespace, passphrase: str, channel_keys: dict[str, Keypair],
                 payout_contract: str) -> dict[str, Any]:
    """running_signer's keys and policy: the paying key alone, limited to the XLM contract's
    `transfer`; with --channels or --batch, the paying key (imported, so its account is known
    to the policy) and the channel keys (role "channel"), under signer_policy."""
    if not channel_keys and args.batch == "off":
        return {"policy": {
            "contract_ids": [Asset.native().contract_id(passphrase)],
            "function_names": ["transfer"],
            "max_amount_stroops_per_tx": 10_000 * XLM,
            "max_amount_stroops_per_day": 100_000 * XLM,
            "max_time_window_seconds": 300,
        }}
    payer = Keypair.random()
    return {
        "policy": signer_policy(passphrase, payer.public_key, len(channel_keys), args.batch,
                                payout_contract),
        "hot_secret": payer.secret,
        "extra_keys": {key_id: kp.secret for key_id, kp in channel_keys.items()},
        "key_settings": {key_id: {"role": "channel", "policy": {"merge_into": payer.public_key}}
                         for key_id in channel_keys},
    }


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
        env = passed_through(os.environ)
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
            payout_contract = str((await sandbox.config())["payout_contract_id"])
            channel_keys = {f"channel-{i}": Keypair.random() for i in range(args.channels)}
            with signer_tracing_env():
                signer = await stack.enter_async_context(running_signer(
                    tmp, network_passphrase=sandbox.passphrase, backend=backend,
                    **signer_setup(args, sandbox.passphrase, channel_keys, payout_contract)))
            drop_ca_key(signer.ca_cert)
            paying_account = signer.public_key
            for channel in channel_keys.values():
                await sandbox.fund(channel.public_key)
            env.update({
                "PAYOUTS_SIGNING_MODE": "signer",
                "PAYOUTS_SIGNER_ADDR": signer.address,
                "PAYOUTS_SIGNER_CA_CERT": str(signer.ca_cert),
                "PAYOUTS_SIGNER_CLIENT_CERT": str(signer.client_cert),
                "PAYOUTS_SIGNER_CLIENT_KEY": str(signer.client_key),
                "PAYOUTS_SIGNER_KEY_ID": signer.key_id,
                **pool_settings(args, channel_keys, payout_contract),
            })
        await sandbox.fund(paying_account)
        if args.channels or args.batch != "off":
            await sandbox.set_balance(paying_account, PAYER_BALANCE_STROOPS)
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
    parser.add_argument("--channels", type=int, default=0, metavar="N",
                        help="N channel accounts (keys on the signer, funded on the sandbox) "
                             "as transaction sources: up to N transactions per ledger")
    parser.add_argument("--batch", choices=("off", "classic", "contract"), default="off",
                        help="many payouts per transaction: classic Payment/CreateAccount "
                             "operations, or the sandbox payout contract's distribute_batch")
    parser.add_argument("--max-payouts-per-tx", type=int, default=100, metavar="N",
                        help="payouts per batch transaction (1-100; --batch only)")
    parser.add_argument("--state-dir", default=".devstack",
                        help="where caller certificates and payoutctl env files are written")
    args = parser.parse_args()
    if args.channels < 0:
        parser.error("--channels must be 0 or more")
    if (args.channels or args.batch != "off") and args.external_signing:
        parser.error("--channels and --batch need the signer (not --external-signing)")
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
