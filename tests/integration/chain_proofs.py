"""Judges stored proofs of payment against the ledger: getTransaction and getEvents, asked of
the sandbox over HTTP as any explorer would."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from stellar_sdk import scval
from stellar_sdk.soroban_rpc import EventFilter, EventFilterType, GetTransactionStatus
from stellar_sdk.soroban_server_async import SorobanServerAsync
from stellar_sdk.xdr import SCVal, TransactionResult


async def stored_proofs(pool: asyncpg.Pool, payout_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Each payout's proof with the op index its attempt was built with."""
    rows = await pool.fetch(
        """SELECT pr.*, p.payout_id, a.tx_hash AS attempt_tx_hash,
                  coalesce(a.op_index, 0) AS built_op
           FROM payouts p
           JOIN payout_attempts a ON a.payout_id = p.id AND a.number = p.attempt_count
           LEFT JOIN payout_proofs pr ON pr.payout_id = p.id
           WHERE p.payout_id = ANY($1::text[]) ORDER BY p.payout_id""", list(payout_ids))
    return [dict(r) for r in rows]


async def assert_proofs_match_the_ledger(
    pool: asyncpg.Pool, rpc_url: str, payout_ids: Sequence[str], *, contract_batch: bool = False,
) -> list[dict[str, Any]]:
    """A contract batch is one InvokeHostFunction (operation 0): its payout built as item k is
    paid by that operation's k-th transfer event."""
    proofs = await stored_proofs(pool, payout_ids)
    assert len(proofs) == len(payout_ids)
    server = SorobanServerAsync(rpc_url)
    try:
        shares: dict[str, int] = {}
        for proof in proofs:
            assert proof["tx_hash"] is not None, f"{proof['payout_id']} has no proof"
            assert proof["tx_hash"] == proof["attempt_tx_hash"]
            assert proof["op_index"] == (0 if contract_batch else proof["built_op"])
            tx = await server.get_transaction(proof["tx_hash"])
            assert tx.status == GetTransactionStatus.SUCCESS
            assert tx.ledger == proof["ledger"]
            assert tx.create_at == int(proof["ledger_closed_at"].timestamp())
            assert tx.result_xdr is not None
            fee = TransactionResult.from_xdr(tx.result_xdr).fee_charged.int64
            assert proof["fee_charged"] == fee
            shares[proof["tx_hash"]] = shares.get(proof["tx_hash"], 0) + proof["fee_share"]
            events = await server.get_events(
                start_ledger=proof["ledger"], end_ledger=proof["ledger"] + 1, limit=1000,
                filters=[EventFilter(event_type=EventFilterType.CONTRACT)])
            transfers = [e.id for e in events.events
                         if e.transaction_hash == proof["tx_hash"]
                         and e.operation_index == proof["op_index"]
                         and scval.to_native(SCVal.from_xdr(e.topic[0])) == "transfer"]
            rank = proof["built_op"] if contract_batch else 0
            expected = sorted(transfers)[rank] if rank < len(transfers) else ""
            assert proof["event_id"] == expected, (proof, transfers)
        for tx_hash, total in shares.items():
            tx = await server.get_transaction(tx_hash)
            assert tx.result_xdr is not None
            assert total == TransactionResult.from_xdr(tx.result_xdr).fee_charged.int64, \
                "the shares of a transaction's payouts add up to its fee"
    finally:
        await server.close()
    return proofs
