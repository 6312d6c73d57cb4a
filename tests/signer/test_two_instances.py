"""Two signer instances of one deployment (one SoftHSM token directory, the same key), with
payout-service's signer client pointed at both: one is killed (SIGKILL) while payouts are
signed; every payout is signed once as one transaction, the daily limit holds across both
(each instance signs its share), and each instance's audit chain verifies and merges."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections import Counter

import pytest
from stellar_sdk import Keypair, TransactionEnvelope

from payout_service.adapters.signer_client import (
    SignedEnvelope,
    SignerClient,
    SignerUnavailable,
    SigningRefused,
)
from payout_service.config import SignerClientConfig
from signer_service.config import ConfigError, parse_config
from signer_service.testing import SignerFixture, running_signers, serving
from tests.signer.envelopes import PASSPHRASE, build_tx
from tests.signer.test_batch_policy import config_with

PAYER = Keypair.from_raw_ed25519_seed(bytes(range(160, 192)))
AMOUNT = 100
DAILY = 40 * AMOUNT  # the deployment's limit: 20 payouts on each of two instances


def client_for(*signers: SignerFixture) -> SignerClient:
    first = signers[0]
    return SignerClient(SignerClientConfig(
        address=",".join(s.address for s in signers), ca_cert=str(first.ca_cert),
        client_cert=str(first.client_cert), client_key=str(first.client_key),
        key_id=first.key_id, server_name=None), timeout_seconds=10)


@functools.cache
def envelope(n: int) -> str:
    """Payout n's one transaction (built once: its time bounds are part of it)."""
    return TransactionEnvelope(build_tx(amount=AMOUNT, sequence=n, source=PAYER.public_key),
                               PASSPHRASE).to_xdr()


def allowed(signer: SignerFixture) -> list[dict]:
    return [r for r in (json.loads(line) for line in signer.audit_log.read_text().splitlines()
                        if line.endswith("}"))
            if r.get("decision") == "allow"]


async def verify_merged(*signers: SignerFixture) -> str:
    configs = [arg for s in signers for arg in ("--config", str(s.config_path))]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "signer_service.cli", "audit", "verify", *configs,
        env=signers[0].env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def test_one_instance_killed_mid_run_every_payout_signed_once_within_the_limit(tmp_path):
    async with running_signers(tmp_path, 2, network_passphrase=PASSPHRASE, backend="pkcs11",
                               hot_secret=PAYER.secret,
                               policy={"max_amount_stroops_per_day": DAILY}) as (a, b):
        client = client_for(a, b)
        outcomes: dict[int, SignedEnvelope | SigningRefused | SignerUnavailable] = {}
        killed = asyncio.Event()
        slots = asyncio.Semaphore(4)

        async def pay(n: int) -> None:
            async with slots:
                try:
                    outcomes[n] = await client.sign_transaction(
                        envelope(n), payout_id=f"p-{n}", attempt=1, correlation_id=f"c-{n}")
                except (SigningRefused, SignerUnavailable) as err:
                    outcomes[n] = err
                if sum(isinstance(o, SignedEnvelope) for o in outcomes.values()) >= 8 and \
                        not killed.is_set():
                    killed.set()
                    assert a.process is not None
                    a.process.kill()  # SIGKILL: no clean stop, maybe a torn record

        try:
            await asyncio.gather(*(pay(n) for n in range(1, 61)))
        finally:
            await client.close()
        assert killed.is_set()
        assert a.process is not None and await a.process.wait() == -9
    signed = {n: o for n, o in outcomes.items() if isinstance(o, SignedEnvelope)}
    # Not signed: the share of the instance still up is spent and the other one does not
    # answer (SignerUnavailable: it may sign from its share once back), or both refused.
    unsigned = {n: o for n, o in outcomes.items() if not isinstance(o, SignedEnvelope)}
    assert len(signed) + len(unsigned) == 60 and unsigned
    assert all(isinstance(o, SignerUnavailable) or o.rule == "max_amount_stroops_per_day"
               for o in unsigned.values())
    # Every payout signed is one transaction, with a signature the payer's key made.
    for n, reply in signed.items():
        env = TransactionEnvelope.from_xdr(reply.envelope_xdr, PASSPHRASE)
        assert env.hash_hex() == reply.tx_hash == TransactionEnvelope.from_xdr(
            envelope(n), PASSPHRASE).hash_hex()
        PAYER.verify(env.hash(), env.signatures[-1].signature)
    # A restart of the killed instance repairs its log (a torn tail, if any) and verifies.
    async with serving(a):
        pass
    on_a, on_b = allowed(a), allowed(b)
    hashes: dict[str, set[str]] = {}
    signatures: dict[str, set[str]] = {}
    for record in on_a + on_b:
        hashes.setdefault(record["payout_id"], set()).add(record["tx_hash"])
        signatures.setdefault(record["payout_id"], set()).add(record["signature"])
    assert all(len(h) == 1 for h in hashes.values()), "a payout signed as two transactions"
    assert all(len(s) == 1 for s in signatures.values())
    assert {f"p-{n}" for n in signed} <= set(hashes)
    # Each instance within its share, so the two within the deployment's limit; the one
    # that stayed up signed its whole share once the other was gone.
    spent_a, spent_b = (sum(r["amount_stroops"] for r in rs) for rs in (on_a, on_b))
    assert spent_a <= DAILY // 2 and spent_b == DAILY // 2
    assert spent_a + spent_b <= DAILY
    assert len(signed) <= DAILY // AMOUNT
    # A payout asked of both (A signed, then died before answering) is counted by both: by
    # no more, and as the one transaction above.
    assert max(Counter(r["payout_id"] for r in on_a + on_b).values()) <= 2
    report = await verify_merged(a, b)
    assert [line.split(":")[0] for line in report.splitlines() if line.startswith("ok")] == \
        ["ok [signer-0]", "ok [signer-1]"], report
    assert f"payout: {spent_a + spent_b} stroops signed in the 24 h before the last record " \
           f"of the daily limit {DAILY}" in report, report
    assert "OVER THE LIMIT" not in report


