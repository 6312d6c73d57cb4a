"""A caller as production should write one: every CreatePayout carries an idempotency key,
and what gRPC says may be retried (UNAVAILABLE; DEADLINE_EXCEEDED, as the call may or may
not have landed) is sent again with the same key, on the next address. Any other error
fails the test: it is one a caller would not retry."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
FINAL = frozenset({pb.PAYOUT_STATE_CONFIRMED, pb.PAYOUT_STATE_FAILED,
                   pb.PAYOUT_STATE_CANCELLED})


@dataclass
class CallerLog:
    acknowledged: dict[str, pb.Payout] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)  # status code name -> count

    def note(self, code: grpc.StatusCode) -> None:
        self.retried[code.name] = self.retried.get(code.name, 0) + 1


async def until_answered(stubs: Sequence[payout_pb2_grpc.PayoutServiceStub], method: str,
                         request: object, log: CallerLog, *, within: float = 120.0,
                         pause: float = 0.1) -> object:
    """The call, retried on the next stub while the answer is retryable."""
    deadline = asyncio.get_running_loop().time() + within
    tries = 0
    while True:
        stub = stubs[tries % len(stubs)]
        tries += 1
        try:
            return await getattr(stub, method)(request, timeout=5)
        except grpc.aio.AioRpcError as err:
            assert err.code() in RETRYABLE, \
                f"{method} answered {err.code().name} ({err.details()}): not retryable"
            log.note(err.code())
            assert asyncio.get_running_loop().time() < deadline, \
                f"{method} still {err.code().name} after {within} s"
            await asyncio.sleep(pause)


async def create_acknowledged(stubs: Sequence[payout_pb2_grpc.PayoutServiceStub],
                              payout_id: str, destination: str, log: CallerLog,
                              amount: str = "1") -> None:
    reply = await until_answered(stubs, "CreatePayout", pb.CreatePayoutRequest(
        payout_id=payout_id, destination=destination, amount=amount, asset="XLM",
        idempotency_key=payout_id), log)
    assert isinstance(reply, pb.CreatePayoutResponse)
    log.acknowledged[payout_id] = reply.payout


async def settled(stubs: Sequence[payout_pb2_grpc.PayoutServiceStub], expected: int,
                  log: CallerLog, *, within: float = 180.0) -> dict[str, int]:
    """Every payout's state once all `expected` are final (polled, retrying like a caller)."""
    deadline = asyncio.get_running_loop().time() + within
    states: dict[str, int] = {}
    while asyncio.get_running_loop().time() < deadline:
        states = {}
        token = ""
        while True:
            page = await until_answered(stubs, "ListPayouts", pb.ListPayoutsRequest(
                page_size=500, page_token=token), log)
            assert isinstance(page, pb.ListPayoutsResponse)
            states.update({p.payout_id: p.state for p in page.payouts})
            token = page.next_page_token
            if not token:
                break
        if len(states) >= expected and all(s in FINAL for s in states.values()):
            return states
        await asyncio.sleep(0.2)
    raise AssertionError(f"not settled within {within} s: {states}")


def paid_per_destination(transfers: list[dict]) -> dict[str, int]:
    """The sandbox's ledger: how many transfers reached each destination."""
    paid: dict[str, int] = {}
    for t in transfers:
        paid[t["to"]] = paid.get(t["to"], 0) + 1
    return paid
