"""RunningSandbox: the subprocess other components' integration tests start."""

from __future__ import annotations

from typing import Any

import pytest
from stellar_sdk import Asset, Keypair, SorobanServerAsync
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.soroban_rpc import GetTransactionStatus, SendTransactionStatus

from soroban_sandbox.testing import RunningSandbox

from .helpers import transfer_tx, wait_for


async def test_subprocess_sandbox_serves_rpc_admin_and_stops_on_exit() -> None:
    issuer = Keypair.random().public_key
    sandbox = RunningSandbox(
        ledger_interval=0.1,
        seed=3,
        faults={"latency_ms": 1},
        payout_method="pay_winner",
        extra_args=["--asset", f"USDC:{issuer}"],
        protocol=25,
    )
    async with sandbox:
        config = await sandbox.config()
        assert config["payout_method"] == "pay_winner"
        assert config["assets"][Asset("USDC", issuer).contract_id(sandbox.passphrase)] == (
            f"USDC:{issuer}"
        )
        server = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
        try:
            network = await server.get_network()
            assert (network.protocol_version, config["protocol"]) == (25, 25)
            assert network.passphrase == sandbox.passphrase
            assert network.friendbot_url == f"{sandbox.base_url}/friendbot"
            alice, bob = Keypair.random(), Keypair.random()
            await sandbox.fund(alice.public_key)
            await sandbox.fund(bob.public_key)
            tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 99)
            tx.sign(alice)
            assert (await server.send_transaction(tx)).status == SendTransactionStatus.PENDING
            assert (await wait_for(server, tx.hash_hex())).status == GetTransactionStatus.SUCCESS
            assert [
                (t["from"], t["to"], t["amount_stroops"]) for t in await sandbox.transfers()
            ] == [(alice.public_key, bob.public_key, 99)]
            assert await sandbox.account(Keypair.random().public_key) is None
            faults = await sandbox.faults()
            assert (faults["latency_ms"], faults["seed"]) == (1, 3)
            before = (await server.get_latest_ledger()).sequence
            assert (await sandbox.close_ledger())["sequence"] > before
        finally:
            await server.close()
        process = sandbox._process
        assert process is not None and process.returncode is None
    assert process.returncode is not None  # the subprocess is gone after the block


@pytest.mark.parametrize(
    "bad", [{"faults": {"drop_rate": 3}}, {"protocol": 22}, {"protocol": 28}]
)
async def test_bad_start_up_flags_fail_fast(bad: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="exited early"):
        async with RunningSandbox(**bad):
            pass


async def statuses_under_seed(seed: int, sends: int = 12) -> list[str]:
    """Submit ``sends`` transfers one after another with a 50% TRY_AGAIN_LATER fault."""
    async with RunningSandbox(
        ledger_interval=5.0, seed=seed, faults={"try_again_later_rate": 0.5}
    ) as sandbox:
        server = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
        try:
            alice, bob = Keypair.random(), Keypair.random()
            await sandbox.fund(alice.public_key)
            await sandbox.fund(bob.public_key)
            seen = []
            for i in range(sends):
                tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, i + 1)
                tx.sign(alice)
                sent = await server.send_transaction(tx)
                seen.append(sent.status.value)
                if sent.status == SendTransactionStatus.PENDING:
                    await sandbox.close_ledger()
            return seen
        finally:
            await server.close()


async def test_same_seed_replays_the_same_faults() -> None:
    first = await statuses_under_seed(11)
    assert set(first) == {"PENDING", "TRY_AGAIN_LATER"}
    assert await statuses_under_seed(11) == first
    assert await statuses_under_seed(12) != first
