"""Whom a signer refusal blames (core/refusals.py): a refusal about the channel a transaction
came from holds the channel and the payout is built again; any other fails the payout."""

from __future__ import annotations

import pytest

from payout_service.core.refusals import (
    CHANNEL_RULES,
    Blame,
    blame_refusal,
    held_reason,
)

POLICY_RULES = [
    "source_accounts", "network_passphrase", "allowed_clients", "operations", "contract_ids",
    "function_names", "arguments", "credentials", "assets", "destinations", "memo",
    "max_fee_stroops", "max_amount_stroops_per_tx", "max_amount_stroops_per_op",
    "max_amount_stroops_per_day", "time_bounds", "max_time_window_seconds", None,
]
CODES = ["PERMISSION_DENIED", "INVALID_ARGUMENT", "NOT_FOUND", "NO_KEY", None]


@pytest.mark.parametrize("rule", [r for r in POLICY_RULES if r != "time_bounds"])
@pytest.mark.parametrize("by_channel_key", [False, True])
@pytest.mark.parametrize("code", CODES)
def test_a_payer_sourced_transaction_refused_for_any_rule_blames_the_payout(
    rule: str | None, by_channel_key: bool, code: str | None
) -> None:
    assert blame_refusal(channel_sourced=False, by_channel_key=by_channel_key,
                         rule=rule, code=code) is Blame.PAYOUT


@pytest.mark.parametrize("channel_sourced", [False, True])
@pytest.mark.parametrize("by_channel_key", [False, True])
def test_a_max_time_the_signer_and_our_clock_both_see_passed_is_rebuilt_not_blamed(
    channel_sourced: bool, by_channel_key: bool
) -> None:
    # The signer was away longer than the window: nobody's fault, the attempt never left us.
    assert blame_refusal(channel_sourced=channel_sourced, by_channel_key=by_channel_key,
                         rule="time_bounds", code="PERMISSION_DENIED",
                         expired=True) is Blame.REBUILD
    # Our clock disagrees (the signer's runs ahead): a rebuild would be refused again.
    assert blame_refusal(channel_sourced=channel_sourced, by_channel_key=by_channel_key,
                         rule="time_bounds", code="PERMISSION_DENIED",
                         expired=False) is Blame.PAYOUT


def test_the_payer_key_refusing_the_channel_as_source_blames_the_channel() -> None:
    assert blame_refusal(channel_sourced=True, by_channel_key=False, rule="source_accounts",
                         refused_account="GCHANNEL", channel="GCHANNEL") is Blame.CHANNEL
    # A signer that does not say which account it refused: the channel, as before.
    assert blame_refusal(channel_sourced=True, by_channel_key=False,
                         rule="source_accounts") is Blame.CHANNEL


def test_the_payer_key_refusing_the_payer_itself_blames_the_payout_not_every_channel() -> None:
    """A paying-key policy listing only "@channel_keys" refuses the payer as the operations'
    source: no channel would do better, so holding them one after the other would only
    empty the pool."""
    assert blame_refusal(channel_sourced=True, by_channel_key=False, rule="source_accounts",
                         refused_account="GPAYER", channel="GCHANNEL") is Blame.PAYOUT


@pytest.mark.parametrize("rule", [r for r in POLICY_RULES if r != "source_accounts"])
def test_the_payer_key_refusing_a_channel_transaction_for_any_other_rule_blames_the_payout(
    rule: str | None,
) -> None:
    assert blame_refusal(channel_sourced=True, by_channel_key=False, rule=rule) is Blame.PAYOUT


@pytest.mark.parametrize("rule", sorted(CHANNEL_RULES))
def test_the_channel_key_refusing_for_a_rule_about_the_channel_blames_the_channel(
    rule: str,
) -> None:
    assert blame_refusal(channel_sourced=True, by_channel_key=True, rule=rule,
                         code="PERMISSION_DENIED") is Blame.CHANNEL


@pytest.mark.parametrize("code", ["NOT_FOUND", "NO_KEY"])
def test_a_channel_key_the_signer_does_not_hold_blames_the_channel(code: str) -> None:
    assert blame_refusal(channel_sourced=True, by_channel_key=True, rule=None,
                         code=code) is Blame.CHANNEL


@pytest.mark.parametrize("rule", [r for r in POLICY_RULES
                                  if r not in CHANNEL_RULES and r != "time_bounds"])
@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "INVALID_ARGUMENT", None])
def test_the_channel_key_refusing_for_any_other_reason_blames_the_payout(
    rule: str | None, code: str | None
) -> None:
    # Channel keys share one policy template: a rule about what the payout pays (amounts,
    # assets, contracts, fees, daily budgets) would refuse it on every channel in turn, and
    # a refusal with no rule (an older signer, a bad request) is no proof against the channel.
    # Holding channels for them would empty the pool one channel at a time.
    assert blame_refusal(channel_sourced=True, by_channel_key=True, rule=rule,
                         code=code) is Blame.PAYOUT


def test_the_held_reason_names_the_key_side_and_the_rule_and_is_bounded() -> None:
    reason = held_reason(by_channel_key=False, rule="source_accounts",
                         message="PERMISSION_DENIED: policy rule source_accounts refused: x")
    assert reason.startswith("signer refused with the payer's key: rule source_accounts: ")
    assert held_reason(by_channel_key=True, rule=None, message="NOT_FOUND: key").startswith(
        "signer refused with the channel's key: rule none: ")
    assert len(held_reason(by_channel_key=True, rule="x", message="m" * 2000)) == 500
