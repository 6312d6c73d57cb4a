"""payout_proofs: written in the SQL transaction that confirms a payout, read with it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from payout_service.core.payment_proofs import PaymentProof, proof_document

_COLUMNS = ("tx_hash, ledger, ledger_closed_at, op_index, event_id, fee_charged, fee_share, "
            "memo, muxed_id, treasury")


async def record_proof(conn: asyncpg.Connection, payout_uuid: UUID, proof: PaymentProof) -> None:
    """Once per payout: a payout is confirmed once, and a proof is never recomputed. Called
    in the SQL transaction that confirmed it, after the move: the payout.confirmed webhook
    event that move queued gets the proof too, so a receiver never sees one without it."""
    inserted = await conn.fetchval(
        f"""INSERT INTO payout_proofs (payout_id, {_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (payout_id) DO NOTHING RETURNING true""",  # noqa: S608 - fixed columns
        payout_uuid, proof.tx_hash, proof.ledger,
        datetime.fromtimestamp(proof.ledger_close_time, UTC), proof.op_index, proof.event_id,
        proof.fee_charged, proof.fee_share, proof.memo, proof.muxed_id, proof.treasury)
    if inserted:
        await conn.execute(
            """UPDATE outbox_events SET payload = payload || jsonb_build_object('proof', $2::jsonb)
               WHERE id = (SELECT max(id) FROM outbox_events
                           WHERE payout_id = $1 AND event_type = 'payout.confirmed')""",
            payout_uuid, proof_document(proof))


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
