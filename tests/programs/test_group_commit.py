"""The group commit holds one pooled connection per burst of CreatePayout calls: when that
connection dies under a group, every call of the group is still answered on its own, and the
next group runs on a fresh connection. Real PostgreSQL, real gRPC."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from payout_service.adapters import payout_store
from payout_service.app import desk as desk_module
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

from ..aggregate_recount import aggregate_differences
from .test_aggregates import DESTS, LIVE, call, create_request


async def test_a_group_whose_connection_dies_is_answered_call_by_call(stack_factory,
                                                                      monkeypatch):
    stack = await stack_factory(**LIVE)
    real_insert = payout_store.insert_payouts_in
    killed: list[int] = []
    committed: list[tuple[int, int]] = []  # (backend pid, items) of each statement that ran

    async def insert_on_a_dying_connection(db: Any, news: Any, **kwargs: Any) -> Any:
        if not killed and isinstance(db, asyncpg.Connection):
            # The first group's connection is terminated by the server, as a failover or an
            # operator's pg_terminate_backend would: its statement fails mid-burst.
            pid = db.get_server_pid()
            killed.append(pid)
            await stack.pool.execute("SELECT pg_terminate_backend($1)", pid)
        rows = await real_insert(db, news, **kwargs)
        if isinstance(db, asyncpg.Connection):
            committed.append((db.get_server_pid(), len(news)))
        return rows

    monkeypatch.setattr(desk_module, "insert_payouts_in", insert_on_a_dying_connection)
    first = await asyncio.gather(*(call(stack, create_request(n, DESTS[n % 5]))
                                   for n in range(24)))
    assert killed, "a group ran on a connection that then died"
    assert all(isinstance(o, pb.CreatePayoutResponse) and o.created for o in first), first
    # The writer gave the dead connection back: the next burst commits on a fresh one.
    second = await asyncio.gather(*(call(stack, create_request(n, DESTS[n % 5]))
                                    for n in range(24, 48)))
    assert all(isinstance(o, pb.CreatePayoutResponse) and o.created for o in second), second
    assert any(pid != killed[0] and items > 1 for pid, items in committed), \
        "groups commit again, on another connection"
    replayed = await call(stack, create_request(3, DESTS[3]))
    assert isinstance(replayed, pb.CreatePayoutResponse) and not replayed.created
    assert replayed.payout.id == first[3].payout.id

    events = await stack.pool.fetch(
        """SELECT p.payout_id, count(e.id) AS n FROM payouts p
           JOIN payout_events e ON e.payout_id = p.id GROUP BY p.payout_id""")
    assert sorted(r["payout_id"] for r in events) == sorted(f"p-{n}" for n in range(48))
    assert all(r["n"] == 1 for r in events), "one creation event per payout, none twice"
    assert await aggregate_differences(stack.pool) == {
        "totals_differ_from_recount": 0, "minutes_differ_from_recount": 0}


async def test_the_payout_answered_is_the_row_stored(stack_factory):
    """insert_payouts_in builds the answered payout from what it inserted (no RETURNING *):
    field for field it is what a read of the row gives."""
    stack = await stack_factory(**LIVE)
    requests = [create_request(n, DESTS[n % 5], amount=f"{n + 1}.0000123") for n in range(12)]
    for r in requests[:6]:
        r.metadata.update({"round": str(len(r.payout_id)), "z": "last", "a": "first"})
    answers = await asyncio.gather(*(call(stack, r) for r in requests))
    batch = await stack.payouts.CreatePayoutBatch(pb.CreatePayoutBatchRequest(
        batch_id="b-7", items=[create_request(f"b{n}", DESTS[n % 5], reference=f"ref-{n}")
                               for n in range(5)]))
    created = [a.payout for a in answers if isinstance(a, pb.CreatePayoutResponse)]
    created += [r.payout for r in batch.results]
    assert len(created) == 17
    for answered in created:
        read = await stack.payouts.GetPayout(pb.GetPayoutRequest(payout_id=answered.payout_id))
        assert read.payout == answered, answered.payout_id

    # The same for the domain record, every field (jsonb parameters and metadata included).
    desk = stack.desk
    news = [await desk.new_payout(desk.validate({
        "payout_id": f"d-{n}", "destination": DESTS[n], "amount": "12.5", "asset": "XLM",
        "idempotency_key": f"dk-{n}", "metadata": {"b": "2", "a": "1"} if n else {},
        "reference": f"dref-{n}" if n % 2 else ""}), correlation_id=f"c-{n}", batch_id="b-8")
        for n in range(3)]
    inserted = await payout_store.insert_payouts_in(stack.pool, [*news, news[0]], actor="t")
    assert inserted[3] is None, "a key repeated in one statement is inserted once"
    stored = await payout_store.payouts_by_keys(stack.pool, [n.idempotency_key for n in news])
    assert [stored[n.idempotency_key] for n in news] == inserted[:3]
