"""What the policy cannot judge is refused and audited, never signed and never INTERNAL
(deny by default for the decision itself): the Decider over a real audit log and hot key."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import grpc
import pytest
from stellar_sdk import Keypair

from signer_service.audit import AuditLog, ChainKey
from signer_service.backends.hot import HotKeyBackend
from signer_service.config import KeyConfig
from signer_service.decide import Decider, SigningRequest
from signer_service.idempotency import SignedRequests
from signer_service.keys import KeyHandle
from signer_service.peer import Peer
from signer_service.policy import Allow, Decision
from signer_service.rpc import RpcFailure
from signer_service.spending import SpentLedger
from stellar_payouts_pb.signer.v1 import signer_pb2
from tests.signer.test_batch_policy import POLICY


def decide_raising(spent, now) -> Decision:  # noqa: ANN001
    raise AssertionError("a decoder met a shape it does not know")


async def test_a_decision_that_raises_is_a_refusal_naming_the_field_and_audited(tmp_path):
    keypair = Keypair.random()
    backend = HotKeyBackend({"k": keypair.secret})
    log = AuditLog(tmp_path / "audit.log", ChainKey(backend.audit_chain_key("k")))
    log.open()
    config = KeyConfig("k", "hot", None, None, "X", frozenset({"payout-service"}), POLICY)
    handle = KeyHandle(config, backend, Keypair.from_public_key(keypair.public_key),
                       asyncio.Lock())
    decider = Decider(log, SpentLedger(), SignedRequests())

    def request(decide) -> SigningRequest:  # noqa: ANN001
        return SigningRequest("transaction", handle, Peer("payout-service"), "r-1",
                              signer_pb2.SigningContext(), bytes(32), "envelope_xdr", decide)

    with pytest.raises(RpcFailure) as failure:
        await decider.sign(request(decide_raising))
    assert (failure.value.code, failure.value.field) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                         "envelope_xdr")
    assert failure.value.message == "envelope_xdr: cannot be judged (AssertionError)"
    # The same id may carry a request that can be judged: nothing was signed under it.
    signature = await decider.sign(request(lambda spent, now: Allow(5)))
    keypair.verify(bytes(32), signature)
    log.close()
    records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(r["decision"], r["rule"]) for r in records] == [
        ("refuse", "undecodable"), ("allow", "none")]


class GatedBackend(HotKeyBackend):
    """A hot key whose signatures wait for the test to let them through."""

    def __init__(self, secret: str) -> None:
        super().__init__({"k": secret})
        self.called, self.gate = asyncio.Event(), asyncio.Event()

    async def sign(self, key_id: str, data: bytes) -> bytes:
        self.called.set()
        await self.gate.wait()
        return await super().sign(key_id, data)


class GatedLog(AuditLog):
    """An audit log whose writes (in their worker thread) wait for the test."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.writing, self.gate = threading.Event(), threading.Event()

    def _chain_and_write(self, batch):  # noqa: ANN001, ANN202
        self.writing.set()
        self.gate.wait(30)
        return super()._chain_and_write(batch)


@pytest.mark.parametrize("gone_while", ["signing", "recording"])
async def test_a_caller_gone_mid_request_leaves_no_half_done_request_id(tmp_path, gone_while):
    """A deadline cancels the RPC while the token signs (nothing is kept: the retry decides
    anew) or while its allow record is written (the record completes: the retry gets that
    signature). Either way the amount counts once and the retry does not wait for a result
    nobody sets."""
    keypair = Keypair.random()
    backend = GatedBackend(keypair.secret)
    log = GatedLog(tmp_path / "audit.log", ChainKey(backend.audit_chain_key("k")))
    log.gate.set()
    log.open()
    config = KeyConfig("k", "hot", None, None, "X", frozenset({"payout-service"}), POLICY)
    handle = KeyHandle(config, backend, Keypair.from_public_key(keypair.public_key),
                       asyncio.Lock())
    spent = SpentLedger()
    decider = Decider(log, spent, SignedRequests())
    req = SigningRequest("transaction", handle, Peer("payout-service"), "r-1",
                         signer_pb2.SigningContext(), bytes(32), "envelope_xdr",
                         lambda spent, now: Allow(5))
    first = asyncio.create_task(decider.sign(req))
    await asyncio.wait_for(backend.called.wait(), 10)
    if gone_while == "recording":
        log.gate.clear()
        log.writing.clear()
        backend.gate.set()
        await asyncio.to_thread(log.writing.wait, 10)
    first.cancel()
    retry = asyncio.create_task(decider.sign(req))
    backend.gate.set()
    log.gate.set()
    signature = await asyncio.wait_for(retry, 10)
    keypair.verify(bytes(32), signature)
    assert spent.spent("k", time.time()) == 5
    log.close()
    records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [r["decision"] for r in records] == \
        (["allow"] if gone_while == "signing" else ["allow", "replay"])
