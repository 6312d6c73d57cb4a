"""Exchange deposits: memos and muxed destinations, from validation to the batch they ride in.
Pure: no database, no network."""

from __future__ import annotations

import argparse
from uuid import uuid4

import pytest
from stellar_sdk import Keypair, MuxedAccount, Network, TransactionEnvelope
from stellar_sdk import xdr as sx

from payout_service.cli.payoutctl import memo_arg, memo_text
from payout_service.core.batches import (
    BatchItem,
    BatchMode,
    OpKind,
    build_classic_batch,
    payee_route_problem,
    plan_classic_batch,
)
from payout_service.core.errors import ValidationFailed
from payout_service.core.idempotency import canonical_parameters, differing_fields, fingerprint
from payout_service.core.payees import landed_payee_problem
from payout_service.core.rounds import WinnerInput, validate_winners
from payout_service.core.transactions import TxParams
from payout_service.core.validation import (
    AmountLimits,
    Memo,
    MemoKind,
    destination_problem,
    validate_payout_request,
)
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb

ACCOUNT = Keypair.random().public_key
MUXED = MuxedAccount(ACCOUNT, 2**64 - 1).account_muxed
SOURCE = Keypair.random().public_key
PASS = Network.TESTNET_NETWORK_PASSPHRASE


def make(**overrides):
    fields = dict(payout_id="p1", destination=ACCOUNT, amount="1", asset="XLM",
                  idempotency_key="k1", metadata={}, reference="", limits=AmountLimits(),
                  source_account=SOURCE)
    fields.update(overrides)
    return validate_payout_request(**fields)


def violations(**overrides) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as err:
        make(**overrides)
    return {v.field: v.description for v in err.value.violations}


def test_a_text_memo_of_28_bytes_fits_and_29_is_refused_naming_the_field() -> None:
    assert make(memo=("text", "x" * 28)).memo == Memo(MemoKind.TEXT, "x" * 28)
    assert violations(memo=("text", "x" * 29)) == {"memo.text": "29 bytes, at most 28"}


def test_the_text_limit_counts_utf8_bytes_not_characters() -> None:
    # 10 characters of 3 bytes each: 30 bytes.
    assert violations(memo=("text", "€" * 10)) == {"memo.text": "30 bytes, at most 28"}


def test_id_memos_span_the_whole_uint64_range() -> None:
    assert make(memo=("id", 0)).memo == Memo(MemoKind.ID, "0")
    assert make(memo=("id", 2**64 - 1)).memo == Memo(MemoKind.ID, str(2**64 - 1))
    assert "memo.id" in violations(memo=("id", 2**64))


@pytest.mark.parametrize("kind", ["hash", "return"])
def test_hash_and_return_memos_are_exactly_32_bytes(kind: str) -> None:
    assert make(memo=(kind, bytes(range(32)))).memo == Memo(MemoKind(kind), bytes(range(32)).hex())
    field = {"hash": "memo.hash", "return": "memo.return_hash"}[kind]  # the proto's names
    assert violations(memo=(kind, b"\x01" * 31)) == {field: "31 bytes, must be exactly 32"}


def test_an_empty_memo_message_is_refused() -> None:
    assert "memo" in violations(memo=("", None))


def test_a_muxed_destination_is_accepted_with_its_id() -> None:
    assert destination_problem(MUXED) is None
    request = make(destination=MUXED)
    assert request.destination == MUXED
    assert request.muxed_id == 2**64 - 1


def test_a_muxed_destination_with_a_bad_checksum_is_refused() -> None:
    broken = MUXED[:-2] + ("AA" if MUXED[-2:] != "AA" else "BB")
    assert "M..." in violations(destination=broken)["destination"]


def test_a_muxed_address_of_the_payer_itself_is_refused() -> None:
    own = MuxedAccount(SOURCE, 7).account_muxed
    assert violations(destination=own) == {
        "destination": "must differ from the payout source account"}


def test_a_payout_without_memo_or_muxed_id_keeps_its_fingerprint() -> None:
    # Computed before memos existed: a stored payout must still replay.
    params = canonical_parameters(make())
    assert set(params) == {"payout_id", "destination", "amount_stroops", "asset", "metadata",
                           "reference"}