async def test_a_spent_share_sends_the_request_to_the_other_instance(tmp_path):
    async with running_signers(tmp_path, 2, network_passphrase=PASSPHRASE, backend="pkcs11",
                               hot_secret=PAYER.secret,
                               policy={"max_amount_stroops_per_day": 10 * AMOUNT}) as (a, b):
        client = client_for(a, b)
        try:
            for n in range(1, 11):
                await client.sign_transaction(envelope(n), payout_id=f"p-{n}", attempt=1,
                                              correlation_id="c")
            with pytest.raises(SigningRefused) as err:
                await client.sign_transaction(envelope(11), payout_id="p-11", attempt=1,
                                              correlation_id="c")
        finally:
            await client.close()
    assert err.value.rule == "max_amount_stroops_per_day"
    assert [len(allowed(s)) for s in (a, b)] == [5, 5]


def test_each_instance_enforces_its_share_of_every_daily_limit(tmp_path):
    usd = f"USD:{PAYER.public_key}"
    config = config_with({"assets": ["native", usd], "limits": {usd: {
        "max_amount_stroops_per_op": 10, "max_amount_stroops_per_tx": 100,
        "max_amount_stroops_per_day": 3_000}}}, tmp_path)
    config["keys"][0]["policy"]["max_amount_stroops_per_day"] = 1_001
    config["server"].update(instances=2, instance_name="signer-a")
    policy = parse_config(config).keys[0].policy
    assert policy.max_amount_stroops_per_day == 500
    assert policy.payment_assets["native"].per_day == 500
    assert policy.payment_assets[usd].per_day == 1_500
    assert (policy.payment_assets[usd].per_op, policy.payment_assets[usd].per_tx) == (10, 100)
    assert policy.max_amount_stroops_per_tx == 100
    del config["server"]["instance_name"]
    with pytest.raises(ConfigError, match="server.instance_name is required"):
        parse_config(config)


def test_replicas_of_one_configuration_take_their_names_from_the_environment(tmp_path):
    """A StatefulSet mounts one signer.toml in every pod: each instance's name (and so its
    audit chain) comes from its own pod name."""
    config = config_with({"assets": ["native"]}, tmp_path)
    config["server"].update(instances=2, instance_name_env="POD_NAME")
    assert parse_config(config, {"POD_NAME": "signer-service-1"}).instance_name == \
        "signer-service-1"
    with pytest.raises(ConfigError, match="POD_NAME is not set"):
        parse_config(config, {})
    with pytest.raises(ConfigError, match="server.instance_name must be up to 32"):
        parse_config(config, {"POD_NAME": "Signer/1"})
    config["server"]["instance_name"] = "signer-a"
    with pytest.raises(ConfigError, match="exclude each other"):
        parse_config(config, {"POD_NAME": "signer-service-1"})
