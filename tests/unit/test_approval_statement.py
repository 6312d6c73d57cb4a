"""The canonical approval statement: bound to every field of the payment, expiring, one vote
per approver."""

from __future__ import annotations

import dataclasses

import pytest
from stellar_sdk import Keypair, Network

from payout_approvals.statement import (
    Approval,
    Payment,
    approvers_who_approved,
    is_valid,
    memo_text,
    statement,
)

APPROVER = Keypair.from_raw_ed25519_seed(bytes(range(2, 34)))
OTHER = Keypair.from_raw_ed25519_seed(bytes(range(3, 35)))
NOW = 1_800_000_000
PAYMENT = Payment(
    network_passphrase=Network.TESTNET_NETWORK_PASSPHRASE,
    treasury=Keypair.from_raw_ed25519_seed(bytes(range(32))).public_key,
    destination=Keypair.from_raw_ed25519_seed(bytes(range(1, 33))).public_key,
    muxed_id=None, memo=memo_text("text", b"invoice 7"), asset="native",
    amount_stroops=100_000_000,
)


def approve(payment: Payment, key: Keypair = APPROVER, payout_id: str = "p-1",
            expires_at: int = NOW + 600) -> Approval:
    return Approval(key.public_key, key.sign(statement(payment, payout_id, expires_at)),
                    payout_id, expires_at)


def test_an_approval_of_the_exact_payment_is_valid():
    assert is_valid(PAYMENT, approve(PAYMENT), NOW)


@pytest.mark.parametrize("change", [
    {"amount_stroops": 110_000_000},
    {"destination": Keypair.from_raw_ed25519_seed(bytes(range(5, 37))).public_key},
    {"asset": "USDC:" + Keypair.from_raw_ed25519_seed(bytes(range(6, 38))).public_key},
    {"memo": memo_text("text", b"invoice 8")},
    {"memo": memo_text("none")},
    {"muxed_id": 7},
    {"treasury": Keypair.from_raw_ed25519_seed(bytes(range(7, 39))).public_key},
    {"network_passphrase": Network.PUBLIC_NETWORK_PASSPHRASE},
])
def test_an_approval_does_not_cover_a_changed_payment(change):
    assert not is_valid(dataclasses.replace(PAYMENT, **change), approve(PAYMENT), NOW)


def test_an_approval_does_not_cover_another_payout_id_or_a_moved_expiry():
    approval = approve(PAYMENT)
    assert not is_valid(PAYMENT, dataclasses.replace(approval, payout_id="p-2"), NOW)
    assert not is_valid(PAYMENT, dataclasses.replace(approval, expires_at=NOW + 6000), NOW)


def test_an_expired_approval_is_not_valid():
    approval = approve(PAYMENT, expires_at=NOW)
    assert not is_valid(PAYMENT, approval, NOW)
    assert is_valid(PAYMENT, approval, NOW - 1)


def test_a_forged_or_unparsable_approval_is_not_valid():
    forged = dataclasses.replace(approve(PAYMENT, OTHER), approver=APPROVER.public_key)
    assert not is_valid(PAYMENT, forged, NOW)
    assert not is_valid(PAYMENT, dataclasses.replace(approve(PAYMENT), approver="G123"), NOW)
    assert not is_valid(PAYMENT, dataclasses.replace(approve(PAYMENT), signature=b"x"), NOW)
    assert not is_valid(PAYMENT, dataclasses.replace(approve(PAYMENT), payout_id="a\nb"), NOW)


def test_one_approver_counts_once_and_unlisted_keys_not_at_all():
    listed = frozenset({APPROVER.public_key})
    twice = [approve(PAYMENT), approve(PAYMENT, payout_id="p-1", expires_at=NOW + 900)]
    assert approvers_who_approved(PAYMENT, twice, listed, NOW) == listed
    assert approvers_who_approved(PAYMENT, [approve(PAYMENT, OTHER)], listed, NOW) == frozenset()


def test_the_statement_is_deterministic_and_line_safe():
    assert statement(PAYMENT, "p-1", NOW) == statement(PAYMENT, "p-1", NOW)
    assert statement(PAYMENT, "p-1", NOW).startswith(b"stellar-payouts approval v1\nnetwork=")
    with pytest.raises(ValueError, match="payout_id"):
        statement(PAYMENT, "p\n1", NOW)
    with pytest.raises(ValueError, match="positive"):
        statement(dataclasses.replace(PAYMENT, amount_stroops=0), "p-1", NOW)
