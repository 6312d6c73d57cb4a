"""The ledger answers "what was this entry at ledger H" for the last ENTRY_HISTORY_LEDGERS
ledgers, whatever wrote it: fees and sequence numbers, SAC transfers, classic payments,
account creation and merge, trustlines, issuance, friendbot. A node behind the network reads
entries through this, so every write must leave its before-image (core, no HTTP)."""

from __future__ import annotations

import copy
from typing import Any

from stellar_sdk import Account, Asset, Keypair, TransactionBuilder

from soroban_sandbox.contracts import asset_name
from soroban_sandbox.entry_history import EntryKey, account_key, token_key, trustline_key
from soroban_sandbox.issued import authorize_trustline, issue, open_trustline
from soroban_sandbox.ledger import ENTRY_HISTORY_LEDGERS, Ledger

from .test_ledger_core import PASSPHRASE, T0, new_ledger, signed_transfer


def everything(ledger: Ledger) -> dict[EntryKey, Any]:
    """A full copy of every entry: what the history must reproduce."""
    state: dict[EntryKey, Any] = {}
    for account_id, account in ledger.accounts.items():
        state[account_key(account_id)] = copy.copy(account)
    for (holder, asset), line in ledger.trustlines.items():
        state[trustline_key(holder, asset)] = copy.copy(line)
    for (token_id, holder), held in ledger.tokens.items():
        state[token_key(token_id, holder)] = copy.copy(held)
    return state


def classic(ledger: Ledger, source: Keypair, build: Any) -> str:
    seq = ledger.accounts[source.public_key].seq
    builder = TransactionBuilder(Account(source.public_key, seq), PASSPHRASE, base_fee=100)
    tx = build(builder).add_time_bounds(0, 0).build()
    tx.sign(source)
    return str(tx.to_xdr())


def queue(ledger: Ledger, envelope_xdr: str) -> None:
    assert ledger.submit(envelope_xdr).status == "PENDING"


def test_every_write_leaves_what_the_entry_was_at_each_recent_ledger() -> None:
    ledger = new_ledger()
    alice, bob, issuer, merged = (Keypair.random() for _ in range(4))
    for kp in (alice, bob, issuer, merged):
        ledger.fund(kp.public_key)
    usd = Asset("USD", issuer.public_key)
    contract_holder = ledger.registry.payout_contract_id
    snapshots: dict[int, dict[EntryKey, Any]] = {}
    for round_ in range(6):
        snapshots[ledger.latest.seq] = everything(ledger)
        ledger.close(T0 + round_ + 1)
        if round_ == 0:
            open_trustline(ledger, bob.public_key, usd)
            issue(ledger, usd, bob.public_key, 500)
        elif round_ == 1:
            queue(ledger, signed_transfer(ledger, alice, bob.public_key, 7))
            queue(ledger, signed_transfer(ledger, bob, contract_holder, 3))
            authorize_trustline(ledger, bob.public_key, usd, authorized=False)
        elif round_ == 2:
            authorize_trustline(ledger, bob.public_key, usd, authorized=True)
            queue(
                ledger,
                classic(
                    ledger,
                    alice,
                    lambda b: b.append_payment_op(
                        bob.public_key, Asset.native(), "2"
                    ).append_create_account_op(Keypair.random().public_key, "5"),
                ),
            )
            queue(
                ledger,
                classic(
                    ledger, bob, lambda b: b.append_payment_op(issuer.public_key, usd, "0.00001")
                ),
            )
        elif round_ == 3:
            queue(
                ledger,
                classic(ledger, merged, lambda b: b.append_account_merge_op(alice.public_key)),
            )
            ledger.fund(Keypair.random().public_key)
        elif round_ == 4:
            queue(ledger, signed_transfer(ledger, alice, contract_holder, 11))
    snapshots[ledger.latest.seq] = everything(ledger)
    assert merged.public_key not in ledger.accounts  # the merge happened
    assert ledger.trustlines[(bob.public_key, asset_name(usd))].balance == 500 - 100
    keys = set().union(*snapshots.values())
    current = everything(ledger)
    for height, expected in snapshots.items():
        for key in keys:
            seen = ledger.entry_history.at(key, height, current.get(key))
            assert seen == expected.get(key), (height, key)


def test_history_is_kept_for_the_last_entry_history_ledgers_only() -> None:
    ledger = new_ledger()
    alice, bob = Keypair.random(), Keypair.random()
    ledger.fund(alice.public_key)
    ledger.fund(bob.public_key)
    first = ledger.latest.seq
    before = copy.copy(ledger.accounts[alice.public_key])
    queue(ledger, signed_transfer(ledger, alice, bob.public_key, 1))
    ledger.close(T0 + 1)
    assert ledger.account_at(alice.public_key, first) == before
    for t in range(ENTRY_HISTORY_LEDGERS):
        ledger.close(T0 + 2 + t)
    # The change is older than the window: nothing is kept, the current value answers.
    assert ledger.account_at(alice.public_key, first) == ledger.accounts[alice.public_key]
    assert not ledger.entry_history._changes
