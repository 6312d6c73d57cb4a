"""Automatic signing end to end: payout-service -> signer-service (real subprocess, real mTLS,
SoftHSM2 token or hot key) -> the local Stellar RPC sandbox over HTTP.

Nothing here is faked: the sandbox only includes a transaction whose signature verifies for
the source account, so a confirmed payout proves the signer signed the right hash.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass

import grpc
import pytest
from stellar_sdk import Asset, Keypair

from payout_service.logs import JsonFormatter
from signer_service.audit import read_records
from signer_service.testing import run_signerctl, running_signer
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.test_live_against_sandbox import wait_for_state

XLM = 10_000_000


@pytest.fixture
async def sandbox():
    async with RunningSandbox(ledger_interval=0.2, seed=5) as running:
        yield running


class LogLines(logging.Handler):
    """Every log line the in-process payout service writes, formatted as in production."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter("payout-service"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def payout_logs():
    handler, root = LogLines(), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(level)


def signer_env(signer) -> dict[str, str]:
    return {
        "PAYOUTS_SIGNING_MODE": "signer", "PAYOUTS_SIGNER_ADDR": signer.address,
        "PAYOUTS_SIGNER_CA_CERT": str(signer.ca_cert),
        "PAYOUTS_SIGNER_CLIENT_CERT": str(signer.client_cert),
        "PAYOUTS_SIGNER_CLIENT_KEY": str(signer.client_key),
        "PAYOUTS_SIGNER_KEY_ID": signer.key_id, "PAYOUTS_TX_WINDOW_SECONDS": "60",
    }


def strict_policy(source: Keypair, passphrase: str) -> dict:
    return {
        "source_accounts": [source.public_key],
        "contract_ids": [Asset.native().contract_id(passphrase)],
        "function_names": ["transfer"],
        "max_amount_stroops_per_tx": 100 * XLM,
        # The sandbox's close time runs ahead of the wall clock (one second a ledger at five
        # ledgers a second) and the signer judges max_time by its own clock: keep a margin
        # over PAYOUTS_TX_WINDOW_SECONDS, as production should for clock skew.
        "max_time_window_seconds": 600,
    }


def secret_forms(source: Keypair, signer) -> dict[str, str]:
    """Every spelling of a secret that must never reach a log line."""
    forms = {"stellar secret seed": source.secret,
             "raw seed (hex)": source.raw_secret_key().hex()}
    for name in ("PAYOUTS_SIGNER_PKCS11_PIN", "PAYOUTS_SIGNER_PKCS11_SO_PIN"):
        if signer.env.get(name):
            forms[name] = signer.env[name]
    key_pem = signer.client_key.read_text().splitlines()
    forms["mTLS client key"] = max(key_pem, key=len)  # a base64 line of the private key
    return forms


