"""Reads payouts for an export: keyset pages on (created_at, id), oldest first.

Each page is one short query from where the last one ended, so an export of any size holds
one page in memory and no transaction or cursor open between pages, and the position a
client resumes from is the same one the next page starts from.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from payout_service.core.exports import ExportFilter, ExportPosition

# The payout's current attempt holds the transaction hash and ledger, as GetPayout shows them;
# payout_proofs what the chain recorded at confirmation.
_SELECT = """
    SELECT p.id, p.payout_id, p.idempotency_key, p.destination, p.asset, p.gross_stroops,
           p.fee_stroops, p.net_stroops, p.state, p.created_at, p.updated_at, p.confirmed_at,
           a.tx_hash, a.ledger, p.network_fee_stroops, p.failure_code, p.failure_message,
           p.round_id, p.batch_id, p.reference, p.correlation_id, p.metadata,
           p.memo_type, p.memo_value, p.muxed_id,
           pr.ledger_closed_at, pr.op_index, pr.event_id, pr.fee_charged AS fee_charged_stroops,
           pr.fee_share AS fee_share_stroops, pr.treasury
    FROM payouts p
    LEFT JOIN payout_attempts a ON a.payout_id = p.id AND a.number = p.attempt_count
    LEFT JOIN payout_proofs pr ON pr.payout_id = p.id"""


async def export_page(
    pool: asyncpg.Pool, filt: ExportFilter, after: ExportPosition | None, limit: int
) -> list[asyncpg.Record]:
    """The next `limit` payouts matching `filt` strictly after `after`, oldest first."""
    clauses: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if filt.created_from is not None:
        clauses.append(f"p.created_at >= {arg(filt.created_from)}")
    if filt.created_before is not None:
        clauses.append(f"p.created_at < {arg(filt.created_before)}")
    if len(filt.states) == 1:
        # Equality, so the (state, created_at, id) index yields rows in export order.
        clauses.append(f"p.state = {arg(filt.states[0].value)}")
    elif filt.states:
        clauses.append(f"p.state = ANY({arg([s.value for s in filt.states])}::text[])")
    if filt.round_id:
        clauses.append(f"p.round_id = {arg(filt.round_id)}")
    if filt.run_id:
        clauses.append(f"p.batch_id = {arg(filt.run_id)}")
    if filt.destination:
        clauses.append(f"p.destination = {arg(filt.destination)}")
    if after is not None:
        clauses.append(f"(p.created_at, p.id) > ({arg(after.created_at)}, "
                       f"{arg(after.payout_uuid)})")
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    # Clauses are fixed strings; every value is a bound parameter.
    sql = f"{_SELECT} {where} ORDER BY p.created_at, p.id LIMIT {arg(limit)}"  # noqa: S608
    return list(await pool.fetch(sql, *args))
