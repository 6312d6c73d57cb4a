"""The sandbox's resource fee schedule: fixed numbers, not metering (README "not modelled").

Split as the network splits it (CAP-46-7): the non-refundable part pays for instructions,
reads, writes and size and is charged in full; the refundable part pays for events and rent,
and what the transaction did not use is refunded after it runs.
"""

from __future__ import annotations

NON_REFUNDABLE_BASE_FEE = 15_000  # stroops per invocation
WRITE_ENTRY_FEE = 5_000  # stroops per read-write footprint entry
EVENT_FEE = 5_000  # refundable stroops per contract event emitted


def non_refundable_fee(read_write_entries: int) -> int:
    return NON_REFUNDABLE_BASE_FEE + WRITE_ENTRY_FEE * read_write_entries
