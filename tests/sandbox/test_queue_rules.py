"""stellar-core's queue and ledger rules in the sandbox core (no HTTP, no clock).

Each rule cites where stellar-core (src/herder/TransactionQueue.cpp, TxQueueLimiter.cpp,
src/transactions/TransactionFrame.cpp) or stellar-rpc decides it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from stellar_sdk import (
    Account,
    Asset,
    Keypair,
    Network,
    TransactionBuilder,
    TransactionEnvelope,
    scval,
    xdr,
)
from stellar_sdk.operation import InvokeHostFunction

from soroban_sandbox.contracts import ContractRegistry, default_payout_contract_id
from soroban_sandbox.fees import EVENT_FEE, non_refundable_fee
from soroban_sandbox.ledger import TRANSACTION_QUEUE_TIMEOUT_LEDGERS, Ledger, LedgerLimits
from soroban_sandbox.rpc import StellarRpc
from soroban_sandbox.rpc_params import INTERNAL_ERROR, RpcError
from soroban_sandbox.simulation import REFUNDABLE_FEE_MARGIN, simulate

PASSPHRASE = Network.STANDALONE_NETWORK_PASSPHRASE
T0 = 1_800_000_000
Code = xdr.TransactionResultCode


def new_ledger(**limits: int) -> Ledger:
    registry = ContractRegistry(PASSPHRASE, default_payout_contract_id(PASSPHRASE))
    return Ledger(registry=registry, start_time=T0, limits=LedgerLimits(**limits))


def funded(ledger: Ledger, count: int) -> list[Keypair]:
    keys = [Keypair.random() for _ in range(count)]
    for kp in keys:
        ledger.fund(kp.public_key)
    return keys


def transfer(
    ledger: Ledger,
    source: Keypair,
    *,
    bid: int = 100,
    seq_offset: int = 1,
    max_time: int = 0,
    signers: tuple[Keypair, ...] | None = None,
    tamper: Callable[[TransactionEnvelope], None] | None = None,
) -> str:
    """A simulated, assembled, signed XLM transfer of 1 stroop to the payout contract."""

    def build(data: str | None = None) -> TransactionBuilder:
        seq = ledger.accounts[source.public_key].seq + seq_offset - 1
        builder = TransactionBuilder(Account(source.public_key, seq), PASSPHRASE, base_fee=bid)
        builder.append_invoke_contract_function_op(
            ledger.registry.native_id,
            "transfer",
            [
                scval.to_address(source.public_key),
                scval.to_address(ledger.registry.payout_contract_id),
                scval.to_int128(1),
            ],
        )
        builder.add_time_bounds(0, max_time)
        if data:
            builder.set_soroban_data(data)
        return builder

    sim = simulate(ledger, build().build().to_xdr())
    assert sim.error is None and sim.transaction_data and sim.min_resource_fee
    tx = build(sim.transaction_data).build()
    tx.transaction.fee = bid + sim.min_resource_fee
    op = tx.transaction.operations[0]
    assert isinstance(op, InvokeHostFunction)
    op.auth = [xdr.SorobanAuthorizationEntry.from_xdr(a) for a in sim.auth]
    if tamper is not None:
        tamper(tx)
    signed: set[str] = set()
    for signer in signers or (source,):
        if signer.public_key in signed:  # the same signature again (stellar-sdk won't sign twice)
            tx.signatures.append(tx.signatures[-1])
        else:
            tx.sign(signer)
            signed.add(signer.public_key)
    return tx.to_xdr()


def code_of(result_xdr: str | None) -> Code:
    assert result_xdr is not None
    return xdr.TransactionResult.from_xdr(result_xdr).result.code


def fee_charged(ledger: Ledger, tx_hash: str) -> int:
    included = ledger.transaction(tx_hash)
    assert included is not None
    return xdr.TransactionResult.from_xdr(included.result_xdr).fee_charged.int64


def test_lower_sequence_than_the_queued_transaction_is_bad_seq_not_try_again_later() -> None:
    ledger = new_ledger()
    (alice,) = funded(ledger, 1)
    assert ledger.submit(transfer(ledger, alice, seq_offset=1)).status == "PENDING"
    lower = ledger.submit(transfer(ledger, alice, seq_offset=0))
    assert (lower.status, code_of(lower.error_result_xdr)) == ("ERROR", Code.txBAD_SEQ)
    higher = ledger.submit(transfer(ledger, alice, seq_offset=2))
    assert higher.status == "TRY_AGAIN_LATER"  # one queued transaction per source account


def test_max_time_must_outlast_two_expected_ledger_closes() -> None:
    """isTooLate: maxTime < lastCloseTime + EXPECTED_CLOSE_TIME_MULT (2) x 5 s + drift."""
    ledger = new_ledger(expected_close_seconds=5)
    alice, bob = funded(ledger, 2)
    close = ledger.latest.close_time
    short = ledger.submit(transfer(ledger, alice, max_time=close + 9), now=close)
    assert (short.status, code_of(short.error_result_xdr)) == ("ERROR", Code.txTOO_LATE)
    assert ledger.submit(transfer(ledger, alice, max_time=close + 10), now=close).status == (
        "PENDING"
    )
    # Three seconds after the last close, the bound moves with the wall clock.
    drifted = ledger.submit(transfer(ledger, bob, max_time=close + 12), now=close + 3)
    assert code_of(drifted.error_result_xdr) == Code.txTOO_LATE


def test_duplicate_or_extra_signatures_are_bad_auth_extra() -> None:
    ledger = new_ledger()
    alice, bob, carol = funded(ledger, 3)
    twice = ledger.submit(transfer(ledger, alice, signers=(alice, alice)))
    assert (twice.status, code_of(twice.error_result_xdr)) == ("ERROR", Code.txBAD_AUTH_EXTRA)
    extra = ledger.submit(transfer(ledger, bob, signers=(bob, carol)))
    assert code_of(extra.error_result_xdr) == Code.txBAD_AUTH_EXTRA
    assert ledger.submit(transfer(ledger, carol)).status == "PENDING"


def test_resource_fee_below_the_resources_or_a_repeated_footprint_key_is_soroban_invalid() -> None:
    """commonValidPreSeqNum: declared resourceFee < the resources' fee, or > the full fee, or
    a footprint key twice: txSOROBAN_INVALID, before time bounds and the inclusion fee."""
    ledger = new_ledger()
    alice, bob, carol = funded(ledger, 3)

    def underpay(tx: TransactionEnvelope) -> None:
        data = tx.transaction.soroban_data
        assert data is not None
        data.resource_fee = xdr.Int64(non_refundable_fee(2) - 1)

    def repeat_key(tx: TransactionEnvelope) -> None:
        data = tx.transaction.soroban_data
        assert data is not None
        footprint = data.resources.footprint
        footprint.read_only.append(footprint.read_write[0])

    def overstate(tx: TransactionEnvelope) -> None:
        data = tx.transaction.soroban_data
        assert data is not None
        data.resource_fee = xdr.Int64(tx.transaction.fee + 1)

    for kp, tamper in ((alice, underpay), (bob, repeat_key), (carol, overstate)):
        sent = ledger.submit(transfer(ledger, kp, tamper=tamper))
        assert (sent.status, code_of(sent.error_result_xdr)) == (
            "ERROR",
            Code.txSOROBAN_INVALID,
        ), tamper.__name__


def test_refundable_fee_comes_back_and_a_failed_call_keeps_none_of_it() -> None:
    ledger = new_ledger()
    alice, bob = funded(ledger, 2)
    ok = ledger.submit(transfer(ledger, alice, bid=100))
    failing = ledger.submit(transfer(ledger, bob, bid=100), fail_on_chain=True)
    ledger.close(T0 + 1)
    fixed = non_refundable_fee(2)  # two balances written
    assert fee_charged(ledger, ok.hash) == 100 + fixed + EVENT_FEE
    assert fee_charged(ledger, failing.hash) == 100 + fixed
    spent = 10_000 * 10_000_000 - ledger.accounts[bob.public_key].balance
    assert spent == 100 + fixed  # the balance agrees with feeCharged


def test_full_ledger_leaves_the_lowest_bids_for_the_next_and_surge_prices_the_rest() -> None:
    """A Soroban tx set takes the highest bids up to the per-ledger limit; when bids are left
    out, every included tx pays the lowest included bid (stellar-core surge pricing)."""
    ledger = new_ledger(soroban_txs_per_ledger=1, queue_multiplier=3)
    alice, bob, carol = funded(ledger, 3)
    low = ledger.submit(transfer(ledger, alice, bid=100))
    high = ledger.submit(transfer(ledger, bob, bid=300))
    mid = ledger.submit(transfer(ledger, carol, bid=200))
    fixed = non_refundable_fee(2) + EVENT_FEE
    ledger.close(T0 + 1)
    assert ledger.latest.tx_hashes == (high.hash,)
    assert fee_charged(ledger, high.hash) == 300 + fixed
    ledger.close(T0 + 2)
    assert ledger.latest.tx_hashes == (mid.hash,)
    assert fee_charged(ledger, mid.hash) == 200 + fixed
    ledger.close(T0 + 3)
    assert ledger.latest.tx_hashes == (low.hash,)
    assert fee_charged(ledger, low.hash) == 100 + fixed  # no one left out: base fee
    fees, _ = ledger.recent_inclusion_fees(50)
    assert fees == [300, 200, 100]


def test_full_queue_takes_only_a_higher_bid_evicts_the_lowest_and_bans_it() -> None:
    ledger = new_ledger(soroban_txs_per_ledger=1, queue_multiplier=2)
    alice, bob, carol, dave = funded(ledger, 4)
    first = ledger.submit(transfer(ledger, alice, bid=150))
    second = ledger.submit(transfer(ledger, bob, bid=100))
    assert (first.status, second.status) == ("PENDING", "PENDING")
    tie = ledger.submit(transfer(ledger, carol, bid=100))
    assert code_of(tie.error_result_xdr) == Code.txINSUFFICIENT_FEE
    assert tie.error_result_xdr is not None
    needed = xdr.TransactionResult.from_xdr(tie.error_result_xdr).fee_charged.int64
    resource = non_refundable_fee(2) + math.ceil(EVENT_FEE * REFUNDABLE_FEE_MARGIN)
    assert needed == 101 + resource  # the minimum full fee that would get in
    assert ledger.submit(transfer(ledger, carol, bid=100)).status == "TRY_AGAIN_LATER"  # banned
    better = ledger.submit(transfer(ledger, dave, bid=120))
    assert better.status == "PENDING"
    assert second.hash not in ledger.pending_hashes()
    assert [e.reason for e in ledger.evictions] == ["queue_full"]


def test_a_transaction_left_out_for_four_ledgers_is_dropped() -> None:
    ledger = new_ledger(soroban_txs_per_ledger=1, queue_multiplier=10)
    keys = funded(ledger, TRANSACTION_QUEUE_TIMEOUT_LEDGERS + 1)
    starved = ledger.submit(transfer(ledger, keys[0], bid=100))
    for kp in keys[1:]:
        ledger.submit(transfer(ledger, kp, bid=500))
    for t in range(TRANSACTION_QUEUE_TIMEOUT_LEDGERS):
        ledger.close(T0 + 1 + t)
    assert starved.hash not in ledger.pending_hashes()
    assert ledger.transaction(starved.hash) is None
    assert ("queue_timeout", starved.hash) in {(e.reason, e.hash) for e in ledger.evictions}


def test_get_health_is_unhealthy_once_the_latest_ledger_is_older_than_the_max_latency() -> None:
    ledger = new_ledger()
    now = float(T0)
    rpc = StellarRpc(ledger, "", clock=lambda: now, max_healthy_latency=30.0)
    healthy = rpc.get_health({})
    assert healthy["status"] == "healthy"
    assert healthy["latestLedgerCloseTime"] == str(T0)
    now = T0 + 45.0
    try:
        rpc.get_health({})
    except RpcError as err:
        assert err.code == INTERNAL_ERROR
        assert err.message == (
            "latency (45s) since last known ledger closed is too high (>30s)"
        )
    else:
        raise AssertionError("a stalled ledger must make getHealth unhealthy")


def payments(
    ledger: Ledger, source: Keypair, to: list[str], *, bid_per_op: int = 100, amount: str = "1"
) -> str:
    """A classic transaction of native XLM payments, one per destination, signed."""
    seq = ledger.accounts[source.public_key].seq
    builder = TransactionBuilder(Account(source.public_key, seq), PASSPHRASE, base_fee=bid_per_op)
    for destination in to:
        builder.append_payment_op(destination, Asset.native(), amount)
    tx = builder.add_time_bounds(0, 0).add_text_memo("batch").build()
    tx.sign(source)
    return tx.to_xdr()


def test_classic_payments_batch_applies_every_operation_with_its_own_result_and_event() -> None:
    ledger = new_ledger()
    alice, bob, carol, dave = funded(ledger, 4)
    start = {k.public_key: ledger.accounts[k.public_key].balance for k in (alice, bob, carol)}
    to = [bob.public_key, carol.public_key, dave.public_key]
    sent = ledger.submit(payments(ledger, alice, to))
    assert sent.status == "PENDING"
    ledger.close(T0 + 1)
    landed = ledger.transaction(sent.hash)
    assert landed is not None and landed.successful
    result = xdr.TransactionResult.from_xdr(landed.result_xdr)
    assert result.fee_charged.int64 == 300  # 100 per operation
    codes = [r.tr.payment_result.code for r in result.result.results]  # type: ignore[union-attr]
    assert codes == [xdr.PaymentResultCode.PAYMENT_SUCCESS] * 3
    assert ledger.accounts[alice.public_key].balance == start[alice.public_key] - 300 - 3 * 10**7
    assert ledger.accounts[bob.public_key].balance == start[bob.public_key] + 10**7
    ours = [e for e in ledger.events if e.tx_hash == sent.hash and e.tx_index > 0]
    assert [e.op_index for e in ours] == [0, 1, 2]  # the SAC transfer event of each payment
    meta = xdr.TransactionMeta.from_xdr(landed.meta_xdr)
    assert meta.v4 is not None and meta.v4.soroban_meta is None
    assert [len(op.events) for op in meta.v4.operations] == [1, 1, 1]


def test_one_failing_payment_fails_the_batch_and_moves_nothing_but_the_fee() -> None:
    ledger = new_ledger()
    alice, bob = funded(ledger, 2)
    nobody = Keypair.random().public_key
    before = ledger.accounts[bob.public_key].balance
    sent = ledger.submit(payments(ledger, alice, [bob.public_key, nobody]))
    ledger.close(T0 + 1)
    landed = ledger.transaction(sent.hash)
    assert landed is not None and not landed.successful
    result = xdr.TransactionResult.from_xdr(landed.result_xdr)
    assert result.result.code == Code.txFAILED and result.fee_charged.int64 == 200
    codes = [r.tr.payment_result.code for r in result.result.results]  # type: ignore[union-attr]
    assert codes == [
        xdr.PaymentResultCode.PAYMENT_SUCCESS,
        xdr.PaymentResultCode.PAYMENT_NO_DESTINATION,
    ]
    assert ledger.accounts[bob.public_key].balance == before
    assert ledger.accounts[alice.public_key].seq == xdr.TransactionEnvelope.from_xdr(
        landed.envelope_xdr
    ).v1.tx.seq_num.sequence_number.int64  # type: ignore[union-attr]


def test_classic_lane_holds_its_operation_limit_and_surge_prices_per_operation() -> None:
    ledger = new_ledger(classic_ops_per_ledger=4, queue_multiplier=3)
    alice, bob, sink = funded(ledger, 3)
    cheap = ledger.submit(payments(ledger, alice, [sink.public_key] * 3, bid_per_op=100))
    dear = ledger.submit(payments(ledger, bob, [sink.public_key] * 3, bid_per_op=250))
    ledger.close(T0 + 1)
    assert ledger.latest.tx_hashes == (dear.hash,)  # 3 + 3 operations exceed 4
    assert fee_charged(ledger, dear.hash) == 3 * 250  # surge: the lowest included rate
    ledger.close(T0 + 2)
    assert ledger.latest.tx_hashes == (cheap.hash,)
    assert fee_charged(ledger, cheap.hash) == 3 * 100
    fees, _ = ledger.recent_inclusion_fees(10, soroban=False)
    assert fees == [250, 100]  # per operation, as stellar-rpc's classic fee window


def test_classic_other_than_payment_create_account_and_merge_is_refused_loudly() -> None:
    ledger = new_ledger()
    alice, bob = funded(ledger, 2)
    seq = ledger.accounts[alice.public_key].seq
    tx = (
        TransactionBuilder(Account(alice.public_key, seq), PASSPHRASE, base_fee=100)
        .append_change_trust_op(Asset("USD", bob.public_key))
        .add_time_bounds(0, 0)
        .build()
    )
    tx.sign(alice)
    sent = ledger.submit(tx.to_xdr())
    assert (sent.status, code_of(sent.error_result_xdr)) == ("ERROR", Code.txNOT_SUPPORTED)
