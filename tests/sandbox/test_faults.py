"""Each injected fault, observed the way a payout service would observe it."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from stellar_sdk import Keypair, SorobanServerAsync
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.exceptions import BadResponseError
from stellar_sdk.soroban_rpc import GetTransactionStatus, SendTransactionStatus

from soroban_sandbox.testing import InProcessSandbox

from .helpers import transfer_tx, wait_for


async def pair(sandbox: InProcessSandbox) -> tuple[Keypair, Keypair]:
    alice, bob = Keypair.random(), Keypair.random()
    await sandbox.fund(alice.public_key)
    await sandbox.fund(bob.public_key)
    return alice, bob


async def close_ledgers(sandbox: InProcessSandbox, count: int) -> None:
    for _ in range(count):
        await sandbox.close_ledger()


async def test_try_again_later_does_not_queue_the_transaction(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await pair(sandbox)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    tx.sign(alice)
    await sandbox.set_faults(try_again_later_rate=1.0)
    sent = await server.send_transaction(tx)
    assert sent.status == SendTransactionStatus.TRY_AGAIN_LATER
    assert sent.hash == tx.hash_hex()
    await close_ledgers(sandbox, 2)
    assert (await server.get_transaction(tx.hash_hex())).status == GetTransactionStatus.NOT_FOUND
    await sandbox.reset_faults()
    assert (await server.send_transaction(tx)).status == SendTransactionStatus.PENDING
    assert (await wait_for(server, tx.hash_hex())).status == GetTransactionStatus.SUCCESS


async def test_http_503_is_a_non_json_error_for_the_client(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    await sandbox.set_faults(http_503_rate=1.0)
    with pytest.raises(BadResponseError) as raised:
        await server.get_health()
    assert raised.value.status == 503
    await sandbox.set_faults(http_503_rate=0.0)
    assert (await server.get_health()).status == "healthy"


async def test_timeout_hangs_the_answer_but_the_submission_still_lands(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await pair(sandbox)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 3)
    tx.sign(alice)
    await sandbox.set_faults(timeout_rate=1.0, timeout_ms=2_000)
    impatient = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient(post_timeout=0.3))
    try:
        with pytest.raises((asyncio.TimeoutError, aiohttp.ClientError, TimeoutError)):
            await impatient.send_transaction(tx)
    finally:
        await impatient.close()
    await sandbox.set_faults(timeout_rate=0.0)
    assert (await wait_for(server, tx.hash_hex())).status == GetTransactionStatus.SUCCESS
    assert [t["tx_hash"] for t in await sandbox.transfers()] == [tx.hash_hex()]


async def test_latency_delays_every_call(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    await sandbox.set_faults(latency_ms=300)
    started = time.monotonic()
    await server.get_health()
    assert time.monotonic() - started >= 0.3
    await sandbox.set_faults(latency_ms=0)
    started = time.monotonic()
    await server.get_health()
    assert time.monotonic() - started < 0.3


async def test_dropped_transaction_says_pending_but_never_lands(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await pair(sandbox)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    tx.sign(alice)
    await sandbox.set_faults(drop_rate=1.0)
    assert (await server.send_transaction(tx)).status == SendTransactionStatus.PENDING
    await close_ledgers(sandbox, 3)
    assert (await server.get_transaction(tx.hash_hex())).status == GetTransactionStatus.NOT_FOUND
    row = await sandbox.account(alice.public_key)
    assert row is not None and row["sequence"] == tx.transaction.sequence - 1
    await sandbox.set_faults(drop_rate=0.0)
    # The node forgot it, so the very same envelope is accepted again and lands.
    assert (await server.send_transaction(tx)).status == SendTransactionStatus.PENDING
    assert (await wait_for(server, tx.hash_hex())).status == GetTransactionStatus.SUCCESS
    # Every answer is counted per hash: what a client's re-send pacing is judged by.
    assert (await sandbox.submissions())[tx.hash_hex()] == {"PENDING": 2}


async def test_fail_on_chain_includes_the_transaction_as_failed(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await pair(sandbox)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    tx.sign(alice)
    await sandbox.set_faults(fail_on_chain_rate=1.0)
    assert (await server.send_transaction(tx)).status == SendTransactionStatus.PENDING
    landed = await wait_for(server, tx.hash_hex())
    assert landed.status == GetTransactionStatus.FAILED
    row = await sandbox.account(alice.public_key)
    assert row is not None and row["sequence"] == tx.transaction.sequence
    assert await sandbox.transfers() == []


async def test_stalled_ledgers_stop_closing_until_unset_or_for_n_seconds(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    await sandbox.set_faults(stall_ledgers=True)
    before = (await server.get_latest_ledger()).sequence
    await asyncio.sleep(0.4)
    assert (await server.get_latest_ledger()).sequence == before
    await sandbox.set_faults(stall_ledgers=0.3)
    await asyncio.sleep(0.1)
    assert (await server.get_latest_ledger()).sequence == before
    await asyncio.sleep(0.6)
    assert (await server.get_latest_ledger()).sequence > before
    assert (await sandbox.faults())["stall_ledgers"] == 0.3


async def test_transaction_expiring_while_queued_is_evicted_not_included(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await pair(sandbox)
    await sandbox.set_faults(stall_ledgers=True)
    latest = await server.get_latest_ledger()
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    tx.transaction.preconditions.time_bounds.max_time = latest.close_time  # type: ignore[union-attr]
    tx.sign(alice)
    assert (await server.send_transaction(tx)).status == SendTransactionStatus.PENDING
    closed = await sandbox.close_ledger()
    assert closed["close_time"] > latest.close_time
    found = await server.get_transaction(tx.hash_hex())
    assert found.status == GetTransactionStatus.NOT_FOUND
    assert found.oldest_ledger <= latest.sequence
    assert await sandbox.evictions() == [
        {"hash": tx.hash_hex(), "ledger": closed["sequence"], "reason": "txTOO_LATE"}
    ]
    row = await sandbox.account(alice.public_key)
    assert row is not None and row["sequence"] == tx.transaction.sequence - 1


@pytest.mark.parametrize(
    "bad",
    [
        {"drop_rate": 1.5},
        {"latency_ms": -1},
        {"nonsense": 1},
        {"stall_ledgers": "soon"},
        {"node_lags": []},
        {"node_lags": [0, -1]},
        {"node_lags": [True]},
        {"node_lags": 2},
        {"tx_store_lag_ledgers": 33},
        {"retention_ledgers": -1},
        {"replay_rate": 2},
        {"ingest_race_rate": -0.1},
        {"entries_follow_store": 1},
    ],
)
async def test_bad_fault_settings_are_refused_and_named(
    sandbox: InProcessSandbox, bad: dict[str, object]
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sandbox.base_url}/admin/faults", json=bad) as resp:
            assert resp.status == 400
            assert next(iter(bad)) in (await resp.json())["error"]
    assert (await sandbox.faults())["drop_rate"] == 0.0
