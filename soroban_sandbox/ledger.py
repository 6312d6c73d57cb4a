"""The sandbox ledger: accounts, balances, the transaction queue and ledger close. No I/O.

Time comes in as arguments (``close(close_time)``) and randomness as flags on ``submit``
(``drop``, ``fail_on_chain``), so everything here is deterministic and unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import TypeVar

from stellar_sdk import (
    Asset,
    FeeBumpTransactionEnvelope,
    StrKey,
    TransactionBuilder,
    TransactionEnvelope,
    scval,
)
from stellar_sdk import xdr as x
from stellar_sdk.address import Address
from stellar_sdk.operation import InvokeHostFunction

from . import xdr_build as b
from .admission import LedgerView, admission_error, fee_to_charge, inclusion_bid, is_soroban
from .archival import archived_indices, created_live_until, is_live, is_persistent
from .asset_events import asset_event
from .classic import apply_classic
from .contracts import ContractRegistry, TokenMove, asset_name
from .entry_history import EntryHistory, EntryKey, account_key, token_key, trustline_key
from .execution import execute
from .fees import non_refundable_fee, refundable_fee
from .frozen import SETTING_KEY, FrozenKeys, accesses_frozen_key
from .ledger_state import ArchivedEntry
from .protocol import Protocol
from .records import (
    Account,
    ClosedLedger,
    Event,
    Eviction,
    IncludedTx,
    Submission,
    TokenBalance,
    Transfer,
    Trustline,
    min_balance,
)
from .resources import TxLimits, disk_read_entries, entry_size
from .txset import Candidate, Resources, choose, fits, plus, to_evict

FRIENDBOT_STARTING_BALANCE = 10_000 * 10_000_000  # 10,000 XLM in stroops

# stellar-core src/transactions/TransactionUtils.h: maxTime must outlast this many expected
# ledger close times (plus the drift since the last close) to be accepted.
EXPECTED_CLOSE_TIME_MULT = 2
# stellar-core src/herder/HerderImpl.cpp: a queued transaction not included within this many
# ledgers is dropped, and a dropped or refused one is banned (TRY_AGAIN_LATER) for
# TRANSACTION_QUEUE_BAN_LEDGERS ledgers.
TRANSACTION_QUEUE_TIMEOUT_LEDGERS = 4
TRANSACTION_QUEUE_BAN_LEDGERS = 10
# How many ledgers back the ledger can still answer "what was this entry then" (for RPC nodes
# behind the network, README "Faults"). A real node further behind than this is unhealthy
# long before (32 ledgers of 5 s are over stellar-rpc's 30 s max healthy latency).
ENTRY_HISTORY_LEDGERS = 32


@dataclass(frozen=True)
class LedgerLimits:
    """Per-ledger and queue limits, defaults from the published testnet settings
    (stellar-docs docs/networks/README.mdx: 200 operations and up to 2,000 smart contract
    transactions per ledger); the queue holds TRANSACTION_QUEUE_SIZE_MULTIPLIER and
    SOROBAN_TRANSACTION_QUEUE_SIZE_MULTIPLIER (both 2, stellar-core src/main/Config.cpp)
    ledgers' worth of each lane."""

    soroban_txs_per_ledger: int = 2_000
    classic_ops_per_ledger: int = 200
    queue_multiplier: int = 2
    expected_close_seconds: int = 0  # whole seconds, truncated like stellar-core's duration_cast
    # Ledger-wide Soroban limits, stellar-docs "Resource Limits & Fees" (ledger-wide limits,
    # https://developers.stellar.org/docs/networks/resource-limits-fees): 600 million
    # instructions, disk reads 1,000 entries, disk writes 500 entries / 143 KB, transactions
    # 133 KB ("KB" as the network's KiB settings: 140 KiB and 130 KiB, as stellar-docs
    # PR 1730 listed them).
    ledger_instructions: int = 600_000_000
    ledger_write_entries: int = 500
    ledger_disk_read_entries: int = 1_000
    ledger_write_bytes: int = 140 * 1024
    ledger_tx_size_bytes: int = 130 * 1024

    def per_ledger(self, soroban: bool) -> Resources:
        """A lane's capacity in the units of txset.Candidate.units."""
        if not soroban:
            return (self.classic_ops_per_ledger,)
        return (
            self.soroban_txs_per_ledger,
            self.ledger_instructions,
            self.ledger_write_entries,
            self.ledger_disk_read_entries,
            self.ledger_write_bytes,
            self.ledger_tx_size_bytes,
        )

    def queue_capacity(self, soroban: bool) -> Resources:
        return tuple(limit * self.queue_multiplier for limit in self.per_ledger(soroban))


