"""Exchange deposits paid and confirmed, judged by the sandbox's ledger: a muxed (M...)
destination and a memo, in classic batches and in Soroban mode (the SAC `transfer` to a
MuxedAddress, CAP-67).

Real PostgreSQL, the real pipeline and ledger gateway, the sandbox over HTTP, and the real
signer-service over mTLS (a hot key: its policy is what these tests are about, not the token).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from stellar_sdk import Keypair, MuxedAccount, SorobanServerAsync
from stellar_sdk import xdr as sx
from stellar_sdk.client.aiohttp_client import AiohttpClient

from payout_service.adapters.ledger import LedgerGateway
from payout_service.adapters.migrations import apply_migrations
from payout_service.adapters.payout_store import PayoutStore, create_pool
from payout_service.adapters.signer_client import SignerClient
from payout_service.app.desk import IdempotencyConflict, PayoutDesk
from payout_service.app.pipeline import Pipeline
from payout_service.config import load_config
from payout_service.core.errors import PreconditionFailed
from payout_service.core.payees import landed_payee_problem
from payout_service.core.validation import Memo, MemoKind
from payout_service.main import RunningService
from payout_service.metrics import REGISTRY
from signer_service.testing import SignerFixture, running_signer
from soroban_sandbox.server import SandboxConfig
from soroban_sandbox.testing import STANDALONE_PASSPHRASE, InProcessSandbox
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc
from tests.integration.rpcs import status_details
from tests.integration.test_batch_payouts import settle, shut
from tests.integration.test_live_with_signer import signer_env

XLM = 10_000_000


def deposit_policy(payer: str, *, allow_muxed: bool = True) -> dict[str, Any]:
    """Classic native payments and the SAC transfer, from the payer only; memos and muxed
    destinations as the test asks."""
    return {
        "source_accounts": [payer],
        "payments": {"assets": ["native"], "allow_memo": True,
                     "allow_muxed_destinations": allow_muxed},
        "max_amount_stroops_per_tx": 1_000 * XLM,
        "max_time_window_seconds": 900,
    }


@pytest.fixture
async def sandbox() -> AsyncIterator[InProcessSandbox]:
    async with InProcessSandbox(SandboxConfig(ledger_interval=0.3)) as running:
        yield running


@pytest.fixture(scope="module")
def payer() -> Keypair:
    return Keypair.random()


@pytest.fixture(scope="module")
async def signer(tmp_path_factory: pytest.TempPathFactory, payer: Keypair
                 ) -> AsyncIterator[SignerFixture]:
    async with running_signer(
        Path(tmp_path_factory.mktemp("signer")), network_passphrase=STANDALONE_PASSPHRASE,
        backend="hot", hot_secret=payer.secret, policy=deposit_policy(payer.public_key),
    ) as running:
        yield running


async def make_pipeline(database: str, sandbox: InProcessSandbox, signer: SignerFixture,
                        **extra: str) -> tuple[PayoutDesk, Pipeline]:
    await sandbox.fund(signer.public_key)
    config = load_config({
        **signer_env(signer), "DATABASE_URL": database,
        "PAYOUT_SOURCE_ACCOUNT": signer.public_key, "PAYOUTS_LIVE_EXECUTION": "true",
        "SOROBAN_RPC_URL": sandbox.rpc_url, "STELLAR_NETWORK_PASSPHRASE": sandbox.passphrase,
        "PAYOUTS_PLAINTEXT": "true", "PAYOUTS_CONFIRM_POLL_MS": "50", **extra,
    })
    assert config.signer is not None
    pool = await create_pool(database)
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    ledger = LedgerGateway(sandbox.rpc_url)
    desk = PayoutDesk(config, PayoutStore(pool), ledger)
    return desk, Pipeline(config, desk.attempts, ledger, SignerClient(config.signer))


async def create(desk: PayoutDesk, key: str, destination: str, amount: str,
                 memo: tuple[str, object] | None = None) -> None:
    request = desk.validate({"payout_id": key, "destination": destination, "amount": amount,
                             "asset": "XLM", "idempotency_key": key, "memo": memo})
    await desk.create(request, actor="test", correlation_id=key)


async def settle_with_hashes(desk: PayoutDesk, pipeline: Pipeline) -> dict[str, Any]:
    """settle's rows, each with the hash of the payout's last transaction."""
    rows = await settle(desk, pipeline)
    hashes = dict(await desk.store.pool.fetch(
        """SELECT p.payout_id, a.tx_hash FROM payouts p JOIN payout_attempts a
             ON a.payout_id = p.id AND a.number = p.attempt_count"""))
    messages = dict(await desk.store.pool.fetch("SELECT payout_id, failure_message FROM payouts"))
    return {k: {**dict(r), "tx_hash": hashes.get(k), "failure_message": messages[k]}
            for k, r in rows.items()}


async def landed(sandbox: InProcessSandbox, tx_hash: str) -> tuple[str, str]:
    """(envelope, meta) of the transaction the ledger holds under this hash (getTransaction)."""
    async with SorobanServerAsync(sandbox.rpc_url, client=AiohttpClient()) as server:
        found = await server.get_transaction(tx_hash)
    assert found.envelope_xdr is not None and found.result_meta_xdr is not None
    return found.envelope_xdr, found.result_meta_xdr


def landed_memo(envelope_xdr: str) -> sx.Memo:
    memo: sx.Memo = sx.TransactionEnvelope.from_xdr(envelope_xdr).v1.tx.memo
    return memo


def mismatches() -> float:
    """Confirmed payouts whose memo or muxed id the confirmer found not as asked."""
    return REGISTRY.get_sample_value("payouts_payee_mismatches_total") or 0.0


def checked(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The payouts whose memo or muxed id the confirmer read back and found as asked."""
    return sorted(getattr(r, "payout_id", "") for r in caplog.records
                  if r.getMessage() == "payee identification landed")


