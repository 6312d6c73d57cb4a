"""The channel pool's use cases: register (add, create), retire, top up, merge, plan, and the
loop that builds, signs, sends and confirms the lifecycle transactions.

Lifecycle transactions follow the payout rules (docs/design.md, "Exactly once, step by
step"): the envelope and its sequence reservation are stored in one SQL transaction, the
signed envelope is stored before it is sent, and a channel is funded or merged again only
after the previous transaction failed on chain or is proven dead (a ledger closed past its
max_time and getTransaction, with history covering the submission, says NOT_FOUND).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from uuid import uuid4

import asyncpg
from stellar_sdk import StrKey
from stellar_sdk.transaction_envelope import TransactionEnvelope

from payout_service.adapters.channel_operations import ChannelOperations, Operation
from payout_service.adapters.channel_store import Channel, ChannelConflict, ChannelRegistry
from payout_service.adapters.ledger import (
    Included,
    LedgerInfo,
    LookupOutcome,
    NotFound,
    Rejected,
    SendOutcome,
    SourceAccountMissing,
)
from payout_service.adapters.sequences import Sequences
from payout_service.adapters.signer_client import (
    CheckResult,
    SignedEnvelope,
    SignerKey,
    SignerUnavailable,
    SigningRefused,
)
from payout_service.app.chain_memory import ChainMemory
from payout_service.config import ChannelPoolConfig, Config
from payout_service.core.batches import BatchItem, BatchMode, OpKind, PlannedOp, build_classic_batch
from payout_service.core.channel_plan import (
    MAX_PAYOUTS_PER_LEDGER,
    PoolLoad,
    PoolPlan,
    per_ledger_from_backlog,
    plan_pool,
    resize,
)
from payout_service.core.channels import (
    MAX_OPS_PER_TX,
    MIN_STARTING_BALANCE_STROOPS,
    ChannelState,
    KeyRole,
    LifecycleTx,
    OperationKind,
    OperationStatus,
    build_lifecycle_transaction,
    role_fault,
    role_faults,
    top_up_amount,
)
from payout_service.core.errors import FieldViolation, PreconditionFailed, ValidationFailed
from payout_service.core.pacing import resend_due
from payout_service.core.proofs import (
    AccountState,
    Envelope,
    expired_unused,
    history_misses,
    proof_of_death,
)
from payout_service.core.refusals import channel_policy_fault
from payout_service.core.retry import judge_on_chain_failure, verdict_at_death
from payout_service.core.transactions import TxParams, channel_sample, payout_call
from payout_service.core.validation import is_account_id

log = logging.getLogger(__name__)

ACTOR = "channel_pool"
MAX_KEYS_PER_CALL = 1000


class LifecycleSigner(Protocol):
    async def sign_transaction(
        self, envelope_xdr: str, *, payout_id: str, attempt: int, correlation_id: str,
        key_id: str | None = None,
    ) -> SignedEnvelope: ...

    async def key(self, key_id: str) -> SignerKey: ...
    async def list_keys(self) -> list[SignerKey]: ...

    async def check_transaction(
        self, envelope_xdr: str, *, payout_id: str = "", correlation_id: str = "",
        key_id: str | None = None,
    ) -> CheckResult: ...


class LifecycleLedger(Protocol):
    async def latest_ledger(self) -> LedgerInfo: ...
    async def send(self, envelope_xdr: str) -> SendOutcome: ...
    async def lookup(self, tx_hash: str) -> LookupOutcome: ...
    async def account_sequence(self, account_id: str) -> int: ...
    async def account_state(self, account_id: str) -> AccountState: ...
    async def account_balances(self, account_ids: list[str]) -> dict[str, int | None]: ...


class KeyRoleMismatch(Exception):
    """A key the pool signs with holds another role in the signer: refused at start-up."""


@dataclass(frozen=True)
class ChannelKey:
    key_id: str
    account: str


def check_keys(keys: Sequence[ChannelKey], funding_account: str) -> None:
    """Every key id non-empty, every account a G... id, none listed twice, none the
    funding account: all faults in one INVALID_ARGUMENT."""
    violations: list[FieldViolation] = []
    if not keys:
        violations.append(FieldViolation("channels", "name at least one channel"))
    if len(keys) > MAX_KEYS_PER_CALL:
        violations.append(FieldViolation("channels", f"at most {MAX_KEYS_PER_CALL} per call"))
    seen: set[str] = set()
    for n, key in enumerate(keys):
        where = f"channels[{n}]"
        if not key.key_id or len(key.key_id) > 128:
            violations.append(FieldViolation(f"{where}.key_id", "1 to 128 characters"))
        if not is_account_id(key.account):
            violations.append(FieldViolation(f"{where}.public_key", "is not a G... account id"))
        elif key.account == funding_account:
            violations.append(FieldViolation(f"{where}.public_key",
                                             "the funding account cannot be a channel"))
        for value in (key.account, key.key_id):
            if value in seen:
                violations.append(FieldViolation(where, f"{value[:40]} is listed twice"))
            seen.add(value)
    if violations:
        raise ValidationFailed(violations)


def _conflict(keys: Sequence[ChannelKey], err: ChannelConflict) -> PreconditionFailed:
    """A registration clash, naming the request's channel that clashed (nothing was written)."""
    n = next((n for n, k in enumerate(keys) if k.account == err.account), None)
    where = "channels" if n is None else f"channels[{n}]"
    return PreconditionFailed(f"{where}.{err.field}", str(err), "CHANNEL")


