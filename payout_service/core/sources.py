"""Which account a payout transaction comes from: the paying account, or a channel account
leased from the registry (docs/design.md, "Sequence numbers and throughput"). Pure; decided
once per build pass.

The registry (`channel_accounts`) alone decides: `PAYOUTS_CHANNEL_ACCOUNTS` only registers
channels at start-up, and `payoutctl channels add|create|retire` change the pool while the
service runs, on every replica, with no restart.

Why a mixed moment is safe (one replica builds from the payer while another leases a
channel, or one pass before and one after a channel joins): the sequence number a
transaction consumes is its *transaction* source's (stellar-core; the sandbox alike). A
channel transaction names the payer as its operations' source, so it moves the payer's
funds but never the payer's sequence number; each source has its own row in
`source_accounts`, and reservation, confirmation, re-sync and proof of death all read the
attempt's own `source_account`. A payout's next attempt is built only once the last one is
proven dead, whichever account either came from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourcePlan:
    # True: each transaction leases a channel account as its source, the payer is the
    # operations' source (and simulated as such: the auth and size of the envelope depend on
    # it, so the draft and the lease follow the same decision). False: the payer is both.
    channels: bool
    room: int  # transactions this pass may build


def plan_sources(*, leasable: int, free: int, wanted: int, signs: bool) -> SourcePlan:
    """`leasable`: active channels with a sequence row; `free`: those of them with nothing in
    flight; `wanted`: the transactions a pass builds at most; `signs`: the signer service
    signs (external signers sign with the paying key only, so they never get channels).

    - No leasable channel (none registered, none funded yet, or all retired or draining): from
      the payer, as without a pool. Retiring the whole pool never stops payouts; they carry
      on at one transaction per ledger until a channel is active again.
    - At least one: channel mode. One transaction in flight per channel, so at most `free` are
      built; with every channel busy the payouts wait for one (within a ledger or the
      transaction window) rather than queue behind the payer's single sequence number, and
      no new transaction comes from the payer while a pool is active.
    """
    if not signs or leasable <= 0:
        return SourcePlan(channels=False, room=wanted)
    return SourcePlan(channels=True, room=max(0, min(wanted, free)))
