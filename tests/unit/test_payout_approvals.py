"""Approval rules on the payout service's side: which payouts need approval, and the payment an
approver signs, checked against the signer's own decoding of the transactions this service
builds (a mismatch would make every approval refused)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from stellar_sdk import Keypair, MuxedAccount, Network
from stellar_sdk import xdr as sx

from payout_approvals.statement import Approval, statement
from payout_service.core.approvals import (
    ApprovalRules,
    approval_payment,
    needs_approval,
    paid_by_classic_operation,
    parse_approval_rules,
)
from payout_service.core.batches import (
    BatchItem,
    BatchMode,
    OpKind,
    PlannedOp,
    build_classic_batch,
)
from payout_service.core.model import Payout
from payout_service.core.states import PayoutState
from payout_service.core.transactions import (
    TxParams,
    asset_contract_id,
    build_payout_transaction,
    payout_call,
)
from payout_service.core.validation import Memo, MemoKind
from signer_service.approvals import approvals_refusal
from signer_service.policy import ApprovalRule, KeyPolicy

PASSPHRASE = Network.TESTNET_NETWORK_PASSPHRASE
PAYER = Keypair.from_raw_ed25519_seed(bytes([41] * 32)).public_key
CHANNEL = Keypair.from_raw_ed25519_seed(bytes([42] * 32)).public_key
DESTINATION = Keypair.from_raw_ed25519_seed(bytes([43] * 32)).public_key
ISSUER = Keypair.from_raw_ed25519_seed(bytes([44] * 32)).public_key
ALICE = Keypair.from_raw_ed25519_seed(bytes([45] * 32))
BOB = Keypair.from_raw_ed25519_seed(bytes([46] * 32))
NOW = 1_800_000_000
RULES = ApprovalRules({"native": 1_000_000_000, f"USDC:{ISSUER}": 50}, 2,
                      {"alice": ALICE.public_key, "bob": BOB.public_key})


def payout(**change: object) -> Payout:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    base = Payout(uuid4(), "p-1", "k", "f", {}, DESTINATION, "XLM", 2_000_000_000, 0,
                  2_000_000_000, PayoutState.ACCEPTED, "SIGNER_SERVICE", None, 0, None, None,
                  {}, "", None, None, "c", "", None, t, t, None)
    return dataclasses.replace(base, **change)  # type: ignore[arg-type]


def test_no_rules_never_need_approval():
    assert not needs_approval(payout(), None, network_passphrase=PASSPHRASE, classic=True)


@pytest.mark.parametrize(("change", "expected"), [
    ({"net_stroops": 1_000_000_000}, False),  # at the threshold: not above it
    ({"net_stroops": 1_000_000_001}, True),
    ({"asset": f"USDC:{ISSUER}", "net_stroops": 50}, False),
    ({"asset": f"USDC:{ISSUER}", "net_stroops": 51}, True),
    # An asset without a threshold needs approval for every amount, as in the signer.
    ({"asset": f"EURC:{ISSUER}", "net_stroops": 1}, True),
])
def test_the_paid_amount_above_its_assets_threshold_needs_approval(change, expected):
    assert needs_approval(payout(**change), RULES, network_passphrase=PASSPHRASE,
                          classic=True) is expected


def test_a_contract_transfer_is_judged_by_the_token_contracts_threshold():
    sac = asset_contract_id("XLM", PASSPHRASE)
    rules = dataclasses.replace(RULES, thresholds={sac: 10})
    assert not needs_approval(payout(net_stroops=10), rules, network_passphrase=PASSPHRASE,
                              classic=False)
    assert needs_approval(payout(net_stroops=11), rules, network_passphrase=PASSPHRASE,
                          classic=False)
    # The classic threshold does not apply to the contract transfer of the same asset.
    assert needs_approval(payout(net_stroops=11), RULES, network_passphrase=PASSPHRASE,
                          classic=False)


CONTRACT = asset_contract_id("XLM", PASSPHRASE)


@pytest.mark.parametrize(("mode", "contract_id", "destination", "expected"), [
    (BatchMode.CLASSIC, None, DESTINATION, True),
    (BatchMode.CLASSIC, "CPAYOUTS", DESTINATION, True),
    (BatchMode.CLASSIC, None, CONTRACT, False),  # a C... destination: the SAC transfer
    (BatchMode.CLASSIC, "CPAYOUTS", CONTRACT, None),
    (BatchMode.OFF, None, DESTINATION, False),
    (BatchMode.OFF, "CPAYOUTS", DESTINATION, None),
    (BatchMode.CONTRACT, None, DESTINATION, None),
])
def test_the_route_says_whether_approvals_can_cover_the_payment(mode, contract_id,
                                                                 destination, expected):
    assert paid_by_classic_operation(mode, contract_id, destination) is expected


def test_rules_parse_from_their_text_form():
    rules = parse_approval_rules(f"XLM=1000000000, USDC:{ISSUER}=50", "2",
                                 f"alice={ALICE.public_key},bob={BOB.public_key}")
    assert rules == RULES
    assert parse_approval_rules("native=1", "1", "") is None


@pytest.mark.parametrize(("thresholds", "required", "approvers", "named"), [
    ("native=1", "3", f"alice={ALICE.public_key},bob={BOB.public_key}", "required"),
    ("native=1", "0", f"alice={ALICE.public_key}", "required"),
    ("native=1", "two", f"alice={ALICE.public_key}", "required"),
    ("native=1.5", "1", f"alice={ALICE.public_key}", "thresholds"),
    ("native", "1", f"alice={ALICE.public_key}", "thresholds"),
    ("native=1", "1", "alice=GNOTAKEY", "approvers"),
    ("native=1", "1", f"alice={ALICE.public_key},alice={BOB.public_key}", "approvers"),
    ("native=1", "1", f"alice={ALICE.public_key},bob={ALICE.public_key}", "approvers"),
])
def test_bad_rules_are_refused_naming_the_part(thresholds, required, approvers, named):
    with pytest.raises(ValueError, match=named):
        parse_approval_rules(thresholds, required, approvers)


# ---- the signer decodes the same payment from the transactions this service builds ----------

def approvals(p: Payout, *, treasury: str, classic: bool, index: int = 0
              ) -> list[tuple[int, Approval]]:
    payment = approval_payment(p, network_passphrase=PASSPHRASE, treasury=treasury,
                               classic=classic)
    expires = NOW + 600
    return [(index, Approval(k.public_key, k.sign(statement(payment, p.payout_id, expires)),
                             p.payout_id, expires)) for k in (ALICE, BOB)]


def policy(thresholds: dict[str, int]) -> KeyPolicy:
    rule = ApprovalRule(frozenset({ALICE.public_key, BOB.public_key}), 2, thresholds)
    return KeyPolicy(PASSPHRASE, frozenset({"*"}), (), 1000, 10**12, 10**13, 300,
                     approvals=rule)


def params(source: str) -> TxParams:
    return TxParams(source, 2, 0, NOW + 60, PASSPHRASE)


@pytest.mark.parametrize("source", [PAYER, CHANNEL])
@pytest.mark.parametrize("muxed_id", [None, 7])
def test_the_signer_accepts_approvals_of_a_sac_transfer_built_here(source, muxed_id):
    destination = (MuxedAccount(DESTINATION, muxed_id).account_muxed if muxed_id is not None
                   else DESTINATION)
    p = payout(destination=destination, muxed_id=muxed_id)
    call = payout_call(p.asset, PASSPHRASE, None, "pay")
    envelope = build_payout_transaction(
        params(source), call, payer=PAYER, destination=p.destination,
        amount_stroops=p.net_stroops, operation_source=PAYER if source == CHANNEL else None)
    tx = envelope.transaction.to_xdr_object()
    rules = policy({call.contract_id: 0})
    assert approvals_refusal(tx, rules, PASSPHRASE, approvals(p, treasury=PAYER, classic=False),
                             NOW) is None
    # One approver short is refused: the approvals are what let it through.
    assert approvals_refusal(tx, rules, PASSPHRASE,
                             approvals(p, treasury=PAYER, classic=False)[:1], NOW) is not None


@pytest.mark.parametrize("memo", [None, Memo(MemoKind.TEXT, "invoice 7"), Memo(MemoKind.ID, "42"),
                                  Memo(MemoKind.HASH, "ab" * 32),
                                  Memo(MemoKind.RETURN, "cd" * 32)])
@pytest.mark.parametrize("asset", ["XLM", f"USDC:{ISSUER}"])
def test_the_signer_accepts_approvals_of_a_classic_batch_built_here(memo, asset):
    first = payout(payout_id="p-1", asset=asset, net_stroops=300,
                   memo_type=memo.kind.value if memo else None,
                   memo_value=memo.value if memo else None)
    second = payout(payout_id="p-2", asset=asset, net_stroops=500,
                    memo_type=first.memo_type, memo_value=first.memo_value,
                    destination=MuxedAccount(DESTINATION, 9).account_muxed, muxed_id=9)
    ops = [PlannedOp(BatchItem(p.id, p.destination, p.asset, p.net_stroops, memo),
                     OpKind.PAYMENT) for p in (first, second)]
    tx = build_classic_batch(params(CHANNEL), ops, operation_source=PAYER
                             ).transaction.to_xdr_object()
    assert isinstance(tx, sx.Transaction)
    rules = policy({})
    both = (approvals(first, treasury=PAYER, classic=True, index=0)
            + approvals(second, treasury=PAYER, classic=True, index=1))
    assert approvals_refusal(tx, rules, PASSPHRASE, both, NOW) is None
    # Each operation is covered by its own payout's approvals only.
    swapped = (approvals(first, treasury=PAYER, classic=True, index=1)
               + approvals(second, treasury=PAYER, classic=True, index=0))
    assert approvals_refusal(tx, rules, PASSPHRASE, swapped, NOW) is not None


def test_the_signer_accepts_approvals_of_a_create_account_built_here():
    p = payout(net_stroops=20_000_000)
    ops = [PlannedOp(BatchItem(p.id, p.destination, p.asset, p.net_stroops),
                     OpKind.CREATE_ACCOUNT)]
    tx = build_classic_batch(params(PAYER), ops, operation_source=None
                             ).transaction.to_xdr_object()
    assert approvals_refusal(tx, policy({}), PASSPHRASE,
                             approvals(p, treasury=PAYER, classic=True), NOW) is None
