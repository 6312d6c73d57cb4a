"""The payout contract's batch method and the Soroban resource limits, over HTTP with stellar-sdk.

``distribute_batch(from: Address, payouts: Vec<(Address, i128)>)`` as payout-service's
contract batch mode calls it; per-transaction limits as stellar-core checkSorobanResources
(txSOROBAN_INVALID at submission) and the host at apply (RESOURCE_LIMIT_EXCEEDED, a trap outside
the footprint); ledger-wide limits as the Soroban lane of stellar-core's tx set.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator

import pytest
from stellar_sdk import Keypair, SorobanServerAsync, StrKey, TransactionBuilder, scval
from stellar_sdk import xdr as x
from stellar_sdk.auth import authorize_entry
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.exceptions import PrepareTransactionException

from soroban_sandbox.resources import PUBLISHED_TX_LIMITS
from soroban_sandbox.server import SandboxConfig
from soroban_sandbox.testing import InProcessSandbox
from soroban_sandbox.xdr_build import account_key, balance_key

from .helpers import funded, native_id, result_code, wait_for

FRIENDBOT = 10_000 * 10_000_000


async def batch_tx(
    server: SorobanServerAsync,
    sandbox: InProcessSandbox,
    source: Keypair,
    payouts: list[tuple[str, int]],
    *,
    from_: str | None = None,
    prepare: bool = True,
) -> x.TransactionEnvelope:
    config = await sandbox.config()
    account = await server.load_account(source.public_key)
    items = [scval.to_vec([scval.to_address(to), scval.to_int128(n)]) for to, n in payouts]
    tx = (
        TransactionBuilder(account, sandbox.passphrase, base_fee=100)
        .append_invoke_contract_function_op(
            config["payout_contract_id"],
            config["payout_batch_method"],
            [scval.to_address(from_ or source.public_key), scval.to_vec(items)],
        )
        .set_timeout(30)
        .build()
    )
    return await server.prepare_transaction(tx) if prepare else tx


def failure_code(result_xdr: str | None) -> x.InvokeHostFunctionResultCode:
    assert result_xdr is not None
    (op,) = x.TransactionResult.from_xdr(result_xdr).result.results or []
    assert op.tr is not None and op.tr.invoke_host_function_result is not None
    return op.tr.invoke_host_function_result.code


async def test_a_batch_pays_every_destination_in_one_call(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, first, second = await funded(sandbox, 3)
    holder_contract = StrKey.encode_contract(os.urandom(32))
    payouts = [(first.public_key, 11), (second.public_key, 22), (holder_contract, 33)]
    tx = await batch_tx(server, sandbox, payer, payouts)
    data = tx.transaction.soroban_data
    assert data is not None
    footprint = data.resources.footprint
    # One write entry for `from` and one per destination; the contract instances read-only.
    assert {k.to_xdr() for k in footprint.read_write} == {
        account_key(payer.public_key).to_xdr(),
        account_key(first.public_key).to_xdr(),
        account_key(second.public_key).to_xdr(),
        balance_key(native_id(sandbox.passphrase), holder_contract).to_xdr(),
    }
    assert len(footprint.read_only) == 2
    tx.sign(payer)
    await server.send_transaction(tx)
    landed = await wait_for(server, tx.hash_hex())
    assert landed.status.value == "SUCCESS"
    assert (await sandbox.balances(first.public_key))["native"] == FRIENDBOT + 11
    assert (await sandbox.balances(second.public_key))["native"] == FRIENDBOT + 22
    moved = [
        (t["function"], t["from"], t["to"], t["amount_stroops"])
        for t in await sandbox.transfers()
        if t["tx_hash"] == tx.hash_hex()
    ]
    assert moved == [("distribute_batch", payer.public_key, to, n) for to, n in payouts]


async def test_a_channel_submits_a_batch_the_payer_authorised_with_address_credentials(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    channel, payer, winner = await funded(sandbox, 3)
    tx = await batch_tx(server, sandbox, channel, [(winner.public_key, 5)], from_=payer.public_key)
    op = tx.transaction.operations[0]
    latest = (await server.get_latest_ledger()).sequence
    op.auth = [authorize_entry(op.auth[0], payer, latest + 100, sandbox.passphrase)]  # type: ignore[attr-defined]
    tx.sign(channel)
    await server.send_transaction(tx)
    assert (await wait_for(server, tx.hash_hex())).status.value == "SUCCESS"
    assert (await sandbox.balances(payer.public_key))["native"] == FRIENDBOT - 5


@pytest.mark.parametrize(
    ("amounts", "reason"),
    [([5, -1], "negative"), ([FRIENDBOT, 1], "Error(Contract, #10)")],
)
async def test_simulation_refuses_a_negative_amount_or_an_underfunded_payer(
    sandbox: InProcessSandbox, server: SorobanServerAsync, amounts: list[int], reason: str
) -> None:
    payer, first, second = await funded(sandbox, 3)
    payouts = list(zip([first.public_key, second.public_key], amounts, strict=True))
    with pytest.raises(PrepareTransactionException) as refused:
        await batch_tx(server, sandbox, payer, payouts)
    assert reason in str(refused.value.simulate_transaction_response.error)


async def test_a_batch_underfunded_at_apply_traps_and_moves_nothing(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, first, second = await funded(sandbox, 3)
    tx = await batch_tx(
        server, sandbox, payer, [(first.public_key, 10**9), (second.public_key, 10**9)]
    )
    # Enough for the fee and the first payout only: the whole call traps.
    await sandbox.set_balance(payer.public_key, 10_000_000 + 10**7 + 10**9 + 5)
    tx.sign(payer)
    await server.send_transaction(tx)
    landed = await wait_for(server, tx.hash_hex())
    assert landed.status.value == "FAILED"
    assert (
        failure_code(landed.result_xdr)
        == x.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_TRAPPED
    )
    assert (await sandbox.balances(first.public_key))["native"] == FRIENDBOT
    assert [t for t in await sandbox.transfers() if t["tx_hash"] == tx.hash_hex()] == []


async def test_a_missing_xlm_destination_fails_the_whole_batch(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, first = await funded(sandbox, 2)
    missing = Keypair.random().public_key
    with pytest.raises(PrepareTransactionException) as refused:
        await batch_tx(server, sandbox, payer, [(first.public_key, 1), (missing, 1)])
    assert missing in str(refused.value.simulate_transaction_response.error)


async def test_write_entries_bound_the_batch_at_the_published_limit(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    assert PUBLISHED_TX_LIMITS.write_entries == 50  # stellar-docs: disk writes 50 entries
    payer, *receivers = await funded(sandbox, 51)
    fits = await batch_tx(server, sandbox, payer, [(r.public_key, 1) for r in receivers[:49]])
    assert fits.transaction.soroban_data is not None
    assert len(fits.transaction.soroban_data.resources.footprint.read_write) == 50
    with pytest.raises(PrepareTransactionException) as refused:
        await batch_tx(server, sandbox, payer, [(r.public_key, 1) for r in receivers])
    error = str(refused.value.simulate_transaction_response.error)
    assert "transaction entry-write resources exceed network config limit (51 > 50)" in error


async def test_submission_refuses_a_transaction_over_a_per_transaction_limit(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, *receivers = await funded(sandbox, 4)
    tx = await batch_tx(server, sandbox, payer, [(r.public_key, 1) for r in receivers])
    ledger = sandbox.sandbox.ledger
    ledger.tx_limits = dataclasses.replace(ledger.tx_limits, write_entries=3)
    tx.sign(payer)
    sent = await server.send_transaction(tx)
    assert sent.status.value == "ERROR"
    assert result_code(sent.error_result_xdr or "") == x.TransactionResultCode.txSOROBAN_INVALID
    ledger.tx_limits = dataclasses.replace(ledger.tx_limits, write_entries=50, size_bytes=100)
    assert result_code((await server.send_transaction(tx)).error_result_xdr or "") == (
        x.TransactionResultCode.txSOROBAN_INVALID
    )


async def test_apply_enforces_the_declared_resources_and_the_footprint(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, first, second = await funded(sandbox, 3)
    payouts = [(first.public_key, 1), (second.public_key, 2)]
    short = await batch_tx(server, sandbox, payer, payouts)
    assert short.transaction.soroban_data is not None
    short.transaction.soroban_data.resources.instructions = x.Uint32(1_000)
    short.sign(payer)
    await server.send_transaction(short)
    landed = await wait_for(server, short.hash_hex())
    assert failure_code(landed.result_xdr) == (
        x.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_RESOURCE_LIMIT_EXCEEDED
    )
    outside = await batch_tx(server, sandbox, payer, payouts)
    data = outside.transaction.soroban_data
    assert data is not None
    data.resources.footprint.read_write = data.resources.footprint.read_write[:-1]
    outside.sign(payer)
    await server.send_transaction(outside)
    landed = await wait_for(server, outside.hash_hex())
    assert (
        failure_code(landed.result_xdr)
        == x.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_TRAPPED
    )
    assert (await sandbox.balances(second.public_key))["native"] == FRIENDBOT


@pytest.fixture
async def stalled_sandbox() -> AsyncIterator[InProcessSandbox]:
    # Ledger-wide: 8 written entries, so two 4-entry batches fit a ledger and a third waits.
    config = SandboxConfig(
        ledger_interval=0.1,
        ledger_write_entries=8,
        tx_limits=dataclasses.replace(PUBLISHED_TX_LIMITS, write_entries=8),
    )
    async with InProcessSandbox(config, stall_ledgers=True) as running:
        yield running


async def test_a_full_ledger_leaves_batches_for_the_next_one_and_surge_prices_the_rest(
    stalled_sandbox: InProcessSandbox,
) -> None:
    sandbox = stalled_sandbox
    server = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
    try:
        payers = await funded(sandbox, 3)
        receivers = [kp.public_key for kp in await funded(sandbox, 3)]
        sent = []
        for bid, payer in zip([300, 200, 100], payers, strict=True):
            tx = await batch_tx(server, sandbox, payer, [(r, 1) for r in receivers])
            tx.transaction.fee += bid - 100
            tx.sign(payer)
            assert (await server.send_transaction(tx)).status.value == "PENDING"
            sent.append(tx.hash_hex())
        first = await sandbox.close_ledger()
        ledger = sandbox.sandbox.ledger
        assert ledger.latest.tx_hashes == tuple(sent[:2])  # the two best bids; 4 + 4 entries
        assert sent[2] in ledger.pending_hashes()
        # Surge pricing: both included pay the lowest included inclusion fee (200).
        for tx_hash in sent[:2]:
            landed = await server.get_transaction(tx_hash)
            meta = x.TransactionMeta.from_xdr(landed.result_meta_xdr or "")
            assert meta.v4 is not None and meta.v4.soroban_meta is not None
        fees, _ = ledger.recent_inclusion_fees(1)
        assert fees == [200, 200]
        await sandbox.close_ledger()
        assert ledger.latest.tx_hashes == (sent[2],)
        assert ledger.latest.seq == first["sequence"] + 1
    finally:
        await server.close()
