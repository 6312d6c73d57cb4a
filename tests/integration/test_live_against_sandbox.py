"""Live execution against the local Stellar RPC sandbox, over HTTP through stellar-sdk's client.

External signing mode: the test plays the external signer (an HSM/KMS outside the service) and
brings signatures back through SubmitSignedTransaction.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from stellar_sdk import Keypair, SorobanServerAsync, TransactionEnvelope
from stellar_sdk.client.aiohttp_client import AiohttpClient

from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.chain_proofs import assert_proofs_match_the_ledger
from tests.waiting import eventually


@pytest.fixture
async def sandbox():
    async with RunningSandbox(ledger_interval=0.2, seed=11) as running:
        yield running


@pytest.fixture
async def funded_source(sandbox):
    source = Keypair.random()
    await sandbox.fund(source.public_key)
    return source


def request(n: int, dest: str, amount: str = "12.5") -> pb.CreatePayoutRequest:
    return pb.CreatePayoutRequest(
        payout_id=f"live-{n}", destination=dest, amount=amount, asset="XLM",
        idempotency_key=f"live-{n}",
    )


async def wait_for_state(stub, payout_id: str, state: int, within: float = 20) -> pb.Payout:
    seen: list[pb.Payout] = []

    async def in_state() -> pb.Payout | None:
        payout = (await stub.GetPayout(pb.GetPayoutRequest(payout_id=payout_id))).payout
        seen[:] = [payout]
        return payout if payout.state == state else None

    try:
        return await eventually(in_state, what=f"{payout_id} {pb.PayoutState.Name(state)}",
                                within=within, interval=0.1)
    except AssertionError:
        last = seen[0]
        raise AssertionError(f"{payout_id} stuck in {pb.PayoutState.Name(last.state)}: "
                             f"{last.failure}") from None


async def test_build_only_simulates_against_rpc_and_enforces_max_gas(
    payout_service_factory, sandbox, funded_source
):
    dest = Keypair.random()
    await sandbox.fund(dest.public_key)
    env = dict(SOROBAN_RPC_URL=sandbox.rpc_url, STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase)
    service = await payout_service_factory(PAYOUT_SOURCE_ACCOUNT=funded_source.public_key, **env)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        payout = (await stub.CreatePayout(request(1, dest.public_key))).payout
    envelope = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr, sandbox.passphrase)
    tx = envelope.transaction
    assert tx.soroban_data is not None, "simulated: footprint and resources are set"
    assert tx.fee > 100, "resource fee from simulation added to the inclusion fee"
    account = await sandbox.account(funded_source.public_key)
    assert tx.sequence == int(account["sequence"]) + 1

    strict = await payout_service_factory(
        PAYOUT_SOURCE_ACCOUNT=funded_source.public_key, PAYOUTS_MAX_GAS_STROOPS="100", **env
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{strict.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreatePayout(request(2, dest.public_key))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "exceeds max gas" in caught.value.details()
    assert await strict.pool.fetchval("SELECT count(*) FROM payouts WHERE payout_id='live-2'") == 0


async def test_external_signing_pays_exactly_once(payout_service_factory, sandbox, funded_source):
    dests = [Keypair.random().public_key for _ in range(3)]
    for d in dests:
        await sandbox.fund(d)
    service = await payout_service_factory(
        PAYOUT_SOURCE_ACCOUNT=funded_source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
        STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
        PAYOUTS_SIGNING_MODE="external", PAYOUTS_CONFIRM_POLL_MS="100",
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        for n, d in enumerate(dests):
            await stub.CreatePayout(request(n, d))
        for n in range(len(dests)):
            waiting = await wait_for_state(stub, f"live-{n}", pb.PAYOUT_STATE_AWAITING_SIGNATURE)
            envelope = TransactionEnvelope.from_xdr(
                waiting.unsigned_envelope_xdr, sandbox.passphrase
            )
            envelope.sign(funded_source)
            await stub.SubmitSignedTransaction(pb.SubmitSignedTransactionRequest(
                payout_id=f"live-{n}", signed_envelope_xdr=envelope.to_xdr()
            ))
        confirmed = [
            await wait_for_state(stub, f"live-{n}", pb.PAYOUT_STATE_CONFIRMED)
            for n in range(len(dests))
        ]
        listed = await stub.ListPayouts(pb.ListPayoutsRequest(states=[pb.PAYOUT_STATE_CONFIRMED]))
        assert sorted((p.payout_id, p.tx_hash, p.ledger) for p in listed.payouts) == sorted(
            (p.payout_id, p.tx_hash, p.ledger) for p in confirmed
        ), "a listing shows each payout's transaction as GetPayout does"
    transfers = await sandbox.transfers()
    paid = sorted((t["to"], t["amount_stroops"]) for t in transfers)
    assert paid == sorted((d, 125_000_000) for d in dests), "each destination paid exactly once"
    assert all(p.tx_hash and p.ledger for p in confirmed)
    outbox = await service.pool.fetchval(
        "SELECT count(*) FROM outbox_events WHERE event_type = 'payout.confirmed'"
    )
    assert outbox == len(dests)
    # Single Soroban payouts: each proof is operation 0 of its own transaction, as the
    # ledger recorded it, and GetPayout, ListPayouts and the webhook event carry it.
    proofs = await assert_proofs_match_the_ledger(
        service.pool, sandbox.rpc_url, [f"live-{n}" for n in range(len(dests))])
    by_id = {p.payout_id: p for p in listed.payouts}
    for stored in proofs:
        shown = by_id[stored["payout_id"]].proof
        assert (shown.tx_hash, shown.ledger, shown.op_index, shown.event_id,
                shown.fee_charged_stroops, shown.fee_share_stroops, shown.treasury) == (
            stored["tx_hash"], stored["ledger"], 0, stored["event_id"],
            stored["fee_charged"], stored["fee_charged"], funded_source.public_key)
        assert stored["event_id"], "a SAC transfer emits a transfer event"
    webhook_proofs = await service.pool.fetch(
        "SELECT payload->'proof'->>'event_id' AS event_id FROM outbox_events "
        "WHERE event_type = 'payout.confirmed' ORDER BY payload->>'payout_id'")
    assert [r["event_id"] for r in webhook_proofs] == [p["event_id"] for p in proofs]


async def sign_whatever_awaits(stub, sandbox, source: Keypair, stop: asyncio.Event) -> int:
    """The external signer: signs every payout AWAITING_SIGNATURE until told to stop."""
    signed = 0
    while not stop.is_set():
        page = await stub.ListPayouts(pb.ListPayoutsRequest(
            states=[pb.PAYOUT_STATE_AWAITING_SIGNATURE], page_size=100,
        ))
        for payout in page.payouts:
            envelope = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr,
                                                    sandbox.passphrase)
            envelope.sign(source)
            try:
                await stub.SubmitSignedTransaction(pb.SubmitSignedTransactionRequest(
                    payout_id=payout.payout_id, signed_envelope_xdr=envelope.to_xdr()
                ))
                signed += 1
            except grpc.aio.AioRpcError as err:
                # Raced with the window expiring: the next listing has the new envelope.
                assert err.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                                      grpc.StatusCode.INVALID_ARGUMENT), err
        await asyncio.sleep(0.1)
    return signed


async def attempt_history(pool) -> str:
    """Each payout's attempts, for a failure message: how long each lived and how it ended."""
    rows = await pool.fetch(
        """SELECT p.payout_id, a.number, a.status, a.signed, a.send_count, a.created_at,
                  a.submitted_at, a.max_time, a.result_code, a.proof
           FROM payout_attempts a JOIN payouts p ON p.id = a.payout_id
           ORDER BY p.payout_id, a.number""")
    return "\n".join(
        f"{r['payout_id']} #{r['number']} {r['status']} signed={r['signed']} "
        f"sends={r['send_count']} created {r['created_at']:%T.%f} submitted "
        f"{r['submitted_at'] and format(r['submitted_at'], '%T.%f')} max_time "
        f"{r['max_time']:%T} {r['result_code']} {(r['proof'] or '')[:90]}" for r in rows)