async def test_muxed_and_memo_payouts_are_paid_in_a_classic_batch_as_the_exchange_needs(
    fresh_database: str, sandbox: InProcessSandbox, signer: SignerFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="payout_service.app.confirm")
    desk, pipeline = await make_pipeline(fresh_database, sandbox, signer,
                                         PAYOUTS_BATCH_MODE="classic")
    exchange, plain = Keypair.random().public_key, Keypair.random().public_key
    for account in (exchange, plain):
        await sandbox.fund(account)
    before = (await sandbox.balances(exchange))["native"]
    mismatches_before = mismatches()
    customer_a = MuxedAccount(exchange, 1001).account_muxed
    customer_b = MuxedAccount(exchange, 2**64 - 1).account_muxed
    try:
        await create(desk, "plain", plain, "1")
        await create(desk, "muxed-a", customer_a, "2")
        await create(desk, "muxed-b", customer_b, "3")
        await create(desk, "memo-text", exchange, "4", ("text", "customer 7"))
        await create(desk, "memo-id", exchange, "5", ("id", 2**64 - 1))
        # The same idempotency key with another memo is the existing conflict, naming it.
        with pytest.raises(IdempotencyConflict) as conflict:
            await create(desk, "memo-text", exchange, "4", ("text", "customer 8"))
        assert [v.field for v in conflict.value.violations] == ["memo"]
        rows = await settle_with_hashes(desk, pipeline)
        webhooks = {r["payload"]["payout_id"]: r["payload"] for r in await desk.store.pool.fetch(
            """SELECT payload::jsonb AS payload FROM outbox_events
               WHERE event_type = 'payout.confirmed'""")}
    finally:
        await shut(desk, pipeline)

    assert {k: r["state"] for k, r in rows.items()} == dict.fromkeys(rows, "CONFIRMED"), rows
    # The confirmation webhooks carry what the payee is credited by.
    assert [(webhooks[k]["memo"], webhooks[k]["muxed_id"]) for k in
            ("plain", "muxed-b", "memo-text", "memo-id")] == [
        (None, None), (None, str(2**64 - 1)), ({"type": "text", "value": "customer 7"}, None),
        ({"type": "id", "value": str(2**64 - 1)}, None)]
    # Their proofs of payment say the same, as read from the landed transactions.
    assert [(webhooks[k]["proof"]["memo"], webhooks[k]["proof"]["muxed_id"]) for k in
            ("plain", "muxed-b", "memo-text", "memo-id")] == [
        (None, None), (None, str(2**64 - 1)), ({"type": "text", "value": "customer 7"}, None),
        ({"type": "id", "value": str(2**64 - 1)}, None)]
    # The memo payouts each in a transaction of their own; the others share one.
    hashes = {k: r["tx_hash"] for k, r in rows.items()}
    assert hashes["plain"] == hashes["muxed-a"] == hashes["muxed-b"]
    assert len({hashes["plain"], hashes["memo-text"], hashes["memo-id"]}) == 3
    # The ledger: the exchange's account credited once per payout.
    assert (await sandbox.balances(exchange))["native"] == before + 14 * XLM
    # Each deposit carries what identifies its customer (CAP-67: the muxed id, else the
    # transaction memo, in the payment event's to_muxed_id).
    moved = {(t["tx_hash"], t["amount_stroops"]): t for t in await sandbox.transfers()}
    assert moved[(hashes["muxed-a"], 2 * XLM)]["to_muxed_id"] == 1001
    assert moved[(hashes["muxed-b"], 3 * XLM)]["to_muxed_id"] == 2**64 - 1
    assert moved[(hashes["memo-text"], 4 * XLM)]["to_muxed_id"] == "customer 7"
    assert moved[(hashes["memo-text"], 4 * XLM)]["to_muxed_id_type"] == "string"
    assert moved[(hashes["memo-id"], 5 * XLM)]["to_muxed_id"] == 2**64 - 1
    assert moved[(hashes["plain"], 1 * XLM)]["to_muxed_id"] is None
    text_envelope, _ = await landed(sandbox, hashes["memo-text"])
    text = landed_memo(text_envelope)
    assert (text.type, text.text) == (sx.MemoType.MEMO_TEXT, b"customer 7")
    plain_envelope, plain_meta = await landed(sandbox, hashes["plain"])
    assert landed_memo(plain_envelope).type == sx.MemoType.MEMO_NONE
    # The confirmer read each back from the chain and found it as asked; the same judge
    # tells a wrong one.
    assert mismatches() == mismatches_before
    assert checked(caplog) == ["memo-id", "memo-text", "muxed-a", "muxed-b"]
    assert landed_payee_problem(text_envelope, "", op_index=0,
                                memo=Memo(MemoKind.TEXT, "customer 8"), muxed_id=None) == (
        "memo text:customer 7 landed, text:customer 8 was asked")
    ops = sx.TransactionEnvelope.from_xdr(plain_envelope).v1.tx.operations
    muxed_b = next(i for i, op in enumerate(ops)
                   if op.body.payment_op.destination.med25519 is not None
                   and op.body.payment_op.destination.med25519.id.uint64 == 2**64 - 1)
    assert landed_payee_problem(plain_envelope, plain_meta, op_index=muxed_b, memo=None,
                                muxed_id=2**64 - 1) is None
    assert "muxed id" in (landed_payee_problem(plain_envelope, plain_meta, op_index=muxed_b,
                                               memo=None, muxed_id=1001) or "")


