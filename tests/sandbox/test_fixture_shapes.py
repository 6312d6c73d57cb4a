"""The sandbox answers in the same JSON shapes as the documented Stellar RPC examples.

For every example in tests/fixtures/rpc/ the sandbox is driven into the matching state; its raw
JSON result must have every key the example has, with the same JSON types (strings for 64-bit
numbers and close times, numbers for ledger sequences), no keys stellar-sdk does not know, XDR
fields that decode as the same XDR type, and it must parse with stellar-sdk's response model
into the same set of populated fields as the example.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel
from stellar_sdk import Keypair, SorobanServerAsync, scval, xdr
from stellar_sdk import soroban_rpc as models

from soroban_sandbox.testing import InProcessSandbox
from soroban_sandbox.xdr_build import balance_key

from .helpers import native_id, transfer_tx, wait_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rpc"

MODELS: dict[str, type[BaseModel]] = {
    "getHealth": models.GetHealthResponse,
    "getNetwork": models.GetNetworkResponse,
    "getLatestLedger": models.GetLatestLedgerResponse,
    "getLedgerEntries": models.GetLedgerEntriesResponse,
    "getFeeStats": models.GetFeeStatsResponse,
    "simulateTransaction": models.SimulateTransactionResponse,
    "sendTransaction": models.SendTransactionResponse,
    "getTransaction": models.GetTransactionResponse,
    "getEvents": models.GetEventsResponse,
}

XDR_FIELDS: dict[str, Any] = {
    "envelopeXdr": xdr.TransactionEnvelope,
    "resultXdr": xdr.TransactionResult,
    "resultMetaXdr": xdr.TransactionMeta,
    "errorResultXdr": xdr.TransactionResult,
    "transactionData": xdr.SorobanTransactionData,
    "headerXdr": xdr.LedgerHeader,
    "metadataXdr": xdr.LedgerCloseMeta,
    "key": xdr.LedgerKey,
    "xdr": None,  # LedgerEntryData in getLedgerEntries, SCVal in simulation results
    "value": xdr.SCVal,
}


def load(method: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{method}.json").read_text())
    assert data["method"] == method and data["examples"]
    return data


async def rpc(sandbox: InProcessSandbox, method: str, params: dict[str, Any] | None = None) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
    async with aiohttp.ClientSession() as session:
        async with session.post(sandbox.rpc_url, json=body) as resp:
            answer = await resp.json()
    assert "error" not in answer, answer
    return answer["result"]


def assert_same_shape(expected: Any, actual: Any, path: str, placeholders: set[str]) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected object, got {actual!r}"
        missing = sorted(set(expected) - set(actual))
        assert not missing, f"{path}: sandbox lacks {missing}"
        for key, value in expected.items():
            assert_same_shape(value, actual[key], f"{path}.{key}", placeholders)
            if key in XDR_FIELDS and key not in placeholders and isinstance(value, str):
                assert_same_xdr(key, value, actual[key], path)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected list, got {actual!r}"
        if expected and actual:
            assert_same_shape(expected[0], actual[0], f"{path}[0]", placeholders)
    else:
        assert type(actual) is type(expected), (
            f"{path}: {type(expected).__name__} in the docs, {type(actual).__name__} here"
        )


def assert_same_xdr(key: str, expected: str, actual: str, path: str) -> None:
    kinds = [XDR_FIELDS[key]] if XDR_FIELDS[key] else [xdr.LedgerEntryData, xdr.SCVal]
    for kind in kinds:
        try:
            kind.from_xdr(expected)
        except Exception:  # noqa: BLE001 - try the next candidate type
            continue
        kind.from_xdr(actual)  # the sandbox's value must decode as the same type
        return
    raise AssertionError(f"{path}.{key}: fixture value decodes as none of {kinds}")


def known_aliases(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def populated(model: BaseModel) -> set[str]:
    return {name for name in type(model).model_fields if getattr(model, name) is not None}


@pytest.fixture
async def observed(sandbox: InProcessSandbox, server: SorobanServerAsync) -> dict[str, Any]:
    """Drive the sandbox through every documented situation and keep its raw answers."""
    out: dict[str, dict[str, Any]] = {m: {} for m in MODELS}
    alice, bob = Keypair.random(), Keypair.random()
    await sandbox.fund(alice.public_key)
    await sandbox.fund(bob.public_key)
    vault = (await sandbox.config())["payout_contract_id"]
    start = (await server.get_latest_ledger()).sequence

    out["getHealth"]["healthy"] = await rpc(sandbox, "getHealth")
    out["getNetwork"]["testnet"] = await rpc(sandbox, "getNetwork")
    out["getLatestLedger"]["latest"] = await rpc(sandbox, "getLatestLedger")

    unprepared = await transfer_tx(server, sandbox.passphrase, alice, vault, 25, prepare=False)
    sim = await rpc(sandbox, "simulateTransaction", {"transaction": unprepared.to_xdr()})
    out["simulateTransaction"]["success"] = sim
    too_much = await transfer_tx(server, sandbox.passphrase, alice, vault, 10**18, prepare=False)
    out["simulateTransaction"]["error"] = await rpc(
        sandbox, "simulateTransaction", {"transaction": too_much.to_xdr()}
    )

    await sandbox.set_faults(stall_ledgers=True)
    tx = await transfer_tx(server, sandbox.passphrase, alice, vault, 25)
    tx.sign(alice)
    second = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    second.transaction.sequence += 1
    second.sign(alice)
    send = {"transaction": tx.to_xdr()}
    out["sendTransaction"]["PENDING"] = await rpc(sandbox, "sendTransaction", send)
    out["sendTransaction"]["DUPLICATE"] = await rpc(sandbox, "sendTransaction", send)
    out["sendTransaction"]["TRY_AGAIN_LATER"] = await rpc(
        sandbox, "sendTransaction", {"transaction": second.to_xdr()}
    )
    bad_seq = await transfer_tx(server, sandbox.passphrase, bob, alice.public_key, 1)
    bad_seq.transaction.sequence += 5
    bad_seq.sign(bob)
    out["sendTransaction"]["ERROR"] = await rpc(
        sandbox, "sendTransaction", {"transaction": bad_seq.to_xdr()}
    )
    await sandbox.set_faults(stall_ledgers=False)
    await wait_for(server, tx.hash_hex())
    out["getTransaction"]["SUCCESS"] = await rpc(sandbox, "getTransaction", {"hash": tx.hash_hex()})

    await sandbox.set_faults(fail_on_chain_rate=1.0)
    failing = await transfer_tx(server, sandbox.passphrase, bob, alice.public_key, 1)
    failing.sign(bob)
    await server.send_transaction(failing)
    await wait_for(server, failing.hash_hex())
    await sandbox.set_faults(fail_on_chain_rate=0.0)
    out["getTransaction"]["FAILED"] = await rpc(
        sandbox, "getTransaction", {"hash": failing.hash_hex()}
    )
    out["getTransaction"]["NOT_FOUND"] = await rpc(sandbox, "getTransaction", {"hash": "ab" * 32})

    key = balance_key(native_id(sandbox.passphrase), vault).to_xdr()
    out["getLedgerEntries"]["contract_balance"] = await rpc(
        sandbox, "getLedgerEntries", {"keys": [key]}
    )
    transfer = scval.to_symbol("transfer").to_xdr()
    out["getEvents"]["native_transfers"] = await rpc(
        sandbox,
        "getEvents",
        {
            "startLedger": start,
            "filters": [{"type": "contract", "topics": [[transfer, "*", "*", "**"]]}],
            "pagination": {"limit": 2},
        },
    )
    out["getFeeStats"]["default"] = await rpc(sandbox, "getFeeStats")
    return out


@pytest.mark.parametrize("method", sorted(MODELS))
async def test_sandbox_answers_match_documented_shapes(
    method: str, observed: dict[str, dict[str, Any]]
) -> None:
    fixture = load(method)
    model = MODELS[method]
    placeholders = set(fixture["placeholder_fields"])
    for name, documented in fixture["examples"].items():
        actual = observed[method][name]
        assert_same_shape(documented, actual, f"{method}/{name}", placeholders)
        unknown = sorted(set(actual) - known_aliases(model))
        assert not unknown, f"{method}/{name}: keys stellar-sdk does not know: {unknown}"
        parsed_doc, parsed_ours = model.model_validate(documented), model.model_validate(actual)
        assert populated(parsed_doc) <= populated(parsed_ours), f"{method}/{name}"


def test_every_fixture_has_a_model_and_parses() -> None:
    files = {p.stem for p in FIXTURES.glob("*.json")}
    assert files == set(MODELS)
    for method in files:
        for documented in load(method)["examples"].values():
            MODELS[method].model_validate(documented)