async def test_faulty_rpc_never_double_pays_and_loses_nothing(payout_service_factory):
    async with RunningSandbox(ledger_interval=0.25, seed=2026, faults={
        "try_again_later_rate": 0.3, "http_503_rate": 0.15, "latency_ms": 10,
        "drop_rate": 0.25, "timeout_rate": 0.03, "timeout_ms": 1500,
    }) as faulty:
        source = Keypair.random()
        await faulty.fund(source.public_key)
        dests = [Keypair.random().public_key for _ in range(6)]
        for d in dests:
            await faulty.fund(d)
        service = await payout_service_factory(
            PAYOUT_SOURCE_ACCOUNT=source.public_key, SOROBAN_RPC_URL=faulty.rpc_url,
            STELLAR_NETWORK_PASSPHRASE=faulty.passphrase, PAYOUTS_LIVE_EXECUTION="true",
            PAYOUTS_SIGNING_MODE="external", PAYOUTS_CONFIRM_POLL_MS="150",
            # Ledger time, not wall time: the sandbox's close times advance by at least a
            # second per ledger, four times faster than the clock at 0.25 s a ledger, so a
            # 5 s window left a holder 1.25 s to list, sign and land the envelope through
            # these faults, and a loaded machine ran out of attempts.
            PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS="20", PAYOUTS_RPC_TIMEOUT_MS="800",
            PAYOUTS_MAX_ATTEMPTS="10",
        )
        stop = asyncio.Event()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = payout_pb2_grpc.PayoutServiceStub(channel)
            signer = asyncio.create_task(sign_whatever_awaits(stub, faulty, source, stop))
            for n, d in enumerate(dests):
                await stub.CreatePayout(request(n, d, amount="3"))
            try:
                # External signing hands out one envelope per source at a time, and a dropped
                # one waits for its max_time plus a jittered retry backoff (up to 60 s) before
                # the next attempt: under these faults one payout can take well over a minute.
                for n in range(len(dests)):
                    try:
                        await wait_for_state(stub, f"live-{n}", pb.PAYOUT_STATE_CONFIRMED,
                                             within=300)
                    except AssertionError as err:
                        raise AssertionError(f"{err}\n{await attempt_history(service.pool)}"
                                             ) from None
            finally:
                stop.set()
                await signer
        transfers = await faulty.transfers()
        await faulty.reset_faults()
    paid = sorted(t["to"] for t in transfers)
    assert paid == sorted(dests), "every payout landed, none twice"
    proofs = await service.pool.fetch(
        "SELECT status, proof FROM payout_attempts WHERE status = 'dead'"
    )
    kinds = ("expired: ", "expired_unused: ", "sequence_consumed: ", "source_missing: ")
    assert all((p["proof"] or "").startswith(kinds) for p in proofs), proofs


