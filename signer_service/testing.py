"""Test/dev helper: a real signer-service subprocess with a throwaway token, certs and config.

    async with running_signer(tmp_path, network_passphrase=Network.TESTNET_NETWORK_PASSPHRASE)
            as signer:
        creds = signer.channel_credentials()
        channel = grpc.aio.secure_channel(signer.address, creds)

Everything (SoftHSM token dir and config, PINs, keys, certs) lives under `tmp_path`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from stellar_sdk import Keypair

from signer_service.certs import CertPair, DevCerts, generate_dev_certs

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def default_policy(network_passphrase: str) -> dict[str, Any]:
    """Allows any source and contract, the functions payout-service calls (SAC `transfer`, the
    payout contract's default `distribute_winnings`, each (from, to, amount)), large limits,
    time bounds within 300 s."""
    return {
        "network_passphrase": network_passphrase,
        "source_accounts": ["*"],
        "contract_ids": ["*"],
        "function_names": ["transfer", "distribute_winnings"],
        "max_fee_stroops": 1_000_000_000,
        "max_amount_stroops_per_tx": 10**15,
        "max_amount_stroops_per_day": 10**17,
        "max_time_window_seconds": 300,
    }


@dataclass
class SignerFixture:
    address: str
    ca_cert: Path
    client_cert: Path
    client_key: Path
    key_id: str
    public_key: str
    audit_log: Path
    config_path: Path
    # Extras beyond the documented API.
    clients: dict[str, CertPair] = field(default_factory=dict)
    metrics_port: int | None = None
    logs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    pid: int = 0

    def channel_credentials(self, client: str | None = None) -> grpc.ChannelCredentials:
        pair = self.clients[client] if client else CertPair(self.client_cert, self.client_key)
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_cert.read_bytes(),
            private_key=pair.key.read_bytes(),
            certificate_chain=pair.cert.read_bytes(),
        )


def toml_key(key: str) -> str:
    """A bare key when TOML allows one, else quoted (e.g. an asset "USDC:G...")."""
    return key if key.replace("-", "_").isidentifier() else json.dumps(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # JSON string escapes are valid TOML basic strings
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_config(tables: Mapping[str, Mapping[str, Any]], keys: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
        lines.append("")
    for key in keys:
        lines.append("[[keys]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in key.items() if k != "policy"]
        lines.append("[keys.policy]")
        # None drops a setting (e.g. a default of running_signer's policy).
        lines += [f"{k} = {toml_value(v)}" for k, v in key["policy"].items() if v is not None]
        lines.append("")
    return "\n".join(lines)


async def run_signerctl(env: Mapping[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signer_service.cli", *args, env=dict(env),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"signerctl {' '.join(args[:2])} failed: {err.decode().strip()}")
    return out.decode()


async def make_softhsm_token(folder: Path, env: dict[str, str], token_label: str) -> None:
    """A SoftHSM token of its own (own SOFTHSM2_CONF and token dir); PINs go into `env`."""
    tokens = folder / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    env["SOFTHSM2_CONF"] = str(conf)
    env.setdefault("PAYOUTS_SIGNER_PKCS11_PIN", secrets.token_hex(8))
    env.setdefault("PAYOUTS_SIGNER_PKCS11_SO_PIN", secrets.token_hex(8))
    await run_signerctl(env, "token", "init", "--module", SOFTHSM_MODULE,
                        "--token-label", token_label)
    await run_signerctl(env, "audit", "key-generate", "--module", SOFTHSM_MODULE,
                        "--token-label", token_label)


@dataclass
class SignerSetup:
    """A token (or hot keys), certificates and [[keys]] ready for one or more signer configs."""

    folder: Path
    certs: DevCerts
    env: dict[str, str]
    clients: list[str]
    key_id: str
    public_key: str
    tables: dict[str, dict[str, Any]]
    keys: list[dict[str, Any]]
    network_passphrase: str

    def config(self, name: str, *, metrics_port: int | None = None,
               server: Mapping[str, Any] | None = None) -> SignerFixture:
        """A config of its own (own audit directory, 0700, and listen port) for one signer,
        in the folder `name` ("": the setup's own folder, beside the keys)."""
        folder = self.folder / name
        audit_log = folder / "audit" / "audit.log"
        audit_log.parent.mkdir(parents=True, mode=0o700)
        config_path = folder / "signer.toml"
        settings = {"listen_addr": "127.0.0.1:0", "network_passphrase": self.network_passphrase,
                    "metrics_port": metrics_port, "metrics_addr": "127.0.0.1", **(server or {})}
        certs = self.certs
        config_path.write_text(render_config({
            "server": settings,
            "tls": {"cert": certs.server.cert, "key": certs.server.key,
                    "client_ca": certs.ca_cert},
            "audit": {"path": audit_log},
            **self.tables,
        }, self.keys))
        return SignerFixture(
            address="", ca_cert=certs.ca_cert, client_cert=certs.clients[self.clients[0]].cert,
            client_key=certs.clients[self.clients[0]].key, key_id=self.key_id,
            public_key=self.public_key, audit_log=audit_log, config_path=config_path,
            clients=certs.clients, env=self.env,
        )


async def prepare_signer(
    tmp_path: Path,
    *,
    network_passphrase: str,
    backend: str = "pkcs11",
    policy: dict[str, Any] | None = None,
    client_names: list[str] | None = None,
    key_id: str = "payout",
    hot_secret: str | None = None,
    allowed_clients: list[str] | None = None,
    extra_keys: Mapping[str, str] | None = None,
    key_settings: Mapping[str, Mapping[str, Any]] | None = None,
    channel_keys: Mapping[str, Any] | None = None,
) -> SignerSetup:
    """A token (or hot keys), certificates and [[keys]] for signers. `extra_keys` maps more
    key ids to secrets (e.g. channel accounts), held by the same backend (imported onto the
    token for pkcs11) under the same policy. `key_settings` adds [[keys]] settings per key
    id (e.g. role), its "policy" entry merged into the policy. `channel_keys` writes a
    [channel_keys] table (pkcs11: the token's channel keys found by label prefix), its
    "policy" entry merged into the policy."""
    clients = list(client_names or ["payout-service"])
    folder = tmp_path / f"signer-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    certs = generate_dev_certs(folder / "certs", clients)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYOUTS_SIGNER",
                                                                     "PAYOUT_HOT"))}
    key: dict[str, Any] = {
        "id": key_id, "backend": backend, "allowed_clients": allowed_clients or clients,
    }
    tables: dict[str, dict[str, Any]] = {}
    more: list[dict[str, Any]] = []
    if backend == "pkcs11":
        await make_softhsm_token(folder / "softhsm", env, "payouts")
        for extra_id, secret in (extra_keys or {}).items():
            secret_file = folder / f"import-{extra_id}"
            secret_file.write_text(secret + "\n")
            secret_file.chmod(0o600)
            await run_signerctl(env, "key", "import", "--module", SOFTHSM_MODULE,
                                "--token-label", "payouts", "--label", f"{extra_id}-key",
                                "--secret-file", str(secret_file))
            secret_file.unlink()
            more.append({**key, "id": extra_id, "label": f"{extra_id}-key"})
        token_args = ("--module", SOFTHSM_MODULE, "--token-label", "payouts",
                      "--label", f"{key_id}-key")
        if hot_secret:
            # Migration path: the given hot key is imported onto the token (signerctl key import).
            secret_file = folder / "import-secret"
            secret_file.write_text(hot_secret + "\n")
            secret_file.chmod(0o600)
            out = await run_signerctl(env, "key", "import", *token_args,
                                      "--secret-file", str(secret_file))
            secret_file.unlink()
        else:
            out = await run_signerctl(env, "key", "generate", *token_args)
        public_key = out.split()[1]
        tables["pkcs11"] = {"module": SOFTHSM_MODULE, "token_label": "payouts",
                            "pin_env": "PAYOUTS_SIGNER_PKCS11_PIN"}
        key["label"] = f"{key_id}-key"
    elif backend == "hot":
        keypair = Keypair.from_secret(hot_secret) if hot_secret else Keypair.random()
        secret_file = folder / "hot-secret"
        secret_file.write_text(keypair.secret + "\n")
        secret_file.chmod(0o600)
        public_key = keypair.public_key
        key["secret_file"] = secret_file
        for extra_id, secret in (extra_keys or {}).items():
            extra_file = folder / f"hot-secret-{extra_id}"
            extra_file.write_text(secret + "\n")
            extra_file.chmod(0o600)
            more.append({**key, "id": extra_id, "secret_file": extra_file})
    else:
        raise ValueError(f"backend must be 'pkcs11' or 'hot', got {backend!r}")
    key["policy"] = {**default_policy(network_passphrase), **(policy or {})}
    for extra in more:
        extra["policy"] = key["policy"]
    if channel_keys is not None:
        tables["channel_keys"] = {
            "allowed_clients": allowed_clients or clients, **channel_keys,
            "policy": {**key["policy"], **channel_keys.get("policy", {})},
        }
    for entry in [key, *more]:
        settings = dict((key_settings or {}).get(entry["id"], {}))
        entry["policy"] = {**entry["policy"], **settings.pop("policy", {})}
        entry.update(settings)
    return SignerSetup(folder, certs, env, clients, key_id, public_key, tables, [key, *more],
                       network_passphrase)