# What a ledger close keeps of each included transaction, for LedgerCloseMeta.
Processed = tuple[x.TransactionEnvelope, x.TransactionResultPair, x.TransactionMeta]
Entry = TypeVar("Entry", Account, Trustline, TokenBalance)
Envelope = TransactionEnvelope | FeeBumpTransactionEnvelope


BEFORE_ALL_TXS = x.TransactionEventStage.TRANSACTION_EVENT_STAGE_BEFORE_ALL_TXS


class InvalidEnvelope(ValueError):
    """The transaction XDR does not decode; the RPC answers with invalid params."""


class AccountExists(ValueError):
    pass


class ArchiveError(ValueError):
    """The admin asked to archive what cannot be archived; the message says why."""


@dataclass(frozen=True)
class FoundEntry:
    """A ledger entry as getLedgerEntries serves it."""

    data: x.LedgerEntryData
    last_modified: int
    live_until: int | None = None  # Soroban entries only: their TTL


@dataclass
class _Pending:
    hash: str
    envelope: TransactionEnvelope
    source: str
    fail_on_chain: bool
    queued_at: int  # last closed ledger when it entered the queue

    @property
    def bid(self) -> int:
        return inclusion_bid(self.envelope)

    @cached_property
    def candidate(self) -> Candidate:
        return candidate_of(self.hash, self.envelope)


def _underfunded(op_type: x.OperationType) -> x.OperationResult:
    if op_type == x.OperationType.CREATE_ACCOUNT:
        return b.create_account_result(x.CreateAccountResultCode.CREATE_ACCOUNT_UNDERFUNDED)
    if op_type == x.OperationType.ACCOUNT_MERGE:  # has no UNDERFUNDED: the nearest failure
        return b.account_merge_result(x.AccountMergeResultCode.ACCOUNT_MERGE_NO_ACCOUNT)
    return b.payment_result(x.PaymentResultCode.PAYMENT_UNDERFUNDED)


def candidate_of(tx_hash: str, envelope: TransactionEnvelope) -> Candidate:
    ops = len(envelope.transaction.operations)
    data = envelope.transaction.soroban_data
    if data is None:
        return Candidate(tx_hash, inclusion_bid(envelope), ops, False, (ops,))
    resources = data.resources
    units = (
        1,
        resources.instructions.uint32,
        len(resources.footprint.read_write),
        disk_read_entries(resources.footprint, len(archived_indices(data))),
        resources.write_bytes.uint32,
        len(envelope.to_xdr_object().to_xdr_bytes()),
    )
    return Candidate(tx_hash, inclusion_bid(envelope), ops, True, units)


