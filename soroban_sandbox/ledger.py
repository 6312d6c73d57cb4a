"""The sandbox ledger: accounts, balances, the transaction queue and ledger close. No I/O.

Time comes in as arguments (``close(close_time)``) and randomness as flags on ``submit``
(``drop``, ``fail_on_chain``), so everything here is deterministic and unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stellar_sdk import (
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
from .admission import LedgerView, admission_error, fee_to_charge
from .contracts import ContractRegistry
from .execution import Execution, TokenBalance, execute
from .records import (
    Account,
    ClosedLedger,
    Event,
    Eviction,
    IncludedTx,
    Submission,
    Transfer,
)

FRIENDBOT_STARTING_BALANCE = 10_000 * 10_000_000  # 10,000 XLM in stroops
PROTOCOL_VERSION = 23


class InvalidEnvelope(ValueError):
    """The transaction XDR does not decode; the RPC answers with invalid params."""


class AccountExists(ValueError):
    pass


@dataclass
class _Pending:
    hash: str
    envelope: TransactionEnvelope
    source: str
    fail_on_chain: bool


@dataclass
class Ledger:
    registry: ContractRegistry
    start_time: int
    retention_ledgers: int = 120_960  # about 7 days of 5 s ledgers, like getTransaction history
    accounts: dict[str, Account] = field(default_factory=dict)
    tokens: dict[tuple[str, str], TokenBalance] = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    evictions: list[Eviction] = field(default_factory=list)
    used_nonces: set[tuple[str, int]] = field(default_factory=set)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _included: dict[str, IncludedTx] = field(default_factory=dict)
    _ledgers: dict[int, ClosedLedger] = field(default_factory=dict)
    _latest_seq: int = 0

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
        return self._ledgers[min(self._ledgers)]

    def pending_hashes(self) -> list[str]:
        return list(self._pending)

    # -- accounts ---------------------------------------------------------------------------

    def fund(self, account_id: str, amount: int = FRIENDBOT_STARTING_BALANCE) -> Account:
        """Friendbot: create the account. New accounts start at seq = ledger << 32 (CAP-0003)."""
        if account_id in self.accounts:
            raise AccountExists(account_id)
        seq = self._latest_seq
        account = Account(account_id, amount, seq << 32, seq)
        self.accounts[account_id] = account
        return account

    def token_balance(self, token_id: str, holder: str) -> int:
        held = self.tokens.get((token_id, holder))
        return held.amount if held else 0

    # -- submission -------------------------------------------------------------------------

    def submit(
        self, envelope_xdr: str, *, drop: bool = False, fail_on_chain: bool = False
    ) -> Submission:
        envelope = self.parse(envelope_xdr)
        if isinstance(envelope, FeeBumpTransactionEnvelope):
            code = x.TransactionResultCode.txNOT_SUPPORTED
            return Submission("ERROR", envelope.hash_hex(), b.error_result(code).to_xdr())
        tx_hash = envelope.hash()
        hex_hash = tx_hash.hex()
        if hex_hash in self._pending:
            return Submission("DUPLICATE", hex_hash)
        source = envelope.transaction.source.account_id
        if any(p.source == source for p in self._pending.values()):
            # stellar-core (protocol 20+): at most one queued transaction per source account.
            return Submission("TRY_AGAIN_LATER", hex_hash)
        account = self.accounts.get(source)
        view = LedgerView(
            seq=self._latest_seq,
            close_time=self.latest.close_time,
            source_exists=account is not None,
            source_seq=account.seq if account else 0,
            source_balance=account.balance if account else 0,
        )
        rejection = admission_error(envelope, tx_hash, view)
        if rejection is not None:
            result = b.error_result(rejection, fee_to_charge(envelope))
            return Submission("ERROR", hex_hash, result.to_xdr())
        if not drop:
            self._pending[hex_hash] = _Pending(hex_hash, envelope, source, fail_on_chain)
        return Submission("PENDING", hex_hash)

    def parse(self, envelope_xdr: str) -> TransactionEnvelope | FeeBumpTransactionEnvelope:
        try:
            return TransactionBuilder.from_xdr(envelope_xdr, self.passphrase)
        except Exception as exc:  # noqa: BLE001 - any decode failure is the client's bad XDR
            raise InvalidEnvelope(f"invalid transaction XDR: {exc}") from exc

    # -- ledger close -----------------------------------------------------------------------

    def close(self, close_time: int) -> ClosedLedger:
        """Close the next ledger at ``close_time`` (forced strictly above the previous one)."""
        seq = self._latest_seq + 1
        close_time = max(close_time, self.latest.close_time + 1)
        order = 0
        for pending in list(self._pending.values()):
            del self._pending[pending.hash]
            reason = self._expired(pending.envelope, seq, close_time)
            if reason is not None:
                # Expired transactions are trimmed from the tx set: never included, nothing
                # charged, seq not consumed. getTransaction stays NOT_FOUND for ever.
                self.evictions.append(Eviction(pending.hash, seq, reason))
                continue
            order += 1
            self._apply(pending, seq, close_time, order)
        ledger = self._record_ledger(seq, close_time)
        self._prune()
        return ledger

    def _expired(self, envelope: TransactionEnvelope, seq: int, close_time: int) -> str | None:
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

    def _apply(self, pending: _Pending, seq: int, close_time: int, order: int) -> None:
        envelope = pending.envelope
        account = self.accounts[pending.source]
        # Fee and sequence number are consumed before the operation runs, success or not.
        fee = min(fee_to_charge(envelope), account.balance)
        account.balance -= fee
        account.seq = envelope.transaction.sequence
        account.last_modified = seq
        op = envelope.transaction.operations[0]
        assert isinstance(op, InvokeHostFunction)
        op_source = op.source.account_id if op.source else pending.source
        run = execute(self, op, op_source, seq, fail_on_chain=pending.fail_on_chain)
        if run.move is not None:
            self._record_move(run, pending.hash, seq, close_time, order)
        events = [b.transfer_event(m.token_id, m.from_, m.to, m.amount, m.asset) for m in run.moves]
        meta = b.transaction_meta(events, scval.to_void())
        digest = b.sha256(
            scval.to_void().to_xdr_bytes() + b"".join(e.to_xdr_bytes() for e in events)
        )
        result = b.invoke_result(success=run.error is None, fee_charged=fee, success_hash=digest)
        self._included[pending.hash] = IncludedTx(
            hash=pending.hash,
            envelope_xdr=envelope.to_xdr(),
            result_xdr=result.to_xdr(),
            meta_xdr=meta.to_xdr(),
            ledger=seq,
            created_at=close_time,
            application_order=order,
            failure=run.error,
        )

    def _record_move(
        self, run: Execution, tx_hash: str, seq: int, close_time: int, order: int
    ) -> None:
        for index, move in enumerate(run.moves):
            event = b.transfer_event(move.token_id, move.from_, move.to, move.amount, move.asset)
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
                    op_index=0,
                    event_index=index,
                )
            )
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
                )
            )

    def _record_ledger(self, seq: int, close_time: int) -> ClosedLedger:
        previous = self._ledgers[seq - 1].hash if seq - 1 in self._ledgers else b"\x00" * 32
        header = b.ledger_header(
            protocol=PROTOCOL_VERSION, seq=seq, close_time=close_time, previous_hash=previous
        )
        header_hash = b.sha256(header.to_xdr_bytes())
        ledger = ClosedLedger(
            seq=seq,
            close_time=close_time,
            hash=header_hash,
            header_xdr=header.to_xdr(),
            meta_xdr=b.close_meta(header, header_hash).to_xdr(),
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

    def ledger_entry(self, key: x.LedgerKey) -> tuple[x.LedgerEntryData, int] | None:
        """Account entries, and SAC balance entries of contract-held or issued-asset balances."""
        if key.type == x.LedgerEntryType.ACCOUNT and key.account is not None:
            raw_key = key.account.account_id.account_id.ed25519
            assert raw_key is not None  # PUBLIC_KEY_TYPE_ED25519 is the only key type
            account_id = StrKey.encode_ed25519_public_key(raw_key.uint256)
            account = self.accounts.get(account_id)
            if account is None:
                return None
            return b.account_entry_data(
                account_id, account.balance, account.seq
            ), account.last_modified
        if key.type == x.LedgerEntryType.CONTRACT_DATA and key.contract_data is not None:
            return self._balance_entry(key.contract_data)
        return None

    def _balance_entry(self, key: x.LedgerKeyContractData) -> tuple[x.LedgerEntryData, int] | None:
        token_id = Address.from_xdr_sc_address(key.contract).address
        vec = key.key.vec.sc_vec if key.key.vec is not None else []
        if len(vec) != 2 or vec[0] != scval.to_symbol("Balance") or vec[1].address is None:
            return None
        holder = Address.from_xdr_sc_address(vec[1].address).address
        held = self.tokens.get((token_id, holder))
        if held is None:
            return None
        return b.balance_entry_data(token_id, holder, held.amount), held.last_modified
