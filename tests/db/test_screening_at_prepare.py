"""A denied destination is never paid: refused at creation with nothing stored, and a payout
accepted before its destination was denied fails before anything is built, so the signer
never sees it (the lists are read again by the preparer, as the payee route is)."""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair, MuxedAccount, StrKey
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service.adapters import screening_store as store
from payout_service.adapters.signer_client import SignerUnavailable
from payout_service.app.rounds import RoundDesk
from payout_service.core.errors import ScreeningDenied
from payout_service.core.rounds import WinnerInput
from payout_service.core.screening import ListKind, ScreeningEntry
from payout_service.core.validation import AmountLimits, validate_payout_request
from tests.db.fake_pipeline import NET, attempts_by_payout, run_until_settled, states, world

__all__ = ["world"]


def request(payout_id: str, destination: str):  # type: ignore[no-untyped-def]
    return validate_payout_request(
        payout_id=payout_id, destination=destination, amount="5", asset="XLM",
        idempotency_key=payout_id, metadata={}, reference="", limits=AmountLimits())


async def deny(pool, address: str, reason: str = "sanctions") -> None:  # type: ignore[no-untyped-def]
    await store.add_entry(pool, ScreeningEntry(address, ListKind.DENY, reason), actor="admin-cn",
                          correlation_id="c")


async def test_a_destination_denied_after_creation_fails_unbuilt_and_never_reaches_the_signer(
        world):
    make, _ = world
    desk, pipeline, ledger, signer = make("signer")
    denied, muxed_over = Keypair.random().public_key, Keypair.random().public_key
    muxed = MuxedAccount(muxed_over, 42).account_muxed or ""
    for payout_id, destination in [("denied", denied), ("muxed", muxed),
                                   ("plain", Keypair.random().public_key)]:
        await desk.create(request(payout_id, destination), actor="test", correlation_id="c")
    await deny(desk.store.pool, denied)
    await deny(desk.store.pool, muxed_over, "account frozen")  # denies every muxed id over it
    signed: list[str] = []
    sign = signer.sign_transaction

    async def recording(envelope_xdr: str, **kw: object):  # type: ignore[no-untyped-def]
        signed.append(envelope_xdr)
        return await sign(envelope_xdr, **kw)

    signer.sign_transaction = recording  # type: ignore[method-assign]
    await run_until_settled(pipeline, ledger, rounds=6)
    assert await states(desk) == {"denied": "FAILED", "muxed": "FAILED", "plain": "CONFIRMED"}
    rows = {r["payout_id"]: r for r in await desk.store.pool.fetch(
        "SELECT payout_id, failure_code, failure_message FROM payouts")}
    assert rows["denied"]["failure_code"] == "screening_denied"
    assert rows["denied"]["failure_message"] == "destination: on the deny list: sanctions"
    assert rows["muxed"]["failure_message"] == "destination: on the deny list: account frozen"
    built = await attempts_by_payout(desk)
    assert "denied" not in built and "muxed" not in built, "nothing was built for them"
    seen = " ".join(str(TransactionEnvelope.from_xdr(x, NET).transaction.operations)
                    for x in signed)
    assert signed and denied not in seen and muxed_over not in seen


async def test_an_attempt_built_before_the_denial_is_never_signed(world):
    """The signer was away when the attempt was built; the destination is denied before it
    comes back: the built envelope is not signed, the payout fails with screening_denied."""
    make, _ = world
    desk, pipeline, ledger, signer = make("signer")
    denied = Keypair.random().public_key
    await desk.create(request("late", denied), actor="test", correlation_id="c")
    signer.unavailable = True
    with pytest.raises(SignerUnavailable):
        await pipeline.prepare_once()
    assert [s for s, _ in (await attempts_by_payout(desk))["late"]] == ["built"]
    await deny(desk.store.pool, denied)
    signer.unavailable = False
    signed: list[str] = []

    async def recording(envelope_xdr: str, **_: object):  # type: ignore[no-untyped-def]
        signed.append(envelope_xdr)
        raise AssertionError("a denied destination reached the signer")

    signer.sign_transaction = recording  # type: ignore[method-assign]
    await run_until_settled(pipeline, ledger, rounds=3)
    assert await states(desk) == {"late": "FAILED"} and not signed
    row = await desk.store.pool.fetchrow("SELECT failure_code FROM payouts")
    assert row["failure_code"] == "screening_denied"
    assert [s for s, _ in (await attempts_by_payout(desk))["late"]] == ["rejected"]


