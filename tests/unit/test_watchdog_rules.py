"""The watchdog's pure rules (core/watchdog.py, core/outflows.py) on real XDR: envelopes built
with stellar-sdk, results and CAP-67 metas built by the sandbox's own XDR builder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from stellar_sdk import (
    Account,
    Asset,
    FeeBumpTransactionEnvelope,
    Keypair,
    Network,
    TransactionBuilder,
    TransactionEnvelope,
    scval,
)
from stellar_sdk import xdr as x
from stellar_sdk.address import Address

from payout_service.core.outflows import (
    AUTHORIZATION,
    FEE_SOURCE,
    OPERATION_SOURCE,
    SOURCE,
    WatchedAccounts,
    debits,
    event_debit,
    fee_charged,
    inner_hash,
    names_watched,
)
from payout_service.core.watchdog import (
    CONFIRMED_UNSEEN,
    PAID_TWICE,
    UNEXPLAINED_OUTFLOW,
    ChainTransaction,
    ConfirmedPayout,
    Known,
    Position,
    after_gap,
    after_page,
    check_confirmed,
    judge_page,
    toid,
)
from soroban_sandbox import xdr_build as b

PASSPHRASE = Network.STANDALONE_NETWORK_PASSPHRASE
NATIVE_SAC = Asset.native().contract_id(PASSPHRASE)
PAYER, CHANNEL, STRANGER, DEST = (Keypair.random() for _ in range(4))
WATCHED = WatchedAccounts.of([PAYER.public_key, CHANNEL.public_key])


def payment(source: Keypair, to: str, stroops: int, *, op_source: str | None = None
            ) -> TransactionEnvelope:
    tx = (TransactionBuilder(Account(source.public_key, 41), PASSPHRASE, base_fee=100)
          .append_payment_op(to, Asset.native(), str(stroops / 10**7), source=op_source)
          .set_timeout(60).build())
    tx.sign(source)
    return tx


def classic_meta(moves: list[tuple[str, str, int]], fee_payer: str, fee: int = 100) -> str:
    events = [[b.transfer_event(NATIVE_SAC, f, t, n, "native") for f, t, n in moves]]
    return b.classic_transaction_meta(
        events, [b.fee_event(NATIVE_SAC, fee_payer, fee, 0)]).to_xdr()


def result(fee: int = 100) -> str:
    return b.classic_result(success=True, fee_charged=fee, results=[]).to_xdr()


def chain_tx(envelope: TransactionEnvelope | FeeBumpTransactionEnvelope, meta: str, *,
             ledger: int = 50, successful: bool = True, fee: int = 100) -> ChainTransaction:
    return ChainTransaction(
        tx_hash=envelope.hash_hex(), ledger=ledger, successful=successful,
        fee_bump=isinstance(envelope, FeeBumpTransactionEnvelope),
        envelope_xdr=envelope.to_xdr(), result_xdr=result(fee), meta_xdr=meta)


# ---- position ---------------------------------------------------------------------------

def test_a_short_page_proves_every_ledger_up_to_the_latest_it_reports() -> None:
    at = Position.starting_at(100)
    assert after_page(at, returned=3, limit=200, page_cursor=str(toid(104, 2, 1)),
                      latest_ledger=104) == Position(104, toid(105))


def test_a_full_page_proves_only_the_ledgers_before_its_cursor() -> None:
    at = Position.starting_at(100)
    moved = after_page(at, returned=200, limit=200, page_cursor=str(toid(103, 17, 1)),
                       latest_ledger=110)
    assert moved == Position(102, toid(103, 17, 1))
    again = after_page(moved, returned=200, limit=200, page_cursor=str(toid(103, 217, 1)),
                       latest_ledger=110)
    assert again == Position(102, toid(103, 217, 1)), "still inside ledger 103"


def test_a_node_that_has_not_reached_our_next_ledger_proves_nothing() -> None:
    """stellar-rpc answers a cursor past its latest ledger with no transactions and cursor
    "0": a lagging node behind a load balancer, not an empty ledger."""
    at = Position(120, toid(121))
    for latest in (118, 120):
        assert after_page(at, returned=0, limit=200, page_cursor="0",
                          latest_ledger=latest) == at


def test_a_gap_moves_to_the_oldest_ledger_the_node_keeps() -> None:
    assert after_gap(Position(120, toid(121, 5, 1)), 300) == Position(299, toid(300))


# ---- what a transaction takes -------------------------------------------------------------

def test_the_prefilter_sees_a_watched_key_anywhere_and_only_then() -> None:
    ours = payment(PAYER, DEST.public_key, 5)
    to_us = payment(STRANGER, PAYER.public_key, 5)
    as_op_source = payment(STRANGER, DEST.public_key, 5, op_source=CHANNEL.public_key)
    unrelated = payment(STRANGER, DEST.public_key, 5)
    assert names_watched(ours.to_xdr(), "", WATCHED)
    assert names_watched(to_us.to_xdr(), "", WATCHED)
    assert names_watched(as_op_source.to_xdr(), "", WATCHED)
    assert not names_watched(unrelated.to_xdr(), classic_meta(
        [(STRANGER.public_key, DEST.public_key, 5)], STRANGER.public_key), WATCHED)
    # Named only in the effects (a SAC transfer authorised by the payer, someone else's tx).
    meta = classic_meta([(PAYER.public_key, DEST.public_key, 5)], STRANGER.public_key)
    assert names_watched(unrelated.to_xdr(), meta, WATCHED)


def test_a_payment_from_the_payer_debits_its_sequence_fee_and_amount() -> None:
    tx = payment(PAYER, DEST.public_key, 70_000_000)
    meta = classic_meta([(PAYER.public_key, DEST.public_key, 70_000_000)], PAYER.public_key)
    found = debits(tx.to_xdr(), result(100), meta, WATCHED)
    assert [(d.kind, d.account, d.amount, d.asset) for d in found] == [
        (SOURCE, PAYER.public_key, 100, "native"),
        ("transfer", PAYER.public_key, 70_000_000, "native"),
        ("fee", PAYER.public_key, 100, "native"),
    ]


def test_an_inflow_is_no_debit() -> None:
    tx = payment(STRANGER, PAYER.public_key, 5)
    meta = classic_meta([(STRANGER.public_key, PAYER.public_key, 5)], STRANGER.public_key)
    assert debits(tx.to_xdr(), result(), meta, WATCHED) == []


def test_acting_as_a_watched_account_is_a_debit_even_without_events() -> None:
    tx = payment(STRANGER, DEST.public_key, 5, op_source=CHANNEL.public_key)
    assert [(d.kind, d.account) for d in debits(tx.to_xdr(), result(), "", WATCHED)] == \
        [(OPERATION_SOURCE, CHANNEL.public_key)]


def test_an_authorisation_signed_for_a_watched_account_is_a_debit() -> None:
    """Someone else's contract call carrying an authorisation our key signed (an allowance
    granted with SAC `approve`): the key acted for us before any money moved."""
    payer = Address(PAYER.public_key).to_xdr_sc_address()
    entry = x.SorobanAuthorizationEntry(
        credentials=x.SorobanCredentials(
            x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS,
            address=x.SorobanAddressCredentials(payer, x.Int64(7), x.Uint32(500),
                                                scval.to_void())),
        root_invocation=x.SorobanAuthorizedInvocation(
            function=x.SorobanAuthorizedFunction(
                x.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
                contract_fn=x.InvokeContractArgs(
                    Address(NATIVE_SAC).to_xdr_sc_address(), x.SCSymbol(b"approve"), [])),
            sub_invocations=[]))
    tx = (TransactionBuilder(Account(STRANGER.public_key, 9), PASSPHRASE, base_fee=100)
          .append_invoke_contract_function_op(
              NATIVE_SAC, "approve", [scval.to_address(PAYER.public_key)], auth=[entry])
          .set_timeout(60).build())
    assert [(d.kind, d.account) for d in debits(tx.to_xdr(), result(), "", WATCHED)] == \
        [(AUTHORIZATION, PAYER.public_key)]


def _event(topics: list[x.SCVal], data: x.SCVal) -> x.ContractEvent:
    return x.ContractEvent(
        ext=x.ExtensionPoint(0), contract_id=None, type=x.ContractEventType.CONTRACT,
        body=x.ContractEventBody(0, v0=x.ContractEventV0(topics=topics, data=data)))


def test_event_shapes_cap67_and_before() -> None:
    sym, addr = scval.to_symbol, scval.to_address
    payer, admin = PAYER.public_key, STRANGER.public_key
    burn = _event([sym("burn"), addr(payer), scval.to_string("USD:" + admin)],
                  scval.to_int128(9))
    old_clawback = _event([sym("clawback"), addr(admin), addr(payer), scval.to_string("native")],
                          scval.to_int128(4))
    muxed = _event([sym("transfer"), addr(payer), addr(DEST.public_key),
                    scval.to_string("native")],
                   scval.to_map({sym("amount"): scval.to_int128(6),
                                 sym("to_muxed_id"): scval.to_uint64(7)}))
    refund = _event([sym("fee"), addr(payer)], scval.to_int128(-30))
    mint = _event([sym("mint"), addr(payer), scval.to_string("native")], scval.to_int128(1))
    assert [(d.kind, d.amount, d.asset) for e in (burn, old_clawback, muxed)
            if (d := event_debit(e, WATCHED))] == [
        ("burn", 9, "USD:" + admin), ("clawback", 4, "native"), ("transfer", 6, "native")]
    assert event_debit(refund, WATCHED) is None, "a refund is money coming back"
    assert event_debit(mint, WATCHED) is None, "a mint is an inflow"


def test_a_fee_bump_of_our_envelope_has_our_inner_hash_and_its_own_fee_source() -> None:
    inner = payment(PAYER, DEST.public_key, 5)
    bump = TransactionBuilder.build_fee_bump_transaction(
        STRANGER.public_key, 200, inner, PASSPHRASE)
    assert inner_hash(bump.to_xdr(), PASSPHRASE) == inner.hash_hex()
    assert inner_hash(inner.to_xdr(), PASSPHRASE) is None
    ours_paid_by_us = TransactionBuilder.build_fee_bump_transaction(
        CHANNEL.public_key, 200, inner, PASSPHRASE)
    found = debits(ours_paid_by_us.to_xdr(), result(400), "", WATCHED)
    assert [(d.kind, d.account) for d in found] == [
        (FEE_SOURCE, CHANNEL.public_key), (SOURCE, PAYER.public_key)]


def test_fee_charged_is_read_from_the_first_field_alone() -> None:
    for fee in (0, 100, 30_100, 2**40 + 7):
        assert fee_charged(result(fee)) == fee
        assert fee_charged(result(fee)) == x.TransactionResult.from_xdr(
            result(fee)).fee_charged.int64


# ---- a page -------------------------------------------------------------------------------

def test_our_transactions_record_what_the_chain_paid_and_nothing_else() -> None:
    p1, p2 = uuid4(), uuid4()
    batch = payment(PAYER, DEST.public_key, 5)
    failed = payment(PAYER, DEST.public_key, 6)
    meta = classic_meta([(PAYER.public_key, DEST.public_key, 5)], PAYER.public_key)
    txs = [chain_tx(batch, meta, fee=200), chain_tx(failed, "", successful=False, fee=100)]
    known = {batch.hash_hex(): Known(((p1, 1), (p2, 3))), failed.hash_hex(): Known(((p1, 2),))}
    verdict = judge_page(txs, known, {}, WATCHED)
    assert verdict.findings == []
    assert [(p.payout_id, p.attempt) for p in verdict.payments] == [(p1, 1), (p2, 3)]
    assert verdict.fees_stroops == 300 and verdict.decoded == 0


def test_a_transaction_the_service_did_not_build_is_an_unexplained_outflow() -> None:
    theirs = payment(PAYER, DEST.public_key, 30_000_000)
    meta = classic_meta([(PAYER.public_key, DEST.public_key, 30_000_000)], PAYER.public_key)
    unrelated = payment(STRANGER, DEST.public_key, 5)
    inflow = payment(STRANGER, PAYER.public_key, 5)
    verdict = judge_page([chain_tx(theirs, meta, ledger=77), chain_tx(unrelated, ""),
                          chain_tx(inflow, "")], {}, {}, WATCHED)
    [finding] = verdict.findings
    assert (finding.kind, finding.tx_hash, finding.ledger) == \
        (UNEXPLAINED_OUTFLOW, theirs.hash_hex(), 77)
    assert (finding.accounts, finding.amount, finding.asset) == \
        ((PAYER.public_key,), 30_000_000, "native")
    assert verdict.decoded == 2, "the inflow was decoded and let go; the unrelated one not"


def test_two_of_our_transactions_paying_one_payout_are_paid_twice() -> None:
    payout = uuid4()
    first, second = payment(PAYER, DEST.public_key, 5), payment(PAYER, DEST.public_key, 6)
    known = {first.hash_hex(): Known(((payout, 1),)), second.hash_hex(): Known(((payout, 2),))}
    verdict = judge_page([chain_tx(first, ""), chain_tx(second, "", ledger=51)], known, {},
                         WATCHED)
    [finding] = verdict.findings
    assert (finding.kind, finding.payout_id, finding.tx_hash) == \
        (PAID_TWICE, payout, second.hash_hex())
    # The same transaction read again (a re-read page) is not a second payment.
    again = judge_page([chain_tx(first, ""), chain_tx(first, "")], known, {}, WATCHED)
    assert again.findings == []


def test_our_envelope_bumped_by_someone_else_is_ours() -> None:
    payout = uuid4()
    inner = payment(PAYER, DEST.public_key, 5)
    bump = TransactionBuilder.build_fee_bump_transaction(
        STRANGER.public_key, 200, inner, PASSPHRASE)
    tx = chain_tx(bump, "")
    verdict = judge_page([tx], {inner.hash_hex(): Known(((payout, 1),))},
                         {tx.tx_hash: inner.hash_hex()}, WATCHED)
    assert verdict.findings == [] and verdict.fees_stroops == 0, "the bumper paid the fee"
    assert [(p.payout_id, p.tx_hash) for p in verdict.payments] == [(payout, inner.hash_hex())]


# ---- confirmations ------------------------------------------------------------------------

def test_confirmations_are_judged_once_their_ledger_is_read() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def row(n: int, ledger: int | None, matched: bool) -> ConfirmedPayout:
        return ConfirmedPayout(uuid4(), f"p{n}", t0 + timedelta(seconds=n), "ab" * 32, ledger,
                               matched)
    rows = [row(1, 90, False), row(2, 101, True), row(3, 105, False), row(4, 130, False),
            row(5, 140, False), row(6, 111, False)]
    check = check_confirmed(rows, checked_until=t0, verified_ledger=135, start_ledger=100,
                            gaps=[(104, 106)])
    assert [f.kind for f in check.findings] == [CONFIRMED_UNSEEN]
    assert check.findings[0].payout_id == rows[3].payout_id, \
        "before the start and in a gap are not judged; matched is fine"
    assert not check.complete
    assert check.checked_until == rows[4].confirmed_at - timedelta(microseconds=1), \
        "stops before the first payout whose ledger is not read yet"
    done = check_confirmed(rows[:4], checked_until=t0, verified_ledger=135, start_ledger=100,
                           gaps=[])
    assert done.complete and done.checked_until == rows[3].confirmed_at
    assert len(done.findings) == 2
