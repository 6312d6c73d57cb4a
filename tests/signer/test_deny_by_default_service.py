"""Deny by default against the real signer (SoftHSM, mTLS): what the policy does not allow is
refused."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stellar_sdk import TransactionEnvelope

from stellar_payouts_pb.signer.v1 import signer_pb2, signer_pb2_grpc
from tests.signer.envelopes import PASSPHRASE, XLM_SAC
from tests.signer.test_auth_tree import (
    NESTED_HOLES,
    Node,
    address_entry,
    allowed_leaning_root,
    node,
    nodes,
    source_entry,
    to_invocation,
    transfer,
    tx_with,
    well_formed,
)


def sign_tx_request(signer, tx) -> signer_pb2.SignTransactionRequest:  # noqa: ANN001
    return signer_pb2.SignTransactionRequest(
        key_id=signer.key_id, envelope_xdr=TransactionEnvelope(tx, PASSPHRASE).to_xdr(),
        request_id=uuid.uuid4().hex)


def audited(signer, request_id: str) -> dict:  # noqa: ANN001
    for line in signer.audit_log.read_text().splitlines():
        record = json.loads(line)
        if record.get("request_id") == request_id:
            return record
    raise AssertionError(f"no audit record for {request_id}")


@pytest.mark.parametrize("name", list(NESTED_HOLES))
async def test_the_issues_nested_authorisations_are_refused_and_audited(
    pkcs11_signer, stub, name
):
    hole, rule = NESTED_HOLES[name]
    tx = tx_with(transfer(5), source_entry(node(transfer(5), hole)))
    req = sign_tx_request(pkcs11_signer, tx)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(req)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details().startswith(f"policy rule {rule} refused: ")
    assert (audited(pkcs11_signer, req.request_id)["rule"]) == rule


@pytest.mark.parametrize("name", list(NESTED_HOLES))
async def test_sign_authorization_entry_refuses_the_same_trees(pkcs11_signer, stub, name):
    hole, rule = NESTED_HOLES[name]
    entry = address_entry(node(transfer(5), hole), pkcs11_signer.public_key)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
            key_id=pkcs11_signer.key_id, entry_xdr=entry.to_xdr(),
            signature_expiration_ledger=1010, current_ledger=1000,
            request_id=uuid.uuid4().hex))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details().startswith(f"policy rule {rule} refused: ")


async def test_an_expiration_ledger_of_2_pow_32_minus_1_is_refused(pkcs11_signer, stub):
    entry = address_entry(node(transfer(5)), pkcs11_signer.public_key)
    for current in (1000, 2**32 - 101):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
                key_id=pkcs11_signer.key_id, entry_xdr=entry.to_xdr(),
                signature_expiration_ledger=2**32 - 1, current_ledger=current,
                request_id=uuid.uuid4().hex))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "max_signature_expiration_ledgers" in err.value.details()


async def test_a_missing_current_ledger_is_invalid_argument(pkcs11_signer, stub):
    entry = address_entry(node(transfer(5)), pkcs11_signer.public_key)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignAuthorizationEntry(signer_pb2.SignAuthorizationEntryRequest(
            key_id=pkcs11_signer.key_id, entry_xdr=entry.to_xdr(),
            signature_expiration_ledger=10, request_id=uuid.uuid4().hex))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "current_ledger" in err.value.details()


async def test_a_one_stroop_root_cannot_carry_a_nested_transfer_past_the_limit(
    pkcs11_signer, stub
):
    tx = tx_with(transfer(1), source_entry(node(transfer(1), node(transfer(10_000_000_000)))))
    req = sign_tx_request(pkcs11_signer, tx)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.SignTransaction(req)
    assert "max_amount_stroops_per_tx" in err.value.details()
    # The root and its own SOURCE_ACCOUNT entry are one transfer: signed, counted once.
    req = sign_tx_request(pkcs11_signer, tx_with(transfer(9), source_entry(node(transfer(9)))))
    await stub.SignTransaction(req)
    assert audited(pkcs11_signer, req.request_id)["amount_stroops"] == 9


# The specification of the session signer's policy (conftest.SESSION_POLICY): SAC transfer only.
SESSION_SPEC = {(XLM_SAC, "transfer"): ("address", "address", "i128")}


def session_spec_total(root: Node, entries: list[Node]) -> int | None:
    def amount(n: Node) -> int | None:
        kinds = SESSION_SPEC.get((n.contract, n.function))
        if kinds is None or tuple(k for k, _ in n.args) != kinds or n.args[2][1] <= 0:
            return None
        return n.args[2][1]

    def tree(n: Node) -> list[int | None]:
        return [amount(n)] + [a for s in n.subs for a in tree(s)]

    amounts = [amount(root)]
    dropped = False
    for e in entries:
        t = tree(e)
        if not dropped and (e.contract, e.function, e.args) == (root.contract, root.function,
                                                                root.args):
            dropped, t = True, [0 if t[0] is not None else None, *t[1:]]
        amounts += t
    if any(a is None for a in amounts):
        return None
    total = sum(a for a in amounts if a is not None)
    return total if total <= 10_000_000_000 else None


_SYNC_STUBS: dict[str, signer_pb2_grpc.SignerServiceStub] = {}


def sync_stub(signer) -> signer_pb2_grpc.SignerServiceStub:  # noqa: ANN001
    """One blocking channel for all examples (hypothesis runs the test body synchronously)."""
    if signer.address not in _SYNC_STUBS:
        channel = grpc.secure_channel(signer.address, signer.channel_credentials())
        _SYNC_STUBS[signer.address] = signer_pb2_grpc.SignerServiceStub(channel)
    return _SYNC_STUBS[signer.address]


SAC_TRANSFER_ROOT = well_formed(XLM_SAC, "transfer").map(
    lambda args: Node(XLM_SAC, "transfer", args))


async def test_the_running_signer_signs_exactly_the_random_trees_its_policy_allows(
    pkcs11_signer
):
    @settings(max_examples=120, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(root=st.one_of(SAC_TRANSFER_ROOT, SAC_TRANSFER_ROOT, allowed_leaning_root()),
           entries=st.one_of(st.lists(nodes(depth=2), min_size=1, max_size=1),
                             st.lists(nodes(depth=2), max_size=2)),
           copy_root=st.booleans())
    def signs_exactly_what_the_specification_allows(
        root: Node, entries: list[Node], copy_root: bool
    ) -> None:
        if copy_root:
            entries = [Node(root.contract, root.function, root.args,
                            entries[0].subs if entries else ()), *entries[1:]]
        expected = session_spec_total(root, entries)
        root_call = to_invocation(Node(root.contract, root.function, root.args)
                                  ).function.contract_fn
        tx = tx_with(root_call, *(source_entry(to_invocation(e)) for e in entries))
        req = sign_tx_request(pkcs11_signer, tx)
        try:
            sync_stub(pkcs11_signer).SignTransaction(req, timeout=30)
            signed = True
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
            signed = False
        assert signed == (expected is not None), (root, entries)
        if expected is not None:
            assert audited(pkcs11_signer, req.request_id)["amount_stroops"] == expected

    # Blocking calls in a thread: the event loop stays free to read the signer's log pipe.
    await asyncio.to_thread(signs_exactly_what_the_specification_allows)
