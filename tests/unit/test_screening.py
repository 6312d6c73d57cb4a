"""Destination screening decides by the lists alone: the deny list always wins, the allow
list matters only in allow list only mode, and an M... destination answers for its G...
account too."""

from __future__ import annotations

import pytest
from stellar_sdk import Keypair, MuxedAccount

from payout_service.cli.payoutctl import parser
from payout_service.core.screening import (
    ListKind,
    ScreeningEntry,
    address_problem,
    normalise_address,
    reason_problem,
    screen,
    screened_addresses,
)

G = Keypair.random().public_key
OTHER = Keypair.random().public_key
M = MuxedAccount(G, 7).account_muxed or ""


def deny(address: str, reason: str = "sanctions") -> ScreeningEntry:
    return ScreeningEntry(address, ListKind.DENY, reason)


def allow(address: str) -> ScreeningEntry:
    return ScreeningEntry(address, ListKind.ALLOW, "known payee")


@pytest.mark.parametrize("allowlist_only", [False, True])
def test_the_deny_list_always_wins(allowlist_only):
    decision = screen(G, [allow(G), deny(G)], allowlist_only=allowlist_only)
    assert not decision.allowed and decision.reason == "on the deny list: sanctions"


def test_an_unlisted_destination_passes_by_default():
    assert screen(G, [deny(OTHER)], allowlist_only=False).allowed


def test_allow_list_only_mode_refuses_an_unlisted_destination():
    decision = screen(G, [allow(OTHER)], allowlist_only=True)
    assert not decision.allowed and "allow list" in decision.reason
    assert screen(G, [allow(G)], allowlist_only=True).allowed


def test_a_muxed_destination_is_screened_by_its_account():
    assert not screen(M, [deny(G)], allowlist_only=False).allowed
    assert screen(M, [allow(G)], allowlist_only=True).allowed


def test_a_muxed_address_listed_alone_leaves_its_account_and_siblings_alone():
    sibling = MuxedAccount(G, 8).account_muxed or ""
    assert not screen(M, [deny(M)], allowlist_only=False).allowed
    assert screen(G, [deny(M)], allowlist_only=False).allowed
    assert screen(sibling, [deny(M)], allowlist_only=False).allowed


def test_the_most_specific_deny_reason_is_given():
    decision = screen(M, [deny(G, "account"), deny(M, "this muxed id")], allowlist_only=False)
    assert decision.reason == "on the deny list: this muxed id"


def test_screened_addresses():
    assert screened_addresses(G) == (G,)
    assert screened_addresses(M) == (M, G)


def test_addresses_are_normalised_and_checked():
    assert normalise_address(f"  {G.lower()} ") == G
    assert address_problem(G) is None and address_problem(M) is None
    assert address_problem("GABC") is not None and address_problem("") is not None


def test_a_reason_is_required_and_bounded():
    assert reason_problem("  ") is not None
    assert reason_problem("x" * 513) is not None
    assert reason_problem("sanctions") is None


def test_payoutctl_screening_commands_parse():
    args = parser().parse_args(["screening", "add", "GABC", "--list", "DENY", "--reason", "x"])
    assert (args.screening_command, args.list, args.reason) == ("add", "deny", "x")
    args = parser().parse_args(["screening", "list"])
    assert args.screening_command == "list" and args.list is None
