"""Exchange deposits: muxed destinations and memos, as the network carries them, over HTTP with
stellar-sdk.

Sources: stellar-protocol core/cap-0067.md ("Emit a map as the data field in the transfer and
mint event", rules 1 and 2, "Order of precedence for to_muxed_id"); stellar-core
src/transactions/EventManager.cpp (``getPossibleMuxedData``, ``eventForTransferWithIssuerCheck``)
and TransactionUtils.cpp (``makeClassicMemoSCVal``); soroban-env-host
stellar_asset_contract/contract.rs ``transfer`` and event.rs; stellar-core TransactionFrame.cpp
``validateSorobanMemo`` (protocol 25+) and TransactionQueue.cpp ``canAdd`` (before 25).
"""

from __future__ import annotations

import base64
from typing import Any

import aiohttp
import pytest
from stellar_sdk import (
    Asset,
    Keypair,
    MuxedAccount,
    SorobanServerAsync,
    TransactionEnvelope,
    scval,
    xdr,
)
from stellar_sdk.exceptions import PrepareTransactionException
from stellar_sdk.memo import HashMemo, IdMemo, Memo, ReturnHashMemo, TextMemo

from soroban_sandbox.testing import InProcessSandbox

from .helpers import classic_builder as classic
from .helpers import (
    contract_events,
    event_view,
    funded,
    land,
    refusal,
    transfer_tx,
    xlm_transfers_to,
)

XLM = 10_000_000
FRIENDBOT = 10_000 * XLM
BIG_ID = 2**64 - 2  # a muxed id past int64: it must travel as u64


def muxed(account: Keypair, muxed_id: int) -> str:
    return MuxedAccount(account.public_key, muxed_id).account_muxed or ""


