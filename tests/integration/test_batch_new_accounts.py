"""New destination accounts in classic batches, judged by the sandbox's ledger: an account is
created once however many payouts it gets, and a batch that fails on chain blames the payouts
whose own operations failed, never the others.

Real PostgreSQL, the real pipeline and ledger gateway, the sandbox over HTTP through
stellar-sdk, and the real signer-service over mTLS (tests/integration/batch_signing.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stellar_sdk import Keypair
from stellar_sdk.operation import CreateAccount
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service.core.batches import REBATCHED
from payout_service.core.model import NewAttempt, Payout
from soroban_sandbox.testing import InProcessSandbox
from tests.integration.batch_signing import XLM, BatchSigner
from tests.integration.test_batch_payouts import create, make_pipeline, settle, shut
from tests.integration.test_batch_payouts import sandbox as fast_sandbox

sandbox = fast_sandbox  # the fixture: ledgers close every 0.3 s


async def test_two_payouts_to_one_new_account_in_one_pass_create_it_once(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    """Batches of two: one pass plans [new-1 creates N, known-1] and then [known-2, new-2].
    new-2 must wait while N's CreateAccount is in flight (a second CreateAccount would fail
    CREATE_ACCOUNT_ALREADY_EXIST and take known-2 down with it), then be paid by a Payment."""
    desk, pipeline = await make_pipeline(fresh_database, sandbox, batch_signer,
                                         PAYOUTS_MAX_PAYOUTS_PER_TX="2")
    known = [Keypair.random().public_key for _ in range(2)]
    for address in known:
        await sandbox.fund(address)
    new_account = Keypair.random().public_key
    before = [(await sandbox.balances(a))["native"] for a in known]
    await create(desk, "new-1", new_account, "5", "XLM")
    await create(desk, "new-2", new_account, "3", "XLM")
    await create(desk, "known-1", known[0], "2", "XLM")
    await create(desk, "known-2", known[1], "2", "XLM")

    await pipeline.prepare_once()
    rows = await settle(desk, pipeline)

    assert {k: (r["state"], r["attempt_count"]) for k, r in rows.items()} == {
        k: ("CONFIRMED", 1) for k in ("new-1", "new-2", "known-1", "known-2")}, \
        "every payout paid by its first attempt"
    pool = desk.store.pool
    assert await pool.fetchval(
        "SELECT count(*) FROM payout_attempts WHERE status <> 'included'") == 0, \
        "no batch failed, no attempt was spent"
    envelopes = await pool.fetch("SELECT DISTINCT tx_hash, envelope_xdr FROM payout_attempts")
    creates = [op.destination for e in envelopes for op in TransactionEnvelope.from_xdr(
        e["envelope_xdr"], sandbox.passphrase).transaction.operations
        if isinstance(op, CreateAccount)]
    assert creates == [new_account], "one CreateAccount for the new account"
    assert (await sandbox.balances(new_account))["native"] == 8 * XLM
    after = [(await sandbox.balances(a))["native"] for a in known]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2 * XLM] * 2
    await shut(desk, pipeline)


async def test_an_account_created_meanwhile_blames_its_create_not_the_batch(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    """The batch [create N, pay K] is built; someone else creates N before it lands. The batch
    fails on chain: the CreateAccount's payout spends a counted attempt (its own operation
    failed: CREATE_ACCOUNT_ALREADY_EXIST) and is paid by a Payment next; the payment to K
    succeeded inside the failed batch, so its payout is re-batched without spending one."""
    desk, pipeline = await make_pipeline(fresh_database, sandbox, batch_signer)
    known = Keypair.random().public_key
    await sandbox.fund(known)
    new_account = Keypair.random().public_key
    await create(desk, "to-new", new_account, "5", "XLM")
    await create(desk, "to-known", known, "2", "XLM")
    await pipeline.prepare_once()  # one batch, signed, not sent
    await sandbox.fund(new_account)  # an outside party creates the account first
    assert await sandbox.account(new_account) is not None
    funded = (await sandbox.balances(new_account))["native"]

    rows = await settle(desk, pipeline)

    assert {k: r["state"] for k, r in rows.items()} == {
        "to-new": "CONFIRMED", "to-known": "CONFIRMED"}
    attempts = await desk.store.pool.fetch(
        """SELECT p.payout_id, a.status, a.result_code FROM payout_attempts a
           JOIN payouts p ON p.id = a.payout_id ORDER BY p.payout_id, a.number""")
    assert [tuple(r) for r in attempts] == [
        ("to-known", "failed_on_chain", REBATCHED), ("to-known", "included", "txSUCCESS"),
        ("to-new", "failed_on_chain", "CREATE_ACCOUNT_ALREADY_EXIST"),
        ("to-new", "included", "txSUCCESS")]
    assert (await sandbox.balances(new_account))["native"] == funded + 5 * XLM, \
        "paid once, by a Payment"
    await shut(desk, pipeline)


async def test_the_database_refuses_a_second_live_create_of_one_account(
    fresh_database: str, sandbox: InProcessSandbox, batch_signer: BatchSigner
) -> None:
    """Two replicas planning at once could both find no create in flight: the second batch
    is refused as a whole (nothing stored, no number kept) and its payout planned again."""
    desk, pipeline = await make_pipeline(fresh_database, sandbox, batch_signer)
    new_account = Keypair.random().public_key
    await create(desk, "first", new_account, "5", "XLM")
    await pipeline.prepare_once()  # its CreateAccount is built and signed
    await create(desk, "second", new_account, "3", "XLM")
    second = await desk.store.get_payout("second")
    assert second is not None
    pool = desk.store.pool
    next_before = await pool.fetchval("SELECT next_sequence FROM source_accounts")

    def build(payouts: list[Payout], source: str, sequence: int) -> NewAttempt:
        now = datetime.now(UTC)
        return NewAttempt(source, sequence, now, now + timedelta(seconds=30), "envelope",
                          "other-hash", 100)

    created = await pipeline.batches.create_batch(
        [second.id], build, source_account=batch_signer.payer, creates={second.id: new_account})
    assert created == []
    assert await pool.fetchval("SELECT count(*) FROM payout_attempts") == 1
    assert await pool.fetchval("SELECT next_sequence FROM source_accounts") == next_before
    assert await pool.fetchval(
        "SELECT needs_attempt FROM payouts WHERE payout_id = 'second'") is True
    await shut(desk, pipeline)
