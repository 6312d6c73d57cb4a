"""Invariant 6, liveness: whatever happens to a reserved sequence number, the next payouts on
the same account confirm within a bounded number of ledgers.

Each test abandons one reservation in one way (cancel in each cancellable state, a signer
refusal, a rejection that can never become valid, an external signature that never comes or
is invalid), then creates five more payouts on the same account and checks, against the
sandbox's ledger, that they all confirm within BOUND_LEDGERS ledgers of the abandonment and
that nothing was paid twice. Single-source and channel mode, a real signer over mTLS.

Crashes at each step are covered by test_crash_safety.py (every payout confirms after the
restart) and test_random_cancel_and_kill.py.

To stop a payout at an exact state the service's own pipeline loops are paused and the same
Pipeline code is stepped by hand (`Stepper`); nothing is faked.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from stellar_sdk import Keypair, TransactionEnvelope
from stellar_sdk.soroban_server_async import SorobanServerAsync

from payout_service.adapters.signer_client import SignerClient, SignerUnavailable
from payout_service.app.pipeline import Pipeline
from payout_service.main import RunningService
from signer_service.testing import running_signer
from soroban_sandbox.testing import RunningSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.test_live_against_sandbox import wait_for_state
from tests.integration.test_live_with_signer import channel_world, signer_env
from tests.waiting import eventually

LEDGER_INTERVAL = 0.25
# The sandbox's close time advances one second per ledger, so a window of W seconds is W
# ledgers. A blocked account would hold the next payouts until the abandoned envelope's
# max_time (TX_WINDOW ledgers) at least; the bound is well under it.
TX_WINDOW = 300
BOUND_LEDGERS = 40
EXTERNAL_WINDOW = 12
NEXT = 5


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with RunningSandbox(ledger_interval=LEDGER_INTERVAL, seed=31) as running:
        yield running


@dataclass
class World:
    service: RunningService
    stub: payout_pb2_grpc.PayoutServiceStub
    sandbox: RunningSandbox
    dests: list[str]
    source: Keypair

    async def latest_ledger(self) -> int:
        assert self.service.ledger is not None
        return (await self.service.ledger.latest_ledger()).sequence

    async def create(self, payout_id: str, n: int = 0, amount: str = "2") -> pb.Payout:
        reply = await self.stub.CreatePayout(pb.CreatePayoutRequest(
            payout_id=payout_id, destination=self.dests[n % len(self.dests)], amount=amount,
            asset="XLM", idempotency_key=payout_id))
        return reply.payout

    async def state(self, payout_id: str) -> int:
        return (await self.stub.GetPayout(pb.GetPayoutRequest(payout_id=payout_id))).payout.state

    async def next_five_confirm(self, abandoned_at_ledger: int, prefix: str = "next") -> str:
        """Creates NEXT payouts, waits for them, checks that the last one was included at
        most BOUND_LEDGERS ledgers after the abandonment; returns what it measured."""
        started = time.monotonic()
        ids = [f"{prefix}-{n}" for n in range(NEXT)]
        for n, payout_id in enumerate(ids):
            await self.create(payout_id, n)
        first = await wait_for_state(self.stub, ids[0], pb.PAYOUT_STATE_CONFIRMED, within=60)
        first_seconds = time.monotonic() - started
        confirmed = [first] + [
            await wait_for_state(self.stub, p, pb.PAYOUT_STATE_CONFIRMED, within=60)
            for p in ids[1:]]
        spent = max(p.ledger for p in confirmed) - abandoned_at_ledger
        assert spent <= BOUND_LEDGERS, f"took {spent} ledgers, bound {BOUND_LEDGERS}"
        return (f"first next payout confirmed {first.ledger - abandoned_at_ledger} ledgers "
                f"({first_seconds:.1f} s) after, all {NEXT} within {spent} ledgers")

    async def paid_at_most_once(self) -> dict[str, int]:
        transfers = await self.sandbox.transfers()
        hashes = [t.get("tx_hash") for t in transfers]
        counts: dict[str, int] = {}
        for t in transfers:
            counts[t["to"]] = counts.get(t["to"], 0) + 1
        assert len(hashes) == len(set(hashes))
        return counts


class Stepper:
    """Pauses the service's pipeline loops and steps the same Pipeline code by hand."""

    def __init__(self, service: RunningService) -> None:
        assert service.pipeline is not None
        self.service = service
        self.running = service.pipeline
        self.clients: list[SignerClient] = []

    async def pause(self) -> None:
        await self.running.stop()

    def pipeline(self, **signer_changes: str) -> Pipeline:
        """A pipeline on the same store, ledger and signer, or on a signer client with other
        settings (an unreachable address, another key)."""
        p = self.running
        signer = p.signer
        if signer_changes:
            assert p.config.signer is not None
            signer = SignerClient(dataclasses.replace(p.config.signer, **signer_changes),
                                  timeout_seconds=1)
            self.clients.append(signer)
        return Pipeline(p.config, p.attempts, p.ledger, signer)

    async def resume(self) -> None:
        p = self.running
        self.service.pipeline = Pipeline(p.config, p.attempts, p.ledger, p.signer)
        self.service.pipeline.start()
        for client in self.clients:
            await client.close()