async def test_sac_transfer_to_a_muxed_address_credits_its_account_and_the_event_carries_the_id(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, exchange = await funded(sandbox, 2)
    deposit = muxed(exchange, BIG_ID)
    start = (await server.get_latest_ledger()).sequence
    unprepared = await transfer_tx(
        server, sandbox.passphrase, alice, deposit, 25 * XLM, prepare=False
    )
    simulated = await server.simulate_transaction(unprepared)
    tx = await transfer_tx(server, sandbox.passphrase, alice, deposit, 25 * XLM)
    landed = await land(server, tx, alice)

    assert landed.status.value == "SUCCESS"
    assert (await sandbox.balances(exchange.public_key))["native"] == FRIENDBOT + 25 * XLM
    expected = (
        ["transfer", alice.public_key, exchange.public_key, "native"],
        {"amount": 25 * XLM, "to_muxed_id": BIG_ID},
    )
    # The simulation's diagnostic events hold the contract event as it will be emitted.
    assert simulated.events is not None
    emitted = [xdr.DiagnosticEvent.from_xdr(e).event for e in simulated.events]
    assert [event_view(e) for e in emitted if e.type == xdr.ContractEventType.CONTRACT] == [
        expected
    ]
    (event,) = contract_events(landed)
    assert event_view(event) == expected
    to_muxed_id = event.body.v0.data.map.sc_map[1].val  # type: ignore[union-attr]
    assert to_muxed_id.type == xdr.SCValType.SCV_U64
    # getEvents: the topic is the plain G address, so a filter on it finds the deposit.
    found = await xlm_transfers_to(server, sandbox.passphrase, start, exchange.public_key)
    assert [scval.to_native(xdr.SCVal.from_xdr(e.value)) for e in found] == [expected[1]]
    (row,) = await sandbox.transfers()
    assert (row["to"], row["to_muxed_id"], row["to_muxed_id_type"]) == (
        exchange.public_key,
        BIG_ID,
        "u64",
    )


async def test_a_classic_batch_carries_each_muxed_id_and_the_memo_for_plain_destinations(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, exchange, shop = await funded(sandbox, 3)
    newcomer = Keypair.random().public_key
    tx = (
        (await classic(server, sandbox, payer.public_key))
        .add_id_memo(42)
        .append_payment_op(muxed(exchange, 7), Asset.native(), "3")
        .append_payment_op(shop.public_key, Asset.native(), "2")
        .append_create_account_op(newcomer, "1")
        .build()
    )
    landed = await land(server, tx, payer)

    assert landed.status.value == "SUCCESS"
    views = [event_view(e) for e in contract_events(landed)]
    assert views == [
        # A muxed destination's id wins over the memo (CAP-67 order of precedence).
        (["transfer", payer.public_key, exchange.public_key, "native"],
         {"amount": 3 * XLM, "to_muxed_id": 7}),
        (["transfer", payer.public_key, shop.public_key, "native"],
         {"amount": 2 * XLM, "to_muxed_id": 42}),
        (["transfer", payer.public_key, newcomer, "native"],
         {"amount": XLM, "to_muxed_id": 42}),
    ]
    echoed = TransactionEnvelope.from_xdr(landed.envelope_xdr or "", sandbox.passphrase)
    assert echoed.transaction.memo == IdMemo(42)
    first = echoed.transaction.operations[0]
    assert first.destination.account_muxed == muxed(exchange, 7)  # type: ignore[attr-defined]
    assert (await sandbox.balances(exchange.public_key))["native"] == FRIENDBOT + 3 * XLM


@pytest.mark.parametrize(
    ("memo", "kind", "value"),
    [
        (TextMemo("deposit 0001-ABCD-efgh-99999"), xdr.SCValType.SCV_STRING,
         b"deposit 0001-ABCD-efgh-99999"),
        (IdMemo(2**64 - 1), xdr.SCValType.SCV_U64, 2**64 - 1),
        (HashMemo(b"\x01" * 32), xdr.SCValType.SCV_BYTES, b"\x01" * 32),
        (ReturnHashMemo(b"\x02" * 32), xdr.SCValType.SCV_BYTES, b"\x02" * 32),
    ],
)
async def test_each_classic_memo_type_becomes_the_events_to_muxed_id(
    sandbox: InProcessSandbox,
    server: SorobanServerAsync,
    memo: Memo,
    kind: xdr.SCValType,
    value: Any,
) -> None:
    payer, exchange = await funded(sandbox, 2)
    builder = await classic(server, sandbox, payer.public_key)
    tx = builder.add_memo(memo).append_payment_op(exchange.public_key, Asset.native(), "1").build()
    landed = await land(server, tx, payer)

    (event,) = contract_events(landed)
    data = event.body.v0.data  # type: ignore[union-attr]
    assert data.map is not None
    amount, to_muxed_id = data.map.sc_map
    assert scval.to_native(amount.key) == "amount" and scval.to_native(amount.val) == XLM
    assert scval.to_native(to_muxed_id.key) == "to_muxed_id"
    assert to_muxed_id.val.type == kind
    raw = to_muxed_id.val.str.sc_string if kind == xdr.SCValType.SCV_STRING else None  # type: ignore[union-attr]
    assert (raw if raw is not None else scval.to_native(to_muxed_id.val)) == value
    echoed = TransactionEnvelope.from_xdr(landed.envelope_xdr or "", sandbox.passphrase)
    assert echoed.transaction.memo == memo


async def test_a_text_memo_longer_than_28_bytes_does_not_decode(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (payer,) = await funded(sandbox, 1)
    builder = await classic(server, sandbox, payer.public_key)
    tx = builder.add_text_memo("x" * 28).append_payment_op(payer.public_key, Asset.native(), "1")
    envelope = tx.build()
    envelope.sign(payer)
    raw = envelope.to_xdr_object().to_xdr_bytes()
    at = raw.index(b"\x00\x00\x00\x1c" + b"x" * 28)  # string<28>: length, then the bytes
    too_long = raw[:at] + b"\x00\x00\x00\x20" + b"x" * 32 + raw[at + 32 :]
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "sendTransaction",
        "params": {"transaction": base64.b64encode(too_long).decode()},
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(sandbox.rpc_url, json=body) as resp:
            answer = await resp.json()
    assert answer["error"] == {"code": -32602, "message": "invalid_xdr"}


async def test_issuer_payments_mint_and_payments_to_the_issuer_burn(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, holder = await funded(sandbox, 2)
    usd = f"USD:{issuer.public_key}"
    await sandbox.open_trustline(holder.public_key, usd)
    asset = Asset("USD", issuer.public_key)
    minted = (
        (await classic(server, sandbox, issuer.public_key))
        .append_payment_op(muxed(holder, 5), asset, "10")
        .build()
    )
    burned = (
        (await classic(server, sandbox, holder.public_key))
        .add_id_memo(9)  # a burn carries no to_muxed_id: its data stays the amount
        .append_payment_op(issuer.public_key, asset, "4")
        .build()
    )
    mint_events = contract_events(await land(server, minted, issuer))
    burn_events = contract_events(await land(server, burned, holder))

    assert [event_view(e) for e in mint_events] == [
        (["mint", holder.public_key, usd], {"amount": 10 * XLM, "to_muxed_id": 5})
    ]
    assert [event_view(e) for e in burn_events] == [(["burn", holder.public_key, usd], 4 * XLM)]
    sac = await sandbox.deploy_asset("USD", issuer.public_key)
    sac_mint = await transfer_tx(
        server, sandbox.passphrase, issuer, muxed(holder, 6), 3, contract_id=sac
    )
    (event,) = contract_events(await land(server, sac_mint, issuer))
    assert event_view(event) == (["mint", holder.public_key, usd], {"amount": 3, "to_muxed_id": 6})
    assert (await sandbox.balances(holder.public_key))[usd] == 6 * XLM + 3


async def test_only_the_sac_transfer_takes_a_muxed_address(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    alice, exchange = await funded(sandbox, 2)
    payout_id = (await sandbox.config())["payout_contract_id"]
    with pytest.raises(PrepareTransactionException) as to_contract:
        await transfer_tx(
            server,
            sandbox.passphrase,
            alice,
            muxed(exchange, 1),
            5,
            contract_id=payout_id,
            function="distribute_winnings",
        )
    with pytest.raises(PrepareTransactionException) as from_muxed:
        await transfer_tx(
            server, sandbox.passphrase, alice, exchange.public_key, 5, from_=muxed(alice, 1)
        )
    assert "muxed address where the function takes an Address" in str(
        to_contract.value.simulate_transaction_response.error
    )
    assert "from must be an account or contract address" in str(
        from_muxed.value.simulate_transaction_response.error
    )
    assert await sandbox.transfers() == []


@pytest.mark.parametrize(
    ("sandbox", "with_bad_sequence"),
    [(27, "txSOROBAN_INVALID"), (25, "txSOROBAN_INVALID"), (24, "txBAD_SEQ")],
    indirect=["sandbox"],
)
async def test_a_soroban_memo_is_refused_inside_check_valid_from_protocol_25(
    sandbox: InProcessSandbox, server: SorobanServerAsync, with_bad_sequence: str
) -> None:
    """Protocol 25 moved the memo rule from the queue (after checkValid) into checkValid
    (before the sequence number): a memo with a bad sequence number gets another code."""
    alice, bob = await funded(sandbox, 2)
    codes = []
    for bad_sequence in (False, True):
        tx = await transfer_tx(server, sandbox.passphrase, alice, bob.public_key, 1)
        tx.transaction.memo = TextMemo("deposit 17")
        tx.transaction.sequence += int(bad_sequence)
        codes.append(await refusal(server, tx, alice))
    memo_sim = await transfer_tx(
        server, sandbox.passphrase, alice, bob.public_key, 1, prepare=False
    )
    memo_sim.transaction.memo = TextMemo("deposit 17")
    simulated = await server.simulate_transaction(memo_sim)

    assert codes == ["txSOROBAN_INVALID", with_bad_sequence]
    # stellar-rpc 25.1.0 (#588) refuses it in simulation, whatever the protocol.
    assert simulated.error == (
        "Transaction contains a memo. Soroban transactions do not support memos."
    )
