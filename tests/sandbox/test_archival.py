"""State archival and automatic restore (CAP-62, CAP-66, protocol 23) for a contract (C...)
destination's SAC balance, over HTTP with stellar-sdk.

Sources: stellar-protocol core/cap-0066.md ("archivedEntries Vector", "Automatic Entry
Restoration", "Incorrect Entries in archivedEntries Vector", "Failure Codes"); stellar-core
TransactionFrame::checkSorobanResources (the indices), InvokeHostFunctionOpFrame
``handleArchivedEntry`` (restore or INVOKE_HOST_FUNCTION_ENTRY_ARCHIVED), QueryServer
``getLedgerEntry`` (an archived entry: state "archived", TTL 0); soroban-env-host
e2e_invoke.rs ``restored_rw_entry_indices`` (what simulation marks).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from stellar_sdk import Keypair, SorobanServerAsync, xdr

from soroban_sandbox.archival import MIN_PERSISTENT_TTL
from soroban_sandbox.fees import EVENT_FEE, RESTORE_READ_FEE, RESTORE_RENT_FEE
from soroban_sandbox.simulation import REFUNDABLE_FEE_MARGIN
from soroban_sandbox.testing import InProcessSandbox
from soroban_sandbox.xdr_build import account_key, balance_key

from .helpers import funded, land, native_id, refusal, transfer_tx

XLM = 10_000_000


async def vault_with_balance(
    sandbox: InProcessSandbox, server: SorobanServerAsync, payer: Keypair, amount: int
) -> tuple[str, str, Any]:
    """The payout contract (a C... holder) receives XLM: its SAC Balance entry exists."""
    vault = (await sandbox.config())["payout_contract_id"]
    tx = await transfer_tx(server, sandbox.passphrase, payer, vault, amount)
    landed = await land(server, tx, payer)
    assert landed.status.value == "SUCCESS"
    return vault, balance_key(native_id(sandbox.passphrase), vault).to_xdr(), landed


async def entry(server: SorobanServerAsync, key: str) -> Any:
    (found,) = (await server.get_ledger_entries([xdr.LedgerKey.from_xdr(key)])).entries or []
    return found


def invoke_code(result_xdr: str | None) -> xdr.InvokeHostFunctionResultCode:
    result = xdr.TransactionResult.from_xdr(result_xdr or "")
    inner = result.result.results[0].tr.invoke_host_function_result  # type: ignore[index,union-attr]
    assert inner is not None
    return inner.code


def spent(landed: Any) -> tuple[int, int]:
    """(non-refundable, refundable) resource fee the transaction was charged."""
    meta = xdr.TransactionMeta.from_xdr(landed.result_meta_xdr or "")
    assert meta.v4 is not None and meta.v4.soroban_meta is not None
    ext = meta.v4.soroban_meta.ext.v1
    assert ext is not None
    return (
        ext.total_non_refundable_resource_fee_charged.int64,
        ext.total_refundable_resource_fee_charged.int64,
    )


async def test_a_contract_balance_lives_120_days_and_once_archived_reads_with_ttl_0(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (payer,) = await funded(sandbox, 1)
    _, key, landed = await vault_with_balance(sandbox, server, payer, 5 * XLM)
    live = await entry(server, key)
    assert live.live_until_ledger == landed.ledger + MIN_PERSISTENT_TTL - 1

    answer = await sandbox.archive(key)

    archived = await entry(server, key)
    assert answer["archived"] is True and answer["live_until_ledger"] < landed.latest_ledger + 1
    assert archived.live_until_ledger == 0  # core's placeholder for an archived entry
    value = xdr.LedgerEntryData.from_xdr(archived.xdr).contract_data.val  # type: ignore[union-attr]
    assert value.map.sc_map[0].val.i128.lo.uint64 == 5 * XLM  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="accounts and trustlines never are"):
        await sandbox.archive(account_key(payer.public_key).to_xdr())
    with pytest.raises(RuntimeError, match="no such entry"):
        await sandbox.archive(balance_key(native_id(sandbox.passphrase), payer.public_key).to_xdr())


async def test_a_transaction_that_does_not_mark_an_archived_entry_fails_entry_archived(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (payer,) = await funded(sandbox, 1)
    vault, key, _ = await vault_with_balance(sandbox, server, payer, 5 * XLM)
    prepared_before = await transfer_tx(server, sandbox.passphrase, payer, vault, 2 * XLM)
    await sandbox.archive(key)

    landed = await land(server, prepared_before, payer)

    assert landed.status.value == "FAILED"
    assert invoke_code(landed.result_xdr) == (
        xdr.InvokeHostFunctionResultCode.INVOKE_HOST_FUNCTION_ENTRY_ARCHIVED
    )
    account = await sandbox.account(payer.public_key)
    assert account is not None and account["sequence"] == prepared_before.transaction.sequence
    archived = await entry(server, key)
    assert archived.live_until_ledger == 0
    value = xdr.LedgerEntryData.from_xdr(archived.xdr).contract_data.val  # type: ignore[union-attr]
    assert value.map.sc_map[0].val.i128.lo.uint64 == 5 * XLM  # type: ignore[union-attr]


async def test_simulation_marks_the_archived_balance_and_the_payout_restores_it(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    (payer,) = await funded(sandbox, 1)
    vault, key, _ = await vault_with_balance(sandbox, server, payer, 5 * XLM)
    live_fee = int(
        (await server.simulate_transaction(
            await transfer_tx(server, sandbox.passphrase, payer, vault, 2 * XLM, prepare=False)
        )).min_resource_fee or 0
    )
    await sandbox.archive(key)

    tx = await transfer_tx(server, sandbox.passphrase, payer, vault, 2 * XLM)

    data = tx.transaction.soroban_data
    assert data is not None and data.ext.v == 1 and data.ext.resource_ext is not None
    marked = [i.uint32 for i in data.ext.resource_ext.archived_soroban_entries]
    read_write = [k.to_xdr() for k in data.resources.footprint.read_write]
    assert marked == [read_write.index(key)]
    assert data.resources.disk_read_bytes.uint32 > 0  # the restored entry is read from disk
    rent = math.ceil((EVENT_FEE + RESTORE_RENT_FEE) * REFUNDABLE_FEE_MARGIN) - math.ceil(
        EVENT_FEE * REFUNDABLE_FEE_MARGIN
    )
    assert data.resource_fee.int64 == live_fee + RESTORE_READ_FEE + rent
    landed = await land(server, tx, payer)
    assert landed.status.value == "SUCCESS"
    restored = await entry(server, key)
    assert restored.live_until_ledger == landed.ledger + MIN_PERSISTENT_TTL - 1
    value = xdr.LedgerEntryData.from_xdr(restored.xdr).contract_data.val  # type: ignore[union-attr]
    assert value.map.sc_map[0].val.i128.lo.uint64 == 7 * XLM  # nothing was lost
    non_refundable, refundable = spent(landed)
    assert refundable == EVENT_FEE + RESTORE_RENT_FEE  # the restore's rent is charged
    fee = xdr.TransactionResult.from_xdr(landed.result_xdr or "").fee_charged.int64
    assert fee == 100 + non_refundable + refundable


async def test_an_entry_marked_archived_while_live_pays_the_disk_read_and_no_rent(
    sandbox: InProcessSandbox, server: SorobanServerAsync
) -> None:
    payer, other = await funded(sandbox, 2)
    vault, key, _ = await vault_with_balance(sandbox, server, payer, 5 * XLM)
    await sandbox.archive(key)
    marked = await transfer_tx(server, sandbox.passphrase, payer, vault, XLM)
    restoring = await transfer_tx(server, sandbox.passphrase, other, vault, XLM)
    assert (await land(server, restoring, other)).status.value == "SUCCESS"
    assert (await entry(server, key)).live_until_ledger > 0  # live again

    landed = await land(server, marked, payer)

    assert landed.status.value == "SUCCESS"
    non_refundable, refundable = spent(landed)
    assert refundable == EVENT_FEE  # nothing restored: no rent
    unmarked = await transfer_tx(server, sandbox.passphrase, payer, vault, XLM)
    unmarked_spent = spent(await land(server, unmarked, payer))
    assert non_refundable == unmarked_spent[0] + RESTORE_READ_FEE  # charged as a disk read


@pytest.mark.parametrize(
    ("indices", "why"),
    [([5], "out of bounds"), ([1, 0], "not ascending"), ("account", "not persistent")],
)
async def test_bad_archived_entry_indices_are_soroban_invalid(
    sandbox: InProcessSandbox, server: SorobanServerAsync, indices: Any, why: str
) -> None:
    (payer,) = await funded(sandbox, 1)
    vault, key, _ = await vault_with_balance(sandbox, server, payer, 5 * XLM)
    await sandbox.archive(key)
    tx = await transfer_tx(server, sandbox.passphrase, payer, vault, XLM)
    data = tx.transaction.soroban_data
    assert data is not None and data.ext.resource_ext is not None
    if indices == "account":  # the payer's account entry: classic, never archived
        read_write = [k.to_xdr() for k in data.resources.footprint.read_write]
        indices = [read_write.index(account_key(payer.public_key).to_xdr())]
    data.ext.resource_ext.archived_soroban_entries = [xdr.Uint32(i) for i in indices]

    assert await refusal(server, tx, payer) == "txSOROBAN_INVALID", why
