"""The watchdog loop (docs/design.md, invariant 9): the second line of defence.

Independently of what the pipeline believes, each step reads the chain's record of every
transaction since its persisted position (getTransactions, pages of 200) and matches every
outflow of the paying account, the channel accounts (any state, merged ones too) and the
channel funding account to one payout attempt or channel lifecycle operation
(core/watchdog.py judges; core/outflows.py reads the XDR). What it cannot explain is a
finding: an alert (critical), a webhook, a log line, a metric, and with
PAYOUTS_WATCHDOG_PAUSE_ON_FINDING a paused sender. Then the CONFIRMED payouts whose ledgers it
has read must each have been paid by the hash the service confirmed.

One replica at a time runs it (a lease row); each page's matches, findings and the new
position are written in one SQL transaction guarded by the lease and the cursor read, so a
restart resumes where it stopped without reading history again, and a page is never counted
twice. On its first start it begins at the RPC's latest ledger: earlier history is not
verified.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg

from payout_service import metrics
from payout_service.adapters.chain_history import (
    ChainHistory,
    CursorBeforeHistory,
    TransactionsPage,
)
from payout_service.adapters.sending_pause import pause_state, set_paused
from payout_service.config import Config, WatchdogConfig
from payout_service.core.outflows import WatchedAccounts, inner_hash
from payout_service.core.watchdog import (
    PAGE_LIMIT,
    PAUSING_KINDS,
    Finding,
    Position,
    after_gap,
    after_page,
    check_confirmed,
    gap,
    judge_page,
)
from payout_service.programs import alert_store
from payout_service.programs import watchdog_store as store
from payout_service.programs.alert_config import AlertConfig
from payout_service.programs.health import FINDING_ALERTS, AlertKind, watchdog_conditions

log = logging.getLogger(__name__)

# Pages read in one step before the loop runner is given back control (it runs a busy step
# again at once): a long catch-up still yields to shutdown between steps.
MAX_PAGES_PER_STEP = 50
# Confirmations judged per step; above the largest batch (100 payouts share one timestamp).
CONFIRMED_PER_STEP = 5000
# Answers in a row (getTransactions refusing our next ledger, then getHealth placing the
# history after it) before the ledgers in between are declared a gap: with one node of two
# restarted behind a balancer, a false gap takes 2 x 8 unlucky draws (1 in 65,536).
GAP_CONFIRMATIONS = 8


@dataclass(frozen=True)
class StepReport:
    pages: int
    transactions: int
    findings: int
    caught_up: bool


class Watchdog:
    def __init__(
        self, settings: WatchdogConfig, pool: asyncpg.Pool, history: ChainHistory, *,
        accounts: Sequence[str], passphrase: str, alert_seed: AlertConfig,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.history = history
        self.accounts = tuple(dict.fromkeys(accounts))  # payer and funding account
        self.passphrase = passphrase
        self.alert_seed = alert_seed
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self.lease_seconds = max(30.0, 10 * settings.interval_seconds)
        self._watched = WatchedAccounts({})

    async def close(self) -> None:
        await store.release_lease(self.pool, self.owner)
        await self.history.close()

    async def step(self) -> int:
        """The loop's step; busy (run again at once) while a full page was just read."""
        try:
            report = await self.run_step()
        except store.LeaseLost:
            # Another replica took the lease over (this one stalled past it): what this step
            # read is rolled back and the holder reads the same ledgers.
            log.warning("watchdog lease lost", extra={"owner": self.owner})
            return 0
        return 0 if report is None or report.caught_up else report.pages

    async def run_step(self) -> StepReport | None:
        """One step; None when another replica holds the lease."""
        state = await store.take_lease(self.pool, self.owner, self.lease_seconds)
        if state is None:
            if await store.state(self.pool) is not None:
                return None
            window = await self.history.window()
            await store.begin(self.pool, window.latest_ledger)
            log.info("watchdog starts at the RPC's latest ledger; earlier history is not "
                     "verified", extra={"ledger": window.latest_ledger})
            state = await store.take_lease(self.pool, self.owner, self.lease_seconds)
            if state is None:
                return None
        watched = await self._watched_accounts()
        position, pages, transactions, findings, caught_up = state.position, 0, 0, 0, False
        while pages < MAX_PAGES_PER_STEP and not caught_up:
            page = await self._page(position)
            if page is None:  # the RPC could not serve the next ledger; no gap is proven
                caught_up = True
                break
            if isinstance(page, tuple):  # a gap was declared
                position, found = page
                pages, findings = pages + 1, findings + found
                continue
            position, found = await self._read(position, page, watched)
            pages, transactions, findings = pages + 1, transactions + len(page.transactions), \
                findings + found
            caught_up = len(page.transactions) < PAGE_LIMIT
        findings += await self._check_confirmed(state, position)
        return StepReport(pages, transactions, findings, caught_up)

    async def _watched_accounts(self) -> WatchedAccounts:
        """The payer, the funding account and every channel ever registered (a merged one
        too: a merge moves its XLM, and its key may still sign)."""
        channels = [r["account"] for r in await self.pool.fetch(
            "SELECT account FROM channel_accounts")]
        wanted = set(self.accounts) | set(channels)
        if set(self._watched.by_key.values()) != wanted:
            self._watched = WatchedAccounts.of(sorted(wanted))
        return self._watched

    async def _read(self, position: Position, page: TransactionsPage, watched: WatchedAccounts
                    ) -> tuple[Position, int]:
        txs = page.transactions
        inner = {t.tx_hash: h for t in txs if t.fee_bump
                 and (h := inner_hash(t.envelope_xdr, self.passphrase)) is not None}
        known = await store.known(self.pool, [t.tx_hash for t in txs] + list(inner.values()))
        verdict = judge_page(txs, known, inner, watched)
        moved_to = after_page(position, returned=len(txs), limit=PAGE_LIMIT,
                              page_cursor=page.cursor, latest_ledger=page.latest_ledger)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.advance(conn, self.owner, position, moved_to,
                                latest_ledger=page.latest_ledger, transactions=len(txs),
                                fees_stroops=verdict.fees_stroops,
                                lease_seconds=self.lease_seconds)
            twice = await store.record_payments(conn, verdict.payments)
            new = await store.add_findings(conn, verdict.findings + twice)
            await self._escalate(conn, new)
        metrics.WATCHDOG_TRANSACTIONS.inc(len(txs))
        metrics.WATCHDOG_CURSOR.set(moved_to.verified_ledger)
        metrics.WATCHDOG_LAG.set(max(0, page.latest_ledger - moved_to.verified_ledger))
        metrics.WATCHDOG_LAST_READ_AGE.set(0)
        self._report(new)
        return moved_to, len(new)

    async def _page(self, position: Position
                    ) -> TransactionsPage | tuple[Position, int] | None:
        """The next page. If the RPC cannot serve our next ledger, a gap only once getHealth
        says its history starts after it, GAP_CONFIRMATIONS times in a row: behind a load
        balancer one restarted node lacks what the others still have, and each call may go
        to another node. Then the position after the declared gap (and the finding count);
        None when nothing is proven (the step ends, the next one asks again)."""
        for _ in range(GAP_CONFIRMATIONS):
            try:
                return await self.history.page(position.cursor, PAGE_LIMIT)
            except CursorBeforeHistory:
                window = await self.history.window()
                if window.oldest_ledger <= position.next_ledger:
                    log.warning("watchdog: the RPC could not serve a ledger its history "
                                "holds", extra={"ledger": position.next_ledger,
                                                "oldest_ledger": window.oldest_ledger})
                    return None
        finding = gap(position, window.oldest_ledger)
        moved_to = after_gap(position, window.oldest_ledger)
        async with self.pool.acquire() as conn, conn.transaction():
            await store.advance(conn, self.owner, position, moved_to,
                                latest_ledger=window.latest_ledger, transactions=0,
                                fees_stroops=0, lease_seconds=self.lease_seconds)
            new = await store.add_findings(conn, [finding])
            await self._escalate(conn, new)
        self._report(new)
        return moved_to, len(new)

    async def _check_confirmed(self, state: store.WatchdogState, position: Position) -> int:
        window = timedelta(seconds=self.settings.confirmed_window_seconds)
        since = max(state.confirmed_checked_until, datetime.now(UTC) - window)
        rows, horizon = await store.confirmed_after(self.pool, since, CONFIRMED_PER_STEP)
        check = check_confirmed(rows, checked_until=since,
                                verified_ledger=position.verified_ledger,
                                start_ledger=state.start_ledger,
                                gaps=await store.gaps(self.pool) if rows else [])
        until = check.checked_until
        if check.complete and len(rows) < CONFIRMED_PER_STEP:
            until = max(until, horizon - timedelta(microseconds=1))
        if until == state.confirmed_checked_until and not check.findings:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            await store.checked_confirmed(conn, self.owner, state.confirmed_checked_until,
                                          until)
            new = await store.add_findings(conn, check.findings)
            await self._escalate(conn, new)
        self._report(new)
        return len(new)

    async def _escalate(self, conn: asyncpg.Connection,
                        new: Sequence[tuple[int, Finding]]) -> None:
        """In the SQL transaction that records the findings: pause sending (when the
        operator asked for it), raise their alerts and queue the `alert.raised` webhooks."""
        if not new:
            return
        raised = {FINDING_ALERTS[f.kind][0] for _, f in new}
        pausing = next(((i, f) for i, f in new if f.kind in PAUSING_KINDS), None)
        if self.settings.pause_on_finding and pausing is not None:
            finding_id, finding = pausing
            reason = f"watchdog finding {finding_id} ({finding.kind}): {finding.detail}"
            if await set_paused(conn, True, reason=reason[:500], actor="watchdog",
                                finding_id=finding_id):
                raised.add(AlertKind.SENDING_PAUSED)
                log.error("sending paused by the watchdog", extra={
                    "finding_id": finding_id, "kind": finding.kind, "tx_hash": finding.tx_hash})
        config = await alert_store.alert_config(conn, self.alert_seed)
        if not config.enabled:
            return
        paused = await pause_state(conn)
        for condition in watchdog_conditions(await store.open_findings(conn), paused.paused,
                                             paused.reason):
            if condition.kind in raised:
                alert, opened = await alert_store.raise_or_refresh(conn, condition)
                if opened:
                    await alert_store.notify(conn, alert, "alert.raised", config.webhook_urls)

    def _report(self, new: Sequence[tuple[int, Finding]]) -> None:
        """After the commit: one log line and a counter per new finding."""
        for finding_id, f in new:
            metrics.WATCHDOG_FINDINGS.labels(f.kind).inc()
            log.error("watchdog finding", extra={
                "finding_id": finding_id, "kind": f.kind, "tx_hash": f.tx_hash,
                "ledger": f.ledger, "payout_uuid": str(f.payout_id) if f.payout_id else None,
                "accounts": list(f.accounts), "amount": f.amount, "asset": f.asset,
                "detail": f.detail[:500]})


def watchdog_for(config: Config, pool: asyncpg.Pool, alert_seed: AlertConfig) -> Watchdog:
    """The watchdog of this configuration: the paying account, the channel funding account
    and (read at every step) every registered channel."""
    assert config.rpc_url is not None  # noqa: S101 - live mode has an RPC
    funding = config.channel_pool.funding_account if config.channel_pool else None
    return Watchdog(
        config.watchdog, pool,
        ChainHistory(config.rpc_url, timeout_seconds=config.rpc_timeout_seconds),
        accounts=[a for a in (config.source_account, funding) if a],
        passphrase=config.network_passphrase, alert_seed=alert_seed,
    )
