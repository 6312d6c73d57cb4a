"""Frozen ledger entries (CAP-77, protocol 26), over HTTP with stellar-sdk.

Sources: stellar-protocol core/cap-0077.md ("Frozen key validation", "Source accounts",
"Source trustlines", "Destination accounts/trustlines"); stellar-core
TransactionFrame::commonValidPreSeqNum and ``accessesFrozenKey`` (txFROZEN_KEY_ACCESSED after
the source account is found, before its sequence number), PaymentOpFrame / CreateAccountOpFrame
/ MergeOpFrame ``doesAccessFrozenKey``, TxSetUtils::trimInvalid (a queued transaction that
turned invalid is left out of the next ledger).
"""

from __future__ import annotations

from typing import Any

import pytest
from stellar_sdk import Asset, Keypair, MuxedAccount, SorobanServerAsync, TransactionBuilder, xdr

from soroban_sandbox.frozen import SETTING_KEY
from soroban_sandbox.testing import InProcessSandbox
from soroban_sandbox.xdr_build import account_key, balance_key, trustline_key
from tests.waiting import eventually

from .helpers import funded, land, native_id, refusal, transfer_tx

XLM = 10_000_000


async def pay(
    server: SorobanServerAsync, sandbox: InProcessSandbox, payer: Keypair, to: str, asset: Asset
) -> Any:
    account = await server.load_account(payer.public_key)
    return (
        TransactionBuilder(account, sandbox.passphrase, base_fee=100)
        .set_timeout(30)
        .append_payment_op(to, asset, "1")
        .build()
    )


async def frozen_setting(server: SorobanServerAsync) -> list[str]:
    """What a preflight reads: the CONFIG_SETTING_FROZEN_LEDGER_KEYS entry's keys."""
    entries = (await server.get_ledger_entries([SETTING_KEY])).entries or []
    if not entries:
        return []
    (found,) = entries
    setting = xdr.LedgerEntryData.from_xdr(found.xdr).config_setting
    assert setting is not None and setting.frozen_ledger_keys is not None
    return [xdr.LedgerKey.from_xdr_bytes(k.encoded_ledger_key).to_xdr()
            for k in setting.frozen_ledger_keys.keys]


async def test_a_frozen_destination_account_refuses_payments_at_submission_until_unfrozen(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, exchange = await funded(sandbox, 2)
    key = account_key(exchange.public_key).to_xdr()
    assert await frozen_setting(server) == []

    assert await sandbox.freeze(key) == [key]

    assert await frozen_setting(server) == [key]
    before = await sandbox.account(payer.public_key)
    classic = await pay(server, sandbox, payer, exchange.public_key, Asset.native())
    to_muxed = await pay(
        server, sandbox, payer, MuxedAccount(exchange.public_key, 3).account_muxed or "",
        Asset.native(),
    )
    soroban = await transfer_tx(server, sandbox.passphrase, payer, exchange.public_key, 5)
    for tx in (classic, to_muxed, soroban):
        assert await refusal(server, tx, payer) == "txFROZEN_KEY_ACCESSED"
    assert await sandbox.account(payer.public_key) == before  # nothing charged or consumed
    assert await sandbox.unfreeze(key) == []
    again = await pay(server, sandbox, payer, exchange.public_key, Asset.native())
    assert (await land(server, again, payer)).status.value == "SUCCESS"


async def test_a_frozen_trustline_refuses_that_asset_only(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    issuer, payer, holder = await funded(sandbox, 3)
    usd = Asset("USD", issuer.public_key)
    for account in (payer, holder):
        await sandbox.open_trustline(account.public_key, f"USD:{issuer.public_key}")
    await sandbox.issue(f"USD:{issuer.public_key}", payer.public_key, 10 * XLM)
    await sandbox.freeze(trustline_key(holder.public_key, usd).to_xdr())

    refused = await pay(server, sandbox, payer, holder.public_key, usd)
    assert await refusal(server, refused, payer) == "txFROZEN_KEY_ACCESSED"
    xlm = await pay(server, sandbox, payer, holder.public_key, Asset.native())
    assert (await land(server, xlm, payer)).status.value == "SUCCESS"


async def test_a_frozen_contract_balance_or_source_account_refuses_the_transaction(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, other = await funded(sandbox, 2)
    vault = (await sandbox.config())["payout_contract_id"]
    await land(server, await transfer_tx(server, sandbox.passphrase, payer, vault, 5), payer)
    await sandbox.freeze(
        balance_key(native_id(sandbox.passphrase), vault).to_xdr(),
        account_key(other.public_key).to_xdr(),
    )

    to_vault = await transfer_tx(server, sandbox.passphrase, payer, vault, 5)
    assert await refusal(server, to_vault, payer) == "txFROZEN_KEY_ACCESSED"
    from_frozen = await pay(server, sandbox, other, payer.public_key, Asset.native())
    assert await refusal(server, from_frozen, other) == "txFROZEN_KEY_ACCESSED"


async def test_a_queued_payment_to_a_key_frozen_before_the_ledger_closes_is_dropped(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, exchange = await funded(sandbox, 2)
    await sandbox.set_faults(stall_ledgers=True)
    tx = await pay(server, sandbox, payer, exchange.public_key, Asset.native())
    tx.sign(payer)
    assert (await server.send_transaction(tx)).status.value == "PENDING"
    await sandbox.freeze(account_key(exchange.public_key).to_xdr())
    await sandbox.close_ledger()

    evicted = await eventually(
        lambda: _evicted(sandbox, tx.hash_hex()), what="the payment left the queue"
    )
    assert evicted == "txFROZEN_KEY_ACCESSED"
    assert (await server.get_transaction(tx.hash_hex())).status.value == "NOT_FOUND"
    account = await sandbox.account(payer.public_key)
    assert account is not None and account["sequence"] == tx.transaction.sequence - 1


async def _evicted(sandbox: InProcessSandbox, tx_hash: str) -> str | None:
    return next((e["reason"] for e in await sandbox.evictions() if e["hash"] == tx_hash), None)


async def test_only_freezable_keys_can_be_frozen(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (issuer,) = await funded(sandbox, 1)
    issuer_line = trustline_key(issuer.public_key, Asset("USD", issuer.public_key)).to_xdr()
    ttl = xdr.LedgerKey(xdr.LedgerEntryType.TTL, ttl=xdr.LedgerKeyTtl(xdr.Hash(b"\x00" * 32)))
    with pytest.raises(RuntimeError, match="issuer's own trustline"):
        await sandbox.freeze(issuer_line)
    with pytest.raises(RuntimeError, match="TTL cannot be frozen"):
        await sandbox.freeze(ttl.to_xdr())
    assert await sandbox.frozen_keys() == []


@pytest.mark.parametrize("sandbox", [25], indirect=True)
async def test_freezing_needs_protocol_26(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (payer,) = await funded(sandbox, 1)
    with pytest.raises(RuntimeError, match="CAP-77.*protocol 26"):
        await sandbox.freeze(account_key(payer.public_key).to_xdr())
    assert await frozen_setting(server) == []  # the setting does not exist before 26
