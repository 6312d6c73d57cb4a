"""Classic Payment, CreateAccount and AccountMerge as stellar-core applies them, over HTTP
with stellar-sdk.

Rules from stellar-core src/transactions/PaymentOpFrame.cpp (a PathPaymentStrictReceive with an
empty path: PathPaymentOpFrameBase.cpp), CreateAccountOpFrame.cpp, MergeOpFrame.cpp,
OperationFrame.cpp and TransactionFrame.cpp (applyOperations, checkValid); each test names the
rule it checks.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import aiohttp
from stellar_sdk import Asset, Keypair, SorobanServerAsync, TransactionEnvelope
from stellar_sdk import xdr as x

from soroban_sandbox.testing import InProcessSandbox
from soroban_sandbox.xdr_build import account_key, trustline_key

from .helpers import classic_builder as builder
from .helpers import funded, wait_for

XLM = 10_000_000  # stroops
FRIENDBOT = 10_000 * XLM


def op_codes(result_xdr: str | None) -> list[str]:
    """Each operation's result code name, as a service reads them to blame payouts."""
    assert result_xdr is not None
    names = []
    for r in x.TransactionResult.from_xdr(result_xdr).result.results or []:
        if r.tr is None:
            names.append(r.code.name)
        elif r.tr.payment_result is not None:
            names.append(r.tr.payment_result.code.name)
        elif r.tr.account_merge_result is not None:
            names.append(r.tr.account_merge_result.code.name)
        else:
            assert r.tr.create_account_result is not None
            names.append(r.tr.create_account_result.code.name)
    return names


def tx_code(result_xdr: str | None) -> str:
    assert result_xdr is not None
    return x.TransactionResult.from_xdr(result_xdr).result.code.name


async def usd_world(sandbox: InProcessSandbox) -> tuple[Keypair, Keypair, str]:
    """An issuer of USD and a payer holding 100 USD on an authorised trustline."""
    issuer, payer = await funded(sandbox, 2)
    usd = f"USD:{issuer.public_key}"
    await sandbox.open_trustline(payer.public_key, usd)
    await sandbox.issue(usd, payer.public_key, 100 * XLM)
    return issuer, payer, usd


async def land(server: SorobanServerAsync, tx: TransactionEnvelope) -> Any:
    sent = await server.send_transaction(tx)
    assert sent.status.value == "PENDING", sent
    return await wait_for(server, tx.hash_hex())


