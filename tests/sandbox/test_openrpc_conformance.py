"""The sandbox answers every documented Stellar RPC example in the real server's shape.

``tests/fixtures/rpc/stellar-docs-openrpc-examples.json`` holds the request/response examples
of stellar/stellar-docs ``static/stellar-rpc.openrpc.json`` (the document built from
``openrpc/src/stellar-rpc``; commit named in the file). Each example is replayed against the
sandbox with the same params, their values swapped for ones that exist in the sandbox (its own
accounts, hashes, ledgers), and the answer is compared field by field with the example:
every documented field is present (or listed below with the real server's reason to omit it),
with the same JSON type, digit strings stay digit strings, hashes stay 64 hex characters, XDR
fields decode as the XDR type the real server puts there, and no field appears that neither
the example nor the method's documented result schema has.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from stellar_sdk import Keypair, MuxedAccount, SorobanServerAsync, scval, xdr

from soroban_sandbox.testing import InProcessSandbox
from soroban_sandbox.xdr_build import balance_key

from .helpers import native_id, transfer_tx, wait_for

FIXTURE = (
    Path(__file__).resolve().parents[1] / "fixtures" / "rpc" / "stellar-docs-openrpc-examples.json"
)
DOCS = json.loads(FIXTURE.read_text())

# The XDR type stellar-rpc puts in each field (cmd/stellar-rpc/internal/methods/*.go).
XDR_TYPES: dict[str, Any] = {
    "envelopeXdr": xdr.TransactionEnvelope,
    "resultXdr": xdr.TransactionResult,
    "resultMetaXdr": xdr.TransactionMeta,
    "errorResultXdr": xdr.TransactionResult,
    "transactionData": xdr.SorobanTransactionData,
    "metadataXdr": xdr.LedgerCloseMeta,
    "key": xdr.LedgerKey,
    "value": xdr.SCVal,
    "topic[]": xdr.SCVal,
    "events[]": xdr.DiagnosticEvent,
    "transactionEventsXdr[]": xdr.TransactionEvent,
    "contractEventsXdr[][]": xdr.ContractEvent,
    "diagnosticEventsXdr[]": xdr.DiagnosticEvent,
    "auth[]": xdr.SorobanAuthorizationEntry,
}
# Where the same name holds different types, keyed by method.
XDR_BY_METHOD: dict[tuple[str, str], Any] = {
    ("getLedgerEntries", "xdr"): xdr.LedgerEntryData,
    ("simulateTransaction", "xdr"): xdr.SCVal,
    # get_latest_ledger.go marshals LedgerHeaderHistoryEntry().Header (the docs example is a
    # whole history entry); get_ledgers.go marshals the LedgerHeaderHistoryEntry.
    ("getLatestLedger", "headerXdr"): xdr.LedgerHeader,
    ("getLedgers", "headerXdr"): xdr.LedgerHeaderHistoryEntry,
}
HEX_FIELDS = {"hash", "txHash", "id"}

# Documented fields the real server leaves out in the situation replayed, and why.
ABSENT_IN_REAL_SERVER = {
    "diagnosticEventsXdr": "omitempty in protocols/rpc TransactionDetails; the sandbox emits "
    "no diagnostic events in transaction meta (README: not modelled)",
    "cost": "no such field in protocols/rpc SimulateTransactionResponse any more",
}
# Fields the real server sends that the example does not show (Go structs without omitempty,
# or optional fields of protocols/rpc types).
EXTRA_IN_REAL_SERVER = {
    "extXdr": "LedgerEntryResult.ExtensionXDR (get_ledger_entries.go)",
    "liveUntilLedgerSeq": "LedgerEntryResult.LiveUntilLedgerSeq for Soroban entries",
    "contractEventsXdr": "Events.ContractEventsXDR, one list per operation",
    "transactionEventsXdr": "Events.TransactionEventsXDR (CAP-67 fee events)",
}


async def rpc(sandbox: InProcessSandbox, method: str, params: dict[str, Any]) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with aiohttp.ClientSession() as session:
        async with session.post(sandbox.rpc_url, json=body) as resp:
            answer = await resp.json()
    assert "error" not in answer, f"{method} {params}: {answer}"
    return answer["result"]


def json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}[type(value)]


def xdr_type(method: str, key: str) -> Any:
    return XDR_BY_METHOD.get((method, key), XDR_TYPES.get(key))


def compare(method: str, documented: Any, actual: Any, path: str, key: str) -> None:
    assert json_kind(actual) == json_kind(documented), (
        f"{path}: {json_kind(documented)} in the docs, {json_kind(actual)} from the sandbox"
    )
    if isinstance(documented, dict):
        missing = sorted(set(documented) - set(actual) - set(ABSENT_IN_REAL_SERVER))
        assert not missing, f"{path}: the sandbox lacks {missing}"
        for name in documented.keys() & actual.keys():
            compare(method, documented[name], actual[name], f"{path}.{name}", name)
        extra = set(actual) - set(documented) - set(EXTRA_IN_REAL_SERVER)
        if path.count(".") == 0:
            extra -= set(DOCS["methods"][method]["result_properties"])
        assert not extra, f"{path}: fields the docs do not have: {sorted(extra)}"
    elif isinstance(documented, list):
        if documented and actual:
            compare(method, documented[0], actual[0], f"{path}[0]", f"{key}[]")
    elif isinstance(documented, str):
        if documented.isdigit():
            assert actual.isdigit(), f"{path}: {actual!r} is not a decimal string"
        if key in HEX_FIELDS and re.fullmatch(r"[0-9a-f]{64}", documented):
            assert re.fullmatch(r"[0-9a-f]{64}", actual), f"{path}: {actual!r} is not a hash"
        kind = xdr_type(method, key)
        if kind is not None:
            kind.from_xdr(actual)  # the sandbox's value decodes as the real server's type


async def replay(sandbox: InProcessSandbox, server: SorobanServerAsync) -> dict[str, list[Any]]:
    """Each documented example's params with sandbox values, in the documented order."""
    alice, bob = Keypair.random(), Keypair.random()
    await sandbox.fund(alice.public_key)
    await sandbox.fund(bob.public_key)
    vault = (await sandbox.config())["payout_contract_id"]
    xlm = native_id(sandbox.passphrase)
    start = (await server.get_latest_ledger()).sequence

    await sandbox.set_faults(stall_ledgers=True)
    tx = await transfer_tx(server, sandbox.passphrase, alice, vault, 25)
    tx.sign(alice)
    second = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    second.transaction.sequence += 1
    second.sign(alice)
    bad_seq = await transfer_tx(server, sandbox.passphrase, bob, alice.public_key, 1)
    bad_seq.transaction.sequence += 5
    bad_seq.sign(bob)
    sent = [{"transaction": t.to_xdr()} for t in (tx, tx, bad_seq, second)]
    answers: dict[str, list[Any]] = {"sendTransaction": []}
    for params in sent:  # PENDING, DUPLICATE, ERROR, TRY_AGAIN_LATER as documented
        answers["sendTransaction"].append(await rpc(sandbox, "sendTransaction", params))
    await sandbox.set_faults(stall_ledgers=False)
    await wait_for(server, tx.hash_hex())
    await sandbox.set_faults(fail_on_chain_rate=1.0)
    failing = await transfer_tx(server, sandbox.passphrase, bob, alice.public_key, 1)
    failing.sign(bob)
    await server.send_transaction(failing)
    await wait_for(server, failing.hash_hex())
    await sandbox.set_faults(fail_on_chain_rate=0.0)
    # An exchange deposit: a SAC transfer to a muxed address (CAP-67), whose event's data is
    # the map {amount, to_muxed_id} the "Native XLM Transfer Events" example is replayed on.
    deposit = await transfer_tx(
        server, sandbox.passphrase, bob, MuxedAccount(alice.public_key, 77).account_muxed or "", 3
    )
    deposit.sign(bob)
    await server.send_transaction(deposit)
    await wait_for(server, deposit.hash_hex())
    first_tx = await rpc(sandbox, "getTransactions", {"startLedger": start})
    cursor = first_tx["transactions"][0]

    unprepared = await transfer_tx(server, sandbox.passphrase, alice, vault, 25, prepare=False)
    too_much = await transfer_tx(server, sandbox.passphrase, alice, vault, 10**18, prepare=False)
    leeway = {"instructionLeeway": 3_000_000}
    balance = balance_key(xlm, vault).to_xdr()
    transfer = scval.to_symbol("transfer").to_xdr()
    to_alice = scval.to_address(alice.public_key).to_xdr()
    # The vault's balance live, then archived (CAP-62: TTL 0); the simulations below then
    # restore it (CAP-66: transactionData with archivedSorobanEntries).
    live_entry = await rpc(sandbox, "getLedgerEntries", {"keys": [balance]})
    await sandbox.archive(balance)
    answers["getLedgerEntries"] = [
        live_entry,
        *[await rpc(sandbox, "getLedgerEntries", {"keys": [balance]}) for _ in range(2)],
    ]
    from_cursor = str(((cursor["ledger"] << 32) | (cursor["applicationOrder"] << 12) | 1) - 4096)
    params: dict[str, list[dict[str, Any]]] = {
        "getEvents": [
            {
                "startLedger": start,
                "filters": [
                    {
                        "type": "contract",
                        "contractIds": [xlm],
                        "topics": [[transfer, "*", to_alice, "*"]],
                    }
                ],
                "pagination": {"limit": 2},
            },
            {"startLedger": start, "pagination": {"limit": 2}},
        ],
        "getFeeStats": [{}],
        "getHealth": [{}],
        "getLatestLedger": [{}],
        "getLedgerEntries": [{"keys": [balance]}, {"keys": [balance]}, {"keys": [balance]}],
        "getLedgers": [{"startLedger": start, "pagination": {"limit": 2}}],
        "getNetwork": [{}, {}],
        "getTransaction": [
            {"hash": tx.hash_hex()},
            {"hash": "ab" * 32},
            {"hash": failing.hash_hex()},
        ],
        "getTransactions": [
            {"startLedger": start, "pagination": {"limit": 5}},
            {"pagination": {"cursor": from_cursor, "limit": 5}},
        ],
        "getVersionInfo": [{}],
        "simulateTransaction": [
            {"transaction": unprepared.to_xdr(), "resourceConfig": leeway},
            {"transaction": too_much.to_xdr(), "resourceConfig": leeway},
        ],
    }
    params["sendTransaction"] = sent
    for method, calls in params.items():
        documented = [set(e["params"]) for e in DOCS["methods"][method]["examples"]]
        assert [set(c) for c in calls] == documented, f"{method}: replay the documented params"
        answers.setdefault(method, [await rpc(sandbox, method, p) for p in calls])
    return answers