async def test_a_muxed_payout_in_soroban_mode_is_a_sac_transfer_to_the_muxed_address(
    fresh_database: str, sandbox: InProcessSandbox, signer: SignerFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="payout_service.app.confirm")
    desk, pipeline = await make_pipeline(fresh_database, sandbox, signer)
    exchange = Keypair.random().public_key
    await sandbox.fund(exchange)
    before = (await sandbox.balances(exchange))["native"]
    mismatches_before = mismatches()
    try:
        await create(desk, "soroban-muxed", MuxedAccount(exchange, 77).account_muxed, "2")
        # A memo cannot ride on a Soroban transaction: refused before anything is stored.
        with pytest.raises(PreconditionFailed) as refused:
            await create(desk, "soroban-memo", exchange, "1", ("id", 5))
        assert refused.value.subject == "memo"
        rows = await settle_with_hashes(desk, pipeline)
        proof = await desk.store.pool.fetchrow("SELECT op_index, muxed_id, memo FROM payout_proofs")
    finally:
        await shut(desk, pipeline)

    assert list(rows) == ["soroban-muxed"]
    assert rows["soroban-muxed"]["state"] == "CONFIRMED", rows
    assert (await sandbox.balances(exchange))["native"] == before + 2 * XLM
    (moved,) = [t for t in await sandbox.transfers()
                if t["tx_hash"] == rows["soroban-muxed"]["tx_hash"]]
    assert (moved["function"], moved["to"], moved["to_muxed_id"]) == ("transfer", exchange, 77)
    # The confirmer found to_muxed_id 77 in the transfer event; the same judge tells a wrong one.
    assert mismatches() == mismatches_before
    assert checked(caplog) == ["soroban-muxed"]
    envelope, meta = await landed(sandbox, rows["soroban-muxed"]["tx_hash"])
    assert landed_payee_problem(envelope, meta, op_index=0, memo=None, muxed_id=77) is None
    assert (proof["op_index"], proof["muxed_id"], proof["memo"]) == (0, 77, "")
    assert landed_payee_problem(envelope, meta, op_index=0, memo=None, muxed_id=78) == (
        "muxed id 77 landed, 78 was asked")