async def test_a_batch_names_each_guilty_payment_and_moves_nothing(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, payer, usd = await usd_world(sandbox)
    asset = Asset("USD", issuer.public_key)
    ok, no_trust, full, unauthorised = await funded(sandbox, 4)
    missing = Keypair.random().public_key
    await sandbox.open_trustline(ok.public_key, usd)
    await sandbox.open_trustline(full.public_key, usd, limit=5 * XLM)
    await sandbox.open_trustline(unauthorised.public_key, usd, authorized=False)
    before = await sandbox.balances(payer.public_key)
    tx = (
        (await builder(server, sandbox, payer.public_key))
        .append_payment_op(ok.public_key, asset, "10")
        .append_payment_op(missing, asset, "1")
        .append_payment_op(no_trust.public_key, asset, "1")
        .append_payment_op(full.public_key, asset, "6")
        .append_payment_op(unauthorised.public_key, asset, "1")
        .append_payment_op(ok.public_key, Asset.native(), "1")
        .append_payment_op(missing, Asset.native(), "1")
        .build()
    )
    tx.sign(payer)
    landed = await land(server, tx)
    assert landed.status.value == "FAILED"
    assert tx_code(landed.result_xdr) == "txFAILED"
    assert op_codes(landed.result_xdr) == [
        "PAYMENT_SUCCESS",
        "PAYMENT_NO_DESTINATION",
        "PAYMENT_NO_TRUST",
        "PAYMENT_LINE_FULL",
        "PAYMENT_NOT_AUTHORIZED",
        "PAYMENT_SUCCESS",
        "PAYMENT_NO_DESTINATION",
    ]
    # Atomic: nothing moved but the fee (100 per operation) and the sequence number.
    after = await sandbox.account(payer.public_key)
    assert after is not None
    assert after["balances"] == {"native": before["native"] - 700, usd: 100 * XLM}
    assert after["sequence"] == tx.transaction.sequence
    assert (await sandbox.balances(ok.public_key))[usd] == 0
    assert [t for t in await sandbox.transfers() if t["tx_hash"] == tx.hash_hex()] == []


async def test_a_batch_of_xlm_issued_asset_and_new_accounts_lands_whole(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, payer, usd = await usd_world(sandbox)
    (holder,) = await funded(sandbox, 1)
    await sandbox.open_trustline(holder.public_key, usd)
    newcomer = Keypair.random().public_key
    tx = (
        (await builder(server, sandbox, payer.public_key))
        .append_payment_op(holder.public_key, Asset("USD", issuer.public_key), "12.5")
        .append_payment_op(holder.public_key, Asset.native(), "3")
        .append_create_account_op(newcomer, "1")
        .append_payment_op(issuer.public_key, Asset("USD", issuer.public_key), "7.5")
        .build()
    )
    tx.sign(payer)
    landed = await land(server, tx)
    assert landed.status.value == "SUCCESS", op_codes(landed.result_xdr)
    assert op_codes(landed.result_xdr) == [
        "PAYMENT_SUCCESS",
        "PAYMENT_SUCCESS",
        "CREATE_ACCOUNT_SUCCESS",
        "PAYMENT_SUCCESS",  # back to the issuer: it burns, no trustline needed
    ]
    assert await sandbox.balances(holder.public_key) == {
        "native": FRIENDBOT + 3 * XLM,
        usd: 125_000_000,
    }
    assert await sandbox.balances(payer.public_key) == {
        "native": FRIENDBOT - 400 - 3 * XLM - 1 * XLM,
        usd: 80 * XLM,
    }
    created = await sandbox.account(newcomer)
    assert created is not None and created["balance_stroops"] == XLM
    # getStartingSequenceNumber: the ledger that created it, shifted 32 bits.
    assert created["sequence"] == landed.ledger << 32
    entries = await server.get_ledger_entries(
        [account_key(newcomer), trustline_key(holder.public_key, Asset("USD", issuer.public_key))]
    )
    assert len(entries.entries or []) == 2
    line = next(
        x.LedgerEntryData.from_xdr(e.xdr).trust_line
        for e in entries.entries or []
        if x.LedgerEntryData.from_xdr(e.xdr).trust_line is not None
    )
    assert line is not None and line.balance.int64 == 125_000_000
    functions = [t["function"] for t in await sandbox.transfers() if t["tx_hash"] == tx.hash_hex()]
    assert functions == ["payment", "payment", "create_account", "payment"]


async def test_later_operations_see_earlier_ones_so_the_payer_runs_short_on_one_item(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, payer, usd = await usd_world(sandbox)
    asset = Asset("USD", issuer.public_key)
    first, second = await funded(sandbox, 2)
    for holder in (first, second):
        await sandbox.open_trustline(holder.public_key, usd)
    tx = (
        (await builder(server, sandbox, payer.public_key))
        .append_payment_op(first.public_key, asset, "60")
        .append_payment_op(second.public_key, asset, "60")
        .build()
    )
    tx.sign(payer)
    landed = await land(server, tx)
    assert op_codes(landed.result_xdr) == ["PAYMENT_SUCCESS", "PAYMENT_UNDERFUNDED"]
    assert (await sandbox.balances(payer.public_key))[usd] == 100 * XLM


async def test_source_without_trustline_or_authorisation_is_refused(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, payer, usd = await usd_world(sandbox)
    asset = Asset("USD", issuer.public_key)
    (holder, stranger) = await funded(sandbox, 2)
    await sandbox.open_trustline(holder.public_key, usd)
    await sandbox.authorize_trustline(payer.public_key, usd, authorized=False)
    tx = (
        (await builder(server, sandbox, payer.public_key))
        .append_payment_op(holder.public_key, asset, "1")
        .append_payment_op(holder.public_key, asset, "1", source=stranger.public_key)
        .build()
    )
    tx.sign(payer)
    tx.sign(stranger)
    landed = await land(server, tx)
    assert op_codes(landed.result_xdr) == ["PAYMENT_SRC_NOT_AUTHORIZED", "PAYMENT_SRC_NO_TRUST"]


async def test_create_account_result_codes(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, existing, poor = await funded(sandbox, 3)
    await sandbox.set_balance(poor.public_key, 3 * XLM)
    tx = (
        (await builder(server, sandbox, payer.public_key))
        .append_create_account_op(existing.public_key, "5")
        .append_create_account_op(Keypair.random().public_key, "0.9999999")
        .append_create_account_op(Keypair.random().public_key, "2.5", source=poor.public_key)
        .build()
    )
    tx.sign(payer)
    tx.sign(poor)
    landed = await land(server, tx)
    assert op_codes(landed.result_xdr) == [
        "CREATE_ACCOUNT_ALREADY_EXIST",
        "CREATE_ACCOUNT_LOW_RESERVE",  # below 2 base reserves (1 XLM)
        "CREATE_ACCOUNT_UNDERFUNDED",  # 3 XLM - 1 XLM reserve < 2.5
    ]


async def test_a_trustline_raises_the_minimum_balance_by_one_base_reserve(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    _, payer, _ = await usd_world(sandbox)
    (sink,) = await funded(sandbox, 1)
    await sandbox.set_balance(payer.public_key, 3 * XLM)
    row = await sandbox.account(payer.public_key)
    assert row is not None and row["min_balance_stroops"] == 15_000_000  # (2 + 1) x 0.5 XLM
    # The fee (100) is charged before the operations run: 3 XLM - 100 - 1.5 XLM < 1.5 XLM.
    too_much = (
        (await builder(server, sandbox, payer.public_key))
        .append_payment_op(sink.public_key, Asset.native(), "1.5")
        .build()
    )
    too_much.sign(payer)
    assert op_codes((await land(server, too_much)).result_xdr) == ["PAYMENT_UNDERFUNDED"]
    fits = (
        (await builder(server, sandbox, payer.public_key))
        .append_payment_op(sink.public_key, Asset.native(), "1.4999800")
        .build()
    )
    fits.sign(payer)
    assert (await land(server, fits)).status.value == "SUCCESS"
    assert (await sandbox.balances(payer.public_key))["native"] == 15_000_000


async def test_an_operation_source_must_sign_or_the_submission_is_txfailed_opbad_auth(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    channel, payer, sink = await funded(sandbox, 3)

    async def batch() -> TransactionEnvelope:
        return (
            (await builder(server, sandbox, channel.public_key))
            .append_payment_op(sink.public_key, Asset.native(), "1", source=payer.public_key)
            .append_payment_op(sink.public_key, Asset.native(), "2", source=payer.public_key)
            .build()
        )

    unsigned = await batch()
    unsigned.sign(channel)
    sent = await server.send_transaction(unsigned)
    # TransactionFrame::checkValid: the operation's checkValid fails first at its signature;
    # txFAILED at submission, nothing charged, sequence not consumed.
    assert sent.status.value == "ERROR"
    assert tx_code(sent.error_result_xdr) == "txFAILED"
    assert op_codes(sent.error_result_xdr) == ["opBAD_AUTH", "PAYMENT_SUCCESS"]
    signed = await batch()
    signed.sign(channel)
    signed.sign(payer)
    assert (await land(server, signed)).status.value == "SUCCESS"
    # The channel pays the fee; the payer pays the amounts.
    assert (await sandbox.balances(channel.public_key))["native"] == FRIENDBOT - 200
    assert (await sandbox.balances(payer.public_key))["native"] == FRIENDBOT - 3 * XLM


async def test_an_operation_source_that_does_not_exist_fails_at_apply_with_opno_account(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    channel, sink = await funded(sandbox, 2)
    ghost = Keypair.random()
    tx = (
        (await builder(server, sandbox, channel.public_key))
        .append_payment_op(sink.public_key, Asset.native(), "1", source=ghost.public_key)
        .build()
    )
    tx.sign(channel)
    tx.sign(ghost)  # checkSignatureNoAccount: signed by the key itself, accepted at submission
    landed = await land(server, tx)
    assert landed.status.value == "FAILED"
    assert op_codes(landed.result_xdr) == ["opNO_ACCOUNT"]


async def test_create_account_to_oneself_is_malformed_at_submission(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (payer,) = await funded(sandbox, 1)
    tx = (
        (await builder(server, sandbox, payer.public_key))
        .append_create_account_op(payer.public_key, "2")
        .build()
    )
    tx.sign(payer)
    sent = await server.send_transaction(tx)
    assert sent.status.value == "ERROR"
    assert op_codes(sent.error_result_xdr) == ["CREATE_ACCOUNT_MALFORMED"]


async def test_one_hundred_operations_land_and_a_hundred_and_first_does_not_decode(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, sink = await funded(sandbox, 2)
    build = await builder(server, sandbox, payer.public_key)
    for _ in range(100):
        build.append_payment_op(sink.public_key, Asset.native(), "0.0000001")
    full = build.build()
    full.sign(payer)
    assert (await land(server, full)).status.value == "SUCCESS"
    # Stellar-transaction.x: `Operation operations<MAX_OPS_PER_TX>` (100). stellar-sdk will not
    # build a 101st, and stellar-rpc's XDR decoder refuses one: -32602 invalid_xdr.
    raw = bytearray(base64.b64decode(full.to_xdr()))
    op = x.Operation.from_xdr(full.transaction.operations[0].to_xdr_object().to_xdr())
    count_at = raw.index(struct.pack(">I", 100) + op.to_xdr_bytes())
    raw[count_at : count_at + 4] = struct.pack(">I", 101)
    raw[count_at + 4 : count_at + 4] = op.to_xdr_bytes()
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "sendTransaction",
        "params": {"transaction": base64.b64encode(bytes(raw)).decode()},
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(sandbox.rpc_url, json=body) as resp:
            answer = await resp.json()
    assert answer["error"] == {"code": -32602, "message": "invalid_xdr"}


async def test_admin_refuses_a_trustline_to_an_asset_whose_issuer_does_not_exist(
    sandbox: InProcessSandbox,
) -> None:
    (holder,) = await funded(sandbox, 1)
    usd = f"USD:{Keypair.random().public_key}"
    async with aiohttp.ClientSession() as session:
        body = {"account": holder.public_key, "asset": usd}
        async with session.post(f"{sandbox.base_url}/admin/trustlines", json=body) as resp:
            assert resp.status == 400
            assert "NO_ISSUER" in (await resp.json())["error"]


async def merge(
    server: SorobanServerAsync, sandbox: InProcessSandbox, channel: Keypair, into: str
) -> TransactionEnvelope:
    """One AccountMerge of `channel` into `into`, signed by the channel."""
    tx: TransactionEnvelope = (
        (await builder(server, sandbox, channel.public_key))
        .append_account_merge_op(into)
        .build()
    )
    tx.sign(channel)
    return tx


async def test_account_merge_moves_the_whole_balance_and_deletes_the_account(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    """MergeOpFrame::doApplyFromV16: the source's balance (after the fee) goes to the
    destination, the result carries it, and the account is gone; a SAC transfer is emitted."""
    channel, funding = await funded(sandbox, 2)
    tx = await merge(server, sandbox, channel, funding.public_key)
    landed = await land(server, tx)
    assert landed.status.value == "SUCCESS", op_codes(landed.result_xdr)
    (result,) = x.TransactionResult.from_xdr(landed.result_xdr).result.results or []
    assert result.tr is not None and result.tr.account_merge_result is not None
    moved = result.tr.account_merge_result.source_account_balance
    assert moved is not None and moved.int64 == FRIENDBOT - 100
    assert await sandbox.account(channel.public_key) is None
    assert (await sandbox.balances(funding.public_key))["native"] == 2 * FRIENDBOT - 100
    (transfer,) = [t for t in await sandbox.transfers() if t["tx_hash"] == tx.hash_hex()]
    assert transfer["function"] == "account_merge"
    assert transfer["amount_stroops"] == FRIENDBOT - 100


async def test_account_merge_result_codes_and_the_merged_account_is_gone_for_later_ops(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    _, _, usd = await usd_world(sandbox)
    channel, funding, holder = await funded(sandbox, 3)
    await sandbox.open_trustline(holder.public_key, usd)
    newcomer = Keypair.random()
    missing = Keypair.random().public_key
    tx = (
        (await builder(server, sandbox, funding.public_key))
        .append_account_merge_op(missing, source=channel.public_key)
        .append_account_merge_op(funding.public_key, source=holder.public_key)
        # Created in this very ledger: its sequence number is ledger << 32, so re-creating it
        # after a merge would not move its sequence forward (isSeqnumTooFar).
        .append_create_account_op(newcomer.public_key, "5")
        .append_account_merge_op(funding.public_key, source=newcomer.public_key)
        .append_account_merge_op(funding.public_key, source=channel.public_key)
        .append_payment_op(channel.public_key, Asset.native(), "1")
        .append_payment_op(funding.public_key, Asset.native(), "1", source=channel.public_key)
        .build()
    )
    for signer in (funding, channel, holder, newcomer):
        tx.sign(signer)
    landed = await land(server, tx)
    assert landed.status.value == "FAILED"
    assert op_codes(landed.result_xdr) == [
        "ACCOUNT_MERGE_NO_ACCOUNT",
        "ACCOUNT_MERGE_HAS_SUB_ENTRIES",  # a trustline is a sub-entry
        "CREATE_ACCOUNT_SUCCESS",
        "ACCOUNT_MERGE_SEQNUM_TOO_FAR",
        "ACCOUNT_MERGE_SUCCESS",
        "PAYMENT_NO_DESTINATION",  # merged by the operation before
        "opNO_ACCOUNT",
    ]
    # Atomic: the merge that succeeded is rolled back with the rest.
    assert (await sandbox.balances(channel.public_key))["native"] == FRIENDBOT
    assert await sandbox.account(newcomer.public_key) is None


async def test_account_merge_into_a_balance_that_would_overflow_is_dest_full(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    channel, whale = await funded(sandbox, 2)
    # No public way holds that much XLM: set the balance in the in-process ledger.
    sandbox.sandbox.ledger.accounts[whale.public_key].balance = 2**63 - 1 - FRIENDBOT // 2
    tx = await merge(server, sandbox, channel, whale.public_key)
    landed = await land(server, tx)
    assert op_codes(landed.result_xdr) == ["ACCOUNT_MERGE_DEST_FULL"]
    assert await sandbox.account(channel.public_key) is not None


async def test_account_merge_into_oneself_is_malformed_at_submission(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (channel,) = await funded(sandbox, 1)
    tx = await merge(server, sandbox, channel, channel.public_key)
    sent = await server.send_transaction(tx)
    assert sent.status.value == "ERROR"
    assert op_codes(sent.error_result_xdr) == ["ACCOUNT_MERGE_MALFORMED"]
