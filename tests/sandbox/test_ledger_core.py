"""The ledger core without HTTP: accounts, ordering rules, history window, contracts, faults."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stellar_sdk import Account, Keypair, Network, TransactionBuilder, scval, xdr
from stellar_sdk.operation import InvokeHostFunction

from soroban_sandbox.contracts import ContractError, ContractRegistry, default_payout_contract_id
from soroban_sandbox.faults import FaultDice, FaultError, Faults, updated
from soroban_sandbox.ledger import AccountExists, Ledger
from soroban_sandbox.simulation import simulate

PASSPHRASE = Network.STANDALONE_NETWORK_PASSPHRASE
T0 = 1_800_000_000


def new_ledger(retention: int = 120_960) -> Ledger:
    registry = ContractRegistry(PASSPHRASE, default_payout_contract_id(PASSPHRASE))
    return Ledger(registry=registry, start_time=T0, retention_ledgers=retention)


def signed_transfer(
    ledger: Ledger, source: Keypair, to: str, amount: int, *, seq_offset: int = 1
) -> str:
    """Build, simulate, assemble and sign an XLM SAC transfer, all in-process."""

    def build(sim_data: str | None = None, fee: int = 100) -> TransactionBuilder:
        seq = ledger.accounts[source.public_key].seq + seq_offset - 1
        builder = TransactionBuilder(Account(source.public_key, seq), PASSPHRASE, base_fee=fee)
        builder.append_invoke_contract_function_op(
            ledger.registry.native_id,
            "transfer",
            [scval.to_address(source.public_key), scval.to_address(to), scval.to_int128(amount)],
        )
        builder.add_time_bounds(0, 0)
        if sim_data:
            builder.set_soroban_data(sim_data)
        return builder

    sim = simulate(ledger, build().build().to_xdr())
    assert sim.error is None and sim.transaction_data and sim.min_resource_fee
    tx = build(sim.transaction_data, 100 + sim.min_resource_fee).build()
    tx.transaction.fee = 100 + sim.min_resource_fee
    op = tx.transaction.operations[0]
    assert isinstance(op, InvokeHostFunction)
    op.auth = [xdr.SorobanAuthorizationEntry.from_xdr(a) for a in sim.auth]
    tx.sign(source)
    return tx.to_xdr()


def test_friendbot_sequence_is_ledger_shifted_and_accounts_are_created_once() -> None:
    ledger = new_ledger()
    ledger.close(T0 + 1)
    kp = Keypair.random()
    account = ledger.fund(kp.public_key)
    assert account.seq == 2 << 32
    with pytest.raises(AccountExists):
        ledger.fund(kp.public_key)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2 * T0), min_size=1, max_size=20))
def test_close_times_strictly_increase_whatever_the_clock_says(times: list[int]) -> None:
    ledger = new_ledger()
    seen = [ledger.latest.close_time]
    for t in times:
        seen.append(ledger.close(t).close_time)
    assert all(a < b for a, b in zip(seen, seen[1:], strict=False))
    assert ledger.latest.seq == len(times) + 1


def test_queue_rule_comes_before_sequence_check() -> None:
    ledger = new_ledger()
    alice, bob = Keypair.random(), Keypair.random()
    ledger.fund(alice.public_key)
    ledger.fund(bob.public_key)
    first = signed_transfer(ledger, alice, bob.public_key, 5)
    assert ledger.submit(first).status == "PENDING"
    assert ledger.submit(first).status == "DUPLICATE"
    second = signed_transfer(ledger, alice, bob.public_key, 6, seq_offset=7)
    assert ledger.submit(second).status == "TRY_AGAIN_LATER"
    ledger.close(T0 + 5)
    rejected = ledger.submit(second)
    assert rejected.status == "ERROR" and rejected.error_result_xdr is not None
    code = xdr.TransactionResult.from_xdr(rejected.error_result_xdr).result.code
    assert code == xdr.TransactionResultCode.txBAD_SEQ
    assert [t.amount for t in ledger.transfers] == [5]


def test_history_outside_the_retention_window_is_reported_gone() -> None:
    ledger = new_ledger(retention=3)
    alice, bob = Keypair.random(), Keypair.random()
    ledger.fund(alice.public_key)
    ledger.fund(bob.public_key)
    sub = ledger.submit(signed_transfer(ledger, alice, bob.public_key, 1))
    ledger.close(T0 + 1)
    assert ledger.transaction(sub.hash) is not None
    for i in range(3):
        ledger.close(T0 + 2 + i)
    assert ledger.oldest.seq == ledger.latest.seq - 2
    assert ledger.transaction(sub.hash) is None


def _call(contract: str, function: str, args: list[xdr.SCVal]) -> xdr.InvokeContractArgs:
    from stellar_sdk import Address

    return xdr.InvokeContractArgs(
        contract_address=Address(contract).to_xdr_sc_address(),
        function_name=xdr.SCSymbol(function.encode()),
        args=args,
    )


def test_contract_calls_with_wrong_shapes_trap() -> None:
    registry = ContractRegistry(PASSPHRASE, default_payout_contract_id(PASSPHRASE))
    a, b = Keypair.random().public_key, Keypair.random().public_key
    good = [scval.to_address(a), scval.to_address(b), scval.to_int128(5)]
    assert registry.interpret(_call(registry.native_id, "transfer", good)).total == 5
    payout = registry.interpret(_call(registry.payout_contract_id, "distribute_winnings", good))
    assert payout.token_id == registry.native_id
    cases = [
        (registry.native_id, "mint", good, "not supported"),
        (registry.payout_contract_id, "transfer", good, "no function"),
        (default_payout_contract_id("other"), "transfer", good, "does not exist"),
        (registry.native_id, "transfer", good[:2], "expected"),
        (registry.native_id, "transfer", [good[0], good[1], scval.to_int64(5)], "i128"),
        (registry.native_id, "transfer", [good[0], good[1], scval.to_int128(-1)], "negative"),
        (registry.native_id, "transfer", [scval.to_symbol("x"), good[1], good[2]], "Address"),
    ]
    for contract, function, args, reason in cases:
        with pytest.raises(ContractError, match=reason):
            registry.interpret(_call(contract, function, args))


def test_fault_settings_are_validated_and_dice_replay_by_seed() -> None:
    faults = updated(Faults(), {"drop_rate": 0.25, "stall_ledgers": 2})
    assert faults.drop_rate == 0.25 and faults.stall_ledgers == 2
    for bad in (
        {"drop_rate": 2},
        {"timeout_ms": 10**9},
        {"typo_rate": 0.1},
        {"http_503_rate": True},
    ):
        with pytest.raises(FaultError, match=next(iter(bad))):
            updated(Faults(), bad)
    first, second, other = FaultDice(7), FaultDice(7), FaultDice(8)
    rolls = [first.roll(0.5) for _ in range(64)]
    assert rolls == [second.roll(0.5) for _ in range(64)]
    assert rolls != [other.roll(0.5) for _ in range(64)]
    # A switched-off fault draws nothing, so turning one on does not shift the others.
    assert not any(first.roll(0.0) for _ in range(10))
    assert [first.roll(0.5) for _ in range(16)] == [second.roll(0.5) for _ in range(16)]