@pytest.mark.parametrize("backend", ["pkcs11", "hot"])
async def test_signer_mode_pays_exactly_once_audits_and_leaks_nothing(
    payout_service_factory, sandbox, tmp_path, payout_logs, backend
):
    source = Keypair.random()
    await sandbox.fund(source.public_key)
    dests = [Keypair.random().public_key for _ in range(4)]
    for d in dests:
        await sandbox.fund(d)
    trace_id = secrets.token_hex(16)
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, backend=backend,
        hot_secret=source.secret, policy=strict_policy(source, sandbox.passphrase),
    ) as signer:
        assert signer.public_key == source.public_key
        service = await payout_service_factory(
            PAYOUT_SOURCE_ACCOUNT=source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_CONFIRM_POLL_MS="100", PAYOUTS_LOG_LEVEL="DEBUG", **signer_env(signer),
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            for n, d in enumerate(dests):
                # The caller's trace: it must reach the signer's audit record for payout 0.
                metadata = (("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),) \
                    if n == 0 else None
                await stub.CreatePayout(pb.CreatePayoutRequest(
                    payout_id=f"auto-{n}", destination=d, amount="7.25", asset="XLM",
                    idempotency_key=f"auto-{n}"), metadata=metadata)
            confirmed = [await wait_for_state(stub, f"auto-{n}", pb.PAYOUT_STATE_CONFIRMED)
                         for n in range(len(dests))]
        await service.stop()
        signer_logs = list(signer.logs)
        forms = secret_forms(source, signer)
    transfers = await sandbox.transfers()
    assert sorted((t["to"], t["amount_stroops"]) for t in transfers) == \
        sorted((d, 72_500_000) for d in dests), "each destination paid exactly once"
    assert all(p.tx_hash and p.ledger for p in confirmed)

    # The keyed chain and its checkpoints, as the security team checks them (the signer has
    # stopped; the token and the hot secret are still where its config says).
    verdict = await run_signerctl(signer.env, "audit", "verify", "--config",
                                  str(signer.config_path))
    assert verdict.startswith("ok: "), verdict
    records = [r for _, r, _ in read_records(signer.audit_log) if r]
    allowed = {r["payout_id"]: r for r in records if r["decision"] == "allow"}
    assert set(allowed) == {f"auto-{n}" for n in range(len(dests))}
    assert {p.tx_hash for p in confirmed} == {r["tx_hash"] for r in allowed.values()}
    assert allowed["auto-0"]["trace_id"] == trace_id, "trace context crossed the signer hop"
    assert allowed["auto-0"]["client"] == "payout-service"

    lines = payout_logs + signer_logs
    assert any("auto-0" in line for line in payout_logs), "the payout service did log the run"
    assert any('"signing decision"' in line for line in signer_logs)
    for what, secret in forms.items():
        leaked = [line for line in lines if secret in line]
        assert not leaked, f"{what} appears in a log line: {leaked[0][:80]}..."
    for line in lines:
        json.loads(line)  # one JSON object per line, so shipping never splits a record
    sent = [json.loads(line) for line in payout_logs if '"message":"sent"' in line]
    assert sent and all(e["payout_id"].startswith("auto-") and e["correlation_id"]
                        and e["tx_hash"] and e["attempt"] for e in sent), \
        "pipeline lines carry the ids on-call searches by"


async def test_policy_refusal_fails_the_payout_once_and_pays_nothing(
    payout_service_factory, sandbox, tmp_path
):
    source = Keypair.random()
    await sandbox.fund(source.public_key)
    dest = Keypair.random().public_key
    await sandbox.fund(dest)
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, backend="hot",
        hot_secret=source.secret, policy=strict_policy(source, sandbox.passphrase),
    ) as signer:
        service = await payout_service_factory(
            PAYOUT_SOURCE_ACCOUNT=source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_CONFIRM_POLL_MS="100", **signer_env(signer),
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            for payout_id, amount in (("too-big", "150"), ("fine", "100")):
                await stub.CreatePayout(pb.CreatePayoutRequest(
                    payout_id=payout_id, destination=dest, amount=amount, asset="XLM",
                    idempotency_key=payout_id))
            failed = await wait_for_state(stub, "too-big", pb.PAYOUT_STATE_FAILED)
            await wait_for_state(stub, "fine", pb.PAYOUT_STATE_CONFIRMED)
            attempts = (await stub.GetPayout(pb.GetPayoutRequest(
                payout_id="too-big", include_attempts=True))).attempts
    assert "max_amount_stroops_per_tx" in failed.failure.message, failed.failure
    assert len(attempts) == 1, "a policy refusal is permanent: no second attempt"
    transfers = await sandbox.transfers()
    assert [(t["to"], t["amount_stroops"]) for t in transfers] == [(dest, 100 * XLM)]
    refused = [r for _, r, _ in read_records(signer.audit_log)
               if r and r["decision"] != "allow"]
    assert [(r["payout_id"], r["rule"]) for r in refused] == \
        [("too-big", "max_amount_stroops_per_tx")]


@dataclass
class ChannelWorld:
    """A funded paying account, funded channel accounts and destinations, with the signer
    policy that lets the channels be transaction sources."""

    source: Keypair
    channels: dict[str, Keypair]
    dests: list[str]
    policy: dict

    @property
    def setting(self) -> str:
        return ",".join(f"{key_id}={kp.public_key}" for key_id, kp in self.channels.items())

    @property
    def channel_secrets(self) -> dict[str, str]:
        return {key_id: kp.secret for key_id, kp in self.channels.items()}

    @property
    def channel_settings(self) -> dict[str, dict]:
        """The channel keys as the payout service accepts them: role channel, merged home
        into the paying account."""
        return channel_key_settings(self.channels, self.source.public_key)


def channel_key_settings(channels, merge_into: str) -> dict[str, dict]:
    return {key_id: {"role": "channel", "policy": {"merge_into": merge_into}}
            for key_id in channels}


async def pay_all(stub, prefix: str, dests: list[str], amount: str = "1") -> None:
    """One XLM payout of `amount` to each destination, all created first; each must confirm."""
    for n, dest in enumerate(dests):
        await stub.CreatePayout(pb.CreatePayoutRequest(
            payout_id=f"{prefix}-{n}", destination=dest, amount=amount, asset="XLM",
            idempotency_key=f"{prefix}-{n}"))
    for n in range(len(dests)):
        await wait_for_state(stub, f"{prefix}-{n}", pb.PAYOUT_STATE_CONFIRMED)


async def channel_world(sandbox, channels: int, payouts: int) -> ChannelWorld:
    source = Keypair.random()
    keys = {f"channel-{i}": Keypair.random() for i in range(channels)}
    dests = [Keypair.random().public_key for _ in range(payouts)]
    for address in (source.public_key, *(k.public_key for k in keys.values()), *dests):
        await sandbox.fund(address)
    policy = strict_policy(source, sandbox.passphrase)
    policy["source_accounts"] = [source.public_key, *(k.public_key for k in keys.values())]
    return ChannelWorld(source, keys, dests, policy)


async def test_channel_accounts_carry_several_payouts_per_ledger_exactly_once(
    payout_service_factory, sandbox, tmp_path
):
    """Channels are the transactions' sources (one in flight each); the paying account is the
    operation's source, so it pays while its own sequence number never moves."""
    world = await channel_world(sandbox, channels=3, payouts=6)
    source, channels, dests = world.source, world.channels, world.dests
    payer_seq = int((await sandbox.account(source.public_key))["sequence"])
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, hot_secret=source.secret,
        extra_keys=world.channel_secrets, policy=world.policy,
        key_settings=world.channel_settings,
    ) as signer:
        service = await payout_service_factory(
            PAYOUT_SOURCE_ACCOUNT=source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_CONFIRM_POLL_MS="100", **signer_env(signer),
            PAYOUTS_CHANNEL_ACCOUNTS=world.setting,
        )
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            await pay_all(stub, "ch", dests, amount="2")
        sources = await service.pool.fetch(
            "SELECT source_account, status FROM payout_attempts ORDER BY sequence")
    transfers = await sandbox.transfers()
    assert sorted((t["to"], t["amount_stroops"]) for t in transfers) == \
        sorted((d, 2 * XLM) for d in dests), "each destination paid exactly once"
    assert {t["from"] for t in transfers} == {source.public_key}
    channel_addresses = {c.public_key for c in channels.values()}
    used = {r["source_account"] for r in sources if r["status"] == "included"}
    assert used <= channel_addresses and len(used) >= 2, used
    assert int((await sandbox.account(source.public_key))["sequence"]) == payer_seq, \
        "the paying account was never a transaction source"


async def test_two_replicas_on_one_database_pay_each_payout_once(
    payout_service_factory, sandbox, tmp_path
):
    """Replicas share nothing but PostgreSQL: claims (SKIP LOCKED), sequence reservation and
    channel leases keep their loops off each other's work."""
    world = await channel_world(sandbox, channels=2, payouts=8)
    source, dests = world.source, world.dests
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, hot_secret=source.secret,
        extra_keys=world.channel_secrets, policy=world.policy,
        key_settings=world.channel_settings,
    ) as signer:
        settings = dict(
            PAYOUT_SOURCE_ACCOUNT=source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_CONFIRM_POLL_MS="100", **signer_env(signer),
            PAYOUTS_CHANNEL_ACCOUNTS=world.setting,
        )
        replicas = [await payout_service_factory(**settings) for _ in range(2)]
        channels_open = [grpc.aio.insecure_channel(f"127.0.0.1:{r.port}") for r in replicas]
        try:
            stubs = [payout_pb2_grpc.PayoutServiceStub(c) for c in channels_open]
            for n, d in enumerate(dests):
                await stubs[n % 2].CreatePayout(pb.CreatePayoutRequest(
                    payout_id=f"rep-{n}", destination=d, amount="1.5", asset="XLM",
                    idempotency_key=f"rep-{n}"))
            for n in range(len(dests)):
                await wait_for_state(stubs[(n + 1) % 2], f"rep-{n}", pb.PAYOUT_STATE_CONFIRMED,
                                     within=40)
        finally:
            for c in channels_open:
                await c.close()
        attempts = await replicas[0].pool.fetchval("SELECT count(*) FROM payout_attempts")
    transfers = await sandbox.transfers()
    assert sorted(t["to"] for t in transfers) == sorted(dests), "each paid exactly once"
    assert attempts >= len(dests)