@contextlib.asynccontextmanager
async def running_signer(
    tmp_path: Path,
    *,
    metrics_port: int | None = None,
    startup_timeout: float = 30.0,
    server: Mapping[str, Any] | None = None,
    before_start: Callable[[SignerFixture], None] | None = None,
    **setup: Any,
) -> AsyncIterator[SignerFixture]:
    """A signer-service process with the keys prepare_signer(tmp_path, **setup) makes.
    `server` adds [server] settings; `before_start` runs on the fixture (config written,
    audit directory made) before the process starts."""
    prepared = await prepare_signer(tmp_path, **setup)
    fixture = prepared.config("", metrics_port=metrics_port, server=server)
    if before_start is not None:
        before_start(fixture)
    async with serving(fixture, startup_timeout) as started:
        yield started


@contextlib.asynccontextmanager
async def running_signers(
    tmp_path: Path, count: int, *, startup_timeout: float = 30.0, **kwargs: Any
) -> AsyncIterator[list[SignerFixture]]:
    """`count` signer instances of one deployment: the same token (one SoftHSM token
    directory) and keys, certificates and policy, each with its own audit log, port and
    instance name (`signer-0`, ...), `instances = count`. kwargs: as running_signer."""
    setup = await prepare_signer(tmp_path, **kwargs)
    fixtures = [setup.config(f"signer-{i}", server={"instances": count,
                                                    "instance_name": f"signer-{i}"})
                for i in range(count)]
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(serving(f, startup_timeout)) for f in fixtures]