@dataclass
class Ledger:
    registry: ContractRegistry
    start_time: int
    retention_ledgers: int = 120_960  # about 7 days of 5 s ledgers, like getTransaction history
    limits: LedgerLimits = field(default_factory=LedgerLimits)
    tx_limits: TxLimits = field(default_factory=TxLimits)
    protocol: Protocol = field(default_factory=Protocol)
    frozen: FrozenKeys = field(default_factory=FrozenKeys)
    accounts: dict[str, Account] = field(default_factory=dict)
    tokens: dict[tuple[str, str], TokenBalance] = field(default_factory=dict)
    # Classic trustlines by (holder G..., "CODE:ISSUER").
    trustlines: dict[tuple[str, str], Trustline] = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    evictions: list[Eviction] = field(default_factory=list)
    used_nonces: set[tuple[str, int]] = field(default_factory=set)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _banned: dict[str, int] = field(default_factory=dict)  # hash -> ledger the ban ends
    # Highest fee per operation evicted from a full lane since the last close, per lane
    # (True: Soroban): a newcomer must beat it (TxQueueLimiter mLaneEvictedInclusionFee).
    _evicted_rate: dict[bool, Fraction] = field(default_factory=dict)
    _included: dict[str, IncludedTx] = field(default_factory=dict)
    _ledgers: dict[int, ClosedLedger] = field(default_factory=dict)
    _latest_seq: int = 0
    entry_history: EntryHistory = field(default_factory=EntryHistory)
    _closing: int = 0  # the ledger being closed, while close() applies it

    def __post_init__(self) -> None:
        self._record_ledger(1, self.start_time)

    @property
    def passphrase(self) -> str:
        return self.registry.passphrase

    @property
    def latest(self) -> ClosedLedger:
        return self._ledgers[self._latest_seq]

    @property
    def oldest(self) -> ClosedLedger:
        # History is contiguous: ledgers are added one by one and pruned from the bottom.
        return self._ledgers[self._latest_seq - len(self._ledgers) + 1]

    def pending_hashes(self) -> list[str]:
        return list(self._pending)

    # -- accounts ---------------------------------------------------------------------------

    def fund(self, account_id: str, amount: int = FRIENDBOT_STARTING_BALANCE) -> Account:
        """Friendbot: create the account. New accounts start at seq = ledger << 32 (CAP-0003)."""
        if account_id in self.accounts:
            raise AccountExists(account_id)
        seq = self._latest_seq
        self.before_write(account_key(account_id))
        account = Account(account_id, amount, seq << 32, seq)
        self.accounts[account_id] = account
        return account

    def before_write(self, *keys: EntryKey) -> None:
        """Call before creating, changing or deleting these entries: what they were is kept
        for ENTRY_HISTORY_LEDGERS ledgers, so a node behind the network answers as of its own
        ledger. A change outside a close belongs to the latest ledger."""
        seq = self._closing or self._latest_seq
        for key in keys:
            self.entry_history.remember(key, seq, self._current(key))

    def _current(self, key: EntryKey) -> Account | Trustline | TokenBalance | None:
        kind, *ids = key
        if kind == "account":
            return self.accounts.get(ids[0])
        if kind == "trustline":
            return self.trustlines.get((ids[0], ids[1]))
        return self.tokens.get((ids[0], ids[1]))

    def account_at(self, account_id: str, ledger_seq: int) -> Account | None:
        """The account as ledger ``ledger_seq`` left it (within ENTRY_HISTORY_LEDGERS)."""
        return self._at(account_key(account_id), self.accounts.get(account_id), ledger_seq)

    # -- submission -------------------------------------------------------------------------

    def submit(
        self,
        envelope_xdr: str,
        *,
        drop: bool = False,
        fail_on_chain: bool = False,
        now: int | None = None,
        validated_at: int | None = None,
        parsed: Envelope | None = None,
    ) -> Submission:
        """stellar-core TransactionQueue::canAdd (src/herder/TransactionQueue.cpp), in order:
        banned, duplicate, lower sequence than the queued one, one per source, queue limiter,
        checkValid. ``now`` is the wall clock (for the close-time drift of txTOO_LATE).

        ``validated_at``: the ledger the receiving node's stellar-core has applied, when it is
        behind the network. checkValid runs against that node's state (its ERROR is the
        answer); what it accepts it floods, and the validators check it against theirs: if they
        refuse, the client was still told PENDING and the transaction never lands.
        ``parsed``: ``envelope_xdr`` already decoded by the caller."""
        envelope = parsed if parsed is not None else self.parse(envelope_xdr)
        if isinstance(envelope, FeeBumpTransactionEnvelope):
            code = x.TransactionResultCode.txNOT_SUPPORTED
            return Submission("ERROR", envelope.hash_hex(), b.error_result(code).to_xdr())
        tx_hash = envelope.hash()
        hex_hash = tx_hash.hex()
        if self._banned.get(hex_hash, 0) > self._latest_seq:
            return Submission("TRY_AGAIN_LATER", hex_hash)
        if hex_hash in self._pending:
            return Submission("DUPLICATE", hex_hash)
        source = envelope.transaction.source.account_id
        queued = next((p for p in self._pending.values() if p.source == source), None)
        if queued is not None:
            if envelope.transaction.sequence < queued.envelope.transaction.sequence:
                # "Any transaction older than the current one is invalid": ERROR txBAD_SEQ.
                code = x.TransactionResultCode.txBAD_SEQ
                result = b.error_result(code, fee_to_charge(envelope))
                return Submission("ERROR", hex_hash, result.to_xdr())
            # Protocol 20+: at most one queued transaction per source account.
            return Submission("TRY_AGAIN_LATER", hex_hash)
        refusal = self._queue_limit(envelope, hex_hash)
        if refusal is not None:
            return refusal
        node_seq = self._latest_seq if validated_at is None else validated_at
        rejection = admission_error(envelope, tx_hash, self._admission_view(source, node_seq, now))
        if rejection is not None:
            result = b.error_result(rejection.code, fee_to_charge(envelope), rejection.op_results)
            return Submission("ERROR", hex_hash, result.to_xdr())
        if node_seq != self._latest_seq:
            network = admission_error(
                envelope, tx_hash, self._admission_view(source, self._latest_seq, now)
            )
            if network is not None:
                reason = f"network_refused {network.code.name}"
                self.evictions.append(Eviction(hex_hash, self._latest_seq + 1, reason))
                return Submission("PENDING", hex_hash)
        self._make_room(envelope, hex_hash)
        if not drop:
            self._pending[hex_hash] = _Pending(
                hex_hash, envelope, source, fail_on_chain, self._latest_seq
            )
        return Submission("PENDING", hex_hash)

    def _admission_view(self, source: str, ledger_seq: int, now: int | None) -> LedgerView:
        """What checkValid sees on a node whose last closed ledger is ``ledger_seq``."""
        account = self.account_at(source, ledger_seq)
        last_close = self._ledgers[ledger_seq].close_time
        drift = max(0, (now if now is not None else last_close) - last_close)
        return LedgerView(
            seq=ledger_seq,
            close_time=last_close,
            source_exists=account is not None,
            source_seq=account.seq if account else 0,
            source_balance=account.balance if account else 0,
            source_min_balance=min_balance(account.num_sub_entries if account else 0),
            tx_limits=self.tx_limits,
            upper_bound_offset=EXPECTED_CLOSE_TIME_MULT * self.limits.expected_close_seconds
            + drift,
            protocol=self.protocol,
            frozen_keys=self.frozen.snapshot(),
        )

    def _lane(self, soroban: bool) -> list[Candidate]:
        return [p.candidate for p in self._pending.values() if is_soroban(p.envelope) == soroban]

    def _queue_limit(self, envelope: TransactionEnvelope, hex_hash: str) -> Submission | None:
        """TxQueueLimiter::canAddTx: a full lane takes a new transaction only if its fee per
        operation beats (strictly) what it would evict and anything evicted since the last
        ledger; otherwise the newcomer is banned and told the minimum full fee
        (txINSUFFICIENT_FEE with that fee in feeCharged)."""
        new = candidate_of(hex_hash, envelope)
        capacity = self.limits.queue_capacity(new.soroban)
        if new.soroban not in self._evicted_rate and self._has_room(new):
            return None  # the common case: the lane has room and nothing was evicted
        _, beat = to_evict(self._lane(new.soroban), new, capacity)
        floors = [f for f in (self._evicted_rate.get(new.soroban), beat) if f is not None]
        if not floors or new.rate > max(floors):
            return None
        self._ban(hex_hash)
        needed = (int(max(floors)) + 1) * new.ops + (envelope.transaction.fee - new.bid)
        result = b.error_result(x.TransactionResultCode.txINSUFFICIENT_FEE, needed)
        return Submission("ERROR", hex_hash, result.to_xdr())

    def _has_room(self, new: Candidate) -> bool:
        used = tuple(0 for _ in new.units)
        for pending in self._pending.values():
            if pending.candidate.soroban == new.soroban:
                used = plus(used, pending.candidate.units)
        return fits(used, new.units, self.limits.queue_capacity(new.soroban))

    def _make_room(self, envelope: TransactionEnvelope, hex_hash: str) -> None:
        new = candidate_of(hex_hash, envelope)
        if self._has_room(new):
            return
        capacity = self.limits.queue_capacity(new.soroban)
        evicted, _ = to_evict(self._lane(new.soroban), new, capacity)
        for out in evicted:
            del self._pending[out.hash]
            floor = self._evicted_rate.get(new.soroban, Fraction(0))
            self._evicted_rate[new.soroban] = max(floor, out.rate)
            self._ban(out.hash)
            self.evictions.append(Eviction(out.hash, self._latest_seq + 1, "queue_full"))

    def _ban(self, hex_hash: str) -> None:
        self._banned[hex_hash] = self._latest_seq + TRANSACTION_QUEUE_BAN_LEDGERS

    def parse(self, envelope_xdr: str) -> Envelope:
        try:
            return TransactionBuilder.from_xdr(envelope_xdr, self.passphrase)
        except Exception as exc:  # noqa: BLE001 - any decode failure is the client's bad XDR
            raise InvalidEnvelope(f"invalid transaction XDR: {exc}") from exc

    # -- ledger close -----------------------------------------------------------------------

    def close(self, close_time: int) -> ClosedLedger:
        """Close the next ledger at ``close_time`` (forced strictly above the previous one).

        Surge pricing as stellar-core builds a Soroban tx set: the highest inclusion bids fit
        up to ``soroban_txs_per_ledger``; when some are left out, every included transaction
        pays the lowest included bid (the phase's base fee) instead of the 100-stroop
        minimum. Left-out transactions stay queued for the next ledger, up to
        TRANSACTION_QUEUE_TIMEOUT_LEDGERS, then are dropped and banned.
        """
        seq = self._latest_seq + 1
        self._closing = seq
        try:
            return self._close(seq, max(close_time, self.latest.close_time + 1))
        finally:
            self._closing = 0

    def _close(self, seq: int, close_time: int) -> ClosedLedger:
        candidates: list[_Pending] = []
        for pending in list(self._pending.values()):
            reason = self._invalid_at_close(pending.envelope, seq, close_time)
            if reason is not None:
                # Invalid transactions are trimmed from the tx set (TxSetUtils::trimInvalid):
                # never included, nothing charged, seq not consumed. getTransaction stays
                # NOT_FOUND for ever.
                del self._pending[pending.hash]
                self.evictions.append(Eviction(pending.hash, seq, reason))
                continue
            candidates.append(pending)
        lanes = {
            soroban: choose(
                [p.candidate for p in candidates if is_soroban(p.envelope) == soroban],
                self.limits.per_ledger(soroban),
            )
            for soroban in (True, False)
        }
        chosen = {h for lane in lanes.values() for h in lane.chosen}
        processed: list[Processed] = []
        first_new_event = len(self.events)
        for pending in candidates:
            if pending.hash not in chosen:
                continue
            del self._pending[pending.hash]
            base_fee = lanes[is_soroban(pending.envelope)].base_fee or b.BASE_FEE
            processed.append(self._apply(pending, seq, close_time, len(processed) + 1, base_fee))
        self._index_fee_events(seq, close_time, first_new_event, processed)
        for pending in candidates:
            if pending.hash in self._pending and seq - pending.queued_at >= (
                TRANSACTION_QUEUE_TIMEOUT_LEDGERS
            ):
                del self._pending[pending.hash]
                self._ban(pending.hash)
                self.evictions.append(Eviction(pending.hash, seq, "queue_timeout"))
        self._evicted_rate.clear()
        if self._banned:
            self._banned = {h: until for h, until in self._banned.items() if until > seq}
        ledger = self._record_ledger(
            seq, close_time, processed, lanes[True].base_fee, lanes[False].base_fee
        )
        self._prune()
        self.entry_history.forget_through(seq - ENTRY_HISTORY_LEDGERS)
        return ledger

    def _invalid_at_close(
        self, envelope: TransactionEnvelope, seq: int, close_time: int
    ) -> str | None:
        """What checkValid finds wrong with a queued transaction when the next tx set is
        built: its time bounds have passed, or it accesses a key frozen since it was queued."""
        if self.frozen.keys and accesses_frozen_key(envelope, self.frozen.__contains__):
            return "txFROZEN_KEY_ACCESSED"
        cond = envelope.transaction.preconditions
        if cond is None:
            return None
        if (
            cond.time_bounds
            and cond.time_bounds.max_time
            and close_time > cond.time_bounds.max_time
        ):
            return "txTOO_LATE"
        if (
            cond.ledger_bounds
            and cond.ledger_bounds.max_ledger
            and seq >= cond.ledger_bounds.max_ledger
        ):
            return "txTOO_LATE"
        return None

    def _apply(
        self, pending: _Pending, seq: int, close_time: int, order: int, base_fee: int
    ) -> Processed:
        envelope = pending.envelope
        self.before_write(account_key(pending.source))
        account = self.accounts[pending.source]
        # Fee and sequence number are consumed before the operations run, success or not.
        charged = min(fee_to_charge(envelope, base_fee), account.balance)
        account.balance -= charged
        account.seq = envelope.transaction.sequence
        account.last_modified = seq
        fee_events = [b.fee_event(self.registry.native_id, pending.source, charged, 0)]
        if not is_soroban(envelope):
            return self._apply_classic(pending, seq, close_time, order, charged, fee_events)
        op = envelope.transaction.operations[0]
        assert isinstance(op, InvokeHostFunction)
        op_source = op.source.account_id if op.source else pending.source
        data = envelope.transaction.soroban_data
        assert data is not None
        run = execute(self, op, op_source, seq, data, fail_on_chain=pending.fail_on_chain)
        self._record_moves([(0, run.moves)], pending.hash, seq, close_time, order)
        events = [asset_event(m) for m in run.moves]
        # Refundable resources (stellar-core RefundableFeeTracker): the declared resource fee
        # minus the non-refundable part; what events and restores' rent consumed is kept, the
        # rest is refunded after apply, and feeCharged in the result is lowered by the refund
        # (MutableTransactionResult::finalizeFeeRefund). A failed call consumes none of it.
        declared = data.resource_fee.int64
        marked = len(archived_indices(data))
        fixed = min(declared, non_refundable_fee(len(data.resources.footprint.read_write), marked))
        used = refundable_fee(len(events), run.restored)
        consumed = min(declared - fixed, used) if run.error is None else 0
        refund = min(declared - fixed - consumed, charged)
        account.balance += refund
        if refund:
            fee_events.append(b.fee_event(self.registry.native_id, pending.source, -refund, 1))
        return_value = scval.to_void() if run.error is None else None
        meta = b.transaction_meta(
            events,
            return_value,
            fee_events,
            non_refundable_fee=fixed,
            refundable_fee=consumed,
        )
        digest = b.sha256(
            scval.to_void().to_xdr_bytes() + b"".join(e.to_xdr_bytes() for e in events)
        )
        fee_charged = charged - refund
        result = b.invoke_result(
            success=run.error is None,
            fee_charged=fee_charged,
            success_hash=digest,
            failure=run.failure,
        )
        return self._include(
            pending,
            seq,
            close_time,
            order,
            result,
            meta,
            run.error,
            inclusion_fee=fee_charged - fixed - consumed,
            events=[[e.to_xdr() for e in events]],
        )

    def _apply_classic(
        self,
        pending: _Pending,
        seq: int,
        close_time: int,
        order: int,
        charged: int,
        fee_events: list[x.TransactionEvent],
    ) -> Processed:
        tx = pending.envelope.transaction
        ops = tx.operations
        if pending.fail_on_chain:
            run = apply_classic(self, pending.source, [], seq)
            run.results = [_underfunded(op.to_xdr_object().body.type) for op in ops]
            failure: str | None = "injected fault: fail_on_chain"
        else:
            run = apply_classic(self, pending.source, ops, seq, memo=tx.memo)
            failure = None if run.successful else "an operation failed (see the operation results)"
        per_op: list[list[TokenMove]] = [[] for _ in ops]
        for index, move in zip(run.op_indexes, run.moves, strict=True):
            per_op[index].append(move)
        self._record_moves(list(enumerate(per_op)), pending.hash, seq, close_time, order)
        events = [[asset_event(m) for m in moves] for moves in per_op]
        meta = b.classic_transaction_meta(events, fee_events)
        result = b.classic_result(success=failure is None, fee_charged=charged, results=run.results)
        return self._include(
            pending,
            seq,
            close_time,
            order,
            result,
            meta,
            failure,
            # stellar-rpc's classic fee window counts the fee charged per operation.
            inclusion_fee=charged // len(ops),
            events=[[e.to_xdr() for e in op_events] for op_events in events],
        )

    def _include(
        self,
        pending: _Pending,
        seq: int,
        close_time: int,
        order: int,
        result: x.TransactionResult,
        meta: x.TransactionMeta,
        failure: str | None,
        *,
        inclusion_fee: int,
        events: list[list[str]],
    ) -> Processed:
        assert meta.v4 is not None
        self._included[pending.hash] = IncludedTx(
            hash=pending.hash,
            envelope_xdr=pending.envelope.to_xdr(),
            result_xdr=result.to_xdr(),
            meta_xdr=meta.to_xdr(),
            ledger=seq,
            created_at=close_time,
            application_order=order,
            failure=failure,
            inclusion_fee_charged=inclusion_fee,
            transaction_events=tuple(e.to_xdr() for e in meta.v4.events),
            contract_events=tuple(tuple(op) for op in events),
            soroban=is_soroban(pending.envelope),
        )
        pair = x.TransactionResultPair(x.Hash(bytes.fromhex(pending.hash)), result)
        return pending.envelope.to_xdr_object(), pair, meta

    def _index_fee_events(
        self, seq: int, close_time: int, first_new_event: int, processed: list[Processed]
    ) -> None:
        """Serve the CAP-67 fee events through getEvents as stellar-rpc does (the stellar-docs
        "All Events" example): the up-front charges at transaction index 0 of the ledger,
        numbered in application order; refunds after each transaction's own events."""
        contract_events = self.events[first_new_event:]
        del self.events[first_new_event:]
        charges: list[Event] = []
        refunds: list[Event] = []
        native_id = self.registry.native_id
        for _, pair, meta in processed:
            tx_hash = pair.transaction_hash.hash.hex()
            tx = self._included[tx_hash]
            assert meta.v4 is not None
            for event in meta.v4.events:
                body = event.event.body.v0
                assert body is not None
                before_all = event.stage == BEFORE_ALL_TXS
                target = charges if before_all else refunds
                target.append(
                    Event(
                        ledger=seq,
                        close_time=close_time,
                        contract_id=native_id,
                        topics=[t.to_xdr() for t in body.topics],
                        value=body.data.to_xdr(),
                        tx_hash=tx_hash,
                        tx_index=0 if before_all else tx.application_order,
                        op_index=0,
                        event_index=len(charges) if before_all else len(tx.contract_events[0]),
                        in_successful_call=tx.successful,
                    )
                )
        self.events.extend(sorted(charges + contract_events + refunds, key=lambda e: e.position))

    def _record_moves(
        self,
        per_op: list[tuple[int, list[TokenMove]]],
        tx_hash: str,
        seq: int,
        close_time: int,
        order: int,
    ) -> None:
        for op_index, moves in per_op:
            for index, move in enumerate(moves):
                event = asset_event(move)
                body = event.body.v0
                assert body is not None
                self.events.append(
                    Event(
                        ledger=seq,
                        close_time=close_time,
                        contract_id=move.token_id,
                        topics=[t.to_xdr() for t in body.topics],
                        value=body.data.to_xdr(),
                        tx_hash=tx_hash,
                        tx_index=order,
                        op_index=op_index,
                        event_index=index,
                    )
                )
                muxed = move.to_muxed_id
                self.transfers.append(
                    Transfer(
                        tx_hash,
                        seq,
                        move.contract_id,
                        move.function,
                        move.from_,
                        move.to,
                        move.amount,
                        move.asset,
                        muxed.as_json() if muxed else None,
                        muxed.kind if muxed else None,
                    )
                )

    def _record_ledger(
        self,
        seq: int,
        close_time: int,
        processed: list[Processed] | None = None,
        soroban_base_fee: int | None = None,
        classic_base_fee: int | None = None,
    ) -> ClosedLedger:
        processed = processed or []
        previous = self._ledgers[seq - 1].hash if seq - 1 in self._ledgers else b"\x00" * 32
        header = b.ledger_header(
            protocol=self.protocol.version,
            seq=seq,
            close_time=close_time,
            previous_hash=previous,
            max_tx_set_size=self.limits.classic_ops_per_ledger,
        )
        header_hash = b.sha256(header.to_xdr_bytes())
        ledger = ClosedLedger(
            seq=seq,
            close_time=close_time,
            hash=header_hash,
            header_xdr=header.to_xdr(),
            meta_xdr=b.close_meta(
                header, header_hash, processed, soroban_base_fee, classic_base_fee
            ).to_xdr(),
            tx_hashes=tuple(pair.transaction_hash.hash.hex() for _, pair, _ in processed),
        )
        self._ledgers[seq] = ledger
        self._latest_seq = seq
        return ledger

    def _prune(self) -> None:
        """Forget history outside the retention window, as stellar-rpc does."""
        floor = self._latest_seq - self.retention_ledgers + 1
        for old in [s for s in self._ledgers if s < floor]:
            del self._ledgers[old]
        if any(tx.ledger < floor for tx in self._included.values()):
            self._included = {h: t for h, t in self._included.items() if t.ledger >= floor}
            self.events = [e for e in self.events if e.ledger >= floor]

    # -- queries ----------------------------------------------------------------------------

    def transaction(self, tx_hash: str) -> IncludedTx | None:
        return self._included.get(tx_hash.lower())

    def ledger_at(self, seq: int) -> ClosedLedger | None:
        return self._ledgers.get(seq)

    def recent_inclusion_fees(
        self, ledgers: int, *, soroban: bool = True, up_to: int | None = None
    ) -> tuple[list[int], int]:
        """Soroban inclusion fees charged in the last ``ledgers`` closed ledgers up to ``up_to``
        (stellar-rpc feewindow: fee charged minus resource fee charged), and how many ledgers
        that is."""
        last = self._latest_seq if up_to is None else up_to
        first = max(last - ledgers + 1, self.oldest.seq)
        window = range(first, last + 1)
        fees = [
            self._included[h].inclusion_fee_charged
            for s in window
            for h in self._ledgers[s].tx_hashes
            if h in self._included and self._included[h].soroban == soroban
        ]
        return fees, len(window)

    def ledger_entry(self, key: x.LedgerKey, at: int | None = None) -> FoundEntry | None:
        """Account, trustline and SAC balance entries, and the frozen-keys configuration
        setting, as the latest ledger left them or, with ``at``, as that ledger did."""
        if key.type == x.LedgerEntryType.ACCOUNT and key.account is not None:
            raw_key = key.account.account_id.account_id.ed25519
            assert raw_key is not None  # PUBLIC_KEY_TYPE_ED25519 is the only key type
            account_id = StrKey.encode_ed25519_public_key(raw_key.uint256)
            account = self._at(account_key(account_id), self.accounts.get(account_id), at)
            if account is None:
                return None
            data = b.account_entry_data(
                account_id, account.balance, account.seq, account.num_sub_entries
            )
            return FoundEntry(data, account.last_modified)
        if key.type == x.LedgerEntryType.TRUSTLINE and key.trust_line is not None:
            return self._trustline_entry(key.trust_line, at)
        if key.type == x.LedgerEntryType.CONTRACT_DATA and key.contract_data is not None:
            return self._balance_entry(key.contract_data, at)
        if key.to_xdr_bytes() == SETTING_KEY.to_xdr_bytes() and self.protocol.frozen_keys:
            # The setting exists from the protocol 26 upgrade on (CAP-77).
            return FoundEntry(self.frozen.setting(), self.frozen.last_modified)
        return None

    def _at(self, key: EntryKey, current: Entry | None, at: int | None) -> Entry | None:
        if at is None or at >= self._latest_seq:
            return current
        return self.entry_history.at(key, at, current)

    def _trustline_entry(self, key: x.LedgerKeyTrustLine, at: int | None) -> FoundEntry | None:
        raw_key = key.account_id.account_id.ed25519
        assert raw_key is not None
        holder = StrKey.encode_ed25519_public_key(raw_key.uint256)
        try:
            asset = Asset.from_xdr_object(key.asset)
        except (ValueError, AttributeError):
            return None  # pool shares are not modelled
        name = asset_name(asset)
        line = self._at(trustline_key(holder, name), self.trustlines.get((holder, name)), at)
        if line is None:
            return None
        data = b.trustline_entry_data(holder, asset, line.balance, line.limit, line.authorized)
        return FoundEntry(data, line.last_modified)

    def _balance_key(self, key: x.LedgerKeyContractData) -> EntryKey | None:
        """The entry a persistent SAC ``Balance`` key names, if it is one."""
        vec = key.key.vec.sc_vec if key.key.vec is not None else []
        if (
            key.durability != x.ContractDataDurability.PERSISTENT
            or len(vec) != 2
            or vec[0] != scval.to_symbol("Balance")
            or vec[1].address is None
        ):
            return None
        token_id = Address.from_xdr_sc_address(key.contract).address
        return token_key(token_id, Address.from_xdr_sc_address(vec[1].address).address)

    def _balance_entry(self, key: x.LedgerKeyContractData, at: int | None) -> FoundEntry | None:
        entry_key = self._balance_key(key)
        if entry_key is None:
            return None
        _, token_id, holder = entry_key
        held = self._at(entry_key, self.tokens.get((token_id, holder)), at)
        if held is None:
            return None
        data = b.balance_entry_data(token_id, holder, held.amount)
        return FoundEntry(data, held.last_modified, held.live_until)

    # -- archival (CAP-62, CAP-66) -----------------------------------------------------------

    def _persistent(self, key: x.LedgerKey) -> TokenBalance | None:
        if key.contract_data is None:
            return None
        entry_key = self._balance_key(key.contract_data)
        if entry_key is None:
            return None
        return self.tokens.get((entry_key[1], entry_key[2]))

    def archived_entries(self, footprint: x.LedgerFootprint, seq: int) -> list[ArchivedEntry]:
        """The footprint's entries that are archived at ledger ``seq``, in footprint order."""
        found = []
        keyed: list[tuple[x.LedgerKey, int | None]] = [(k, None) for k in footprint.read_only]
        keyed += [(k, i) for i, k in enumerate(footprint.read_write)]
        for key, index in keyed:
            held = self._persistent(key)
            if held is not None and not is_live(held.live_until, seq):
                data = self.ledger_entry(key)
                assert data is not None
                found.append(ArchivedEntry(key, index, entry_size(data.data)))
        return found

    def restore(self, keys: list[x.LedgerKey], seq: int) -> None:
        """Bring archived entries back with the network's minimum TTL from ``seq``."""
        for key in keys:
            held = self._persistent(key)
            assert held is not None and key.contract_data is not None
            entry_key = self._balance_key(key.contract_data)
            assert entry_key is not None
            self.before_write(entry_key)
            held.live_until = created_live_until(seq)

    def archive(self, key: x.LedgerKey) -> TokenBalance:
        """Let the entry's TTL lapse: its last live ledger is the one before the latest, so
        getLedgerEntries reports it archived and a transaction must restore it. Only
        persistent contract data can be (CAP-62)."""
        if not is_persistent(key):
            raise ArchiveError(
                "key: only persistent contract entries are archived (CAP-62); accounts and "
                "trustlines never are, temporary entries are deleted instead"
            )
        held = self._persistent(key)
        if held is None:
            raise ArchiveError("key: no such entry (the sandbox archives SAC Balance entries)")
        assert key.contract_data is not None
        entry_key = self._balance_key(key.contract_data)
        assert entry_key is not None
        self.before_write(entry_key)
        held.live_until = min(held.live_until, self._latest_seq - 1)
        return held

    def freeze(self, freeze: list[x.LedgerKey], unfreeze: list[x.LedgerKey]) -> None:
        """A CONFIG_SETTING_FROZEN_LEDGER_KEYS_DELTA upgrade (CAP-77), taking effect from the
        next ledger's validation on."""
        self.protocol.require("frozen ledger keys", 26, "CAP-77")
        self.frozen.apply_delta(freeze, unfreeze, self._latest_seq)
