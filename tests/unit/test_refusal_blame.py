"""Whom a signer refusal blames (core/refusals.py): a refusal about the channel a transaction
came from holds the channel and the payout is built again; any other fails the payout."""

from __future__ import annotations

import pytest

from payout_service.core.refusals import (
    PAYOUT_CONTENT_RULES,
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


@pytest.mark.parametrize("rule", POLICY_RULES)
@pytest.mark.parametrize("by_channel_key", [False, True])
def test_a_payer_sourced_transaction_refused_for_any_rule_blames_the_payout(
    rule: str | None, by_channel_key: bool
) -> None:
    assert blame_refusal(channel_sourced=False, by_channel_key=by_channel_key,
                         rule=rule) is Blame.PAYOUT


def test_the_payer_key_refusing_the_channel_as_source_blames_the_channel() -> None:
    # Its operations' source is the payer itself: the only source it can refuse is the channel.
    assert blame_refusal(channel_sourced=True, by_channel_key=False,
                         rule="source_accounts") is Blame.CHANNEL


@pytest.mark.parametrize("rule", [r for r in POLICY_RULES if r != "source_accounts"])
def test_the_payer_key_refusing_a_channel_transaction_for_any_other_rule_blames_the_payout(
    rule: str | None,
) -> None:
    assert blame_refusal(channel_sourced=True, by_channel_key=False, rule=rule) is Blame.PAYOUT


@pytest.mark.parametrize("rule", [r for r in POLICY_RULES if r not in PAYOUT_CONTENT_RULES])
def test_the_channel_key_refusing_blames_the_channel(rule: str | None) -> None:
    # Its key unknown to the signer (no rule), not ours to use, its own source list or
    # limits: another channel or the payer can take the payout.
    assert blame_refusal(channel_sourced=True, by_channel_key=True, rule=rule) is Blame.CHANNEL


@pytest.mark.parametrize("rule", sorted(PAYOUT_CONTENT_RULES))
def test_the_channel_key_refusing_what_the_payout_pays_blames_the_payout(rule: str) -> None:
    # Every channel under the same template would refuse it: holding channels for it would
    # empty the pool one channel at a time.
    assert blame_refusal(channel_sourced=True, by_channel_key=True, rule=rule) is Blame.PAYOUT


def test_the_held_reason_names_the_key_side_and_the_rule_and_is_bounded() -> None:
    reason = held_reason(by_channel_key=False, rule="source_accounts",
                         message="PERMISSION_DENIED: policy rule source_accounts refused: x")
    assert reason.startswith("signer refused with the payer's key: rule source_accounts: ")
    assert held_reason(by_channel_key=True, rule=None, message="NOT_FOUND: key").startswith(
        "signer refused with the channel's key: rule none: ")
    assert len(held_reason(by_channel_key=True, rule="x", message="m" * 2000)) == 500
