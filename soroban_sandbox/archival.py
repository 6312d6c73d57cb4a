"""State archival (CAP-62, CAP-66): when a persistent contract entry is live, archived or
restored, and what restoring it costs. Pure.

The sandbox's persistent contract entries are the SAC ``Balance`` entries of contract (C...)
holders. Accounts and trustlines are classic entries: never archived. Temporary entries
(authorisation nonces) are deleted when they expire, never archived.

* An entry is live while its TTL (``liveUntilLedgerSeq``) is at or past the ledger; after that
  it is archived and keeps its value (stellar-core QueryServer::getLedgerEntry: ``isLive``,
  state "archived" with ``liveUntilLedgerSeq`` 0; soroban-env-host e2e_invoke.rs:
  ``live_until_ledger < ledger_seq``).
* A new persistent entry lives ``MIN_PERSISTENT_TTL`` ledgers (stellar-docs "Resource Limits &
  Fees": persistent entry TTL on creation 120 days); a restored one as long again from the
  ledger that restores it (InvokeHostFunctionOpFrame ``restoredLiveUntilLedger``).
* The SAC extends a balance's TTL to 30 days whenever it reads or writes it and fewer than 29
  remain (soroban-env-host stellar_asset_contract/storage_types.rs BALANCE_EXTEND_AMOUNT,
  BALANCE_TTL_THRESHOLD; balance.rs ``extend_contract_data_ttl``).
* A transaction whose footprint holds an archived entry must mark it in
  ``SorobanTransactionData.ext.v1.archivedSorobanEntries`` (indices into the read-write
  footprint, ascending, each a persistent entry: else txSOROBAN_INVALID,
  TransactionFrame::checkSorobanResources); it is then restored before the host runs and
  counts as a disk read. An archived entry not marked fails the transaction on chain with
  INVOKE_HOST_FUNCTION_ENTRY_ARCHIVED (CAP-66 "Failure Codes").
"""

from __future__ import annotations

from stellar_sdk import xdr as x

DAY_IN_LEDGERS = 17_280
MIN_PERSISTENT_TTL = 120 * DAY_IN_LEDGERS  # 2,073,600 ledgers
BALANCE_EXTEND_AMOUNT = 30 * DAY_IN_LEDGERS
BALANCE_TTL_THRESHOLD = BALANCE_EXTEND_AMOUNT - DAY_IN_LEDGERS


def is_live(live_until: int, ledger_seq: int) -> bool:
    return live_until >= ledger_seq


def created_live_until(ledger_seq: int) -> int:
    """A new or restored persistent entry's TTL: the network's minimum."""
    return ledger_seq + MIN_PERSISTENT_TTL - 1


def touched_live_until(live_until: int, ledger_seq: int) -> int:
    """The SAC's ``extend_contract_data_ttl(BALANCE_TTL_THRESHOLD, BALANCE_EXTEND_AMOUNT)``."""
    if live_until - ledger_seq < BALANCE_TTL_THRESHOLD:
        return max(live_until, ledger_seq + BALANCE_EXTEND_AMOUNT)
    return live_until


def is_persistent(key: x.LedgerKey) -> bool:
    if key.type == x.LedgerEntryType.CONTRACT_CODE:
        return True
    if key.type != x.LedgerEntryType.CONTRACT_DATA or key.contract_data is None:
        return False
    return key.contract_data.durability == x.ContractDataDurability.PERSISTENT


def archived_indices(data: x.SorobanTransactionData) -> list[int]:
    """``archivedSorobanEntries`` as declared (empty without the v1 extension)."""
    if data.ext.v != 1 or data.ext.resource_ext is None:
        return []
    return [i.uint32 for i in data.ext.resource_ext.archived_soroban_entries]


def archived_indices_error(data: x.SorobanTransactionData) -> str | None:
    """TransactionFrame::checkSorobanResources on ``archivedSorobanEntries``, with its
    diagnostic messages; None when the indices are valid."""
    read_write = data.resources.footprint.read_write
    last = -1
    for index in archived_indices(data):
        if index <= last:
            return "archivedSorobanEntries must be sorted in ascending order"
        last = index
        if index >= len(read_write):
            return "archivedSorobanEntries index is out of bounds"
        if not is_persistent(read_write[index]):
            return "archivedSorobanEntries index points to a non-persistent entry"
    return None


def with_archived(data: x.SorobanTransactionData, indices: list[int]) -> x.SorobanTransactionData:
    """The transaction data with ``archivedSorobanEntries`` set (the v1 extension), as
    soroban-simulation returns it; without archived entries the extension stays v0."""
    if not indices:
        return data
    data.ext = x.SorobanTransactionDataExt(
        1,
        resource_ext=x.SorobanResourcesExtV0(
            archived_soroban_entries=[x.Uint32(i) for i in indices]
        ),
    )
    return data