def test_the_memo_is_part_of_the_fingerprint_and_a_different_memo_conflicts() -> None:
    plain = canonical_parameters(make())
    with_id = canonical_parameters(make(memo=("id", 5)))
    other_id = canonical_parameters(make(memo=("id", 6)))
    as_text = canonical_parameters(make(memo=("text", "5")))
    assert len({fingerprint(p) for p in (plain, with_id, other_id, as_text)}) == 4
    assert [v.field for v in differing_fields(with_id, other_id)] == ["memo"]
    assert [v.field for v in differing_fields(plain, with_id)] == ["memo"]


def test_the_muxed_id_is_part_of_the_fingerprint_and_named_as_the_destination() -> None:
    one = canonical_parameters(make(destination=MuxedAccount(ACCOUNT, 1).account_muxed))
    two = canonical_parameters(make(destination=MuxedAccount(ACCOUNT, 2).account_muxed))
    assert one["muxed_id"] == "1"
    assert fingerprint(one) != fingerprint(two)
    assert [v.field for v in differing_fields(one, two)] == ["destination"]


def item(destination: str = ACCOUNT, memo: Memo | None = None) -> BatchItem:
    return BatchItem(uuid4(), destination, "XLM", 20_000_000, memo)


def test_a_payout_with_a_memo_is_alone_in_its_batch() -> None:
    memo = Memo(MemoKind.ID, "42")
    first, with_memo, last = item(), item(memo=memo), item()
    plan = plan_classic_batch([first, with_memo, last], {ACCOUNT}, 100)
    assert [op.item for op in plan.operations] == [first, last]
    assert plan.deferred == [with_memo]
    # Next batch: it comes first, and is planned alone.
    plan = plan_classic_batch([with_memo, item()], {ACCOUNT}, 100)
    assert [op.item for op in plan.operations] == [with_memo]
    assert len(plan.deferred) == 1


def test_two_payouts_with_the_same_memo_still_go_one_per_transaction() -> None:
    memo = Memo(MemoKind.TEXT, "customer 7")
    a, b = item(memo=memo), item(memo=memo)
    plan = plan_classic_batch([a, b], {ACCOUNT}, 100)
    assert [op.item for op in plan.operations] == [a]
    assert plan.deferred == [b]


def test_muxed_destinations_batch_together_looked_up_by_their_account() -> None:
    others = [item(MuxedAccount(ACCOUNT, n).account_muxed) for n in range(3)]
    plan = plan_classic_batch(others, {ACCOUNT}, 100)
    assert [op.kind for op in plan.operations] == [OpKind.PAYMENT] * 3


def test_a_muxed_destination_whose_account_is_missing_is_refused_not_created() -> None:
    plan = plan_classic_batch([item(MUXED)], set(), 100)
    assert not plan.operations
    assert plan.refused[0].code == "DESTINATION_MISSING"


def _built(items: list[BatchItem]) -> sx.Transaction:
    plan = plan_classic_batch(items, {ACCOUNT}, 100)
    envelope = build_classic_batch(TxParams(SOURCE, 2, 0, 10**10, PASS), plan.operations,
                                   operation_source=None)
    parsed = TransactionEnvelope.from_xdr(envelope.to_xdr(), PASS)
    return parsed.transaction.to_xdr_object()


def test_the_batch_transaction_carries_the_memo_and_each_muxed_destination() -> None:
    tx = _built([item(MUXED, Memo(MemoKind.HASH, "ab" * 32))])
    assert tx.memo.type == sx.MemoType.MEMO_HASH
    assert tx.memo.hash.hash == bytes.fromhex("ab" * 32)
    destination = tx.operations[0].body.payment_op.destination
    assert destination.type == sx.CryptoKeyType.KEY_TYPE_MUXED_ED25519
    assert destination.med25519.id.uint64 == 2**64 - 1


def test_a_batch_without_memos_has_none() -> None:
    tx = _built([item(), item(MUXED)])
    assert tx.memo.type == sx.MemoType.MEMO_NONE