class ChannelPool:
    def __init__(
        self, config: ChannelPoolConfig, pool: asyncpg.Pool, *, network_passphrase: str,
        tx_window_seconds: int, ledger: LifecycleLedger | None,
        signer: LifecycleSigner | None,
        sample: Callable[[str], TransactionEnvelope] | None = None,
    ) -> None:
        self.config = config
        self.registry = ChannelRegistry(pool)
        self.operations = ChannelOperations(pool)
        self.sequences = Sequences(pool)
        self.pool = pool
        self.passphrase = network_passphrase
        self.window = tx_window_seconds
        self.ledger = ledger
        self.chain = ChainMemory()
        self.signer = signer
        # A transaction of the shape a given channel would carry, asked of the signer
        # (CheckTransaction) before that channel is used.
        self.sample = sample

    # ---- operator use cases ---------------------------------------------------------------

    def _live(self) -> tuple[LifecycleLedger, LifecycleSigner]:
        if self.ledger is None or self.signer is None:
            raise PreconditionFailed(
                "PAYOUTS_LIVE_EXECUTION",
                "channel lifecycle needs live execution in signer mode (a Stellar RPC and the "
                "signer service)", "CHANNEL_POOL",
            )
        return self.ledger, self.signer

    async def _verify_keys(self, keys: Sequence[ChannelKey]) -> None:
        """The signer must hold each key, under that id, for that very account."""
        _, signer = self._live()
        for n, key in enumerate(keys):
            try:
                held = await signer.key(key.key_id)
            except SigningRefused as err:
                raise ValidationFailed([FieldViolation(
                    f"channels[{n}].key_id", f"the signer does not offer this key: {err}"[:200]
                )]) from None
            if held.public_key != key.account:
                raise ValidationFailed([FieldViolation(
                    f"channels[{n}].public_key",
                    f"the signer's key {key.key_id[:40]} is {held.public_key}, not this account",
                )])
            fault = role_fault(key.key_id, held.role, KeyRole.CHANNEL)
            if fault is not None:
                raise ValidationFailed([FieldViolation(f"channels[{n}].key_id", fault)])

    async def _verify_funding_key(self) -> None:
        """Creating or topping up channels signs with the funding key: it must be the funding
        account's key, of role funding."""
        _, signer = self._live()
        key_id = self.config.funding_key_id
        try:
            held = await signer.key(key_id)
        except SigningRefused as err:
            raise PreconditionFailed("PAYOUTS_CHANNEL_FUNDING_KEY_ID",
                                     f"the signer does not offer the funding key: {err}"[:200],
                                     "FUNDING_KEY") from None
        if held.public_key != self.config.funding_account:
            raise PreconditionFailed(
                "PAYOUTS_CHANNEL_FUNDING_KEY_ID",
                f"the signer's key {key_id[:40]} is {held.public_key}, not the funding account "
                f"{self.config.funding_account}", "FUNDING_KEY")
        fault = role_fault(key_id, held.role, KeyRole.FUNDING)
        if fault is not None:
            raise PreconditionFailed("PAYOUTS_CHANNEL_FUNDING_KEY_ID", fault, "FUNDING_KEY")

    async def check_key_roles(self, *, funding: bool) -> None:
        """At start-up, one ListKeys: every registered channel that still signs (not merged)
        must hold role channel, and with `funding` (the pool funds channels by itself) the
        funding key role funding. An unreachable signer is not a fault here: the roles are
        checked again when a channel is added, created or topped up."""
        if self.signer is None:
            return
        try:
            held = {k.key_id: k.role for k in await self.signer.list_keys()}
        except SignerUnavailable as err:
            log.warning("key roles not checked at start-up: signer unavailable",
                        extra={"error": str(err)})
            return
        live = [c for c in await self.registry.in_states() if c.state is not ChannelState.MERGED]
        wanted = {c.key_id: KeyRole.CHANNEL for c in live}
        if funding:
            wanted[self.config.funding_key_id] = KeyRole.FUNDING
        faults = role_faults(wanted, held)
        if faults:
            raise KeyRoleMismatch("; ".join(faults[:5]) + (
                f" (and {len(faults) - 5} more)" if len(faults) > 5 else ""))

    async def policy_faults(self, channels: Sequence[tuple[str, str]]) -> dict[str, str]:
        """For each (account, key id): why the signer would refuse the channel's payout
        transactions (core/refusals.channel_policy_fault), asked without signing
        (CheckTransaction) with the channel's key and with the payer's. Empty when every
        channel would do, or when there is no sample to ask with."""
        if self.sample is None or self.signer is None:
            return {}
        faults: dict[str, str] = {}
        for account, key_id in channels:
            envelope = self.sample(account).to_xdr()
            for key, by_channel_key in ((key_id, True), (None, False)):
                try:
                    found = await self.signer.check_transaction(
                        envelope, key_id=key, payout_id=f"channel check {account}")
                except SigningRefused as err:
                    rule, code, refused, message = err.rule, err.code, err.account, str(err)
                else:
                    if found.would_sign:
                        continue
                    rule, code, refused, message = found.rule, None, found.account, \
                        found.message
                reason = channel_policy_fault(
                    by_channel_key=by_channel_key, rule=rule, code=code,
                    refused_account=refused, channel=account, message=message)
                if reason is not None:
                    faults[account] = reason
                    break
        return faults

    async def hold_refused_channels(self) -> dict[str, str]:
        """At start-up: every active channel the signer's policy would refuse is held with
        the reason (GetSystemHealth warns, payoutctl channels list shows it), before a payout
        is built on it. An unreachable signer is not a fault here (asked again at add)."""
        active = await self.registry.in_states([ChannelState.ACTIVE])
        try:
            faults = await self.policy_faults([(c.account, c.key_id) for c in active])
        except SignerUnavailable as err:
            log.warning("channels not checked against the signer's policy at start-up: "
                        "signer unavailable", extra={"error": str(err)})
            return {}
        for account, reason in faults.items():
            if await self.registry.hold(account, reason, actor=ACTOR):
                log.warning("channel held: the signer's policy would refuse its transactions",
                            extra={"channel": account, "reason": reason})
        return faults

    async def add(self, keys: Sequence[ChannelKey], *, actor: str) -> list[Channel]:
        """Accounts already on chain (funded elsewhere) join the pool at once. Every key and
        account is checked before anything is written, the signer's policy included; then all
        join, or none."""
        check_keys(keys, self.config.funding_account)
        ledger, _ = self._live()
        await self._verify_keys(keys)
        faults = await self.policy_faults([(k.account, k.key_id) for k in keys])
        if faults:
            raise ValidationFailed([
                FieldViolation(f"channels[{n}].key_id", faults[k.account][:200])
                for n, k in enumerate(keys) if k.account in faults])
        on_chain: dict[str, int] = {}
        for n, key in enumerate(keys):
            try:
                on_chain[key.account] = await ledger.account_sequence(key.account)
            except SourceAccountMissing:
                raise PreconditionFailed(
                    f"channels[{n}].public_key",
                    f"account {key.account} does not exist on chain; use create to fund it",
                    "CHANNEL_ACCOUNT",
                ) from None
        # Sequence rows first: a channel is leased only with one. A row left by a call
        # refused below is harmless (ON CONFLICT DO NOTHING keeps the first).
        for account, chain_sequence in on_chain.items():
            await self.sequences.ensure_source(account, chain_sequence)
        try:
            await self.registry.add_active([(k.account, k.key_id) for k in keys], actor=actor)
        except ChannelConflict as err:
            raise _conflict(keys, err) from None
        return await self.registry.get([k.account for k in keys])

    async def create(
        self, keys: Sequence[ChannelKey], starting_balance: int, *, actor: str
    ) -> list[Channel]:
        """New accounts, funded by CreateAccount from the funding account (up to 100 per
        transaction, built by the loop one funding transaction at a time)."""
        check_keys(keys, self.config.funding_account)
        if starting_balance < MIN_STARTING_BALANCE_STROOPS:
            raise ValidationFailed([FieldViolation(
                "starting_balance", "must cover the minimum balance of 1 XLM (2 base reserves)"
            )])
        self._live()
        await self._verify_funding_key()
        await self._verify_keys(keys)
        try:
            await self.registry.add_pending(
                [(k.account, k.key_id) for k in keys], starting_balance, actor=actor
            )
        except ChannelConflict as err:
            raise _conflict(keys, err) from None
        return await self.registry.get([k.account for k in keys])

    async def top_up(self, below: int, to: int) -> dict[str, int]:
        """Reads every funded channel's balance; those under `below` get a top-up to `to`."""
        if below <= 0 or to <= below:
            raise ValidationFailed([FieldViolation("to", "must be above `below`, both > 0")])
        ledger, _ = self._live()
        await self._verify_funding_key()
        channels = await self.registry.in_states(
            (ChannelState.ACTIVE, ChannelState.DRAINING, ChannelState.RETIRED))
        balances = await ledger.account_balances([c.account for c in channels])
        await self.registry.record_balances(balances)
        wanted = {
            c.account: top_up_amount(balances[c.account] or 0, below, to)
            for c in channels if balances.get(c.account) is not None and not c.merge_requested
        }
        wanted = {a: n for a, n in wanted.items() if n > 0}
        await self.registry.request_top_ups(wanted)
        return wanted

    async def retire(self, accounts: Sequence[str], *, merge: bool, actor: str) -> list[Channel]:
        if not accounts:
            raise ValidationFailed([FieldViolation("accounts", "name at least one channel")])
        found = await self.registry.get(accounts)
        missing = set(accounts) - {c.account for c in found}
        if missing:
            raise ValidationFailed([FieldViolation(
                "accounts", f"not a channel: {sorted(missing)[0][:56]}")])
        await self.registry.retire(accounts, merge=merge, actor=actor)
        return await self.registry.get(accounts)

    async def reactivate(self, accounts: Sequence[str], *, actor: str) -> list[Channel]:
        await self.registry.reactivate(accounts, actor=actor)
        return await self.registry.get(accounts)

    async def queued_payouts(self) -> int:
        queued: int = await self.pool.fetchval(
            "SELECT count(*) FROM payouts WHERE needs_attempt"
        )
        return queued

    async def plan(
        self, *, queued_per_ledger: int | None = None, payouts_per_transaction: int | None = None,
        close_time_ms: int | None = None,
    ) -> tuple[PoolPlan, int, dict[ChannelState, int]]:
        """The plan for the given load, or for the queue as it stands (drained within
        PAYOUTS_CHANNEL_PLAN_DRAIN_SECONDS). Returns the plan, the queue, the pool's counts."""
        cfg = self.config
        close = close_time_ms or cfg.close_time_ms
        queued = await self.queued_payouts()
        if queued_per_ledger is None:
            queued_per_ledger = min(MAX_PAYOUTS_PER_LEDGER,
                                    per_ledger_from_backlog(queued, cfg.drain_seconds, close))
        load = PoolLoad(
            queued_payouts_per_ledger=queued_per_ledger,
            payouts_per_transaction=payouts_per_transaction or cfg.payouts_per_transaction,
            close_time_ms=close,
        )
        plan = plan_pool(load, cfg.minimum, cfg.maximum or MAX_PAYOUTS_PER_LEDGER)
        return plan, queued, await self.registry.counts()

    # ---- the loop -------------------------------------------------------------------------

    async def step(self) -> int:
        """One pass: retire drained channels, size the pool, build what is wanted, and move
        every live lifecycle transaction one step. Returns the work done."""
        work = len(await self.registry.retire_drained())
        if self.config.maximum:
            work += await self._autosize()
        if self.ledger is None or self.signer is None:
            return work
        if self.config.top_up_below_stroops:
            await self._auto_top_up()
        work += await self._build_wanted()
        for op in await self.operations.live():
            work += await self._advance(op)
        return work

    async def _autosize(self) -> int:
        plan, _, counts = await self.plan()
        spare = counts[ChannelState.DRAINING] + counts[ChannelState.RETIRED]
        change = resize(plan.target, counts[ChannelState.ACTIVE], spare,
                        slack=max(1, plan.target // 10))
        if change.reactivate:
            back = await self.registry.spare(change.reactivate)
            await self.registry.reactivate(back, actor="autosize")
            log.info("channel pool grown", extra={"channels": len(back), "target": plan.target})
        if change.drain:
            excess = await self.registry.newest_active(change.drain)
            await self.registry.retire(excess, merge=False, actor="autosize")
            log.info("channel pool shrunk", extra={"channels": len(excess),
                                                   "target": plan.target})
        if change.create:
            log.warning("channel pool below its planned size: create more channels",
                        extra={"missing": change.create, "target": plan.target})
        return change.reactivate + change.drain

    _last_balance_read = 0.0

    async def _auto_top_up(self) -> None:
        # Balances move only by fees between reads: one read a minute is plenty.
        if time.monotonic() - self._last_balance_read < 60:
            return
        self._last_balance_read = time.monotonic()
        await self.top_up(self.config.top_up_below_stroops, self.config.top_up_to_stroops)

    async def _build_wanted(self) -> int:
        built = 0
        # Creates before top-ups: both use the funding account, one live transaction at a time.
        for kind in (OperationKind.CREATE, OperationKind.TOP_UP):
            op = await self._build(kind, MAX_OPS_PER_TX)
            if op is not None:
                built += 1
                break
        # Merges: each channel is its own source, so they run side by side.
        while await self._build(OperationKind.MERGE, 1) is not None:
            built += 1
        return built

    async def _build(self, kind: OperationKind, limit: int) -> Operation | None:
        assert self.ledger is not None  # noqa: S101 - checked by step()
        latest = await self.ledger.latest_ledger()
        # Time bounds follow the later of our clock and the ledger's (as payouts do).
        now = max(int(time.time()), latest.close_time)
        max_time = now + self.window
        funding = self.config.funding_account
        if kind is not OperationKind.MERGE and not await self.sequences.has_source(funding):
            await self.sequences.ensure_source(funding, await self.ledger.account_sequence(funding))

        def build(source: str, sequence: int, items: list[tuple[str, int]]
                  ) -> tuple[str, str, int, datetime]:
            tx = build_lifecycle_transaction(
                kind, LifecycleTx(source, sequence, max_time, self.passphrase), items,
                funding_account=funding,
            )
            return tx.envelope_xdr, tx.tx_hash, tx.fee_stroops, datetime.fromtimestamp(
                max_time, UTC)

        op = await self.operations.build(kind, funding, limit, build, actor=ACTOR)
        if op is not None:
            log.info("channel operation built", extra={
                "operation": str(op.id), "kind": kind.value, "channels": len(op.items),
                "tx_hash": op.tx_hash, "sequence": op.sequence})
        return op

    async def _advance(self, op: Operation) -> int:
        if op.status is OperationStatus.BUILT:
            return await self._sign(op)
        if op.status is OperationStatus.SIGNED:
            assert self.ledger is not None  # noqa: S101
            latest = await self.ledger.latest_ledger()
            if await self.operations.mark_sent(op, latest.sequence):
                await self._send(op)
            return 1
        return await self._confirm(op)

    async def _sign(self, op: Operation) -> int:
        assert self.signer is not None  # noqa: S101
        if op.max_time.timestamp() <= time.time():
            # Built, never signed, and its window is over (the signer was away): it never
            # left us, so its number is free and its channels are built again, not held.
            await self.operations.finish(op, OperationStatus.REJECTED,
                                         result_code="expired_unsigned",
                                         proof="max_time passed before it was signed")
            return 1
        key_id = self.config.funding_key_id
        if op.kind is OperationKind.MERGE:
            key_id = await self.registry.key_of(op.source_account) or ""
        try:
            signed = await self.signer.sign_transaction(
                op.envelope_xdr, payout_id=op.label, attempt=0, correlation_id=op.label,
                key_id=key_id,
            )
        except SigningRefused as err:
            # Never left us: the number is free again, the channels go back.
            log.warning("channel operation refused by the signer", extra={
                "operation": str(op.id), "kind": op.kind.value, "error": str(err)[:200]})
            await self.operations.finish(op, OperationStatus.REJECTED,
                                         result_code="signer_refused", proof=str(err)[:500],
                                         give_up=f"signer refused: {err}")
            return 1
        if signed.tx_hash != op.tx_hash:
            await self.operations.finish(op, OperationStatus.REJECTED,
                                         result_code="signer_hash_mismatch",
                                         proof="the signer hashed a different transaction",
                                         give_up="the signer hashed a different transaction")
            return 1
        await self.operations.store_signed(op, signed.envelope_xdr)
        return 1

    async def _send(self, op: Operation) -> None:
        assert self.ledger is not None  # noqa: S101
        # Re-read: the stored signed envelope is what goes out (invariant 3).
        stored = await self.pool.fetchval(
            "SELECT envelope_xdr FROM channel_operations WHERE id = $1", op.id)
        outcome = await self.ledger.send(stored)
        log.info("channel operation sent", extra={
            "operation": str(op.id), "tx_hash": op.tx_hash, "outcome": type(outcome).__name__})
        if isinstance(outcome, Rejected):
            # A rejection proves nothing (it may land later or already have): kept until
            # included or proven dead.
            await self.operations.record_rejection(op, outcome.code)

    async def _confirm(self, op: Operation) -> int:
        assert self.ledger is not None  # noqa: S101
        envelope = Envelope(op.sequence, int(op.max_time.timestamp()), op.submitted_ledger)
        closed = self.chain.closed_past(envelope.max_time)  # seen before the lookup
        found = await self.ledger.lookup(op.tx_hash)
        if isinstance(found, Included):
            status = OperationStatus.INCLUDED if found.successful else \
                OperationStatus.FAILED_ON_CHAIN
            give_up = None
            if not found.successful and not judge_on_chain_failure(found.result_code).retry:
                give_up = f"{op.kind.value} failed on chain: {found.result_code}"
            await self.operations.finish(op, status, ledger=found.ledger,
                                         result_code=found.result_code, give_up=give_up)
            log.info("channel operation landed", extra={
                "operation": str(op.id), "kind": op.kind.value, "tx_hash": op.tx_hash,
                "result": found.result_code, "ledger": found.ledger})
            return 1
        assert isinstance(found, NotFound)  # noqa: S101
        proof = proof_of_death(envelope, found, closed=closed)
        self.chain.saw_ledger(found.latest_ledger, found.latest_ledger_close_time)
        past = self.chain.closed_past(envelope.max_time)
        if proof is None and history_misses(envelope, found.oldest_ledger) \
                and past is not None and past.close_time > envelope.max_time:
            # No NOT_FOUND can prove it any more; its source's number can (core/proofs.py).
            proof = expired_unused(envelope, closed=past,
                                   account=await self.ledger.account_state(op.source_account))
        if proof is None:
            # Re-send the same envelope (the node may have dropped it), once per closed
            # ledger: a node drops queued transactions only when a ledger closes.
            if resend_due(op.last_sent_ledger, found.latest_ledger) and \
                    await self.operations.record_resend(op, found.latest_ledger):
                await self._send(op)
            return 0
        chain_sequence = None
        if op.last_rejection == "txBAD_SEQ":
            chain_sequence = (await self.ledger.account_state(op.source_account)).sequence
        verdict = verdict_at_death(op.last_rejection)
        await self.operations.finish(
            op, OperationStatus.DEAD, proof=proof.text, result_code=verdict.code,
            chain_sequence=chain_sequence,
            give_up=None if verdict.retry else f"{op.kind.value} rejected: {verdict.code}",
        )
        log.info("channel operation proven dead", extra={
            "operation": str(op.id), "tx_hash": op.tx_hash, "proof": proof.text,
            "kind": proof.kind.value})
        return 1


def channel_sample_for(config: Config) -> Callable[[str], TransactionEnvelope]:
    """How a channel's payout transactions look in this configuration (a classic Payment batch
    or the contract call), for the signer to judge before the channel is used."""
    destination = StrKey.encode_ed25519_public_key(bytes(32))  # any account but the payer's

    def sample(channel: str) -> TransactionEnvelope:
        now, window = int(time.time()), config.tx_window_seconds
        if config.batch_mode == BatchMode.CLASSIC:
            params = TxParams(channel, 1, 0, now + window, config.network_passphrase)
            item = BatchItem(uuid4(), destination, "XLM", 1)
            return build_classic_batch(params, [PlannedOp(item, OpKind.PAYMENT)],
                                       operation_source=config.source_account)
        call = payout_call("XLM", config.network_passphrase, config.contract_id,
                           config.method_name)
        return channel_sample(channel, call, payer=config.source_account,
                              destination=destination,
                              network_passphrase=config.network_passphrase, now=now,
                              window_seconds=window)

    return sample
