"""payout_proofs: written in the SQL transaction that confirms a payout, read with it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from payout_service.core.payment_proofs import PaymentProof, proof_document

_COLUMNS = ("tx_hash, ledger, ledger_closed_at, op_index, event_id, fee_charged, fee_share, "
            "memo, muxed_id, treasury")


async def record_proofs(conn: asyncpg.Connection,
                        proofs: Sequence[tuple[UUID, PaymentProof]]) -> None:
    """Once per payout: a payout is confirmed once, and a proof is never recomputed. Called
    in the SQL transaction that confirmed them, after the move: the payout.confirmed webhook
    event that move queued gets the proof too, so a receiver never sees one without it.
    Two statements for a whole batch, whatever its size."""
    if not proofs:
        return
    inserted = await conn.fetch(
        f"""INSERT INTO payout_proofs (payout_id, {_COLUMNS})
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::timestamptz[],
                                 $5::integer[], $6::text[], $7::bigint[], $8::bigint[],
                                 $9::text[], $10::numeric[], $11::text[])
            ON CONFLICT (payout_id) DO NOTHING RETURNING payout_id""",  # noqa: S608
        [u for u, _ in proofs], [p.tx_hash for _, p in proofs], [p.ledger for _, p in proofs],
        [datetime.fromtimestamp(p.ledger_close_time, UTC) for _, p in proofs],
        [p.op_index for _, p in proofs], [p.event_id for _, p in proofs],
        [p.fee_charged for _, p in proofs], [p.fee_share for _, p in proofs],
        [p.memo for _, p in proofs], [p.muxed_id for _, p in proofs],
        [p.treasury for _, p in proofs])
    new = {r["payout_id"] for r in inserted}
    documents = [(u, json.dumps(proof_document(p))) for u, p in proofs if u in new]
    if documents:
        await conn.execute(
            """UPDATE outbox_events o
               SET payload = o.payload || jsonb_build_object('proof', k.doc::jsonb)
               FROM unnest($1::uuid[], $2::text[]) AS k(payout_id, doc)
               WHERE o.id = (SELECT max(e.id) FROM outbox_events e
                             WHERE e.payout_id = k.payout_id
                               AND e.event_type = 'payout.confirmed')""",
            [u for u, _ in documents], [d for _, d in documents])


def _proof(row: asyncpg.Record) -> PaymentProof:
    return PaymentProof(
        tx_hash=row["tx_hash"], ledger=row["ledger"],
        ledger_close_time=int(row["ledger_closed_at"].timestamp()), op_index=row["op_index"],
        event_id=row["event_id"], fee_charged=row["fee_charged"], fee_share=row["fee_share"],
        memo=row["memo"], muxed_id=None if row["muxed_id"] is None else int(row["muxed_id"]),
        treasury=row["treasury"])


async def proofs_of(db: asyncpg.Pool | asyncpg.Connection,
                    payout_uuids: Sequence[UUID]) -> dict[UUID, PaymentProof]:
    if not payout_uuids:
        return {}
    rows = await db.fetch(
        f"SELECT payout_id, {_COLUMNS} FROM payout_proofs "  # noqa: S608 - fixed column list
        "WHERE payout_id = ANY($1::uuid[])", list(payout_uuids))
    return {r["payout_id"]: _proof(r) for r in rows}
