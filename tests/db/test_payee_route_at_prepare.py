"""A payout is paid as it was asked or not at all: a memo payout accepted in classic batch
mode, then met by a preparer whose configuration cannot carry a memo (the service restarted
with batching off), fails before anything is built, never paid without its memo."""

from __future__ import annotations

from stellar_sdk import Keypair

from payout_service.core.validation import AmountLimits, validate_payout_request
from tests.db.fake_pipeline import attempts_by_payout, run_until_settled, states, world

__all__ = ["world"]


async def test_a_memo_payout_the_new_configuration_cannot_carry_fails_unbuilt(world):
    make, _ = world
    classic, _, _, _ = make("signer", PAYOUTS_BATCH_MODE="classic")
    request = validate_payout_request(
        payout_id="deposit", destination=Keypair.random().public_key, amount="5", asset="XLM",
        idempotency_key="deposit", metadata={}, reference="", limits=AmountLimits(),
        memo=("id", 123))
    await classic.create(request, actor="test", correlation_id="c")
    plain = validate_payout_request(
        payout_id="plain", destination=Keypair.random().public_key, amount="5", asset="XLM",
        idempotency_key="plain", metadata={}, reference="", limits=AmountLimits())
    await classic.create(plain, actor="test", correlation_id="c")
    desk, pipeline, ledger, _ = make("signer", PAYOUTS_BATCH_MODE="off")  # restarted so
    await run_until_settled(pipeline, ledger, rounds=6)
    assert await states(desk) == {"deposit": "FAILED", "plain": "CONFIRMED"}
    row = await desk.store.pool.fetchrow(
        "SELECT failure_code, failure_message FROM payouts WHERE payout_id = 'deposit'")
    assert row["failure_code"] == "payee_route" and row["failure_message"].startswith("memo:")
    assert "deposit" not in await attempts_by_payout(desk), "nothing was built for it"
