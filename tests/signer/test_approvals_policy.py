"""The approvals rule on decoded transactions (pure): memo, muxed id, source of funds and
contract calls are bound from the transaction, never from the caller; `signerctl policy
check` explains it."""

from __future__ import annotations

import dataclasses

from stellar_sdk import Account, Asset, Keypair, MuxedAccount, TransactionBuilder, scval

from payout_approvals.statement import (
    MAX_APPROVAL_SECONDS,
    Approval,
    Payment,
    memo_text,
    statement,
)
from signer_service.approvals import approvals_refusal
from signer_service.policy import ApprovalRule, KeyPolicy
from signer_service.policy_check import explain
from signer_service.testing import render_config
from tests.signer.envelopes import DESTINATION, OTHER_CONTRACT, PASSPHRASE, build_tx
from tests.signer.test_batch_policy import config_with

APPROVER = Keypair.from_raw_ed25519_seed(bytes([31] * 32))
PAYER = Keypair.from_raw_ed25519_seed(bytes([32] * 32)).public_key
NOW = 1_800_000_000
RULE = ApprovalRule(frozenset({APPROVER.public_key}), 1, {"native": 100})
POLICY = KeyPolicy(PASSPHRASE, frozenset({"*"}), (), 1000, 10**9, 10**10, 300, approvals=RULE)


def approval(payment: Payment) -> tuple[int, Approval]:
    expires = NOW + 60
    return 0, Approval(APPROVER.public_key,
                       APPROVER.sign(statement(payment, "p-1", expires)), "p-1", expires)


def payment(**change: object) -> Payment:
    base = Payment(PASSPHRASE, PAYER, DESTINATION, None, memo_text("none"), "native", 1000)
    return dataclasses.replace(base, **change)  # type: ignore[arg-type]


def tx(*, memo: str | None = None, muxed_id: int | None = None, amount: str = "0.0001000"):
    builder = TransactionBuilder(Account(PAYER, 1), PASSPHRASE, base_fee=100)
    destination = MuxedAccount(DESTINATION, muxed_id) if muxed_id is not None else DESTINATION
    builder.append_payment_op(destination, Asset.native(), amount)
    if memo is not None:
        builder.add_text_memo(memo)
    return builder.set_timeout(60).build().transaction.to_xdr_object()


def test_the_memo_is_read_from_the_transaction():
    memo = memo_text("text", b"invoice 7")
    assert approvals_refusal(tx(memo="invoice 7"), POLICY, PASSPHRASE,
                             [approval(payment(memo=memo))], NOW) is None
    refusal = approvals_refusal(tx(memo="invoice 8"), POLICY, PASSPHRASE,
                                [approval(payment(memo=memo))], NOW)
    assert refusal is not None and refusal.rule == "approvals"


def test_the_muxed_id_is_read_from_the_destination():
    assert approvals_refusal(tx(muxed_id=7), POLICY, PASSPHRASE,
                             [approval(payment(muxed_id=7))], NOW) is None
    assert approvals_refusal(tx(muxed_id=8), POLICY, PASSPHRASE,
                             [approval(payment(muxed_id=7))], NOW) is not None


def test_an_approval_for_another_operation_index_does_not_count():
    index, one = approval(payment())
    assert approvals_refusal(tx(), POLICY, PASSPHRASE, [(index + 1, one)], NOW) is not None


def test_a_call_that_is_not_a_transfer_cannot_be_approved():
    call = build_tx(source=PAYER, contract=OTHER_CONTRACT, function="distribute_winnings")
    refusal = approvals_refusal(call.to_xdr_object(), POLICY, PASSPHRASE, [], NOW)
    assert refusal is not None and "not a transfer" in refusal.detail


def test_without_the_rule_nothing_is_asked():
    plain = dataclasses.replace(POLICY, approvals=None)
    assert approvals_refusal(tx(), plain, PASSPHRASE, [], NOW) is None


def test_policy_check_explains_an_approvals_refusal(tmp_path):
    config = config_with({"assets": ["native"]}, tmp_path)
    config["keys"][0]["policy"]["approvals"] = {
        "approvers": [APPROVER.public_key], "required": 1, "thresholds": {"native": 10}}
    path = tmp_path / "signer.toml"
    path.write_text(render_config({n: config[n] for n in ("server", "tls", "audit")},
                                  config["keys"]))
    source = config["keys"][0]["policy"]["source_accounts"][0]
    builder = TransactionBuilder(Account(source, 1), PASSPHRASE, base_fee=100)
    envelope = builder.append_payment_op(DESTINATION, Asset.native(), "0.0000050") \
        .set_timeout(60).build().to_xdr()
    lines, would_sign = explain(path, envelope, key_id=None, current_ledger=0,
                                expiration_ledger=0, spent=0)
    assert not would_sign and "policy rule approvals refused" in lines[-1]


def two_payments_tx():
    builder = TransactionBuilder(Account(PAYER, 1), PASSPHRASE, base_fee=100)
    for _ in range(2):
        builder.append_payment_op(DESTINATION, Asset.native(), "0.0001000")
    return builder.set_timeout(60).build().transaction.to_xdr_object()


def test_one_approval_at_two_operations_is_refused():
    """Two identical payments, the same approval at both: that payout would be paid twice."""
    _, one = approval(payment())
    refusal = approvals_refusal(two_payments_tx(), POLICY, PASSPHRASE, [(0, one), (1, one)],
                                NOW)
    assert refusal is not None and refusal.rule == "approvals"
    assert "both approved as payout" in refusal.detail


def test_a_batch_call_with_its_amounts_in_a_vector_cannot_be_approved():
    """A call whose amounts are nested (a batch's vector) is refused even though no top-level
    argument is an amount."""
    nested = scval.to_vec([scval.to_vec([scval.to_address(DESTINATION),
                                         scval.to_int128(10**12)])])
    call = build_tx(source=PAYER, contract=OTHER_CONTRACT, function="pay_batch",
                    args=[scval.to_address(PAYER), nested])
    refusal = approvals_refusal(call.to_xdr_object(), POLICY, PASSPHRASE, [], NOW)
    assert refusal is not None and refusal.rule == "approvals"


def test_an_approval_valid_for_longer_than_the_maximum_does_not_count():
    expires = NOW + MAX_APPROVAL_SECONDS + 1
    long_lived = Approval(APPROVER.public_key,
                          APPROVER.sign(statement(payment(), "p-1", expires)), "p-1", expires)
    assert approvals_refusal(tx(), POLICY, PASSPHRASE, [(0, long_lived)], NOW) is not None
    _, fine = approval(payment())
    assert approvals_refusal(tx(), POLICY, PASSPHRASE, [(0, fine)], NOW) is None