@contextlib.asynccontextmanager
async def signer_world(
    factory, sandbox: RunningSandbox, tmp_path, channels: int, **env: str
) -> AsyncIterator[World]:
    cw = await channel_world(sandbox, channels=channels, payouts=NEXT)
    wrong = Keypair.random()  # a key the account does not know: its signature is txBAD_AUTH
    async with running_signer(
        tmp_path, network_passphrase=sandbox.passphrase, backend="hot",
        hot_secret=cw.source.secret, policy=cw.policy,
        extra_keys={**cw.channel_secrets, "wrong": wrong.secret},
        key_settings=cw.channel_settings,
    ) as signer:
        settings = {
            **signer_env(signer),
            "PAYOUT_SOURCE_ACCOUNT": cw.source.public_key, "SOROBAN_RPC_URL": sandbox.rpc_url,
            "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase, "PAYOUTS_LIVE_EXECUTION": "true",
            "PAYOUTS_CONFIRM_POLL_MS": "100", "PAYOUTS_TX_WINDOW_SECONDS": str(TX_WINDOW), **env,
        }
        if channels:
            settings["PAYOUTS_CHANNEL_ACCOUNTS"] = cw.setting
        service = await factory(**settings)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            yield World(service, payout_pb2_grpc.PayoutServiceStub(channel), sandbox,
                        cw.dests, cw.source)


