"""Prometheus metrics of the payout service (names listed in deploy/prometheus/METRICS.md).

Counters count what this replica did; gauges describe the shared database and are refreshed
by a small loop, so every replica reports the same values (aggregate them with max()).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from payout_service.adapters.alert_store import channels_held
from payout_service.adapters.watchdog_store import open_findings
from payout_service.core.watchdog import FINDING_KINDS

log = logging.getLogger(__name__)

# prometheus_client adds a `<name>_created` timestamp series to every counter: for the
# `payouts` counter that is `payouts_created`, which reads as a count of created payouts.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)

GRPC_HANDLED = Counter(
    "grpc_server_handled", "gRPC requests completed, by method and status code",
    ["grpc_service", "grpc_method", "grpc_code"], registry=REGISTRY,
)
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds", "gRPC request latency",
    ["grpc_service", "grpc_method"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PAYOUTS_TERMINAL = Counter(
    "payouts", "Payouts reaching a terminal state", ["state"], registry=REGISTRY
)
PAYOUTS_BY_STATE = Gauge("payouts_by_state", "Payouts per state", ["state"], registry=REGISTRY)
QUEUE_DEPTH = Gauge("payouts_queue_depth", "Payouts QUEUED for sending", registry=REGISTRY)
OLDEST_SUBMITTED = Gauge(
    "payouts_oldest_submitted_age_seconds", "Age of the oldest SUBMITTED payout",
    registry=REGISTRY,
)
OLDEST_PENDING = Gauge(
    "payouts_oldest_pending_age_seconds", "Age of the oldest payout not yet terminal",
    registry=REGISTRY,
)
CONFIRMATION_SECONDS = Histogram(
    "payouts_confirmation_seconds", "Time from creation to on-chain confirmation",
    registry=REGISTRY, buckets=(1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800),
)
FEES = Counter(
    "payouts_fee_stroops", "Network fees charged for confirmed payouts (stroops)",
    registry=REGISTRY,
)
AMOUNT = Counter(
    "payouts_amount_stroops", "Net amounts of payouts reaching a terminal state (stroops)",
    ["state"], registry=REGISTRY,
)
PROOFS_MISSING = Counter(
    "payouts_proofs_missing",
    "Confirmed payouts whose proof of payment could not be read from the chain's record",
    registry=REGISTRY,
)
PAYEE_MISMATCHES = Counter(
    "payouts_payee_mismatches",
    "Confirmed payouts whose memo or muxed id did not land as the payee asked",
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "payouts_attempts", "Submission attempts by outcome", ["outcome"], registry=REGISTRY
)
RPC_ERRORS = Counter(
    "payouts_rpc_errors", "Stellar RPC failures by kind", ["kind"], registry=REGISTRY
)
SYSTEM_ERRORS = Counter(
    "payouts_system_errors", "Unexpected errors by component", ["component"], registry=REGISTRY
)
FUNDS_READ_FAILURES = Counter(
    "payouts_funds_read_failures",
    "Preparer passes whose balance read failed: nothing was held (the chain checks funds)",
    registry=REGISTRY,
)
ROUNDS = Counter(
    "payouts_rounds", "Rounds reaching a state (open, closed, resolved, settled)", ["state"],
    registry=REGISTRY,
)

RECONCILE_MISMATCHES = Gauge(
    "payouts_reconcile_mismatches",
    "Confirmed payouts whose chain record disagreed, in this replica's last reconciliation",
    registry=REGISTRY,
)

# The watchdog (app/watchdog.py). Counters: what this replica's watchdog did; gauges: the
# shared watchdog state and findings, the same from every replica (aggregate with max()).
WATCHDOG_FINDINGS = Counter(
    "payouts_watchdog_findings", "Findings the watchdog recorded, by kind", ["kind"],
    registry=REGISTRY,
)
WATCHDOG_TRANSACTIONS = Counter(
    "payouts_watchdog_transactions", "Network transactions the watchdog read", registry=REGISTRY,
)
WATCHDOG_OPEN_FINDINGS = Gauge(
    "payouts_watchdog_open_findings", "Unresolved watchdog findings, by kind", ["kind"],
    registry=REGISTRY,
)
WATCHDOG_CURSOR = Gauge(
    "payouts_watchdog_cursor_ledger", "Every ledger up to this one is verified by the watchdog",
    registry=REGISTRY,
)
WATCHDOG_LAG = Gauge(
    "payouts_watchdog_lag_ledgers",
    "Ledgers between the RPC's latest (as last read) and the watchdog's verified ledger",
    registry=REGISTRY,
)
WATCHDOG_LAST_READ_AGE = Gauge(
    "payouts_watchdog_last_read_age_seconds",
    "Seconds since the watchdog last read a page of transactions", registry=REGISTRY,
)
CHANNELS_HELD = Gauge(
    "payouts_channels_held",
    "Channels held for a fault of their own (signer refusal or network rejection) that no "
    "operator has re-added or merged away yet", registry=REGISTRY,
)
SENDING_PAUSED = Gauge(
    "payouts_sending_paused", "1 while sending is paused (PauseSending or the watchdog)",
    registry=REGISTRY,
)

ALL_STATES = ("ACCEPTED", "BUILT", "AWAITING_SIGNATURE", "QUEUED", "SUBMITTED", "CONFIRMED",
              "FAILED", "CANCELLED", "AWAITING_APPROVAL", "AWAITING_FUNDS")


class MetricsEndpoint:
    """`/metrics` on its own port, apart from the gRPC port."""

    def __init__(self, port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scrape port
        self._server, self._thread = start_http_server(port, addr=addr, registry=REGISTRY)
        self.port = int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def refresh_gauges(pool: asyncpg.Pool) -> None:
    """From the per-state aggregates and two partial indexes (migration 030): the cost does
    not grow with history."""
    rows = await pool.fetch(
        "SELECT state, sum(count)::bigint AS n FROM payout_totals WHERE scope = 'all' "
        "AND key = '' GROUP BY state")
    counts = {r["state"]: r["n"] for r in rows}
    for state in ALL_STATES:
        PAYOUTS_BY_STATE.labels(state.lower()).set(counts.get(state, 0))
    QUEUE_DEPTH.set(counts.get("QUEUED", 0))
    ages = await pool.fetchrow(
        """SELECT
             (SELECT EXTRACT(EPOCH FROM now() - min(updated_at)) FROM payouts
                WHERE state = 'SUBMITTED') AS submitted,
             (SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM payouts
                WHERE state IN ('ACCEPTED', 'AWAITING_SIGNATURE', 'QUEUED', 'SUBMITTED'))
               AS pending"""
    )
    OLDEST_SUBMITTED.set(float(ages["submitted"] or 0))
    OLDEST_PENDING.set(float(ages["pending"] or 0))
    await refresh_watchdog_gauges(pool)


async def refresh_watchdog_gauges(pool: asyncpg.Pool) -> None:
    """The watchdog's position, open findings and the pause flag (a few rows, indexed)."""
    row = await pool.fetchrow(
        """SELECT s.verified_ledger, s.latest_ledger,
                  EXTRACT(EPOCH FROM now() - s.updated_at)::float8 AS age
           FROM watchdog_state s WHERE s.id = 1""")
    if row is not None:
        WATCHDOG_CURSOR.set(row["verified_ledger"])
        WATCHDOG_LAG.set(max(0, row["latest_ledger"] - row["verified_ledger"]))
        WATCHDOG_LAST_READ_AGE.set(max(0.0, row["age"]))
    counts = await open_findings(pool)
    for kind in FINDING_KINDS:
        WATCHDOG_OPEN_FINDINGS.labels(kind).set(counts.get(kind, 0))
    paused = await pool.fetchval("SELECT paused FROM sending_pause WHERE id = 1")
    SENDING_PAUSED.set(1 if paused else 0)
    CHANNELS_HELD.set((await channels_held(pool)).count)


async def gauge_loop(pool: asyncpg.Pool, stop: asyncio.Event, interval: float = 5.0) -> None:
    while not stop.is_set():
        try:
            await refresh_gauges(pool)
        except (asyncpg.PostgresError, OSError) as err:
            log.warning("metrics refresh failed", extra={"error": type(err).__name__})
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
