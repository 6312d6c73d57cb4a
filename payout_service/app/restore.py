"""The restore drill's reconciliation: a restored database against the chain and the signer's
audit log (deploy/README.md, "Backup and restore"). `cli/restore.py` is its command line.

The reconciliation's rules are core/restore.py's; its writes are adapters/restore_store.py's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from stellar_sdk import TransactionEnvelope

from payout_service.adapters.attempt_store import AttemptStore
from payout_service.adapters.ledger import (
    Included,
    LedgerGateway,
    LedgerUnavailable,
    SourceAccountMissing,
)
from payout_service.adapters.restore_store import (
    KnownPayout,
    LandedTransaction,
    SendingHold,
    attach_landed,
    in_flight_attempts,
    known_hashes,
    mark_known_attempt_sent,
    mark_reconciled,
    payouts_by_caller_id,
    sending_hold,
    source_accounts,
)
from payout_service.app.reconcile import lookup_retrying
from payout_service.config import Config
from payout_service.core.restore import Candidate, Judgement, Verdict, judge

BATCH_LABEL = "batch:"  # the signer's payout_id for a batch transaction (app/prepare_batch.py)
CHANNEL_OPERATION_LABEL = "chop-"  # channel operations (adapters/channel_operations.py)


class NeedsOperator(Exception):
    pass


def signing_window_seconds(config: Config) -> int:
    """The longest time bounds an envelope of ours may carry."""
    external = config.external_window_seconds if config.signing_mode == "external" else 0
    return max(config.tx_window_seconds, external)


# ---- the signer's audit log ------------------------------------------------------------------

@dataclass(frozen=True)
class Signed:
    tx_hash: str
    label: str  # the payout id the signer recorded (or a batch's / channel operation's label)
    at: float


def signed_since(paths: Iterable[Path], since: float) -> Iterator[Signed]:
    """Transactions the signer agreed to sign at or after `since` (its clock). The log is
    verified beforehand with `signerctl audit verify`; lines that are not records are
    skipped here."""
    for path in paths:
        with path.open("rb") as f:
            for raw in f:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(record, dict) or record.get("decision") != "allow" \
                        or record.get("kind") != "transaction" or not record.get("tx_hash"):
                    continue
                if float(record.get("time", 0)) >= since:
                    yield Signed(str(record["tx_hash"]), str(record.get("payout_id", "")),
                                 float(record["time"]))


# ---- the reconciliation --------------------------------------------------------------------

@dataclass
class Report:
    restore_point: str
    judged: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    needs_operator: list[dict[str, Any]] = field(default_factory=list)
    resynced_sources: dict[str, int] = field(default_factory=dict)
    reconciled: bool = False


def landed_transaction(tx_hash: str, envelope_xdr: str, passphrase: str) -> LandedTransaction:
    tx = TransactionEnvelope.from_xdr(envelope_xdr, passphrase).transaction
    bounds = tx.preconditions.time_bounds if tx.preconditions else None
    return LandedTransaction(
        tx_hash=tx_hash, envelope_xdr=envelope_xdr, source_account=tx.source.account_id,
        sequence=tx.sequence,
        min_time=datetime.fromtimestamp(bounds.min_time if bounds else 0, UTC),
        max_time=datetime.fromtimestamp(bounds.max_time if bounds else 0, UTC),
        fee_stroops=tx.fee)


async def wait_until_quiet(ledger: LedgerGateway, hold: SendingHold, wait: bool) -> None:
    while True:
        latest = await ledger.latest_ledger()
        if latest.close_time > hold.quiet_after:
            return
        if not wait:
            raise NeedsOperator(
                f"not yet quiet: envelopes signed before the hold may land until close time "
                f"{hold.quiet_after} (latest ledger {latest.sequence} closed "
                f"{latest.close_time}); run again later or with --wait")
        await asyncio.sleep(1.0)


async def reconcile(pool: asyncpg.Pool, ledger: LedgerGateway, config: Config,
                    audit_logs: list[Path], *, wait: bool) -> Report:
    hold = await sending_hold(pool)
    if hold is None or hold.restore_point is None:
        raise NeedsOperator("no sending hold with a restore point: run `hold` first")
    await wait_until_quiet(ledger, hold, wait)
    report = Report(restore_point=hold.restore_point.isoformat())
    since = hold.restore_point.timestamp() - signing_window_seconds(config)
    signed = [s for s in signed_since(audit_logs, since)]
    known = await known_hashes(pool, [s.tx_hash for s in signed])
    # Per label: (hash, the database's attempt number or None); each hash once.
    by_label: dict[str, dict[str, int | None]] = {}
    for attempt in await in_flight_attempts(pool):
        if attempt.batch_id is not None:
            label = f"{BATCH_LABEL}{attempt.batch_id}"
        else:
            label = attempt.payout_id
        by_label.setdefault(label, {})[attempt.tx_hash] = attempt.number
    for s in signed:
        if s.tx_hash not in known:
            by_label.setdefault(s.label, {}).setdefault(s.tx_hash, None)
    landed: dict[str, Included | None] = {}
    for hashes in by_label.values():
        for tx_hash in hashes:
            if tx_hash not in landed:
                found = await lookup_retrying(ledger.lookup, tx_hash)
                landed[tx_hash] = found if isinstance(found, Included) else None
    payouts = await payouts_by_caller_id(pool, list(by_label))
    for label, hashes in sorted(by_label.items()):
        candidates = [Candidate(h, _successful(landed[h]), number)
                      for h, number in hashes.items()]
        report.judged += 1
        if label.startswith((BATCH_LABEL, CHANNEL_OPERATION_LABEL)) and label not in payouts:
            await _not_a_payout(label, candidates, report)
            continue
        payout = payouts.get(label)
        confirmed = payout.current_hash if payout else None
        judgement = judge(payout.state if payout else None, candidates, confirmed)
        await _apply(pool, ledger, config, label, payout, judgement, landed, report)
    for account in await source_accounts(pool):
        try:
            chain_sequence = await ledger.account_sequence(account)
        except SourceAccountMissing:
            continue  # a channel merged away: nothing will be built from it
        await AttemptStore(pool).resync_source(account, chain_sequence)
        report.resynced_sources[account] = chain_sequence
    if not report.needs_operator:
        report.reconciled = await mark_reconciled(pool, hold.held_at)
    return report


def _successful(found: Included | None) -> bool:
    return found is not None and found.successful


async def _not_a_payout(label: str, candidates: list[Candidate], report: Report) -> None:
    paid = [c.tx_hash for c in candidates if c.landed]
    if not paid:
        return
    entry = {"label": label, "tx_hashes": paid}
    if label.startswith(BATCH_LABEL):
        # A batch's members are payouts of their own: attaching them is not automated.
        report.needs_operator.append({**entry, "problem":
            "a batch transaction that may be unknown to this database landed: record its "
            "payouts by hand (GetPayout each member; the chain has the transfers)"})
    else:
        # Moves our own funds between our accounts (create, top-up, merge a channel); the
        # channel pool reads balances from the chain, so it does not repeat them.
        report.actions.append({**entry, "action": "channel operation found on chain; no "
                                                  "payout involved"})


async def _apply(pool: asyncpg.Pool, ledger: LedgerGateway, config: Config, label: str,
                 payout: KnownPayout | None, judgement: Judgement,
                 landed: dict[str, Included | None], report: Report) -> None:
    entry: dict[str, Any] = {"payout_id": label, "verdict": judgement.verdict.value,
                             "tx_hash": judgement.tx_hash}
    if judgement.verdict in (Verdict.UNPAID, Verdict.ALREADY_RECORDED):
        return
    if judgement.blocks_release or payout is None or judgement.tx_hash is None:
        entry["problem"] = {
            Verdict.PAID_TWICE: "paid more than once on chain: invariant 1 was broken",
            Verdict.UNKNOWN_PAYOUT_PAID:
                "created after the restore point and paid; unknown to this database. Its "
                "caller holds an acknowledgement: tell them it is paid (this tx) and that "
                "it must not be created again",
            Verdict.NOT_ATTACHABLE: f"landed, but the payout is {payout and payout.state}",
        }.get(judgement.verdict, "cannot be applied")
        report.needs_operator.append(entry)
        return
    included = landed[judgement.tx_hash]
    reason = f"restore: found on chain in ledger {included.ledger if included else '?'}"
    envelope = await ledger.included_envelope(judgement.tx_hash)
    if envelope is None:
        raise LedgerUnavailable("an included transaction is no longer found")
    if judgement.verdict == Verdict.KNOWN_ATTEMPT_LANDED:
        assert judgement.known_attempt is not None  # noqa: S101
        status = payout.current_status or "sent"
        changed = await mark_known_attempt_sent(pool, payout, judgement.known_attempt,
                                                status, envelope, reason)
        entry["action"] = "its own attempt marked sent; the confirmer records it" if changed \
            else "already submitted; the confirmer records it"
    else:
        number = await attach_landed(
            pool, payout, landed_transaction(judgement.tx_hash, envelope,
                                             config.network_passphrase), reason)
        entry["action"] = f"attached as attempt {number}; the confirmer records it"
    report.actions.append(entry)
