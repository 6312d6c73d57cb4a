"""Small helpers shared by the programs tests."""

from __future__ import annotations

import asyncpg
import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def field_violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None, "error carries no google.rpc.Status details"
    out: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out


# 60,000 payouts, 9 in 10 CONFIRMED, one every ~43 s over 30 days: a 2-hour window holds
# ~150 of them. Stored in no particular order (rows move as they are updated).
CONFIRMED_HISTORY = """
    INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
        destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode,
        created_at, updated_at, confirmed_at)
    SELECT gen_random_uuid(), 'w-' || i, 'w-' || i, 'f', '{}', 'G', 'XLM', 2, 1, 1,
           CASE WHEN i % 10 = 0 THEN 'FAILED' ELSE 'CONFIRMED' END, 'EXTERNAL',
           now() - i * interval '43 seconds', now() - i * interval '43 seconds',
           CASE WHEN i % 10 <> 0 THEN now() - i * interval '43 seconds' END
    FROM generate_series(1, 60000) AS i ORDER BY random()"""


async def confirmed_history(db: asyncpg.Pool | asyncpg.Connection) -> None:
    """Loads CONFIRMED_HISTORY (the window reads' test history)."""
    await db.execute(CONFIRMED_HISTORY)
