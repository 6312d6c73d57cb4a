"""The sandbox as stellar-sdk's SorobanServerAsync sees it: admission rules, on-chain effects."""

from __future__ import annotations

import time

import aiohttp
import pytest
from stellar_sdk import (
    Asset,
    Keypair,
    MuxedAccount,
    Network,
    SorobanServerAsync,
    TransactionBuilder,
    TransactionEnvelope,
    scval,
    xdr,
)
from stellar_sdk.auth import authorize_entry
from stellar_sdk.exceptions import PrepareTransactionException
from stellar_sdk.soroban_rpc import EventFilter, GetTransactionStatus, SendTransactionStatus

from soroban_sandbox.testing import InProcessSandbox

from .helpers import (
    TRANSFER_TOPIC,
    funded,
    native_id,
    result_code,
    transfer_tx,
    wait_for,
    xlm_transfers_to,
)

Code = xdr.TransactionResultCode
START = 10_000 * 10_000_000


async def send_signed(
    server: SorobanServerAsync, tx: TransactionEnvelope, *signers: Keypair
) -> tuple[SendTransactionStatus, str, str | None]:
    for signer in signers:
        tx.sign(signer)
    sent = await server.send_transaction(tx)
    return sent.status, sent.hash, sent.error_result_xdr


async def test_friendbot_account_starts_at_ledger_shifted_sequence(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (alice,) = await funded(sandbox, 1)
    account = await server.load_account(alice.public_key)
    row = await sandbox.account(alice.public_key)
    assert row is not None
    assert row["balance_stroops"] == START
    assert account.sequence == row["sequence"]
    assert account.sequence >> 32 >= 1 and account.sequence & 0xFFFFFFFF == 0


async def test_xlm_transfer_lands_moves_balances_and_is_listed(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1_234_567)
    resource_fee = tx.transaction.soroban_data.resource_fee.int64  # type: ignore[union-attr]
    assert tx.transaction.fee == 100 + resource_fee
    status, tx_hash, _ = await send_signed(server, tx, alice)
    assert status == SendTransactionStatus.PENDING
    landed = await wait_for(server, tx_hash)
    assert landed.status == GetTransactionStatus.SUCCESS
    assert landed.ledger is not None and landed.ledger <= landed.latest_ledger
    assert result_code(landed.result_xdr or "") == Code.txSUCCESS
    fee = xdr.TransactionResult.from_xdr(landed.result_xdr or "").fee_charged.int64
    # Protocol 23: the unused refundable part of the resource fee comes back after apply,
    # feeCharged is net of it, and the fee events (v4 meta) say both halves.
    meta = xdr.TransactionMeta.from_xdr(landed.result_meta_xdr or "")
    assert meta.v4 is not None and meta.v4.soroban_meta is not None
    spent = meta.v4.soroban_meta.ext.v1
    assert spent is not None
    used = spent.total_non_refundable_resource_fee_charged.int64 + (
        spent.total_refundable_resource_fee_charged.int64
    )
    assert fee == 100 + used < 100 + resource_fee
    amounts = [scval.to_native(e.event.body.v0.data) for e in meta.v4.events]  # type: ignore[union-attr]
    assert amounts == [100 + resource_fee, -(resource_fee - used)]
    alice_row, bob_row = (
        await sandbox.account(alice.public_key),
        await sandbox.account(bob.public_key),
    )
    assert alice_row is not None and bob_row is not None
    assert alice_row["balance_stroops"] == START - 1_234_567 - fee
    assert alice_row["sequence"] == tx.transaction.sequence
    assert bob_row["balance_stroops"] == START + 1_234_567
    assert await sandbox.transfers() == [
        {
            "tx_hash": tx_hash,
            "ledger": landed.ledger,
            "contract_id": native_id(sandbox.passphrase),
            "function": "transfer",
            "from": alice.public_key,
            "to": bob.public_key,
            "amount_stroops": 1_234_567,
            "asset": "native",
            "to_muxed_id": None,
            "to_muxed_id_type": None,
        }
    ]
    envelope = TransactionEnvelope.from_xdr(landed.envelope_xdr or "", sandbox.passphrase)
    assert envelope.hash_hex() == tx_hash
    assert [len(op.events) for op in meta.v4.operations] == [1]  # the SAC transfer event


async def test_transfer_event_is_served_by_get_events_with_topic_filter(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    start = (await server.get_latest_ledger()).sequence
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 42)
    _, tx_hash, _ = await send_signed(server, tx, alice)
    await wait_for(server, tx_hash)

    (event,) = await xlm_transfers_to(server, sandbox.passphrase, start, bob.public_key)
    assert event.transaction_hash == tx_hash
    assert scval.to_native(xdr.SCVal.from_xdr(event.value)) == 42
    assert scval.to_native(xdr.SCVal.from_xdr(event.topic[3])) == "native"
    to_bob = scval.to_address(bob.public_key).to_xdr()
    other = await server.get_events(
        start_ledger=start, filters=[EventFilter(topics=[[TRANSFER_TOPIC, to_bob, "*", "*"]])]
    )
    assert other.events == []


async def test_payout_method_moves_xlm_like_a_transfer(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    payout_id = (await sandbox.config())["payout_contract_id"]
    tx = await transfer_tx(
        server,
        sandbox.passphrase,
        alice,
        bob.public_key,
        5_000,
        contract_id=payout_id,
        function="distribute_winnings",
    )
    _, tx_hash, _ = await send_signed(server, tx, alice)
    assert (await wait_for(server, tx_hash)).status == GetTransactionStatus.SUCCESS
    (row,) = await sandbox.transfers()
    assert (row["contract_id"], row["function"], row["amount_stroops"]) == (
        payout_id,
        "distribute_winnings",
        5_000,
    )
    bob_row = await sandbox.account(bob.public_key)
    assert bob_row is not None and bob_row["balance_stroops"] == START + 5_000


async def test_channel_account_pays_with_address_credentials_signed_by_from(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    distributor, channel, winner = await funded(sandbox, 3)
    tx = await transfer_tx(
        server,
        sandbox.passphrase,
        channel,
        winner.public_key,
        777,
        from_=distributor.public_key,
    )
    op = tx.transaction.operations[0]
    (entry,) = op.auth  # type: ignore[attr-defined]
    # stellar-sdk asks for upgraded auth (useUpgradedAuth) by default: protocol 27 records V2.
    assert entry.credentials.type == xdr.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2
    latest = (await server.get_latest_ledger()).sequence
    op.auth = [authorize_entry(entry, distributor, latest + 100, sandbox.passphrase)]  # type: ignore[attr-defined]
    _, tx_hash, _ = await send_signed(server, tx, channel)
    assert (await wait_for(server, tx_hash)).status == GetTransactionStatus.SUCCESS
    dist = await sandbox.account(distributor.public_key)
    assert dist is not None and dist["balance_stroops"] == START - 777
    assert (await sandbox.transfers())[0]["from"] == distributor.public_key


async def test_unsigned_or_wrongly_signed_address_credentials_fail_on_chain(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    distributor, channel, winner = await funded(sandbox, 3)
    tx = await transfer_tx(
        server, sandbox.passphrase, channel, winner.public_key, 777, from_=distributor.public_key
    )
    op = tx.transaction.operations[0]
    latest = (await server.get_latest_ledger()).sequence
    op.auth = [authorize_entry(op.auth[0], winner, latest + 100, sandbox.passphrase)]  # type: ignore[attr-defined]
    status, tx_hash, _ = await send_signed(server, tx, channel)
    assert status == SendTransactionStatus.PENDING
    landed = await wait_for(server, tx_hash)
    assert landed.status == GetTransactionStatus.FAILED
    assert await sandbox.transfers() == []
    detail = await sandbox.transaction(tx_hash)
    assert detail is not None and "did not authorize" in detail["failure"]
    chan = await sandbox.account(channel.public_key)
    assert chan is not None and chan["sequence"] == tx.transaction.sequence


async def test_issued_asset_transfer_mints_from_issuer_then_moves_to_a_contract(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, holder = await funded(sandbox, 2)
    vault = (await sandbox.config())["payout_contract_id"]
    contract_id = await sandbox.deploy_asset("USDC", issuer.public_key)
    assert contract_id == Asset("USDC", issuer.public_key).contract_id(sandbox.passphrase)
    # A G holder's SAC balance is its classic trustline (soroban-env-host balance.rs).
    await sandbox.open_trustline(holder.public_key, f"USDC:{issuer.public_key}")
    mint = await transfer_tx(
        server, sandbox.passphrase, issuer, holder.public_key, 900, contract_id=contract_id
    )
    _, h1, _ = await send_signed(server, mint, issuer)
    assert (await wait_for(server, h1)).status == GetTransactionStatus.SUCCESS
    move = await transfer_tx(
        server, sandbox.passphrase, holder, vault, 400, contract_id=contract_id
    )
    _, h2, _ = await send_signed(server, move, holder)
    assert (await wait_for(server, h2)).status == GetTransactionStatus.SUCCESS
    holder_row = await sandbox.account(holder.public_key)
    assert holder_row is not None
    assert holder_row["balances"][f"USDC:{issuer.public_key}"] == 500
    assert holder_row["token_balances"] == {}
    usdc = Asset("USDC", issuer.public_key)
    balance = await server.get_sac_balance(vault, usdc, sandbox.passphrase)
    assert balance.balance_entry is not None and balance.balance_entry.amount == 400


async def test_wrong_sequence_number_is_rejected_with_bad_seq(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    tx.transaction.sequence += 1
    status, _, error = await send_signed(server, tx, alice)
    assert status == SendTransactionStatus.ERROR
    assert result_code(error or "") == Code.txBAD_SEQ


async def test_transaction_signed_for_another_network_is_bad_auth(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    foreign = TransactionEnvelope(tx.transaction, Network.TESTNET_NETWORK_PASSPHRASE)
    foreign.sign(alice)
    sent = await server.send_transaction(foreign)
    assert sent.status == SendTransactionStatus.ERROR
    assert result_code(sent.error_result_xdr or "") == Code.txBAD_AUTH


async def test_signature_by_another_key_is_bad_auth(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    status, _, error = await send_signed(server, tx, bob)
    assert status == SendTransactionStatus.ERROR
    assert result_code(error or "") == Code.txBAD_AUTH


async def test_fee_below_resource_fee_plus_base_fee_is_insufficient_fee(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    tx.transaction.fee -= 1
    status, _, error = await send_signed(server, tx, alice)
    assert status == SendTransactionStatus.ERROR
    assert result_code(error or "") == Code.txINSUFFICIENT_FEE


async def test_expired_and_future_time_bounds_are_rejected(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    closed = int((await server.get_latest_ledger()).close_time)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    tx.transaction.preconditions.time_bounds.max_time = closed - 1  # type: ignore[union-attr]
    status, _, error = await send_signed(server, tx, alice)
    assert status == SendTransactionStatus.ERROR
    assert result_code(error or "") == Code.txTOO_LATE
    early = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    early.transaction.preconditions.time_bounds.max_time = 0  # type: ignore[union-attr]
    early.transaction.preconditions.time_bounds.min_time = int(time.time()) + 3600  # type: ignore[union-attr]
    status, _, error = await send_signed(server, early, alice)
    assert result_code(error or "") == Code.txTOO_EARLY


async def test_memo_on_soroban_transaction_is_soroban_invalid(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    from stellar_sdk import TextMemo

    tx.transaction.memo = TextMemo("payout 1")
    status, _, error = await send_signed(server, tx, alice)
    assert status == SendTransactionStatus.ERROR
    assert result_code(error or "") == Code.txSOROBAN_INVALID


async def test_muxed_source_is_soroban_invalid_but_muxed_destination_pays_base_account(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    muxed_bob = MuxedAccount(bob.public_key, 7).account_muxed
    tx = await transfer_tx(server, sandbox.passphrase, alice, muxed_bob, 10)
    tx.transaction.source = MuxedAccount(alice.public_key, 9)
    status, _, error = await send_signed(
        server, TransactionEnvelope(tx.transaction, sandbox.passphrase), alice
    )
    assert result_code(error or "") == Code.txSOROBAN_INVALID
    ok = await transfer_tx(server, sandbox.passphrase, alice, muxed_bob, 10)
    _, tx_hash, _ = await send_signed(server, ok, alice)
    assert (await wait_for(server, tx_hash)).status == GetTransactionStatus.SUCCESS
    bob_row = await sandbox.account(bob.public_key)
    assert bob_row is not None and bob_row["balance_stroops"] == START + 10


async def test_one_pending_transaction_per_source_and_duplicates(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    await sandbox.set_faults(stall_ledgers=True)
    first = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
    first.sign(alice)
    second = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 2)
    second.transaction.sequence += 1
    second.sign(alice)
    assert (await server.send_transaction(first)).status == SendTransactionStatus.PENDING
    assert (await server.send_transaction(first)).status == SendTransactionStatus.DUPLICATE
    assert (await server.send_transaction(second)).status == SendTransactionStatus.TRY_AGAIN_LATER
    await sandbox.set_faults(stall_ledgers=False)
    assert (await wait_for(server, first.hash_hex())).status == GetTransactionStatus.SUCCESS
    again = await server.send_transaction(first)
    # Once included the sequence number is spent: stellar-core answers txBAD_SEQ.
    assert again.status == SendTransactionStatus.ERROR
    assert result_code(again.error_result_xdr or "") == Code.txBAD_SEQ


async def test_insufficient_balance_fails_on_chain_and_still_consumes_seq_and_fee(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1, prepare=True)
    # Raise the amount after simulation: simulation would have refused it.
    args = tx.transaction.operations[0].host_function.invoke_contract.args  # type: ignore[attr-defined]
    args[2] = scval.to_int128(START * 2)
    tx.transaction.operations[0].auth[0].root_invocation.function.contract_fn.args[2] = args[2]  # type: ignore[attr-defined]
    status, tx_hash, _ = await send_signed(server, tx, alice)
    assert status == SendTransactionStatus.PENDING
    landed = await wait_for(server, tx_hash)
    assert landed.status == GetTransactionStatus.FAILED
    result = xdr.TransactionResult.from_xdr(landed.result_xdr or "")
    assert result.result.code == Code.txFAILED
    op = result.result.results[0].tr.invoke_host_function_result  # type: ignore[index,union-attr]
    assert op.code == xdr.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_TRAPPED
    row = await sandbox.account(alice.public_key)
    assert row is not None
    assert row["sequence"] == tx.transaction.sequence
    assert row["balance_stroops"] == START - result.fee_charged.int64
    assert await sandbox.transfers() == []
    detail = await sandbox.transaction(tx_hash)
    assert detail is not None and "Error(Contract, #10)" in detail["failure"]


async def test_simulation_reports_host_errors_in_the_result(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, bob = await funded(sandbox, 2)
    with pytest.raises(PrepareTransactionException) as too_much:
        await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, START * 2)
    assert "Error(Contract, #10)" in (too_much.value.simulate_transaction_response.error or "")
    with pytest.raises(PrepareTransactionException) as missing:
        await transfer_tx(
            server,
            sandbox.passphrase,
            alice,
            bob.public_key,
            1,
            contract_id=Asset("NOPE", bob.public_key).contract_id(sandbox.passphrase),
        )
    assert "does not exist" in (missing.value.simulate_transaction_response.error or "")


async def test_ledger_entries_report_account_sequence_and_balance(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (alice,) = await funded(sandbox, 1)
    stranger = Keypair.random()
    from soroban_sandbox.xdr_build import account_key

    found = await server.get_ledger_entries(
        [account_key(alice.public_key), account_key(stranger.public_key)]
    )
    assert found.entries is not None and len(found.entries) == 1
    data = xdr.LedgerEntryData.from_xdr(found.entries[0].xdr)
    assert data.account is not None
    assert data.account.balance.int64 == START
    row = await sandbox.account(alice.public_key)
    assert row is not None and data.account.seq_num.sequence_number.int64 == row["sequence"]


async def test_ledgers_close_on_the_timer_with_strictly_increasing_close_times(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    first = await server.get_latest_ledger()
    header = xdr.LedgerHeader.from_xdr(first.header_xdr)
    assert header.ledger_seq.uint32 == first.sequence
    assert header.scp_value.close_time.time_point.uint64 == first.close_time
    meta = xdr.LedgerCloseMeta.from_xdr(first.metadata_xdr)
    assert meta.v2 is not None and meta.v2.ledger_header.hash.hash.hex() == first.id
    closed = await sandbox.close_ledger()
    assert closed["sequence"] > first.sequence and closed["close_time"] > first.close_time
    again = await sandbox.close_ledger()
    assert again["close_time"] > closed["close_time"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "getNothing"}, -32601),
        ({"jsonrpc": "2.0", "id": 1, "method": "getTransaction", "params": ["ab"]}, -32602),
        ({"jsonrpc": "2.0", "id": 1, "method": "getTransaction", "params": {"hash": "zz"}}, -32602),
        (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "sendTransaction",
                "params": {"transaction": "AAAA"},
            },
            -32602,
        ),
        ({"id": 1, "method": "getHealth"}, -32600),
        ([{"jsonrpc": "2.0", "id": 1, "method": "getHealth"}], -32600),
    ],
)
async def test_json_rpc_errors_use_standard_codes(
    sandbox: InProcessSandbox, body: object, code: int
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(sandbox.rpc_url, json=body) as resp:
            answer = await resp.json()
    assert answer["error"]["code"] == code
    assert "result" not in answer


async def test_address_v2_credentials_are_accepted_and_nonces_cannot_be_replayed(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    distributor, channel, winner = await funded(sandbox, 3)
    tx = await transfer_tx(
        server, sandbox.passphrase, channel, winner.public_key, 50, from_=distributor.public_key
    )
    op = tx.transaction.operations[0]
    (upgraded,) = op.auth  # type: ignore[attr-defined]
    assert upgraded.credentials.type == xdr.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2
    latest = (await server.get_latest_ledger()).sequence
    signed = authorize_entry(upgraded, distributor, latest + 100, sandbox.passphrase)
    op.auth = [signed]  # type: ignore[attr-defined]
    _, first_hash, _ = await send_signed(server, tx, channel)
    assert (await wait_for(server, first_hash)).status == GetTransactionStatus.SUCCESS
    # The same signed entry (same nonce) in a fresh transaction must not pay twice.
    replay = await transfer_tx(
        server, sandbox.passphrase, channel, winner.public_key, 50, from_=distributor.public_key
    )
    replay.transaction.operations[0].auth = [signed]  # type: ignore[attr-defined]
    _, replay_hash, _ = await send_signed(server, replay, channel)
    assert (await wait_for(server, replay_hash)).status == GetTransactionStatus.FAILED
    detail = await sandbox.transaction(replay_hash)
    assert detail is not None and "nonce already used" in detail["failure"]
    assert [t["tx_hash"] for t in await sandbox.transfers()] == [first_hash]


async def test_expired_authorization_entry_fails_on_chain(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    distributor, channel, winner = await funded(sandbox, 3)
    await sandbox.close_ledger()
    tx = await transfer_tx(
        server, sandbox.passphrase, channel, winner.public_key, 5, from_=distributor.public_key
    )
    op = tx.transaction.operations[0]
    latest = (await server.get_latest_ledger()).sequence
    op.auth = [authorize_entry(op.auth[0], distributor, latest - 1, sandbox.passphrase)]  # type: ignore[attr-defined]
    _, tx_hash, _ = await send_signed(server, tx, channel)
    assert (await wait_for(server, tx_hash)).status == GetTransactionStatus.FAILED
    detail = await sandbox.transaction(tx_hash)
    assert detail is not None and "expired" in detail["failure"]


async def test_operation_source_authorizes_with_source_credentials_when_both_sign(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    distributor, channel, winner = await funded(sandbox, 3)
    account = await server.load_account(channel.public_key)
    tx = (
        TransactionBuilder(account, sandbox.passphrase, base_fee=100)
        .append_invoke_contract_function_op(
            native_id(sandbox.passphrase),
            "transfer",
            [
                scval.to_address(distributor.public_key),
                scval.to_address(winner.public_key),
                scval.to_int128(31),
            ],
            source=distributor.public_key,
        )
        .set_timeout(30)
        .build()
    )
    tx = await server.prepare_transaction(tx)
    (entry,) = tx.transaction.operations[0].auth  # type: ignore[attr-defined]
    assert entry.credentials.type == xdr.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT
    only_channel = TransactionEnvelope.from_xdr(tx.to_xdr(), sandbox.passphrase)
    status, _, error = await send_signed(server, only_channel, channel)
    assert status == SendTransactionStatus.ERROR
    # OperationFrame::checkSignature at submission: txFAILED with opBAD_AUTH for the operation.
    assert result_code(error or "") == Code.txFAILED
    (op_result,) = xdr.TransactionResult.from_xdr(error or "").result.results or []
    assert op_result.code == xdr.OperationResultCode.opBAD_AUTH
    _, tx_hash, _ = await send_signed(server, tx, channel, distributor)
    assert (await wait_for(server, tx_hash)).status == GetTransactionStatus.SUCCESS
    assert (await sandbox.transfers())[0]["from"] == distributor.public_key
