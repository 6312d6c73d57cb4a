"""Whom a signer refusal blames: the payout, or the channel account its transaction came
from. Pure; the preparer asks it once per refused attempt or batch.

A channel-sourced transaction is signed twice: by the channel's key (its source) and by the
payer's key (its operations' source). Failing the payout for a refusal that is about the
channel fails it although nothing is wrong with it, and the next lease picks the same channel
again (the lowest free account), so a whole queue would fail that way. Such a refusal holds
the channel instead and the payout is built again, from another channel or the payer.
"""

from __future__ import annotations

from enum import StrEnum

# The result code of an attempt given up because its channel was held: it consumed nothing
# and does not count toward PAYOUTS_MAX_ATTEMPTS (the payout was not at fault).
CHANNEL_HELD = "channel_held"

# signer_service/policy.py: the rule that refuses a transaction or operation source.
SOURCE_RULE = "source_accounts"

# Rules a channel key may refuse on because of what this payout pays (its amount, asset or
# destination), not because of the channel: every channel under the same template would
# refuse it too, so holding channels for it would empty the pool one channel at a time.
PAYOUT_CONTENT_RULES = frozenset({
    "max_amount_stroops_per_tx", "max_amount_stroops_per_op", "arguments", "assets",
    "destinations", "memo",
})


class Blame(StrEnum):
    PAYOUT = "payout"  # the payout fails (signer_refused), as without channels
    CHANNEL = "channel"  # the channel is held, the payout is built again


def blame_refusal(*, channel_sourced: bool, by_channel_key: bool, rule: str | None) -> Blame:
    """`channel_sourced`: the refused transaction's source is a channel account;
    `by_channel_key`: the channel's key refused (or the signer holds no key for it), else the
    payer's; `rule`: the policy rule the signer named (None: no rule, e.g. unknown key).

    - A payer transaction: the payout, as before.
    - The channel's key: the channel (its key is missing, not allowed for us, or its policy
      does not take this shape of transaction), except for a rule about this payout's own
      amount, asset or destination.
    - The payer's key with `source_accounts`: the channel. In a channel transaction the
      operations' source is the payer itself, so the only source the payer's policy can
      refuse is the channel (its list lacks "@channel_keys" or the channel's G...).
    - The payer's key, any other rule: the payout (amounts, assets, limits, fees).
    """
    if not channel_sourced:
        return Blame.PAYOUT
    if by_channel_key:
        return Blame.PAYOUT if rule in PAYOUT_CONTENT_RULES else Blame.CHANNEL
    return Blame.CHANNEL if rule == SOURCE_RULE else Blame.PAYOUT


def held_reason(*, by_channel_key: bool, rule: str | None, message: str) -> str:
    """What operators read in ListChannels / `payoutctl channels list`."""
    whose = "the channel's key" if by_channel_key else "the payer's key"
    return f"signer refused with {whose}: rule {rule or 'none'}: {message}"[:500]