async def test_over_grpc_a_29_byte_memo_is_invalid_argument_naming_the_field_and_nothing_is_stored(
    payout_stub: payout_pb2_grpc.PayoutServiceStub, payout_service: RunningService
) -> None:
    request = pb.CreatePayoutRequest(
        payout_id="p-29", destination=Keypair.random().public_key, amount="1", asset="XLM",
        idempotency_key="p-29", memo=pb.Memo(text="x" * 29))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await payout_stub.CreatePayout(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_details(caught.value) == [("memo.text", "29 bytes, at most 28")]
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await payout_stub.GetPayout(pb.GetPayoutRequest(payout_id="p-29"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_over_grpc_a_muxed_payout_shows_its_id_and_a_memo_off_classic_is_refused(
    payout_stub: payout_pb2_grpc.PayoutServiceStub
) -> None:
    account = Keypair.random().public_key
    muxed = MuxedAccount(account, 2**64 - 1).account_muxed
    created = await payout_stub.CreatePayout(pb.CreatePayoutRequest(
        payout_id="m-1", destination=muxed, amount="1", asset="XLM", idempotency_key="m-1"),
        timeout=10)
    got = (await payout_stub.GetPayout(pb.GetPayoutRequest(payout_id="m-1"), timeout=10)).payout
    listed = (await payout_stub.ListPayouts(pb.ListPayoutsRequest(), timeout=10)).payouts
    for shown in (created.payout, got, *listed):
        assert (shown.destination, shown.muxed_id) == (muxed, 2**64 - 1)
        assert not shown.HasField("memo")
    # Another muxed id under the same key is the conflict, naming the destination.
    with pytest.raises(grpc.aio.AioRpcError) as conflict:
        await payout_stub.CreatePayout(pb.CreatePayoutRequest(
            payout_id="m-1", destination=MuxedAccount(account, 1).account_muxed, amount="1",
            asset="XLM", idempotency_key="m-1"), timeout=10)
    assert conflict.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert [f for f, _ in status_details(conflict.value)] == ["destination"]
    # This service hands out single Soroban transactions (build-only): no memo rides on them.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await payout_stub.CreatePayout(pb.CreatePayoutRequest(
            payout_id="memo-1", destination=account, amount="1", asset="XLM",
            idempotency_key="memo-1", memo=pb.Memo(id=5)), timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "PAYOUTS_BATCH_MODE=classic" in refused.value.details()


@pytest.mark.parametrize("batch_mode", ["classic", "off"])
async def test_a_signer_whose_policy_forbids_muxed_destinations_refuses_them_naming_the_rule(
    fresh_database: str, sandbox: InProcessSandbox, tmp_path: Path, batch_mode: str
) -> None:
    payer = Keypair.random()
    async with running_signer(
        tmp_path, network_passphrase=STANDALONE_PASSPHRASE, backend="hot",
        hot_secret=payer.secret, policy=deposit_policy(payer.public_key, allow_muxed=False),
    ) as strict:
        desk, pipeline = await make_pipeline(fresh_database, sandbox, strict,
                                             PAYOUTS_BATCH_MODE=batch_mode)
        exchange = Keypair.random().public_key
        await sandbox.fund(exchange)
        before = (await sandbox.balances(exchange))["native"]
        try:
            await create(desk, "muxed", MuxedAccount(exchange, 5).account_muxed, "1")
            rows = await settle_with_hashes(desk, pipeline)
        finally:
            await shut(desk, pipeline)

    (row,) = rows.values()
    assert (row["state"], row["failure_code"]) == ("FAILED", "signer_refused")
    assert "destinations" in row["failure_message"] and "muxed" in row["failure_message"]
    assert (await sandbox.balances(exchange))["native"] == before


@pytest.mark.parametrize(("destination", "memo_type", "memo_value", "muxed_id", "constraint"), [
    ("G", "text", "x" * 29, None, "memo_value_fits_its_type"),
    ("G", "text", "€" * 10, None, "memo_value_fits_its_type"),  # 10 characters, 30 bytes
    ("G", "id", str(2**64), None, "memo_value_fits_its_type"),
    ("G", "hash", "ab" * 31, None, "memo_value_fits_its_type"),
    ("G", "return", "AB" * 32, None, "memo_value_fits_its_type"),  # stored lower-case
    ("G", "text", None, None, "memo_type_and_value_together"),
    ("G", None, "x", None, "memo_type_and_value_together"),
    # Breaks two constraints: either may be the one reported.
    ("G", "note", "x", None, "payouts_memo_type_check|memo_value_fits_its_type"),
    ("M", None, None, None, "muxed_id_iff_muxed_destination"),
    ("G", None, None, 5, "muxed_id_iff_muxed_destination"),
    ("M", None, None, 2**64, "payouts_muxed_id_check"),
])
async def test_the_database_refuses_a_memo_or_muxed_id_the_network_could_not_carry(
    pool: asyncpg.Pool, destination: str, memo_type: str | None, memo_value: str | None,
    muxed_id: int | None, constraint: str,
) -> None:
    account = Keypair.random().public_key
    address = MuxedAccount(account, 1).account_muxed if destination == "M" else account
    with pytest.raises(asyncpg.CheckViolationError) as refused:
        await pool.execute(
            """INSERT INTO payouts (id, payout_id, idempotency_key, fingerprint, parameters,
                   destination, asset, gross_stroops, fee_stroops, net_stroops, state, mode,
                   memo_type, memo_value, muxed_id)
               VALUES (gen_random_uuid(), 'p', 'k', 'f', '{}', $1, 'XLM', 1, 0, 1, 'ACCEPTED',
                       'SIGNER_SERVICE', $2, $3, $4)""",
            address, memo_type, memo_value, muxed_id)
    assert refused.value.constraint_name in constraint.split("|")