@contextlib.asynccontextmanager
async def serving(fixture: SignerFixture, startup_timeout: float = 30.0
                  ) -> AsyncIterator[SignerFixture]:
    """signer-service on `fixture`'s config until the block ends (SIGTERM, then SIGKILL);
    `fixture.process` is the process (a test may kill it), and the fixture may be served
    again after the block to restart it on the same audit log."""
    fixture.logs.clear()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signer_service", "--config", str(fixture.config_path),
        env=fixture.env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    fixture.process = proc
    drain: asyncio.Task[None] | None = None
    try:
        started = await asyncio.wait_for(_read_start(proc, fixture), startup_timeout)
        fixture.address = f"127.0.0.1:{started['port']}"
        fixture.metrics_port = started.get("metrics_port")
        fixture.pid = int(started["pid"])
        drain = asyncio.create_task(_drain(proc, fixture))
        await asyncio.wait_for(_wait_serving(fixture), startup_timeout)
        yield fixture
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if drain is not None:
            await drain


async def _read_start(proc: asyncio.subprocess.Process, fixture: SignerFixture) -> dict[str, Any]:
    assert proc.stderr is not None
    while True:
        raw = await proc.stderr.readline()
        if not raw:
            await proc.wait()
            raise RuntimeError(
                f"signer-service exited ({proc.returncode}): {' | '.join(fixture.logs[-5:])}"
            )
        line = raw.decode(errors="replace").rstrip("\n")
        fixture.logs.append(line)
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("message") == "signer-service started":
                return event


async def _drain(proc: asyncio.subprocess.Process, fixture: SignerFixture) -> None:
    assert proc.stderr is not None
    async for raw in proc.stderr:
        fixture.logs.append(raw.decode(errors="replace").rstrip("\n"))


async def _wait_serving(fixture: SignerFixture) -> None:
    async with grpc.aio.secure_channel(fixture.address, fixture.channel_credentials()) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.05)
