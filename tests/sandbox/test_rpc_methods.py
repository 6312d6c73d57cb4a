"""Methods, parameters and errors as the real stellar-rpc answers them, over HTTP.

Messages and codes come from stellar/stellar-rpc cmd/stellar-rpc/internal/methods/*.go and the
request validation of protocols/rpc (stellar/go); each test names the rule it checks.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from stellar_sdk import Asset, Keypair, SorobanServerAsync, TransactionBuilder, scval, xdr
from stellar_sdk.memo import TextMemo

from soroban_sandbox.rpc_params import JSON_FORMAT_NOT_MODELLED
from soroban_sandbox.testing import InProcessSandbox
from soroban_sandbox.xdr_build import account_key, balance_key

from .helpers import native_id, transfer_tx, wait_for


async def call(sandbox: InProcessSandbox, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    async with aiohttp.ClientSession() as session:
        async with session.post(sandbox.rpc_url, json=body) as resp:
            answer: dict[str, Any] = await resp.json()
    return answer


async def result(sandbox: InProcessSandbox, method: str, params: dict[str, Any]) -> Any:
    answer = await call(sandbox, method, params)
    assert "error" not in answer, answer
    return answer["result"]


async def error(sandbox: InProcessSandbox, method: str, params: dict[str, Any]) -> tuple[int, str]:
    answer = await call(sandbox, method, params)
    assert "error" in answer, answer
    return answer["error"]["code"], answer["error"]["message"]


async def paid(
    sandbox: InProcessSandbox, server: SorobanServerAsync, count: int
) -> tuple[int, list[str]]:
    """``count`` transfers from distinct accounts landed; the ledger before them."""
    start = (await server.get_latest_ledger()).sequence
    hashes = []
    for _ in range(count):
        kp = Keypair.random()
        await sandbox.fund(kp.public_key)
        tx = await transfer_tx(server, sandbox.passphrase, kp, native_id(sandbox.passphrase), 5)
        tx.sign(kp)
        await server.send_transaction(tx)
        hashes.append(tx.hash_hex())
    for tx_hash in hashes:
        await wait_for(server, tx_hash)
    return start, hashes


async def test_get_transactions_pages_through_history_with_toid_cursors(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    start, hashes = await paid(sandbox, server, 3)
    page = await result(
        sandbox, "getTransactions", {"startLedger": start, "pagination": {"limit": 2}}
    )
    assert [t["txHash"] for t in page["transactions"]] == hashes[:2]
    first = page["transactions"][0]
    assert isinstance(first["createdAt"], int)  # a number here, a string in getTransaction
    assert isinstance(page["latestLedgerCloseTimestamp"], int)
    last = page["transactions"][-1]
    assert int(page["cursor"]) == (last["ledger"] << 32) | (last["applicationOrder"] << 12) | 1
    rest = await result(
        sandbox, "getTransactions", {"pagination": {"cursor": page["cursor"], "limit": 2}}
    )
    assert [t["txHash"] for t in rest["transactions"]] == hashes[2:3]
    landed = await result(sandbox, "getTransaction", {"hash": hashes[0]})
    assert {k: v for k, v in first.items() if k != "createdAt"} == {
        k: landed[k] for k in first if k != "createdAt"
    }


async def test_get_transactions_refuses_like_the_real_server(sandbox: InProcessSandbox) -> None:
    await sandbox.set_faults(stall_ledgers=True)  # the messages name the latest ledger
    latest = (await result(sandbox, "getLatestLedger", {}))["sequence"]
    assert await error(sandbox, "getTransactions", {"startLedger": latest + 5}) == (
        -32600,
        f"start ledger ({latest + 5}) must be between the oldest ledger: 1 and the latest "
        f"ledger: {latest} for this rpc instance",
    )
    assert await error(
        sandbox, "getTransactions", {"startLedger": 1, "pagination": {"limit": 201}}
    ) == (-32600, "limit must not exceed 200")
    assert await error(
        sandbox, "getTransactions", {"startLedger": 1, "pagination": {"cursor": "5"}}
    ) == (-32600, "startLedger (1) and cursor (5) cannot both be set")
    assert await error(sandbox, "getTransactions", {"pagination": {"cursor": "abc"}}) == (
        -32602,
        'strconv.ParseInt: parsing "abc": invalid syntax',
    )


async def test_get_ledgers_pages_with_sequence_cursors(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    await sandbox.close_ledger()
    await sandbox.close_ledger()
    page = await result(sandbox, "getLedgers", {"startLedger": 1, "pagination": {"limit": 2}})
    assert [ledger["sequence"] for ledger in page["ledgers"]] == [1, 2]
    assert page["cursor"] == "2"
    entry = xdr.LedgerHeaderHistoryEntry.from_xdr(page["ledgers"][1]["headerXdr"])
    assert entry.hash.hash.hex() == page["ledgers"][1]["hash"]
    meta = xdr.LedgerCloseMeta.from_xdr(page["ledgers"][1]["metadataXdr"])
    assert meta.v2 is not None and meta.v2.ledger_header.header.ledger_seq.uint32 == 2
    after = await result(sandbox, "getLedgers", {"pagination": {"cursor": "2", "limit": 1}})
    assert [ledger["sequence"] for ledger in after["ledgers"]] == [3]
    beyond = str(after["latestLedger"] + 1_000)
    code, message = await error(sandbox, "getLedgers", {"pagination": {"cursor": beyond}})
    assert code == -32602 and message.startswith(f"cursor ('{beyond}') must be between")


async def test_transactions_appear_in_the_ledger_close_meta_of_get_ledgers(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    _, (tx_hash,) = await paid(sandbox, server, 1)
    landed = await result(sandbox, "getTransaction", {"hash": tx_hash})
    page = await result(
        sandbox, "getLedgers", {"startLedger": landed["ledger"], "pagination": {"limit": 1}}
    )
    meta = xdr.LedgerCloseMeta.from_xdr(page["ledgers"][0]["metadataXdr"])
    assert meta.v2 is not None
    results = [p.result.transaction_hash.hash.hex() for p in meta.v2.tx_processing]
    assert results == [tx_hash]


async def test_get_transaction_not_found_carries_the_zero_fields_and_bad_hashes_are_refused(
    sandbox: InProcessSandbox,
) -> None:
    missing = await result(sandbox, "getTransaction", {"hash": "AB" * 32})
    assert missing["status"] == "NOT_FOUND" and missing["txHash"] == "AB" * 32
    assert (missing["applicationOrder"], missing["feeBump"], missing["ledger"]) == (0, False, 0)
    assert missing["createdAt"] == "0"
    assert await error(sandbox, "getTransaction", {"hash": "ab"}) == (
        -32602,
        "unexpected hash length (2)",
    )
    assert await error(sandbox, "getTransaction", {"hash": "z" * 64}) == (
        -32602,
        "incorrect hash: encoding/hex: invalid byte: U+007A 'z'",
    )


@pytest.mark.parametrize(
    ("method", "params", "bad_code"),
    [
        ("getTransaction", {"hash": "ab" * 32}, -32602),
        ("getLedgerEntries", {"keys": []}, -32602),
        ("getEvents", {"startLedger": 1}, -32602),
        ("getTransactions", {"startLedger": 1}, -32600),
        ("getLedgers", {"startLedger": 1}, -32600),
    ],
)
async def test_xdr_format_is_validated_and_json_is_refused_loudly(
    sandbox: InProcessSandbox, method: str, params: dict[str, Any], bad_code: int
) -> None:
    await result(sandbox, method, params | {"xdrFormat": "base64"})
    assert await error(sandbox, method, params | {"xdrFormat": "xml"}) == (
        bad_code,
        "got 'xml': expected base64, json for optional 'xdrFormat'",
    )
    assert await error(sandbox, method, params | {"xdrFormat": "json"}) == (
        -32602,
        JSON_FORMAT_NOT_MODELLED,
    )


async def test_get_ledger_entries_empty_keys_answer_empty_and_ttl_keys_are_refused(
    sandbox: InProcessSandbox,
) -> None:
    empty = await result(sandbox, "getLedgerEntries", {"keys": []})
    assert empty["entries"] == []
    ttl = xdr.LedgerKey(
        xdr.LedgerEntryType.TTL, ttl=xdr.LedgerKeyTtl(key_hash=xdr.Hash(b"\x01" * 32))
    ).to_xdr()
    assert await error(sandbox, "getLedgerEntries", {"keys": [ttl]}) == (
        -32602,
        "ledger ttl entries cannot be queried directly",
    )
    assert await error(sandbox, "getLedgerEntries", {"keys": ["!!"]}) == (
        -32602,
        "cannot unmarshal key value !! at index 0",
    )


async def test_get_events_validates_params_with_the_real_messages(
    sandbox: InProcessSandbox,
) -> None:
    await sandbox.set_faults(stall_ledgers=True)  # a message names the latest ledger
    latest = (await result(sandbox, "getLatestLedger", {}))["sequence"]
    cases: list[tuple[dict[str, Any], tuple[int, str]]] = [
        ({}, (-32602, "startLedger must be positive")),
        (
            {"startLedger": 1, "pagination": {"limit": 10_001}},
            (-32602, "limit must not exceed 10000"),
        ),
        (
            {"startLedger": latest + 10},
            (-32600, f"startLedger must be within the ledger range: 1 - {latest}"),
        ),
        (
            {"startLedger": 1, "filters": [{"contractIds": ["GABC"]}]},
            (-32602, "filter 1 invalid: contract ID 1 invalid"),
        ),
        (
            {"startLedger": 1, "filters": [{"type": "diagnostic"}]},
            (
                -32602,
                "filter 1 invalid: filter type invalid: if set, type must be either "
                "'system' or 'contract'",
            ),
        ),
        (
            {"startLedger": 1, "filters": [{"topics": [["**", "*"]]}]},
            (
                -32602,
                "filter 1 invalid: topic 1 invalid: segment 1 invalid: wildcard '**' is only "
                "allowed as the last segment",
            ),
        ),
        ({"pagination": {"cursor": "nope"}}, (-32602, "invalid event id nope")),
        (
            {"startLedger": 1, "pagination": {"cursor": "0000000004294967296-0000000000"}},
            (-32602, "ledger ranges and cursor cannot both be set"),
        ),
    ]
    for params, expected in cases:
        assert await error(sandbox, "getEvents", params) == expected, params


async def test_get_events_end_of_window_cursor_is_the_real_max_cursor(
    sandbox: InProcessSandbox,
) -> None:
    found = await result(sandbox, "getEvents", {"startLedger": 1})
    latest = found["latestLedger"]
    toid = (latest << 32) | (((1 << 20) - 1) << 12) | ((1 << 12) - 1)
    assert found["cursor"] == f"{toid:019d}-{2**32 - 1:010d}"


async def test_get_events_serves_fee_events_as_the_real_server(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    start, (tx_hash,) = await paid(sandbox, server, 1)
    fee = scval.to_symbol("fee").to_xdr()
    found = await result(
        sandbox, "getEvents", {"startLedger": start, "filters": [{"topics": [[fee, "*"]]}]}
    )
    amounts = [scval.to_native(xdr.SCVal.from_xdr(e["value"])) for e in found["events"]]
    assert [e["txHash"] for e in found["events"]] == [tx_hash, tx_hash]
    assert amounts[0] > 0 > amounts[1]  # the charge, then the refund
    assert found["events"][0]["transactionIndex"] == 0


async def test_simulate_refusals_are_results_with_error_as_the_real_server(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice = Keypair.random()
    await sandbox.fund(alice.public_key)
    vault = (await sandbox.config())["payout_contract_id"]
    unprepared = await transfer_tx(server, sandbox.passphrase, alice, vault, 5, prepare=False)
    assert await result(sandbox, "simulateTransaction", {"transaction": "AAAA"}) == {
        "error": "Could not unmarshal transaction",
        "latestLedger": 0,
    }
    with_memo = await transfer_tx(server, sandbox.passphrase, alice, vault, 5, prepare=False)
    with_memo.transaction.memo = TextMemo("hi")
    memo = await result(sandbox, "simulateTransaction", {"transaction": with_memo.to_xdr()})
    assert memo["error"] == (
        "Transaction contains a memo. Soroban transactions do not support memos."
    )
    bogus = await result(
        sandbox, "simulateTransaction", {"transaction": unprepared.to_xdr(), "authMode": "bogus"}
    )
    assert bogus["error"] == (
        "optional 'authMode' must be one of enforce,record,record_allow_nonroot when included"
    )
    enforced = await result(
        sandbox,
        "simulateTransaction",
        {"transaction": unprepared.to_xdr(), "authMode": "enforce"},
    )
    assert "did not authorize" in enforced["error"]  # enforce with no auth entries at all
    fmt = await result(
        sandbox, "simulateTransaction", {"transaction": unprepared.to_xdr(), "xdrFormat": "json"}
    )
    assert fmt["error"] == JSON_FORMAT_NOT_MODELLED


async def test_simulate_reports_events_state_changes_and_honours_instruction_leeway(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice = Keypair.random()
    await sandbox.fund(alice.public_key)
    vault = (await sandbox.config())["payout_contract_id"]
    unprepared = await transfer_tx(server, sandbox.passphrase, alice, vault, 5, prepare=False)
    plain = await result(sandbox, "simulateTransaction", {"transaction": unprepared.to_xdr()})
    roomy = await result(
        sandbox,
        "simulateTransaction",
        {"transaction": unprepared.to_xdr(), "resourceConfig": {"instructionLeeway": 900_000}},
    )

    def instructions(sim: dict[str, Any]) -> int:
        data = xdr.SorobanTransactionData.from_xdr(sim["transactionData"])
        return data.resources.instructions.uint32

    assert instructions(roomy) == instructions(plain) + 900_000 - 50_000
    kinds = [xdr.DiagnosticEvent.from_xdr(e).event.type for e in plain["events"]]
    assert xdr.ContractEventType.CONTRACT in kinds
    changes = {c["key"]: c for c in plain["stateChanges"]}
    source = changes[account_key(alice.public_key).to_xdr()]
    assert source["type"] == "updated"
    before = xdr.LedgerEntry.from_xdr(source["before"]).data.account
    after = xdr.LedgerEntry.from_xdr(source["after"]).data.account
    assert before is not None and after is not None
    assert before.balance.int64 - after.balance.int64 == 5
    created = changes[balance_key(native_id(sandbox.passphrase), vault).to_xdr()]
    assert created["type"] == "created" and created["before"] is None
    assert await error(
        sandbox,
        "simulateTransaction",
        {"transaction": unprepared.to_xdr(), "resourceConfig": {"instructionLeeway": "x"}},
    ) == (
        -32602,
        "invalid parameters: json: cannot unmarshal into field "
        "resourceConfig.instructionLeeway of type uint64",
    )


async def test_classic_payment_batch_lands_and_moves_the_classic_fee_stats(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = Keypair.random(), Keypair.random()
    await sandbox.fund(alice.public_key)
    await sandbox.fund(bob.public_key)
    account = await server.load_account(alice.public_key)
    batch = (
        TransactionBuilder(account, sandbox.passphrase, base_fee=150)
        .append_payment_op(bob.public_key, Asset.native(), "2")
        .append_payment_op(bob.public_key, Asset.native(), "3")
        .set_timeout(30)
        .build()
    )
    batch.sign(alice)
    assert (await server.send_transaction(batch)).status.value == "PENDING"
    landed = await wait_for(server, batch.hash_hex())
    assert landed.status.value == "SUCCESS"
    assert xdr.TransactionResult.from_xdr(landed.result_xdr or "").fee_charged.int64 == 200
    stats = await result(sandbox, "getFeeStats", {})
    assert stats["inclusionFee"]["transactionCount"] == "1"
    assert stats["inclusionFee"]["p50"] == "100"  # charged per operation, not the 150 bid
    row = await sandbox.account(bob.public_key)
    assert row is not None and row["balance_stroops"] == 10_000 * 10**7 + 5 * 10**7
    simulated = await result(sandbox, "simulateTransaction", {"transaction": batch.to_xdr()})
    assert simulated["error"] == "Transaction contains more than one operation"


async def test_unknown_method_is_jrpc2s_no_such_method(sandbox: InProcessSandbox) -> None:
    assert await error(sandbox, "getFoo", {}) == (-32601, 'no such method "getFoo"')


async def test_send_transaction_bad_xdr_is_invalid_xdr(sandbox: InProcessSandbox) -> None:
    assert await error(sandbox, "sendTransaction", {"transaction": "AAAA"}) == (
        -32602,
        "invalid_xdr",
    )


async def test_friendbot_takes_post_as_well_as_get(sandbox: InProcessSandbox) -> None:
    first, second = Keypair.random(), Keypair.random()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sandbox.base_url}/friendbot?addr={first.public_key}") as r:
            assert r.status == 200
        async with session.get(f"{sandbox.base_url}/friendbot?addr={second.public_key}") as r:
            assert r.status == 200
    assert await sandbox.account(first.public_key) is not None
    assert await sandbox.account(second.public_key) is not None