@pytest.fixture
async def answers(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> dict[str, list[Any]]:
    return await replay(sandbox, server)


def test_fixture_names_its_origin_and_covers_every_served_method() -> None:
    origin = DOCS["origin"]
    assert origin["repository"] == "github.com/stellar/stellar-docs"
    assert re.fullmatch(r"[0-9a-f]{40}", origin["commit"])
    assert set(DOCS["methods"]) >= {"getTransactions", "getLedgers", "getHealth", "getEvents"}


@pytest.mark.parametrize("method", sorted(DOCS["methods"]))
async def test_sandbox_answers_each_documented_example_in_its_shape(
    method: str, answers: dict[str, list[Any]]
) -> None:
    examples = DOCS["methods"][method]["examples"]
    assert len(answers[method]) == len(examples), f"{method}: replay every example"
    for example, actual in zip(examples, answers[method], strict=True):
        documented = example["result"]
        path = f"{method}/{example['name']}"
        assert actual.get("status") == documented.get("status"), path
        compare(method, documented, actual, path, "")


async def test_the_replay_covers_a_muxed_deposit_an_archived_balance_and_its_restore(
    answers: dict[str, list[Any]],
) -> None:
    (event, *_) = answers["getEvents"][0]["events"]
    assert scval.to_native(xdr.SCVal.from_xdr(event["value"])) == {"amount": 3, "to_muxed_id": 77}
    live, archived, _ = answers["getLedgerEntries"]
    assert live["entries"][0]["liveUntilLedgerSeq"] > live["latestLedger"]
    assert archived["entries"][0]["liveUntilLedgerSeq"] == 0
    simulated = answers["simulateTransaction"][0]
    data = xdr.SorobanTransactionData.from_xdr(simulated["transactionData"])
    assert data.ext.v == 1 and data.ext.resource_ext is not None
    assert len(data.ext.resource_ext.archived_soroban_entries) == 1
