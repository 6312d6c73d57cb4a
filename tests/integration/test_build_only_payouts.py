"""CreatePayout / GetPayout / ListPayouts in build-only mode, over real gRPC and PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from stellar_sdk import Address, Keypair, TransactionEnvelope, scval

from payout_service.config import TESTNET_PASSPHRASE
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

DEST = Keypair.random().public_key
ISSUER = Keypair.random().public_key


def request(**overrides: object) -> pb.CreatePayoutRequest:
    fields: dict[str, object] = {
        "payout_id": "round-7-winner-1",
        "destination": DEST,
        "amount": "100.5",
        "asset": "XLM",
        "idempotency_key": "round-7:winner-1",
    }
    fields.update(overrides)
    return pb.CreatePayoutRequest(**fields)  # type: ignore[arg-type]


def violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None, "error carries no google.rpc.Status details"
    out = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out


async def test_build_only_returns_built_with_unsigned_soroban_transfer(payout_stub, source_account):
    response = await payout_stub.CreatePayout(request())
    payout = response.payout
    assert response.created
    assert payout.state == pb.PAYOUT_STATE_BUILT
    assert payout.mode == pb.EXECUTION_MODE_BUILD_ONLY
    assert payout.gross.stroops == 1_005_000_000 and payout.gross.decimal == "100.5000000"
    assert payout.net.stroops == 1_005_000_000 and payout.fee.stroops == 0

    envelope = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr, TESTNET_PASSPHRASE)
    tx = envelope.transaction
    assert envelope.signatures == []
    assert tx.source.account_id == source_account
    assert tx.preconditions.time_bounds.max_time > 0, "every transaction carries time bounds"
    (op,) = tx.operations
    invoke = op.host_function.invoke_contract
    assert invoke.function_name.sc_symbol.decode() == "transfer"
    args = invoke.args
    assert scval.from_address(args[0]).address == source_account
    assert scval.from_address(args[1]).address == DEST
    assert scval.from_int128(args[2]) == 1_005_000_000


async def test_payout_contract_method_is_called_when_configured(payout_service_factory):
    contract = "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC"
    service = await payout_service_factory(PAYOUT_CONTRACT_ID=contract)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        payout = (await stub.CreatePayout(request())).payout
    envelope = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr, TESTNET_PASSPHRASE)
    invoke = envelope.transaction.operations[0].host_function.invoke_contract
    assert invoke.function_name.sc_symbol.decode() == "distribute_winnings"
    assert Address.from_xdr_sc_address(invoke.contract_address).address == contract


BAD_INPUTS = [
    ({"destination": "GABC"}, "destination"),
    ({"destination": DEST[:-1] + ("A" if DEST[-1] != "A" else "B")}, "destination"),
    ({"destination": "M" + DEST[1:]}, "destination"),
    ({"destination": ""}, "destination"),
    ({"amount": "0"}, "amount"),
    ({"amount": "-1"}, "amount"),
    ({"amount": "1.12345678"}, "amount"),
    ({"amount": "1e3"}, "amount"),
    ({"amount": "abc"}, "amount"),
    ({"amount": ""}, "amount"),
    ({"amount": "NaN"}, "amount"),
    ({"amount": "99999999999999"}, "amount"),
    ({"asset": "USDC"}, "asset"),
    ({"asset": "USDC:GBAD"}, "asset"),
    ({"asset": "TOOLONGASSETCODE:" + ISSUER}, "asset"),
    ({"idempotency_key": ""}, "idempotency_key"),
    ({"idempotency_key": "has space"}, "idempotency_key"),
    ({"idempotency_key": "k" * 129}, "idempotency_key"),
    ({"payout_id": ""}, "payout_id"),
    ({"payout_id": "bad/id"}, "payout_id"),
    ({"metadata": {f"k{i}": "v" for i in range(33)}}, "metadata"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_INPUTS)
async def test_bad_input_is_invalid_argument_naming_the_field(
    payout_stub, payout_service, overrides, field
):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await payout_stub.CreatePayout(request(**overrides))
    err = caught.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(err)
    assert "Traceback" not in (err.details() or "")
    count = await payout_service.pool.fetchval("SELECT count(*) FROM payouts")
    assert count == 0, "a refused request must leave no row"


async def test_amount_limits_come_from_configuration(payout_service_factory):
    service = await payout_service_factory(PAYOUTS_MIN_AMOUNT="1", PAYOUTS_MAX_AMOUNT="10000")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        for amount in ("0.9999999", "10000.0000001"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreatePayout(request(amount=amount))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "amount" in violations(caught.value)
        ok = await stub.CreatePayout(request(amount="10000"))
        assert ok.payout.gross.stroops == 10_000 * 10_000_000


async def test_fee_is_recorded_as_gross_fee_net_and_net_is_paid(payout_service_factory):
    service = await payout_service_factory(PAYOUTS_FEE_BPS="250")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        payout = (await stub.CreatePayout(request(amount="100"))).payout
    assert (payout.gross.stroops, payout.fee.stroops, payout.net.stroops) == (
        1_000_000_000, 25_000_000, 975_000_000,
    )
    envelope = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr, TESTNET_PASSPHRASE)
    amount_arg = envelope.transaction.operations[0].host_function.invoke_contract.args[2]
    assert scval.from_int128(amount_arg) == 975_000_000


async def test_same_key_same_parameters_returns_the_same_payout(payout_stub):
    first = await payout_stub.CreatePayout(request())
    second = await payout_stub.CreatePayout(request())
    assert first.created and not second.created
    assert first.payout.id == second.payout.id


async def test_same_key_different_parameters_is_already_exists_with_fields(payout_stub):
    await payout_stub.CreatePayout(request())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await payout_stub.CreatePayout(request(amount="100.6", destination=ISSUER))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert set(violations(caught.value)) == {"amount", "destination"}


async def test_payout_id_reused_with_another_key_is_already_exists(payout_stub):
    await payout_stub.CreatePayout(request())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await payout_stub.CreatePayout(request(idempotency_key="another-key"))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "payout_id" in violations(caught.value)


async def test_concurrent_duplicates_create_exactly_one_row(payout_stub, payout_service):
    calls = [payout_stub.CreatePayout(request()) for _ in range(40)]
    responses = await asyncio.gather(*calls)
    assert len({r.payout.id for r in responses}) == 1
    assert sum(r.created for r in responses) == 1
    assert await payout_service.pool.fetchval("SELECT count(*) FROM payouts") == 1
    events = await payout_service.pool.fetchval("SELECT count(*) FROM payout_events")
    assert events == 1, "one creation event, not one per duplicate"


async def test_payouts_survive_a_service_restart(payout_service_factory):
    first = await payout_service_factory()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        created = await payout_pb2_grpc.PayoutServiceStub(channel).CreatePayout(request())
    await first.stop(grace=0)
    second = await payout_service_factory()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{second.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        fetched = await stub.GetPayout(pb.GetPayoutRequest(payout_id="round-7-winner-1"))
        replay = await stub.CreatePayout(request())
    assert fetched.payout.id == created.payout.id
    assert fetched.payout.unsigned_envelope_xdr == created.payout.unsigned_envelope_xdr
    assert not replay.created


async def test_get_unknown_payout_is_not_found(payout_stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await payout_stub.GetPayout(pb.GetPayoutRequest(payout_id="nope"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_get_by_server_id_or_caller_id(payout_stub):
    created = (await payout_stub.CreatePayout(request())).payout
    by_uuid = await payout_stub.GetPayout(pb.GetPayoutRequest(payout_id=created.id))
    by_ref = await payout_stub.GetPayout(pb.GetPayoutRequest(payout_id=created.payout_id))
    assert by_uuid.payout.id == by_ref.payout.id == created.id


async def test_list_pages_newest_first_and_filters_by_destination(payout_stub):
    other = Keypair.random().public_key
    for i in range(7):
        dest = DEST if i % 2 == 0 else other
        await payout_stub.CreatePayout(
            request(payout_id=f"p-{i}", idempotency_key=f"k-{i}", destination=dest)
        )
    seen, token = [], ""
    while True:
        page = await payout_stub.ListPayouts(pb.ListPayoutsRequest(page_size=3, page_token=token))
        seen += [p.payout_id for p in page.payouts]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"p-{i}" for i in reversed(range(7))]
    mine = await payout_stub.ListPayouts(pb.ListPayoutsRequest(destination=other))
    assert {p.payout_id for p in mine.payouts} == {"p-1", "p-3", "p-5"}
    built = await payout_stub.ListPayouts(
        pb.ListPayoutsRequest(states=[pb.PAYOUT_STATE_QUEUED])
    )
    assert list(built.payouts) == []


async def test_list_rejects_a_forged_page_token(payout_stub):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await payout_stub.ListPayouts(pb.ListPayoutsRequest(page_token="not-a-token"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in violations(caught.value)


async def test_correlation_id_is_echoed_and_stored(payout_stub, payout_service):
    call = payout_stub.CreatePayout(request(), metadata=(("x-correlation-id", "corr-123"),))
    response = await call
    initial = dict(await call.initial_metadata())
    assert initial["x-correlation-id"] == "corr-123"
    assert response.payout.correlation_id == "corr-123"


async def test_migrations_are_safe_with_concurrent_replicas(fresh_database):
    from payout_service.adapters.migrations import apply_migrations

    conns = [await asyncpg.connect(fresh_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    applied = [name for names in results for name in names]
    assert applied.count("001_payouts.sql") == 1


async def test_migrations_leave_the_planner_to_size_new_tables_itself(fresh_database):
    """No migration ANALYZEs: on a new database that records every table as empty, and plans
    prepared afterwards (asyncpg caches them per connection) stay planned for an empty table
    until the next ANALYZE. With autovacuum off, migration 100's ANALYZE slowed the
    group-commit insert as payouts grew (bench_api.py at 1,000/s offered: 598/s done, p99
    13 s). Never analysed, the planner sizes a table from its pages at plan time."""
    from payout_service.adapters.migrations import apply_migrations

    conn = await asyncpg.connect(fresh_database)
    try:
        await apply_migrations(conn)
        analysed = await conn.fetch(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.reltuples >= 0""")
    finally:
        await conn.close()
    assert [r["relname"] for r in analysed] == []
