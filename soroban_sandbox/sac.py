"""The Stellar Asset Contract's balances, as soroban-env-host keeps them
(builtin_contracts/stellar_asset_contract/balance.rs, contract.rs ``transfer``).

Where a holder's balance lives decides the rules it meets:

* a G account's XLM is its account entry: spending keeps the minimum balance of
  (2 + sub-entries) base reserves, receiving stays within INT64_MAX
  (``transfer_account_balance``, ``get_min_max_account_balance``);
* a G account's issued asset is its classic trustline: it must exist (#13
  TrustlineMissingError), be authorised (#11 BalanceDeauthorizedError, checked before any
  amount), and stay within 0..limit (#10 BalanceError) (``is_authorized``,
  ``transfer_trustline_balance``); the issuer has no trustline: it mints and burns;
* a contract's balance of any asset is the SAC's persistent ``Balance`` entry, created on first
  receipt (``receive_balance``, ``spend_balance_no_authorization_check``: #10 when short).

A missing G account: before protocol 26 #6 AccountMissingError; from protocol 26 (CAP-73) the
XLM SAC creates it when the amount covers the new account's minimum balance (2 base reserves,
else #14 InsufficientAccountReserve), with sequence number ledger << 32.

Each move spends ``from`` and then credits ``to``, in order, on a scratch view: the first
failure traps the whole invocation and nothing is written (a host failure rolls back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stellar_sdk import Asset
from stellar_sdk import xdr as x

from . import xdr_build as b
from .archival import created_live_until, touched_live_until
from .contracts import ContractError, Invocation, asset_name
from .entry_history import account_key, token_key, trustline_key
from .ledger_state import LedgerState
from .records import INT64_MAX, NEW_ACCOUNT_MIN_BALANCE, Account, TokenBalance, min_balance


def _error(code: int, message: str) -> ContractError:
    return ContractError(f"Error(Contract, #{code}): {message}")


MISSING_ACCOUNT = (6, "account entry is missing")
OUT_OF_RANGE = (10, "resulting balance is not within the allowed range")
DEAUTHORIZED = (11, "balance is deauthorized")
MISSING_TRUSTLINE = (13, "trustline entry is missing for account")
BELOW_RESERVE = (14, "transfer amount is below minimum balance for new account")


@dataclass(frozen=True)
class WrittenEntry:
    holder: str
    key: x.LedgerKey
    after: x.LedgerEntryData


@dataclass
class SacRun:
    """The balances one invocation leaves, before they are committed."""

    ledger: LedgerState
    token_id: str
    asset: Asset
    seq: int  # the ledger the invocation is applied in
    accounts: dict[str, int] = field(default_factory=dict)  # XLM of G holders
    created: set[str] = field(default_factory=set)  # G accounts created (CAP-73)
    lines: dict[str, int] = field(default_factory=dict)  # trustline balances of G holders
    contracts: dict[str, int] = field(default_factory=dict)  # Balance entries of C holders
    holders: list[str] = field(default_factory=list)  # touched, in order; never the issuer

    def _touch(self, holder: str) -> None:
        if holder not in self.holders:
            self.holders.append(holder)

    def is_issuer(self, holder: str) -> bool:
        return not self.asset.is_native() and holder == self.asset.issuer

    # -- G accounts' XLM ---------------------------------------------------------------------

    def xlm_balance(self, holder: str) -> int | None:
        if holder in self.accounts:
            return self.accounts[holder]
        account = self.ledger.accounts.get(holder)
        return account.balance if account else None

    def _sub_entries(self, holder: str) -> int:
        account = self.ledger.accounts.get(holder)
        return 0 if account is None or holder in self.created else account.num_sub_entries

    def _move_xlm(self, holder: str, delta: int, *, may_create: bool) -> None:
        held = self.xlm_balance(holder)
        if held is None:
            if delta <= 0 or not may_create:
                raise _error(*MISSING_ACCOUNT)
            if delta < NEW_ACCOUNT_MIN_BALANCE:
                raise _error(*BELOW_RESERVE)
            self.created.add(holder)
            self.accounts[holder] = delta
            return
        after = held + delta
        if not min_balance(self._sub_entries(holder)) <= after <= INT64_MAX:
            raise _error(*OUT_OF_RANGE)
        self.accounts[holder] = after

    # -- G accounts' trustlines --------------------------------------------------------------

    def _authorized_line(self, holder: str) -> tuple[int, int]:
        """(balance, limit) of an existing, authorised trustline (``is_authorized`` first)."""
        line = self.ledger.trustlines.get((holder, self.sep11))
        if line is None:
            raise _error(*MISSING_TRUSTLINE)
        if not line.authorized:
            raise _error(*DEAUTHORIZED)
        return self.lines.get(holder, line.balance), line.limit

    @property
    def sep11(self) -> str:
        """The asset's name as trustlines are keyed here: "native" or "CODE:ISSUER"."""
        return asset_name(self.asset)

    def _move_line(self, holder: str, delta: int) -> None:
        held, limit = self._authorized_line(holder)
        after = held + delta
        if not 0 <= after <= limit:
            raise _error(*OUT_OF_RANGE)
        self.lines[holder] = after

    # -- contracts' Balance entries ----------------------------------------------------------

    def contract_balance(self, holder: str) -> int | None:
        if holder in self.contracts:
            return self.contracts[holder]
        held = self.ledger.tokens.get((self.token_id, holder))
        return held.amount if held else None

    def _spend_contract(self, holder: str, amount: int) -> None:
        held = self.contract_balance(holder)
        if held is None:
            if amount > 0:
                raise _error(10, "zero balance is not sufficient to spend")
            return
        if held < amount:
            raise _error(10, "balance is not sufficient to spend")
        self.contracts[holder] = held - amount

    # -- the SAC's spend_balance / receive_balance --------------------------------------------

    def spend(self, holder: str, amount: int) -> None:
        if self.is_issuer(holder):
            return  # the issuer mints
        self._touch(holder)
        if holder.startswith("C"):
            self._spend_contract(holder, amount)
        elif self.asset.is_native():
            self._move_xlm(holder, -amount, may_create=False)
        else:
            self._move_line(holder, -amount)

    def receive(self, holder: str, amount: int, *, may_create: bool) -> None:
        if self.is_issuer(holder):
            return  # the issuer burns
        self._touch(holder)
        if holder.startswith("C"):
            self.contracts[holder] = (self.contract_balance(holder) or 0) + amount
        elif self.asset.is_native():
            self._move_xlm(holder, amount, may_create=may_create)
        else:
            self._move_line(holder, amount)

    # -- results -----------------------------------------------------------------------------

    def written(self) -> list[WrittenEntry]:
        """Every entry the invocation writes, in the order it touched them."""
        entries = []
        for holder in self.holders:
            if holder.startswith("C"):
                key = b.balance_key(self.token_id, holder)
                after = b.balance_entry_data(
                    self.token_id, holder, self.contract_balance(holder) or 0
                )
            elif self.asset.is_native():
                key = b.account_key(holder)
                after = self._account_data(holder)
            else:
                key = b.trustline_key(holder, self.asset)
                line = self.ledger.trustlines[(holder, self.sep11)]
                after = b.trustline_entry_data(
                    holder, self.asset, self.lines[holder], line.limit, line.authorized
                )
            entries.append(WrittenEntry(holder, key, after))
        return entries

    def _account_data(self, holder: str) -> x.LedgerEntryData:
        balance = self.accounts[holder]
        if holder in self.created:
            return b.account_entry_data(holder, balance, self.seq << 32)
        account = self.ledger.accounts[holder]
        return b.account_entry_data(holder, balance, account.seq, account.num_sub_entries)

    def commit(self) -> None:
        """Write every touched entry. A contract balance's TTL is extended as the SAC does
        (a new one lives the network's minimum)."""
        ledger, seq = self.ledger, self.seq
        ledger.before_write(
            *(account_key(a) for a in self.accounts),
            *(trustline_key(h, self.sep11) for h in self.lines),
            *(token_key(self.token_id, c) for c in self.contracts),
        )
        for holder, balance in self.accounts.items():
            if holder in self.created:
                # getStartingSequenceNumber, as the host's transfer_account_balance does.
                ledger.accounts[holder] = Account(holder, balance, seq << 32, seq)
                continue
            ledger.accounts[holder].balance = balance
            ledger.accounts[holder].last_modified = seq
        for holder, balance in self.lines.items():
            line = ledger.trustlines[(holder, self.sep11)]
            line.balance, line.last_modified = balance, seq
        for holder, amount in self.contracts.items():
            held = ledger.tokens.get((self.token_id, holder))
            if held is None:
                held = TokenBalance(amount, seq, created_live_until(seq))
                ledger.tokens[(self.token_id, holder)] = held
            held.amount, held.last_modified = amount, seq
            held.live_until = touched_live_until(held.live_until, seq)


def run_invocation(ledger: LedgerState, invocation: Invocation, seq: int) -> SacRun:
    """Apply every move of ``invocation`` to a scratch view (nothing is written); raises
    ContractError where the host would trap."""
    asset = ledger.registry.assets[invocation.token_id]
    run = SacRun(ledger, invocation.token_id, asset, seq)
    creates = asset.is_native() and invocation.is_sac_call and ledger.protocol.sac_creates_accounts
    for move in invocation.moves:
        if (
            not invocation.is_sac_call
            and move.to.startswith("G")
            and run.xlm_balance(move.to) is None
        ):
            # The payout contract's own rule, not the network's: it pays existing accounts.
            raise ContractError(
                f"Error(Storage, MissingValue): destination account {move.to} does not exist"
            )
        run.spend(move.from_, move.amount)
        run.receive(move.to, move.amount, may_create=creates)
    return run