@pytest.mark.parametrize(("mode", "destination", "memo", "contract", "field"), [
    (BatchMode.CLASSIC, ACCOUNT, True, False, None),
    (BatchMode.CLASSIC, MUXED, True, False, None),
    (BatchMode.OFF, ACCOUNT, True, False, "memo"),
    (BatchMode.CONTRACT, ACCOUNT, True, False, "memo"),
    (BatchMode.CLASSIC, "CDLZFC3SYJYDZT7K67VZ75HPJVIEUVNIXF47ZG2FB2RMQQVU2HHGCYSC", True, False,
     "memo"),
    (BatchMode.OFF, MUXED, False, False, None),  # the SAC transfer takes a MuxedAddress
    (BatchMode.OFF, MUXED, False, True, "destination"),
    (BatchMode.CONTRACT, MUXED, False, True, "destination"),
])
def test_the_payee_route_rule(mode: BatchMode, destination: str, memo: bool, contract: bool,
                              field: str | None) -> None:
    problem = payee_route_problem(mode, destination=destination, has_memo=memo,
                                  payout_contract=contract)
    assert (problem[0] if problem else None) == field


@pytest.mark.parametrize("memo", [Memo(MemoKind.TEXT, "é 7"), Memo(MemoKind.ID, str(2**64 - 1)),
                                  Memo(MemoKind.HASH, "ab" * 32),
                                  Memo(MemoKind.RETURN, "cd" * 32)])
def test_the_confirmer_reads_each_memo_kind_back_as_it_was_stored(memo: Memo) -> None:
    plan = plan_classic_batch([item(MUXED, memo)], {ACCOUNT}, 100)
    envelope = build_classic_batch(TxParams(SOURCE, 2, 0, 10**10, PASS), plan.operations,
                                   operation_source=None).to_xdr()
    assert landed_payee_problem(envelope, "", op_index=0, memo=memo, muxed_id=2**64 - 1) is None
    assert landed_payee_problem(envelope, "", op_index=0, memo=None, muxed_id=2**64 - 1) == (
        f"memo {memo.kind.value}:{memo.value} landed, none was asked")
    assert landed_payee_problem(envelope, "", op_index=0, memo=memo, muxed_id=None) == (
        f"muxed id {2**64 - 1} landed, None was asked")


def _validate(fields):  # noqa: ANN001, ANN202 - as PayoutDesk.validate, without a service
    return validate_payout_request(
        payout_id=str(fields["payout_id"]), destination=str(fields["destination"]),
        amount=str(fields["amount"]), asset=str(fields["asset"]),
        idempotency_key=str(fields["idempotency_key"]), metadata=dict(fields["metadata"]),
        reference="", limits=AmountLimits(), memo=fields.get("memo"))


def test_a_round_winner_takes_a_memo_and_a_bad_one_names_the_winner() -> None:
    (request,) = validate_winners("r1", "XLM", [WinnerInput(1, MUXED, "1", ("id", 9))],
                                  _validate)
    assert (request.memo, request.muxed_id) == (Memo(MemoKind.ID, "9"), 2**64 - 1)
    with pytest.raises(ValidationFailed) as err:
        validate_winners("r1", "XLM", [WinnerInput(1, ACCOUNT, "1"),
                                       WinnerInput(2, ACCOUNT, "1", ("text", "x" * 29))],
                         _validate)
    assert [(v.field, v.description) for v in err.value.violations] == [
        ("winners[1].memo.text", "29 bytes, at most 28")]


@pytest.mark.parametrize(("flag", "memo"), [
    ("text:customer 7", pb.Memo(text="customer 7")),
    ("text:a:b", pb.Memo(text="a:b")),
    (f"id:{2**64 - 1}", pb.Memo(id=2**64 - 1)),
    ("hash:" + "ab" * 32, pb.Memo(hash=bytes.fromhex("ab" * 32))),
    ("return:" + "cd" * 32, pb.Memo(return_hash=bytes.fromhex("cd" * 32))),
])
def test_payoutctl_takes_a_memo_and_shows_it_as_it_was_given(flag: str, memo: pb.Memo) -> None:
    assert memo_arg(flag) == memo
    assert memo_text(memo) == flag


@pytest.mark.parametrize("flag", ["customer 7", "id:seven", "hash:zz", "note:x"])
def test_payoutctl_refuses_a_memo_flag_it_cannot_read(flag: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        memo_arg(flag)

