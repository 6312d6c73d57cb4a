"""Whom a refusal blames: the payout, or the channel account its transaction came from. Pure;
the preparer asks it once per attempt or batch the signer refused, the sender once per
transaction the network rejected.

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

# Why an attempt built and never signed was superseded once its max_time passed (the signer
# was away longer than the window): rebuilt, uncounted (superseded attempts never count).
EXPIRED_UNSIGNED = "max_time passed before it was signed: rebuilt"

# signer_service/policy.py: the rule that refuses a transaction or operation source.
SOURCE_RULE = "source_accounts"

# Channel-key rules that are about the channel itself, not about what the payout pays. All
# channel keys usually share one policy template, so any other rule (amounts, assets, fees,
# contracts, daily budgets...) would refuse the payout on every channel in turn: holding
# channels for it would empty the pool one channel at a time. Only these hold a channel.
CHANNEL_RULES = frozenset({SOURCE_RULE, "allowed_clients"})

# The transaction can no longer be signed as built: its max_time has passed (the signer was
# away longer than the window). Nobody's fault: it never left us, so it is rebuilt.
EXPIRED_RULE = "time_bounds"

# Status codes (grpc.StatusCode names) that mean the signer holds no such key.
UNKNOWN_KEY_CODES = frozenset({"NOT_FOUND", "NO_KEY"})


class Blame(StrEnum):
    PAYOUT = "payout"  # the payout fails (signer_refused), as without channels
    CHANNEL = "channel"  # the channel is held, the payout is built again
    REBUILD = "rebuild"  # neither: the unsent envelope is superseded and built again


def blame_refusal(*, channel_sourced: bool, by_channel_key: bool, rule: str | None,
                  code: str | None = None, expired: bool = False,
                  refused_account: str | None = None, channel: str | None = None) -> Blame:
    """`channel_sourced`: the refused transaction's source is a channel account;
    `by_channel_key`: the channel's key refused (or the signer holds no key for it), else the
    payer's; `rule`: the policy rule the signer named in its ErrorInfo (None: none sent: an
    unknown key, a bad request, or an older signer); `code`: the status code's name;
    `expired`: our own clock agrees the envelope's max_time has passed; `refused_account`:
    for `source_accounts`, the account the signer did not allow (None: it did not say, an
    older signer); `channel`: the transaction's source when `channel_sourced`.

    - The max_time passed (`time_bounds`, either key, and our clock agrees): rebuild, nobody's
      fault. If our clock disagrees (the signer's runs ahead), a rebuild would be refused
      again: the rules below apply instead.
    - A payer transaction: the payout, as before.
    - The channel's key unknown to the signer (NOT_FOUND, or none registered): the channel.
    - The channel's key refusing for a rule about the channel (CHANNEL_RULES): the channel.
    - The payer's key with `source_accounts` refusing the channel (its list lacks
      "@channel_keys" or the channel's G...): the channel. Refusing the payer itself as the
      operations' source (a list of "@channel_keys" only) is the payer's policy at fault for
      every transaction: the payout, as without channels, never every channel in turn. A
      signer that does not name the refused account: the channel, as before.
    - Anything else, including a refusal with no rule (an older signer): the payout, as
      without channels; never a guess that could hold the whole pool.
    """
    if rule == EXPIRED_RULE and expired:
        return Blame.REBUILD
    if not channel_sourced:
        return Blame.PAYOUT
    if by_channel_key:
        if code in UNKNOWN_KEY_CODES or rule in CHANNEL_RULES:
            return Blame.CHANNEL
        return Blame.PAYOUT
    if rule != SOURCE_RULE:
        return Blame.PAYOUT
    return Blame.CHANNEL if refused_account in (None, channel) else Blame.PAYOUT


def held_reason(*, by_channel_key: bool, rule: str | None, message: str) -> str:
    """What operators read in ListChannels / `payoutctl channels list`."""
    whose = "the channel's key" if by_channel_key else "the payer's key"
    return f"signer refused with {whose}: rule {rule or 'none'}: {message}"[:500]


# Rejections at submission (stellar-core TransactionFrame::commonValid) that are about the
# transaction's source account, which for a channel transaction is the channel: it cannot pay
# the fee (txINSUFFICIENT_BALANCE), its signers changed (txBAD_AUTH: the source's signature;
# an operation source's is opBAD_AUTH), or it no longer exists (txNO_ACCOUNT: merged outside
# the service). Every transaction from that channel would be refused the same way, and the
# lease picks it first (nothing in flight), so failing payouts for it would drain the queue.
CHANNEL_SOURCE_REJECTIONS = frozenset({"txINSUFFICIENT_BALANCE", "txBAD_AUTH", "txNO_ACCOUNT"})


def blame_rejection(code: str, *, channel_sourced: bool) -> Blame:
    """The channel, for a rejection about a channel transaction's source account; else the
    payout (core/retry.py decides between a new attempt and FAILED)."""
    if channel_sourced and code in CHANNEL_SOURCE_REJECTIONS:
        return Blame.CHANNEL
    return Blame.PAYOUT


def network_held_reason(code: str) -> str:
    return f"network refused the channel's transaction: {code}"


def channel_policy_fault(*, by_channel_key: bool, rule: str | None, code: str | None,
                         refused_account: str | None, channel: str, message: str) -> str | None:
    """Asked before a channel is used (the signer explains a decision without signing: a
    sample of the transactions the channel would carry, checked with the channel's key and
    with the payer's): the reason the channel cannot be used, or None. The same blame as a
    real refusal: a refusal that would be the payout's (an amount rule the sample happens to
    break) says nothing about the channel."""
    blame = blame_refusal(channel_sourced=True, by_channel_key=by_channel_key, rule=rule,
                          code=code, refused_account=refused_account, channel=channel)
    if blame is not Blame.CHANNEL:
        return None
    return held_reason(by_channel_key=by_channel_key, rule=rule, message=message)
