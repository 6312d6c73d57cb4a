"""The sandbox's resource fee schedule: fixed numbers, not metering (README "not modelled").

Split as the network splits it (CAP-46-7): the non-refundable part pays for instructions,
reads, writes and size and is charged in full; the refundable part pays for events and rent,
and what the transaction did not use is refunded after it runs.

Restoring an archived entry (CAP-66) is a disk read, paid in the non-refundable part, and the
rent for its new TTL, paid from the refundable part when the restore happens ("Metering and
Fees for InvokeHostFunctionOp with autorestore"). An entry marked archived that is live is
still charged as a disk read (CAP-66 "Incorrect Entries in archivedEntries Vector") but
needs no rent.
"""

from __future__ import annotations

NON_REFUNDABLE_BASE_FEE = 15_000  # stroops per invocation
WRITE_ENTRY_FEE = 5_000  # stroops per read-write footprint entry
EVENT_FEE = 5_000  # refundable stroops per contract event emitted
RESTORE_READ_FEE = 10_000  # stroops per entry marked in archivedSorobanEntries (disk read)
RESTORE_RENT_FEE = 40_000  # refundable stroops per entry restored (its new TTL's rent)


def non_refundable_fee(read_write_entries: int, marked_archived: int = 0) -> int:
    return (
        NON_REFUNDABLE_BASE_FEE
        + WRITE_ENTRY_FEE * read_write_entries
        + RESTORE_READ_FEE * marked_archived
    )


def refundable_fee(events: int, restored: int = 0) -> int:
    """What an invocation consumes of the refundable part."""
    return EVENT_FEE * events + RESTORE_RENT_FEE * restored