async def test_a_denied_destination_is_refused_at_creation_and_nothing_is_stored(world):
    make, _ = world
    desk, _, _, _ = make("signer")
    denied = Keypair.random().public_key
    await deny(desk.store.pool, denied)
    with pytest.raises(ScreeningDenied) as refused:
        await desk.create(request("one", denied), actor="test", correlation_id="c")
    assert refused.value.subject == "destination" and "sanctions" in str(refused.value)
    bulk = [request("ok", Keypair.random().public_key), request("bad", denied)]
    with pytest.raises(ScreeningDenied) as refused:
        await desk.create_many(bulk, actor="test", correlation_id="c", item_field="items")
    assert refused.value.subject == "items[1].destination"
    assert await states(desk) == {}, "no row, not even the bulk's allowed item"


async def test_allow_list_only_mode_pays_only_listed_destinations(world):
    make, _ = world
    desk, _, _, _ = make("signer", PAYOUTS_SCREENING_ALLOWLIST_ONLY="true")
    listed = Keypair.random().public_key
    await store.add_entry(desk.store.pool, ScreeningEntry(listed, ListKind.ALLOW, "payee"),
                          actor="admin-cn", correlation_id="c")
    await desk.create(request("listed", listed), actor="test", correlation_id="c")
    with pytest.raises(ScreeningDenied, match="allow list"):
        await desk.create(request("stranger", Keypair.random().public_key), actor="test",
                          correlation_id="c")
    assert set(await states(desk)) == {"listed"}


async def test_every_change_is_audited_with_its_actor(world):
    make, _ = world
    desk, _, _, _ = make("signer")
    pool, address = desk.store.pool, Keypair.random().public_key
    entry = ScreeningEntry(address, ListKind.DENY, "sanctions")
    first, created = await store.add_entry(pool, entry, actor="alice", correlation_id="c1")
    again, created_again = await store.add_entry(pool, entry, actor="bob", correlation_id="c2")
    assert created and not created_again and again.added_by == "alice" == first.added_by
    removed = await store.remove_entry(pool, address, ListKind.DENY, reason="cleared",
                                       actor="carol", correlation_id="c3")
    assert removed is not None and removed.entry == entry
    assert await store.remove_entry(pool, address, ListKind.DENY, reason="again",
                                    actor="carol", correlation_id="c4") is None
    changes = await pool.fetch(
        "SELECT change, reason, actor, correlation_id FROM screening_changes ORDER BY id")
    assert [tuple(r) for r in changes] == [("added", "sanctions", "alice", "c1"),
                                           ("removed", "cleared", "carol", "c3")]


async def test_a_batch_built_before_the_denial_is_rebuilt_without_the_denied_payout(world):
    make, _ = world
    contract = StrKey.encode_contract(bytes(32))
    desk, pipeline, ledger, signer = make("signer", PAYOUTS_BATCH_MODE="contract",
                                          PAYOUT_CONTRACT_ID=contract)
    denied = Keypair.random().public_key
    await desk.create(request("late", denied), actor="test", correlation_id="c")
    await desk.create(request("fine", Keypair.random().public_key), actor="test",
                      correlation_id="c")
    signer.unavailable = True
    with pytest.raises(SignerUnavailable):
        await pipeline.prepare_once()
    batched = await desk.store.pool.fetchval(
        "SELECT count(DISTINCT batch_id) FROM payout_attempts WHERE status = 'built'")
    assert batched == 1
    await deny(desk.store.pool, denied)
    signer.unavailable = False
    await run_until_settled(pipeline, ledger, rounds=6)
    assert await states(desk) == {"late": "FAILED", "fine": "CONFIRMED"}
    row = await desk.store.pool.fetchrow(
        "SELECT failure_code FROM payouts WHERE payout_id = 'late'")
    assert row["failure_code"] == "screening_denied"


async def test_a_round_with_a_denied_winner_is_not_resolved_and_pays_nobody(world):
    make, _ = world
    desk, _, _, _ = make("signer")
    rounds = RoundDesk(desk)
    denied = Keypair.random().public_key
    await deny(desk.store.pool, denied)
    await rounds.create("r1", "XLM")
    await rounds.close("r1")
    winners = [WinnerInput(1, Keypair.random().public_key, "5"), WinnerInput(2, denied, "3")]
    with pytest.raises(ScreeningDenied) as refused:
        await rounds.resolve("r1", winners, actor="admin-cn", correlation_id="c")
    assert refused.value.subject == "winners[1].destination"
    assert (await rounds.get("r1")).state == "CLOSED" and await states(desk) == {}



async def test_a_retry_of_a_payout_created_before_the_denial_gets_the_stored_payout(world):
    """Idempotency holds: the caller whose answer was lost gets the payout it created; the
    preparer fails it (screening_denied) instead."""
    make, _ = world
    desk, _, _, _ = make("signer")
    denied = Keypair.random().public_key
    first = await desk.create(request("once", denied), actor="test", correlation_id="c")
    await deny(desk.store.pool, denied)
    again = await desk.create(request("once", denied), actor="test", correlation_id="c")
    assert not again.created and again.payout.id == first.payout.id
