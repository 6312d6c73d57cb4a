"""The service's fee view of a network with surge pricing and refunds (protocol 23).

Against the sandbox as a subprocess, through the service's own LedgerGateway (stellar-sdk's
SorobanServerAsync underneath), with one Soroban transaction per ledger so three bids congest:
- the inclusion fee bid follows getFeeStats' p90 of fees actually charged, which moves from 0
  (empty window) to the surge price paid by the highest bidder;
- the fee the gateway reports for an included transaction (what the pipeline records as the
  attempt's fee and the payout's network fee) is TransactionResult.feeCharged, which on the
  network is net of the refund (stellar-core MutableTransactionResult::finalizeFeeRefund):
  it equals the CAP-67 fee events' charge minus their refund.
"""

from __future__ import annotations

from typing import Any

from stellar_sdk import (
    Asset,
    Keypair,
    SorobanServerAsync,
    TransactionBuilder,
    TransactionEnvelope,
    scval,
    xdr,
)
from stellar_sdk.client.aiohttp_client import AiohttpClient

from payout_service.adapters.ledger import Accepted, Included, LedgerGateway
from payout_service.core.transactions import inclusion_fee_bid
from soroban_sandbox.testing import RunningSandbox
from tests.waiting import eventually

CAP = 100_000


async def bid_transfer(
    server: SorobanServerAsync, passphrase: str, source: Keypair, to: str, bid: int
) -> TransactionEnvelope:
    account = await server.load_account(source.public_key)
    tx = (
        TransactionBuilder(account, passphrase, base_fee=bid)
        .append_invoke_contract_function_op(
            Asset.native().contract_id(passphrase),
            "transfer",
            [scval.to_address(source.public_key), scval.to_address(to), scval.to_int128(7)],
        )
        .set_timeout(60)
        .build()
    )
    tx = await server.prepare_transaction(tx)
    tx.sign(source)
    return tx


async def included(gateway: LedgerGateway, tx_hash: str) -> Included:
    async def lookup() -> Included | None:
        found = await gateway.lookup(tx_hash)
        return found if isinstance(found, Included) else None

    return await eventually(lookup, what=f"{tx_hash} included", within=30)


async def test_fee_bid_follows_surge_priced_fees_and_recorded_fees_are_net_of_refunds() -> None:
    one_per_ledger = ["--soroban-txs-per-ledger", "1"]
    async with RunningSandbox(ledger_interval=0.2, extra_args=one_per_ledger) as sandbox:
        gateway = LedgerGateway(sandbox.rpc_url)
        server = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
        try:
            assert await gateway.inclusion_fee_p90() == 0  # nothing charged yet
            assert inclusion_fee_bid(1, 0, CAP) == 100
            payers = [Keypair.random() for _ in range(3)]
            sink = Keypair.random()
            for kp in [*payers, sink]:
                await sandbox.fund(kp.public_key)
            await sandbox.set_faults(stall_ledgers=True)
            txs = [
                await bid_transfer(server, sandbox.passphrase, kp, sink.public_key, bid)
                for kp, bid in zip(payers, (100, 400, 900), strict=True)
            ]
            for tx in txs:
                assert isinstance(await gateway.send(tx.to_xdr()), Accepted)
            await sandbox.set_faults(stall_ledgers=False)
            # The queue holds two ledgers' worth: the 900 bid evicted the 100 bid (banned).
            evicted = {e["hash"]: e["reason"] for e in await sandbox.evictions()}
            assert evicted == {txs[0].hash_hex(): "queue_full"}
            txs = txs[1:]
            found = [await included(gateway, tx.hash_hex()) for tx in txs]
            # One per ledger, highest bid first: 900 pays the surge price (its own bid, the
            # lowest its full ledger took); 400 then has the ledger alone and pays 100.
            assert found[1].ledger < found[0].ledger
            assert await gateway.inclusion_fee_p90() == 900
            assert inclusion_fee_bid(1, 900, CAP) == 900
            assert inclusion_fee_bid(2, 900, CAP) == 1_800  # a retry outbids the last surge

            for tx, landed in zip(txs, found, strict=True):
                raw = await server.get_transaction(tx.hash_hex())
                meta = xdr.TransactionMeta.from_xdr(raw.result_meta_xdr or "")
                assert meta.v4 is not None
                fee_events = [
                    scval.to_native(e.event.body.v0.data)  # type: ignore[union-attr]
                    for e in meta.v4.events
                ]
                charge, refund = fee_events[0], -fee_events[1]
                assert refund > 0
                assert landed.fee_charged == charge - refund < tx.transaction.fee
        finally:
            await server.close()
            await gateway.close()


def classic_payments(account: Any, passphrase: str, source: Keypair, to: str, ops: int,
                     bid: int) -> TransactionEnvelope:
    builder = TransactionBuilder(account, passphrase, base_fee=bid).set_timeout(60)
    for _ in range(ops):
        builder.append_payment_op(to, Asset.native(), "0.0000001")
    tx = builder.build()
    tx.sign(source)
    return tx


async def test_classic_batches_bid_the_classic_lanes_surge_price() -> None:
    """The classic lane is surge priced on its own (operations per ledger): a classic batch
    bids that lane's p90 per operation, not the Soroban lane's."""
    async with RunningSandbox(ledger_interval=0.2,
                              extra_args=["--classic-ops-per-ledger", "100"]) as sandbox:
        gateway = LedgerGateway(sandbox.rpc_url)
        server = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
        try:
            assert await gateway.inclusion_fee_p90(lane="classic") == 0
            payers = [Keypair.random() for _ in range(2)]
            sink = Keypair.random()
            for kp in [*payers, sink]:
                await sandbox.fund(kp.public_key)
            await sandbox.set_faults(stall_ledgers=True)
            # 60 operations each, 100 per ledger: one transaction per ledger, the higher
            # bid first, paying its own bid (the lowest its full ledger took).
            txs = [classic_payments(await server.load_account(kp.public_key),
                                    sandbox.passphrase, kp, sink.public_key, 60, bid)
                   for kp, bid in zip(payers, (100, 300), strict=True)]
            for tx in txs:
                assert isinstance(await gateway.send(tx.to_xdr()), Accepted)
            await sandbox.set_faults(stall_ledgers=False)
            found = [await included(gateway, tx.hash_hex()) for tx in txs]
            assert found[1].ledger < found[0].ledger
            assert await gateway.inclusion_fee_p90(lane="classic") == 300
            assert await gateway.inclusion_fee_p90() == 0, "the Soroban lane saw no surge"
        finally:
            await server.close()
            await gateway.close()
