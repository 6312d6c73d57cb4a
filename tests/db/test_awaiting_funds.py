"""Balance awareness: a payer short of funds holds its payouts in AWAITING_FUNDS with nothing
built (no fee spent), raises the AWAITING_FUNDS alert, and releases them in creation order
once a balance read covers them; a failed balance read holds nothing."""

from __future__ import annotations

from stellar_sdk import Keypair

from payout_service.adapters.transitions import move_for_funds
from payout_service.app.monitoring import Monitor
from payout_service.core.health import AlertKind, AlertThresholds
from payout_service.core.validation import AmountLimits, validate_payout_request
from tests.db.fake_pipeline import attempts_by_payout, run_until_settled, states, world

__all__ = ["world"]

XLM = 10_000_000
FEE = 2_000_000  # PAYOUTS_MAX_GAS_STROOPS' default: what the payer may pay per transaction


async def create(desk, name: str, amount: str = "1", asset: str = "XLM") -> None:
    request = validate_payout_request(
        payout_id=name, destination=Keypair.random().public_key, amount=amount, asset=asset,
        idempotency_key=name, metadata={}, reference="", limits=AmountLimits())
    await desk.create(request, actor="test", correlation_id="c")


async def open_alerts(desk) -> set[str]:
    monitor = Monitor(desk.store.pool, AlertThresholds())
    await monitor.evaluate()
    return {a.kind.value for a in await monitor.alerts(["ACTIVE", "ACKNOWLEDGED"])}


async def test_a_short_payer_holds_payouts_unbuilt_and_releases_them_after_a_top_up(world):
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    for name in ("p1", "p2", "p3"):
        await create(desk, name)
    ledger.funds = {"XLM": XLM + FEE - 1}  # one stroop short of the first payout
    reads = ledger.funds_reads
    await pipeline.prepare_once()
    assert ledger.funds_reads == reads + 1, "one balance read a pass, not one per payout"
    assert await states(desk) == dict.fromkeys(("p1", "p2", "p3"), "AWAITING_FUNDS")
    assert await attempts_by_payout(desk) == {}, "nothing built, no fee spent"
    assert ledger.sends == 0
    assert AlertKind.AWAITING_FUNDS.value in await open_alerts(desk)

    ledger.funds = {"XLM": XLM + FEE}  # exactly the first: it goes, the others keep waiting
    await pipeline.prepare_once()
    assert await states(desk) == {"p1": "ACCEPTED", "p2": "AWAITING_FUNDS",
                                  "p3": "AWAITING_FUNDS"}
    await pipeline.prepare_once()  # released payouts are built from the next pass on
    assert await states(desk) == {"p1": "QUEUED", "p2": "AWAITING_FUNDS",
                                  "p3": "AWAITING_FUNDS"}
    assert list(await attempts_by_payout(desk)) == ["p1"]

    ledger.funds = {"XLM": 10 * (XLM + FEE)}  # topped up (the fake never debits)
    await run_until_settled(pipeline, ledger, rounds=6)
    assert await states(desk) == dict.fromkeys(("p1", "p2", "p3"), "CONFIRMED")
    assert AlertKind.AWAITING_FUNDS.value not in await open_alerts(desk)


async def test_a_later_payout_never_overtakes_a_held_one_of_the_same_asset(world):
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    await create(desk, "big", amount="5")
    await create(desk, "small")
    ledger.funds = {"XLM": 2 * (XLM + FEE)}  # covers "small", not "big" ahead of it
    await pipeline.prepare_once()
    assert await states(desk) == {"big": "AWAITING_FUNDS", "small": "AWAITING_FUNDS"}
    assert await attempts_by_payout(desk) == {}


async def test_a_short_asset_never_holds_back_another(world):
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    usd = f"USD:{Keypair.random().public_key}"
    await create(desk, "usd", asset=usd)
    await create(desk, "xlm")
    ledger.funds = {"XLM": 100 * XLM, usd: 0}
    await run_until_settled(pipeline, ledger, rounds=4)
    assert await states(desk) == {"usd": "AWAITING_FUNDS", "xlm": "CONFIRMED"}


async def held_one(make):
    """A pipeline whose payer has nothing, and payout p1 held by it."""
    desk, pipeline, ledger, _ = make("signer")
    await create(desk, "p1")
    ledger.funds = {"XLM": 0}
    await pipeline.prepare_once()
    assert await states(desk) == {"p1": "AWAITING_FUNDS"}
    return desk, pipeline, ledger


async def test_a_failed_balance_read_holds_nothing(world):
    make, _ = world
    desk, pipeline, ledger = await held_one(make)
    ledger.funds_unavailable = True  # fail open: the chain's own check stands
    await run_until_settled(pipeline, ledger, rounds=4)
    assert await states(desk) == {"p1": "CONFIRMED"}


async def test_the_check_switched_off_releases_held_payouts(world):
    make, _ = world
    await held_one(make)
    desk, pipeline, ledger, _ = make("signer", PAYOUTS_FUNDS_CHECK="false")
    ledger.funds = {"XLM": 0}
    await run_until_settled(pipeline, ledger, rounds=4)
    assert await states(desk) == {"p1": "CONFIRMED"}
    assert ledger.funds_reads == 0


async def test_a_held_payout_can_be_cancelled(world):
    make, _ = world
    desk, _, _ = await held_one(make)
    payout_uuid = await desk.store.pool.fetchval("SELECT id FROM payouts")
    await desk.attempts.cancel(payout_uuid, actor="test", reason="not needed")
    assert await states(desk) == {"p1": "CANCELLED"}


async def test_a_payout_another_replica_built_meanwhile_is_never_held(world):
    """A replica decides to hold from a list read before another replica built the payout:
    the hold is skipped, so a built payout never sits in AWAITING_FUNDS, where it could be
    neither signed nor rebuilt."""
    make, _ = world
    desk, pipeline, ledger, _ = make("signer")
    await create(desk, "p1")
    ledger.funds = {"XLM": 10 * (XLM + FEE)}
    await pipeline.prepare_once()  # built (and signed): needs_attempt is false now
    built = await states(desk)
    assert built == {"p1": "QUEUED"}
    [payout_uuid] = [r["id"] for r in await desk.store.pool.fetch("SELECT id FROM payouts")]
    await desk.store.pool.execute(  # as if the stale replica saw it ACCEPTED
        "UPDATE payouts SET state = 'ACCEPTED' WHERE id = $1", payout_uuid)
    held, released = await move_for_funds(desk.store.pool, [payout_uuid], [], reason="stale")
    assert (held, released) == (0, 0)
    assert await states(desk) == {"p1": "ACCEPTED"}