async def test_an_envelope_its_holder_submits_itself_is_never_paid_again(
    payout_service_factory, sandbox, funded_source
):
    """Invariant 8, external signing: the holder of the first payout's envelope (a custody
    tool, Stellar Laboratory's "sign and submit") signs it and submits it to the network
    itself, never calling SubmitSignedTransaction, and signs every later envelope through
    the API. Its signing window passes: the service must find the payout paid by that
    envelope, never build one the holder would then sign and pay a second time."""
    dests = [Keypair.random().public_key for _ in range(3)]
    for d in dests:
        await sandbox.fund(d)
    service = await payout_service_factory(
        PAYOUT_SOURCE_ACCOUNT=funded_source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
        STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
        PAYOUTS_SIGNING_MODE="external", PAYOUTS_CONFIRM_POLL_MS="100",
        PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS="5",
    )
    submitted_itself: set[str] = set()
    stop = asyncio.Event()

    async def holder(stub) -> None:
        rpc = SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient())
        try:
            while not stop.is_set():
                page = await stub.ListPayouts(pb.ListPayoutsRequest(
                    states=[pb.PAYOUT_STATE_AWAITING_SIGNATURE], page_size=100))
                for payout in page.payouts:
                    envelope = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr,
                                                            sandbox.passphrase)
                    envelope.sign(funded_source)
                    if payout.payout_id == "live-0" and not submitted_itself:
                        submitted_itself.add(envelope.hash_hex())
                        await rpc.send_transaction(envelope)  # straight to the network
                        continue
                    if envelope.hash_hex() in submitted_itself:
                        continue
                    try:
                        await stub.SubmitSignedTransaction(pb.SubmitSignedTransactionRequest(
                            payout_id=payout.payout_id, signed_envelope_xdr=envelope.to_xdr()))
                    except grpc.aio.AioRpcError as err:
                        assert err.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                                              grpc.StatusCode.INVALID_ARGUMENT), err
                await asyncio.sleep(0.1)
        finally:
            await rpc.close()

    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        stub = payout_pb2_grpc.PayoutServiceStub(channel)
        signing = asyncio.create_task(holder(stub))
        try:
            for n, d in enumerate(dests):
                await stub.CreatePayout(request(n, d))
            for n in range(len(dests)):
                await wait_for_state(stub, f"live-{n}", pb.PAYOUT_STATE_CONFIRMED, within=60)
            # Past the first envelope's window, with the holder still signing whatever the
            # service hands out: nothing more may be paid.
            for _ in range(30):
                await sandbox.close_ledger()
            await asyncio.sleep(1)
        finally:
            stop.set()
            await signing
    paid = sorted(t["to"] for t in await sandbox.transfers())
    assert paid == sorted(dests), "each payout paid exactly once"
    first = await service.pool.fetch(
        """SELECT a.status, a.tx_hash FROM payout_attempts a JOIN payouts p
           ON p.id = a.payout_id WHERE p.payout_id = 'live-0' ORDER BY a.number""")
    assert [(r["status"], r["tx_hash"]) for r in first] == [
        ("included", next(iter(submitted_itself)))]