MODES = {"single-source": 0, "channels": 2}
CANCEL_AT = ["ACCEPTED", "ACCEPTED_WITH_BUILT_ATTEMPT", "QUEUED"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("cancel_at", CANCEL_AT)
async def test_a_cancel_in_each_cancellable_state_never_blocks_the_account(
    payout_service_factory, sandbox, tmp_path, mode, cancel_at
):
    async with signer_world(payout_service_factory, sandbox, tmp_path, MODES[mode]) as world:
        await world.create("first")
        await wait_for_state(world.stub, "first", pb.PAYOUT_STATE_CONFIRMED)
        stepper = Stepper(world.service)
        await stepper.pause()
        await world.create("cancelled")
        if cancel_at == "ACCEPTED_WITH_BUILT_ATTEMPT":
            # The signer is unreachable: the number is reserved, the envelope built, unsigned.
            with pytest.raises(SignerUnavailable):  # raised to the loop runner's backoff
                await stepper.pipeline(address="127.0.0.1:9").prepare_once()
        elif cancel_at == "QUEUED":
            await stepper.pipeline().prepare_once()  # signed, not sent
        reply = await world.stub.GetPayout(pb.GetPayoutRequest(
            payout_id="cancelled", include_attempts=True))
        expected_state = pb.PAYOUT_STATE_QUEUED if cancel_at == "QUEUED" \
            else pb.PAYOUT_STATE_ACCEPTED
        assert reply.payout.state == expected_state
        assert len(reply.attempts) == (0 if cancel_at == "ACCEPTED" else 1)
        await world.stub.CancelPayout(pb.CancelPayoutRequest(payout_id="cancelled"))
        at = await world.latest_ledger()
        await stepper.resume()
        await world.next_five_confirm(at)
        counts = await world.paid_at_most_once()
        assert await world.state("cancelled") == pb.PAYOUT_STATE_CANCELLED
    assert sum(counts.values()) == 1 + NEXT, "the cancelled payout was never paid"


@pytest.mark.parametrize("mode", MODES)
async def test_a_signer_refusal_never_blocks_the_account(
    payout_service_factory, sandbox, tmp_path, mode
):
    async with signer_world(payout_service_factory, sandbox, tmp_path, MODES[mode]) as world:
        await world.create("refused", amount="150")  # over the policy's 100 XLM per tx
        failed = await wait_for_state(world.stub, "refused", pb.PAYOUT_STATE_FAILED)
        assert "max_amount_stroops_per_tx" in failed.failure.message
        await world.next_five_confirm(await world.latest_ledger())
        counts = await world.paid_at_most_once()
    assert sum(counts.values()) == NEXT


@pytest.mark.parametrize("mode", MODES)
async def test_a_never_valid_rejection_is_replaced_within_a_few_ledgers(
    payout_service_factory, sandbox, tmp_path, mode
):
    """The payer's signature by a key the account does not have: txBAD_AUTH at submission,
    which no later ledger can make valid. The payout fails at once; its number goes to the
    next payout, whose transaction replaces the refused one."""
    async with signer_world(payout_service_factory, sandbox, tmp_path, MODES[mode]) as world:
        stepper = Stepper(world.service)
        await stepper.pause()
        await world.create("refused-by-network")
        wrong_key = stepper.pipeline(key_id="wrong")
        await wrong_key.prepare_once()
        await wrong_key.send_once()
        failed = await world.stub.GetPayout(pb.GetPayoutRequest(
            payout_id="refused-by-network", include_attempts=True))
        assert failed.payout.state == pb.PAYOUT_STATE_FAILED
        # With a channel as the transaction's source the payer signs as the operation's
        # source: stellar-core names that signature in the operation's result (opBAD_AUTH).
        assert failed.payout.failure.code == ("opBAD_AUTH" if mode == "channels"
                                              else "txBAD_AUTH")
        assert [a.status for a in failed.attempts] == ["abandoned"]
        at = await world.latest_ledger()
        await stepper.resume()
        measured = await world.next_five_confirm(at)
        print(f"\n[{mode}] never-valid rejection (ledger {at}): {measured}")
        counts = await world.paid_at_most_once()

        async def proven_dead() -> bool:
            attempts = (await world.stub.GetPayout(pb.GetPayoutRequest(
                payout_id="refused-by-network", include_attempts=True))).attempts
            return bool(attempts[0].status == "dead")

        # The replacement consumed its number: the refused attempt is proven dead.
        await eventually(proven_dead, what="the refused attempt dead", within=30,
                         interval=0.1)
    assert sum(counts.values()) == NEXT


# ---- external signing (single source: channels need the signer service) -----------------


@contextlib.asynccontextmanager
async def external_world(factory, sandbox: RunningSandbox) -> AsyncIterator[World]:
    source = Keypair.random()
    dests = [Keypair.random().public_key for _ in range(NEXT)]
    for address in (source.public_key, *dests):
        await sandbox.fund(address)
    service = await factory(
        PAYOUT_SOURCE_ACCOUNT=source.public_key, SOROBAN_RPC_URL=sandbox.rpc_url,
        STELLAR_NETWORK_PASSPHRASE=sandbox.passphrase, PAYOUTS_LIVE_EXECUTION="true",
        PAYOUTS_SIGNING_MODE="external", PAYOUTS_CONFIRM_POLL_MS="100",
        PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS=str(EXTERNAL_WINDOW),
        PAYOUTS_TX_WINDOW_SECONDS=str(TX_WINDOW),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        yield World(service, payout_pb2_grpc.PayoutServiceStub(channel), sandbox, dests, source)


async def external_signer(world: World, skip: set[str], stop: asyncio.Event) -> None:
    """The caller's own signer: signs every payout awaiting a signature, except `skip`."""
    while not stop.is_set():
        page = await world.stub.ListPayouts(pb.ListPayoutsRequest(
            states=[pb.PAYOUT_STATE_AWAITING_SIGNATURE], page_size=100))
        for payout in page.payouts:
            if payout.payout_id in skip:
                continue
            envelope = TransactionEnvelope.from_xdr(payout.unsigned_envelope_xdr,
                                                    world.sandbox.passphrase)
            envelope.sign(world.source)
            with contextlib.suppress(grpc.aio.AioRpcError):  # raced with a rebuild
                await world.stub.SubmitSignedTransaction(pb.SubmitSignedTransactionRequest(
                    payout_id=payout.payout_id, signed_envelope_xdr=envelope.to_xdr()))
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def signing(world: World, skip: set[str]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(external_signer(world, skip, stop))
    try:
        yield
    finally:
        stop.set()
        await task


# history_lost: never signed, and the node restarts without its history once the envelope is
# out, so no getTransaction can ever cover it; its source's number still proves it dead.
EXTERNAL_CASES = ["cancelled", "never_signed", "invalid_signature", "history_lost"]


@pytest.mark.parametrize("case", EXTERNAL_CASES)
async def test_an_external_reservation_abandoned_never_blocks_the_account(
    payout_service_factory, sandbox, case
):
    async with external_world(payout_service_factory, sandbox) as world:
        await world.create("held")
        held = await wait_for_state(world.stub, "held", pb.PAYOUT_STATE_AWAITING_SIGNATURE)
        at = await world.latest_ledger()
        bound = BOUND_LEDGERS
        if case == "cancelled":
            await world.stub.CancelPayout(pb.CancelPayoutRequest(payout_id="held"))
        elif case == "invalid_signature":
            envelope = TransactionEnvelope.from_xdr(held.unsigned_envelope_xdr,
                                                    sandbox.passphrase)
            envelope.sign(world.source)
            envelope.sign(Keypair.random())
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await world.stub.SubmitSignedTransaction(pb.SubmitSignedTransactionRequest(
                    payout_id="held", signed_envelope_xdr=envelope.to_xdr()))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "txBAD_AUTH_EXTRA" in refused.value.details()
        elif case == "history_lost":
            async def past_hand_out() -> bool:
                return await world.latest_ledger() > at + 1
            await eventually(past_hand_out, what="a ledger after the hand-out", within=30)
            restarted = await sandbox.restart_node(0)
            assert restarted["oldest_ledger"] > at + 1, restarted
        if case != "cancelled":
            # Nobody signs it: its number is held for one signing window, no longer.
            bound += EXTERNAL_WINDOW
        async with signing(world, skip={"held"}):
            ids = [f"next-{n}" for n in range(NEXT)]
            for n, payout_id in enumerate(ids):
                await world.create(payout_id, n)
            confirmed = [await wait_for_state(world.stub, p, pb.PAYOUT_STATE_CONFIRMED,
                                              within=90) for p in ids]
        spent = max(p.ledger for p in confirmed) - at
        print(f"\n[external/{case}] next {NEXT} payouts confirmed {spent} ledgers later")
        assert spent <= bound, f"took {spent} ledgers, bound {bound}"
        counts = await world.paid_at_most_once()
        assert await world.state("held") != pb.PAYOUT_STATE_CONFIRMED
    assert sum(counts.values()) == NEXT


async def test_a_cancelled_envelope_its_holder_submits_anyway_is_recorded_as_paid_once(
    payout_service_factory, sandbox
):
    """The external-signing hazard: the unsigned envelope was handed out, so its holder can
    sign and submit it after the cancel. Its number went to the next payout; whichever lands
    first consumes it. Here the holder wins: the cancelled payout is paid exactly once and
    the record says so, and the next payouts are rebuilt and confirm."""
    async with external_world(payout_service_factory, sandbox) as world:
        await world.create("held")
        held = await wait_for_state(world.stub, "held", pb.PAYOUT_STATE_AWAITING_SIGNATURE)
        await world.stub.CancelPayout(pb.CancelPayoutRequest(payout_id="held"))
        envelope = TransactionEnvelope.from_xdr(held.unsigned_envelope_xdr, sandbox.passphrase)
        envelope.sign(world.source)
        server = SorobanServerAsync(sandbox.rpc_url)
        try:
            sent = await server.send_transaction(envelope)
        finally:
            await server.close()
        assert sent.status.value == "PENDING", sent
        async with signing(world, skip={"held"}):
            ids = [f"next-{n}" for n in range(NEXT)]
            for n, payout_id in enumerate(ids):
                await world.create(payout_id, n + 1)
            for p in ids:
                await wait_for_state(world.stub, p, pb.PAYOUT_STATE_CONFIRMED, within=90)
            landed = await wait_for_state(world.stub, "held", pb.PAYOUT_STATE_CONFIRMED)
        counts = await world.paid_at_most_once()
    assert landed.tx_hash == envelope.hash_hex()
    assert sum(counts.values()) == NEXT + 1, "each payout paid exactly once"
