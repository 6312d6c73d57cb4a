"""Soroban resources: what an invocation needs, the network's per-transaction limits, and the
checks stellar-core makes against them. Pure: no I/O.

Limits default to the published network settings, stellar-docs "Resource Limits & Fees"
(https://developers.stellar.org/docs/networks/resource-limits-fees, per-transaction limits):
100 million CPU instructions, 100 footprint keys, disk reads 100 entries / 200 KB, disk writes
50 entries / 132 KB, transaction size 132 KB. "KB" there is the network's KiB-based setting
(stellar-docs PR 1730 listed the same write and size limits as 129 KiB = 132,096 bytes).

stellar-core checks them at submission (TransactionFrame::checkSorobanResources, from
src/transactions/TransactionFrame.cpp: txSOROBAN_INVALID with the diagnostic messages below);
at apply the host may not use more than the transaction declared
(INVOKE_HOST_FUNCTION_RESOURCE_LIMIT_EXCEEDED) nor touch a key outside its footprint (a trap).
What an invocation needs is a fixed schedule here, not metering (README "Not modelled").
"""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import xdr as x

# The instruction schedule: one transfer as before (3 M), each further payout of a batch 1 M.
BASE_INSTRUCTIONS = 3_000_000
INSTRUCTIONS_PER_EXTRA_MOVE = 1_000_000
KIB = 1024
# Since protocol 23, classic entries (accounts, trustlines) in the footprint are disk reads,
# and so are the archived entries a transaction restores; live contract state is in memory
# (stellar-core TransactionFrame.cpp getNumDiskReadEntries, CAP-66).
DISK_READ_TYPES = (x.LedgerEntryType.ACCOUNT, x.LedgerEntryType.TRUSTLINE)


@dataclass(frozen=True)
class TxLimits:
    instructions: int = 100_000_000
    footprint_entries: int = 100
    disk_read_entries: int = 100
    disk_read_bytes: int = 200 * 1000
    write_entries: int = 50
    write_bytes: int = 129 * KIB  # 132,096 bytes
    size_bytes: int = 129 * KIB  # 132,096 bytes


PUBLISHED_TX_LIMITS = TxLimits()


def instructions_needed(moves: int) -> int:
    return BASE_INSTRUCTIONS + INSTRUCTIONS_PER_EXTRA_MOVE * max(0, moves - 1)


def entry_size(data: x.LedgerEntryData) -> int:
    """The size a written entry counts for (the LedgerEntry's XDR size)."""
    entry = x.LedgerEntry(
        last_modified_ledger_seq=x.Uint32(0), data=data, ext=x.LedgerEntryExt(0)
    )
    return len(entry.to_xdr_bytes())


def disk_read_entries(footprint: x.LedgerFootprint, marked_archived: int = 0) -> int:
    keys = [*footprint.read_only, *footprint.read_write]
    return sum(1 for k in keys if k.type in DISK_READ_TYPES) + marked_archived


def limit_error(
    resources: x.SorobanResources, tx_size: int, limits: TxLimits, marked_archived: int = 0
) -> str | None:
    """stellar-core checkSorobanResources, in its order, with its diagnostic message and the
    (value, limit) pair it attaches; None when every resource is within its limit."""
    footprint = resources.footprint
    checks = [
        (
            resources.instructions.uint32,
            limits.instructions,
            "transaction instructions resources exceed network config limit",
        ),
        (
            resources.disk_read_bytes.uint32,
            limits.disk_read_bytes,
            "transaction byte-read resources exceed network config limit",
        ),
        (
            resources.write_bytes.uint32,
            limits.write_bytes,
            "transaction byte-write resources exceed network config limit",
        ),
        (
            len(footprint.read_only) + len(footprint.read_write),
            limits.footprint_entries,
            "the number of entries in transaction footprint exceeds the network config limit",
        ),
        (
            disk_read_entries(footprint, marked_archived),
            limits.disk_read_entries,
            "transaction entry-disk-read resources exceed network config limit",
        ),
        (
            len(footprint.read_write),
            limits.write_entries,
            "transaction entry-write resources exceed network config limit",
        ),
        (tx_size, limits.size_bytes, "total transaction size exceeds network config limit"),
    ]
    for value, limit, message in checks:
        if value > limit:
            return f"{message} ({value} > {limit})"
    return None
