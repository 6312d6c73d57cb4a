"""What the policy cannot judge is refused and audited, never signed and never INTERNAL
(deny by default for the decision itself): the Decider over a real audit log and hot key."""

from __future__ import annotations

import asyncio
import json

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
