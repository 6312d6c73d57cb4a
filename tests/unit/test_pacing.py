"""core/pacing.py: re-send once per closed ledger; classic operations in flight within the
network's queue; a held envelope past its max_time is rebuilt, not sent."""

from __future__ import annotations

from stellar_sdk import Account, Asset, Keypair, Network, TransactionBuilder, scval

from payout_service.adapters.ledger import header_max_tx_set_size
from payout_service.core.pacing import (
    DEFAULT_CLASSIC_OPS_PER_LEDGER,
    QUEUE_SIZE_MULTIPLIER,
    Outgoing,
    admit_for_sending,
    classic_operations,
    classic_queue_capacity,
    expired_before_sending,
    resend_due,
)

NET = Network.TESTNET_NETWORK_PASSPHRASE


def test_a_resend_is_due_only_once_a_ledger_closed_since_the_last_send():
    assert not resend_due(100, 100), "same ledger as the send: the node cannot have dropped it"
    assert resend_due(100, 101)
    assert resend_due(100, 105)
    assert not resend_due(101, 100), "an RPC behind the one that answered the send"
    assert resend_due(None, 1), "a row from before the column existed"


def test_the_queue_holds_twice_the_ledger_limit_from_the_network_or_the_configuration():
    assert classic_queue_capacity(200, None) == 400
    assert classic_queue_capacity(1000, None) == 2000
    assert classic_queue_capacity(1000, 300) == 600, "the operator may leave room for others"
    assert classic_queue_capacity(None, 300) == 600
    assert classic_queue_capacity(None, None) == QUEUE_SIZE_MULTIPLIER * \
        DEFAULT_CLASSIC_OPS_PER_LEDGER
    assert classic_queue_capacity(0, None) == 400, "a header saying 0 is no information"


def _classic(ops: int) -> str:
    kp = Keypair.random()
    b = TransactionBuilder(Account(kp.public_key, 1), NET, base_fee=100).set_timeout(30)
    for _ in range(ops):
        b.append_payment_op(Keypair.random().public_key, Asset.native(), "1")
    return b.build().to_xdr()


def _soroban() -> str:
    kp = Keypair.random()
    b = TransactionBuilder(Account(kp.public_key, 1), NET, base_fee=100).set_timeout(30)
    b.append_invoke_contract_function_op(
        Asset.native().contract_id(NET), "transfer",
        [scval.to_address(kp.public_key), scval.to_address(kp.public_key), scval.to_int128(1)])
    env = b.build()
    from stellar_sdk import xdr
    env.transaction.soroban_data = xdr.SorobanTransactionData(
        xdr.SorobanTransactionDataExt(0),
        xdr.SorobanResources(xdr.LedgerFootprint([], []), xdr.Uint32(0), xdr.Uint32(0),
                             xdr.Uint32(0)),
        xdr.Int64(0))
    return env.to_xdr()


def test_classic_operations_counts_a_classic_transaction_and_not_a_soroban_one():
    assert classic_operations(_classic(1)) == 1
    assert classic_operations(_classic(100)) == 100
    assert classic_operations(_soroban()) == 0
    assert classic_operations("not xdr") == 0


def test_the_latest_ledger_header_gives_the_per_ledger_operation_limit():
    from soroban_sandbox import xdr_build

    header = xdr_build.ledger_header(protocol=23, seq=5, close_time=1000,
                                     previous_hash=bytes(32), max_tx_set_size=200)
    assert header_max_tx_set_size(header.to_xdr()) == 200
    assert header_max_tx_set_size(None) is None
    assert header_max_tx_set_size("garbage") is None


def test_admission_keeps_classic_operations_in_flight_within_the_capacity():
    batches = [Outgoing(f"C{n}", 100) for n in range(6)]
    assert admit_for_sending(batches, 0, 400) == [True] * 4 + [False] * 2
    assert admit_for_sending(batches, 250, 400) == [True, False, False, False, False, False]
    assert admit_for_sending(batches, 400, 400) == [False] * 6
    # A smaller one behind may use the room a bigger one could not.
    assert admit_for_sending([Outgoing("A", 100), Outgoing("B", 50)], 320, 400) == \
        [False, True]


def test_admission_never_sends_past_a_held_transaction_of_the_same_source():
    # One source, N and N+1: N+1 before N would be txBAD_SEQ (and a re-sync).
    same = [Outgoing("S", 100), Outgoing("S", 10)]
    assert admit_for_sending(same, 350, 400) == [False, False]
    expired_first = [Outgoing("S", 10, expired=True), Outgoing("S", 10)]
    assert admit_for_sending(expired_first, 0, 400) == [False, False]


def test_soroban_transactions_need_no_classic_room():
    assert admit_for_sending([Outgoing("A", 0), Outgoing("B", 0)], 400, 400) == [True, True]


def test_a_transaction_larger_than_the_whole_queue_still_goes_when_nothing_is_in_flight():
    assert admit_for_sending([Outgoing("A", 100), Outgoing("B", 100)], 0, 50) == [True, False]


def test_an_envelope_is_too_late_to_send_once_a_ledger_closed_at_its_max_time():
    assert not expired_before_sending(max_time=1000, latest_close_time=999)
    assert expired_before_sending(max_time=1000, latest_close_time=1000)
    assert expired_before_sending(max_time=1000, latest_close_time=1001)
