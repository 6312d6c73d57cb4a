"""How many channel accounts the load needs. Pure integer arithmetic, no I/O.

A channel is the source of one transaction in flight at a time (stellar-core keeps one
pending transaction per source account), and a transaction carries up to
`payouts_per_transaction` payouts. A channel is busy for `ledgers_per_cycle` ledgers per
transaction: it is leased when the envelope is built, the transaction lands in the next
ledger, and the channel is free once the confirmer has seen it.
"""

from __future__ import annotations

from dataclasses import dataclass

# Far above any network's per-ledger limit (about 1,000 operations per ledger on pubnet): a
# bigger figure is a typo, not a load.
MAX_PAYOUTS_PER_LEDGER = 1_000_000


class PlanError(ValueError):
    """A load that cannot be planned for: names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class PoolLoad:
    queued_payouts_per_ledger: int  # payouts arriving (or to be drained) per ledger
    payouts_per_transaction: int
    close_time_ms: int
    ledgers_per_cycle: int = 2
    network_payouts_per_ledger: int | None = None  # per-ledger limit of the network, if any


@dataclass(frozen=True)
class PoolPlan:
    needed: int  # channels the load needs, before the bounds
    target: int  # within [minimum, maximum]
    queued_payouts_per_ledger: int
    transactions_per_ledger: int
    # What `target` channels can pay: payouts per minute (integer, rounded down).
    ceiling_payouts_per_minute: int
    limited_by: str  # "load", "minimum", "maximum" or "network"


@dataclass(frozen=True)
class Resize:
    reactivate: int  # draining/retired channels to bring back first (still funded)
    drain: int  # active channels to drain
    create: int  # new channels the pool lacks even after re-activating every spare one


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def check_load(load: PoolLoad) -> None:
    if not 0 <= load.queued_payouts_per_ledger <= MAX_PAYOUTS_PER_LEDGER:
        raise PlanError("queued_payouts_per_ledger",
                        f"must be between 0 and {MAX_PAYOUTS_PER_LEDGER}")
    if not 1 <= load.payouts_per_transaction <= 100:
        # stellar-core MAX_OPS_PER_TX: 100 operations per transaction.
        raise PlanError("payouts_per_transaction", "must be between 1 and 100")
    if load.close_time_ms < 1:
        raise PlanError("close_time_ms", "must be at least 1")
    if load.ledgers_per_cycle < 1:
        raise PlanError("ledgers_per_cycle", "must be at least 1")
    if load.network_payouts_per_ledger is not None and load.network_payouts_per_ledger < 1:
        raise PlanError("network_payouts_per_ledger", "must be at least 1 when given")


def per_ledger_from_backlog(queued: int, drain_seconds: int, close_time_ms: int) -> int:
    """A backlog of `queued` payouts to clear within `drain_seconds`: payouts per ledger."""
    if drain_seconds < 1:
        raise PlanError("drain_seconds", "must be at least 1")
    if close_time_ms < 1:
        raise PlanError("close_time_ms", "must be at least 1")
    ledgers = max(1, drain_seconds * 1000 // close_time_ms)
    return _ceil_div(queued, ledgers)


def plan_pool(load: PoolLoad, minimum: int, maximum: int) -> PoolPlan:
    check_load(load)
    if minimum < 0 or maximum < minimum:
        raise PlanError("maximum", f"bounds [{minimum}, {maximum}] are not 0 <= min <= max")
    per_ledger, limited_by = load.queued_payouts_per_ledger, "load"
    if load.network_payouts_per_ledger is not None and \
            per_ledger > load.network_payouts_per_ledger:
        # More channels than the network includes per ledger only queue at the node.
        per_ledger, limited_by = load.network_payouts_per_ledger, "network"
    transactions = _ceil_div(per_ledger, load.payouts_per_transaction)
    needed = transactions * load.ledgers_per_cycle
    target = min(maximum, max(minimum, needed))
    if target != needed:
        limited_by = "maximum" if target < needed else "minimum"
    ceiling = (target * load.payouts_per_transaction * 60_000
               // (load.close_time_ms * load.ledgers_per_cycle))
    return PoolPlan(needed, target, load.queued_payouts_per_ledger, transactions, ceiling,
                    limited_by)


def resize(target: int, active: int, spare: int, *, slack: int = 0) -> Resize:
    """From `active` channels (and `spare` funded ones: draining or retired) to `target`.
    Grows at once; shrinks only beyond `slack` channels, so a load that wobbles around the
    target does not drain and re-activate channels on every tick."""
    if target > active:
        reactivate = min(spare, target - active)
        return Resize(reactivate=reactivate, drain=0, create=target - active - reactivate)
    if active - target > slack:
        return Resize(reactivate=0, drain=active - target, create=0)
    return Resize(0, 0, 0)
