"""CreatePayoutBatch (bulk requests) and reference eligibility, over gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.eligibility import check_reference_unpaid
from payout_service.core.errors import ValidationFailed
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

from .conftest import fail
from .helpers import field_violations

A, B = Keypair.random().public_key, Keypair.random().public_key
ACCEPTED, DUPLICATE, INVALID = (
    pb.BATCH_ITEM_OUTCOME_ACCEPTED, pb.BATCH_ITEM_OUTCOME_DUPLICATE, pb.BATCH_ITEM_OUTCOME_INVALID,
)


def item(n: int, **overrides: object) -> pb.CreatePayoutRequest:
    fields: dict[str, object] = {
        "payout_id": f"p-{n}", "destination": A, "amount": "10", "asset": "XLM",
        "idempotency_key": f"k-{n}",
    }
    fields.update(overrides)
    return pb.CreatePayoutRequest(**fields)  # type: ignore[arg-type]


async def test_a_batch_is_created_whole_with_its_duplicates_replayed(stack):
    await stack.payouts.CreatePayout(item(0))
    response = await stack.payouts.CreatePayoutBatch(pb.CreatePayoutBatchRequest(
        batch_id="weekly-42",
        items=[
            item(1),
            item(0),  # same key, same parameters as the payout made before
            item(4, destination=B, amount="2.5"),
            item(1),  # repeats item 0 of this batch
        ],
    ))
    assert response.batch_id == "weekly-42"
    outcomes = [(r.index, r.outcome) for r in response.results]
    assert outcomes == [(0, ACCEPTED), (1, DUPLICATE), (2, ACCEPTED), (3, DUPLICATE)]
    r = response.results
    assert r[0].payout.batch_id == "weekly-42" and r[0].payout.state == pb.PAYOUT_STATE_BUILT
    assert r[1].payout.payout_id == "p-0" and r[1].payout.batch_id == ""
    assert r[3].payout.id == r[0].payout.id
    listed = await stack.payouts.ListPayouts(pb.ListPayoutsRequest(batch_id="weekly-42"))
    assert {p.payout_id for p in listed.payouts} == {"p-1", "p-4"}


async def test_one_invalid_item_rejects_the_whole_batch_naming_every_problem(stack):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.payouts.CreatePayoutBatch(pb.CreatePayoutBatchRequest(items=[
            item(1),
            item(2, destination="GBROKEN", amount="-3"),
            item(3),
            item(5, amount="abc"),
        ]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(err.value)) == \
        {"items[1].destination", "items[1].amount", "items[3].amount"}
    assert await stack.pool.fetchval("SELECT count(*) FROM payouts") == 0, "all or nothing"


async def test_a_key_reused_with_other_parameters_rejects_the_whole_batch(stack):
    await stack.payouts.CreatePayout(item(0))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.payouts.CreatePayoutBatch(pb.CreatePayoutBatchRequest(items=[
            item(1), item(3, idempotency_key="k-0"),
        ]))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "items[1].payout_id" in field_violations(err.value)
    assert await stack.pool.fetchval("SELECT count(*) FROM payouts") == 1


async def test_batch_id_is_generated_when_empty(stack):
    response = await stack.payouts.CreatePayoutBatch(pb.CreatePayoutBatchRequest(items=[item(1)]))
    assert response.batch_id.startswith("batch-")
    assert response.results[0].payout.batch_id == response.batch_id


async def test_batch_over_the_limit_is_rejected_whole(stack_factory):
    stack = await stack_factory(PAYOUTS_MAX_BULK_ITEMS=3)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.payouts.CreatePayoutBatch(
            pb.CreatePayoutBatchRequest(items=[item(n) for n in range(4)])
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "PAYOUTS_MAX_BULK_ITEMS" in field_violations(err.value)["items"]
    assert await stack.pool.fetchval("SELECT count(*) FROM payouts") == 0
    ok = await stack.payouts.CreatePayoutBatch(
        pb.CreatePayoutBatchRequest(items=[item(n) for n in range(3)])
    )
    assert [r.outcome for r in ok.results] == [ACCEPTED] * 3


async def test_default_limit_is_500(stack):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.payouts.CreatePayoutBatch(
            pb.CreatePayoutBatchRequest(items=[item(n) for n in range(501)])
        )
    assert "at most 500" in field_violations(err.value)["items"]


async def test_a_reference_paid_twice_in_a_batch_rejects_it(stack):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.payouts.CreatePayoutBatch(pb.CreatePayoutBatchRequest(items=[
            item(1, reference="task-789"),
            item(2, reference="task-789", destination=B),
        ]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    problems = field_violations(err.value)
    assert list(problems) == ["items[1].reference"] and "p-1" in problems["items[1].reference"]
    response = await stack.payouts.CreatePayoutBatch(pb.CreatePayoutBatchRequest(items=[
        item(1, reference="task-789"),
        item(1, reference="task-789"),  # the same payout again is a duplicate, not a 2nd pay
    ]))
    assert [r.outcome for r in response.results] == [ACCEPTED, DUPLICATE]


async def test_a_failed_payout_frees_its_reference(stack):
    await stack.payouts.CreatePayoutBatch(
        pb.CreatePayoutBatchRequest(items=[item(1, reference="task-1")])
    )
    await fail(stack.pool, "p-1")
    response = await stack.payouts.CreatePayoutBatch(
        pb.CreatePayoutBatchRequest(items=[item(2, reference="task-1")])
    )
    assert response.results[0].outcome == ACCEPTED


async def test_check_reference_unpaid_ignores_the_payout_itself(stack):
    await stack.payouts.CreatePayoutBatch(
        pb.CreatePayoutBatchRequest(items=[item(1, reference="task-1")])
    )
    await check_reference_unpaid(stack.pool, "task-1", "k-1")
    await check_reference_unpaid(stack.pool, "", "k-9")
    with pytest.raises(ValidationFailed) as err:
        await check_reference_unpaid(stack.pool, "task-1", "k-9")
    assert err.value.violations[0].field == "reference"


async def test_concurrent_batches_pay_a_reference_once(stack):
    batches = [
        pb.CreatePayoutBatchRequest(items=[item(n, reference="task-x")]) for n in range(6)
    ]
    answers = await asyncio.gather(*(stack.payouts.CreatePayoutBatch(b) for b in batches),
                                   return_exceptions=True)
    refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert len(refused) == len(batches) - 1
    assert all(a.code() == grpc.StatusCode.INVALID_ARGUMENT
               and "items[0].reference" in field_violations(a) for a in refused)
    paid = await stack.pool.fetchval("SELECT count(*) FROM payouts WHERE reference = 'task-x'")
    assert paid == 1
