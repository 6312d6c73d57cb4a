"""The sandbox's ledger clock keeps its cadence as stellar-core does: each ledger is triggered
one interval after the previous trigger, so the time a close takes does not stretch every
ledger (the earlier clock slept a full interval after each close: 1.09 s ledgers at a 1 s
setting under load)."""

from __future__ import annotations

from soroban_sandbox.server import next_trigger


def test_the_next_ledger_is_anchored_on_the_last_trigger_not_on_the_end_of_its_close():
    # Triggered at 100.0, the close took 0.3 s: the next one is at 101.0, not 101.3.
    assert next_trigger(100.0, 1.0, now=100.3) == 101.0


def test_a_close_longer_than_the_interval_triggers_the_next_one_at_once_without_catching_up():
    # Closing took 2.5 s of a 1 s interval: the next one now, and no burst of missed ledgers
    # (the anchor moves to now).
    assert next_trigger(100.0, 1.0, now=102.5) == 102.5
    assert next_trigger(102.5, 1.0, now=102.6) == 103.5
