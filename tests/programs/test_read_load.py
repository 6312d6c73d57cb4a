"""The read benchmark's fast loader (bench/read_load.py) builds the database the service would
have: the same payouts and events, the same aggregates as the service's own triggers write
when every index is in place, and exactly the migrated schema (indexes, keys, triggers)."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.migrations import apply_migrations

from ..aggregate_recount import aggregate_differences


def _read_load() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "read_load.py"
    spec = importlib.util.spec_from_file_location("read_load", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("read_load", module)
    spec.loader.exec_module(module)
    return module


read_load = _read_load()
AT = datetime.now(UTC)  # every per-minute bucket inside the windows: none is dropped
DESTINATIONS = [Keypair.random().public_key for _ in range(37)]


async def snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the reads see, minus the random ids: payouts, events, aggregates summed over
    shards (a load writes them from one connection, the shard is the backend's)."""
    return {
        "payouts": await conn.fetch(
            """SELECT payout_id, idempotency_key, destination, asset, gross_stroops,
                      fee_stroops, net_stroops, state, batch_id, failure_code, created_at,
                      updated_at, confirmed_at FROM payouts ORDER BY payout_id"""),
        "events": await conn.fetch(
            """SELECT p.payout_id, e.from_state, e.to_state, e.reason, e.at
               FROM payout_events e JOIN payouts p ON p.id = e.payout_id
               ORDER BY 1, 2 NULLS FIRST, 3"""),
        "totals": await conn.fetch(
            """SELECT scope, key, state, sum(count), sum(gross), sum(fee), sum(net)
               FROM payout_totals GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""),
        "minutes": await conn.fetch(
            """SELECT kind, minute, code, sum(count), sum(gross) FROM payout_minutes
               GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""),
    }


async def test_fast_load_equals_a_load_with_every_index_and_trigger_in_place(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_load, "CHUNK", 1_500)  # several statements, a partial last one
    n = 5_000
    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn)
        migrated = await read_load.schema_of(conn)

        await read_load.load_payouts(conn, n, DESTINATIONS, AT, indexes_after=False)
        reference = await snapshot(conn)
        assert len(reference["payouts"]) == n
        assert await aggregate_differences(conn) == {
            "totals_differ_from_recount": 0, "minutes_differ_from_recount": 0}

        await conn.execute("""TRUNCATE payouts, payout_events, payout_attempts, outbox_events,
                                       payout_proofs, payout_approvals, payout_totals,
                                       payout_minutes""")
        phases = await read_load.load_payouts(conn, n, DESTINATIONS, AT)
        assert set(phases) >= {"payouts", "indexes"}
        assert await read_load.schema_of(conn) == migrated, "same indexes, keys, triggers"
        assert await snapshot(conn) == reference
        assert await aggregate_differences(conn) == {
            "totals_differ_from_recount": 0, "minutes_differ_from_recount": 0}
        # The rebuilt keys hold: a second payout with a loaded payout_id is refused.
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                """INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
                       destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode)
                   VALUES (gen_random_uuid(), 'bench-7', 'other', 'f', '{}', 'G', 'XLM', 2, 1,
                           1, 'ACCEPTED', 'EXTERNAL')""")
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                """INSERT INTO payout_events (payout_id, to_state)
                   VALUES (gen_random_uuid(), 'ACCEPTED')""")
    finally:
        await conn.close()
