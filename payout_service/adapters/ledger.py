"""Ledger gateway: wraps Stellar RPC and turns its answers into a few domain outcomes.

The pipeline never parses JSON-RPC or result XDR itself; it sees Accepted, RetryLater,
Rejected(code), Duplicate, Included(...), NotFound(...). stellar-sdk's SorobanServerAsync
is the only client, so the same code runs against testnet, mainnet or the local sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from stellar_sdk import Asset, StrKey
from stellar_sdk import xdr as stellar_xdr
from stellar_sdk.client.aiohttp_client import AiohttpClient
from stellar_sdk.exceptions import (
    BaseRequestError,
    PrepareTransactionException,
    SorobanRpcErrorResponse,
)
from stellar_sdk.soroban_rpc import (
    GetTransactionResponse,
    GetTransactionStatus,
    SendTransactionStatus,
)
from stellar_sdk.soroban_server_async import SorobanServerAsync
from stellar_sdk.transaction_envelope import TransactionEnvelope
from stellar_sdk.xdr import (
    AccountID,
    LedgerEntryData,
    LedgerEntryType,
    LedgerHeader,
    LedgerKey,
    LedgerKeyAccount,
    PublicKey,
    PublicKeyType,
    TransactionResult,
    Uint256,
)

from payout_service.core.errors import FailedPrecondition, Unavailable
from payout_service.core.funds import NATIVE, native_spendable, trustline_spendable
from payout_service.core.proofs import AccountState
from payout_service.core.proofs import NotFound as NotFound  # one of the lookup outcomes

# stellar-rpc getLedgerEntries accepts at most 200 keys per request.
MAX_LEDGER_KEYS = 200
DEFAULT_BASE_RESERVE = 5_000_000  # 0.5 XLM, the pubnet and testnet base reserve


class LedgerUnavailable(Unavailable):
    """RPC unreachable, timing out or answering 5xx: retry later, nothing is known."""

    dependency = "Stellar RPC"


class SimulationFailed(FailedPrecondition):
    """The contract call would fail (bad contract, function, arguments or balance)."""

    kind, subject = "SIMULATION", "transaction"

    @property
    def description(self) -> str:
        return f"simulation failed: {self}"


class SourceAccountMissing(FailedPrecondition):
    kind, subject = "SOURCE_ACCOUNT", "PAYOUT_SOURCE_ACCOUNT"

    @property
    def description(self) -> str:
        return "the payout source account does not exist"


@dataclass(frozen=True)
class Accepted:
    latest_ledger: int


@dataclass(frozen=True)
class Duplicate:
    latest_ledger: int


@dataclass(frozen=True)
class RetryLater:
    reason: str


@dataclass(frozen=True)
class Rejected:
    code: str  # e.g. "txBAD_SEQ", "txBAD_AUTH", "txINSUFFICIENT_FEE"


SendOutcome = Accepted | Duplicate | RetryLater | Rejected


@dataclass(frozen=True)
class Included:
    successful: bool
    ledger: int
    result_code: str
    fee_charged: int
    # Each operation's own result code, in order (a batch blames its payouts by these).
    op_codes: tuple[str, ...] = ()
    # The transaction as the chain recorded it, and its meta (events): what a payee sees.
    envelope_xdr: str = ""
    meta_xdr: str = ""
    # The ledger's close time (getTransaction's createdAt, unix seconds) and the
    # transaction's 1-based position in it (applicationOrder): part of a proof of payment.
    close_time: int = 0
    application_order: int = 0


LookupOutcome = Included | NotFound


@dataclass(frozen=True)
class LedgerInfo:
    sequence: int
    close_time: int
    # The ledger header's maxTxSetSize: classic operations per ledger (stellar-core's
    # surge-pricing limit of the classic phase); None when the RPC did not say.
    max_tx_set_size: int | None = None


def _header(header_xdr: str | None) -> LedgerHeader | None:
    """A base64 LedgerHeader (getLatestLedger's headerXdr), or None when absent or unusable."""
    if not header_xdr:
        return None
    try:
        return LedgerHeader.from_xdr(header_xdr)
    except Exception:  # noqa: BLE001 - an RPC that sends no usable header: fall back
        return None


def header_max_tx_set_size(header_xdr: str | None) -> int | None:
    """maxTxSetSize of getLatestLedger's header, or None."""
    header = _header(header_xdr)
    return int(header.max_tx_set_size.uint32) if header is not None else None


def header_base_reserve(header_xdr: str | None) -> int:
    """baseReserve of getLatestLedger's header, or the pubnet/testnet value when absent."""
    header = _header(header_xdr)
    return int(header.base_reserve.uint32) if header is not None else DEFAULT_BASE_RESERVE


def _account_key(account_id: str) -> LedgerKey:
    return LedgerKey(LedgerEntryType.ACCOUNT,
                     account=LedgerKeyAccount(AccountID.from_json_dict(account_id)))


def _native_spendable(account: stellar_xdr.AccountEntry, reserve: int) -> int:
    v1 = account.ext.v1
    v2 = v1.ext.v2 if v1 is not None else None
    return native_spendable(
        account.balance.int64, base_reserve=reserve, subentries=account.num_sub_entries.uint32,
        selling_liabilities=v1.liabilities.selling.int64 if v1 is not None else 0,
        sponsoring=v2.num_sponsoring.uint32 if v2 is not None else 0,
        sponsored=v2.num_sponsored.uint32 if v2 is not None else 0)


def result_code(result_xdr: str) -> tuple[str, int]:
    """TransactionResult XDR -> ('txBAD_SEQ', fee_charged).

    For an included Soroban transaction feeCharged is already net of the refunded part of
    the resource fee (stellar-core MutableTransactionResult::finalizeFeeRefund; the CAP-67 fee
    events show the charge and the refund), so it is what the source account paid."""
    result = TransactionResult.from_xdr(result_xdr)
    return result.result.code.name, result.fee_charged.int64


def operation_codes(result_xdr: str) -> tuple[str, ...]:
    """Each operation's result code name: PAYMENT_NO_TRUST, CREATE_ACCOUNT_SUCCESS, … or the
    operation-level code (opNO_ACCOUNT, opBAD_AUTH) when the operation never ran."""
    result = TransactionResult.from_xdr(result_xdr).result
    codes = []
    for op in result.results or []:
        tr = op.tr
        if tr is None:
            codes.append(op.code.name)
        elif tr.payment_result is not None:
            codes.append(tr.payment_result.code.name)
        elif tr.create_account_result is not None:
            codes.append(tr.create_account_result.code.name)
        elif tr.invoke_host_function_result is not None:
            codes.append(tr.invoke_host_function_result.code.name)
        else:
            codes.append(tr.type.name)
    return tuple(codes)


class LedgerGateway:
    def __init__(self, rpc_url: str, *, timeout_seconds: float = 10.0) -> None:
        self._server = SorobanServerAsync(
            rpc_url, client=AiohttpClient(request_timeout=timeout_seconds)
        )
        self._timeout = timeout_seconds

    async def close(self) -> None:
        await self._server.close()

    async def account_sequence(self, account_id: str) -> int:
        """The account's current sequence number (the next transaction uses this + 1)."""
        state = await self.account_state(account_id)
        if state.sequence is None:
            raise SourceAccountMissing(account_id)
        return state.sequence

    async def account_state(self, account_id: str) -> AccountState:
        """The account's sequence number (None: no such account) and the ledger that answer
        reflects: one getLedgerEntries call, so the two belong together (a proof of death
        compares that ledger with a getTransaction's, core/proofs.py)."""
        key = LedgerKey(LedgerEntryType.ACCOUNT, account=LedgerKeyAccount(
            AccountID.from_json_dict(account_id)))
        try:
            response = await asyncio.wait_for(self._server.get_ledger_entries([key]),
                                              self._timeout)
        except (BaseRequestError, SorobanRpcErrorResponse, TimeoutError, OSError) as err:
            raise LedgerUnavailable(type(err).__name__) from None
        for entry in response.entries or []:
            data = LedgerEntryData.from_xdr(entry.xdr)
            if data.account is not None:
                return AccountState(data.account.seq_num.sequence_number.int64,
                                    response.latest_ledger)
        return AccountState(None, response.latest_ledger)

    async def account_balances(self, account_ids: list[str]) -> dict[str, int | None]:
        """Native balances in stroops (None: no such account), read with getLedgerEntries
        in pages of MAX_LEDGER_KEYS (stellar-rpc's limit per call)."""
        found: dict[str, int | None] = dict.fromkeys(account_ids)
        for start in range(0, len(account_ids), MAX_LEDGER_KEYS):
            keys = [
                stellar_xdr.LedgerKey(
                    stellar_xdr.LedgerEntryType.ACCOUNT,
                    account=stellar_xdr.LedgerKeyAccount(stellar_xdr.AccountID.from_json_dict(a)),
                )
                for a in account_ids[start:start + MAX_LEDGER_KEYS]
            ]
            try:
                response = await asyncio.wait_for(
                    self._server.get_ledger_entries(keys), self._timeout
                )
            except (BaseRequestError, SorobanRpcErrorResponse, TimeoutError, OSError) as err:
                raise LedgerUnavailable(type(err).__name__) from None
            for entry in response.entries or []:
                data = stellar_xdr.LedgerEntryData.from_xdr(entry.xdr)
                if data.account is not None:
                    account = data.account
                    found[account.account_id.to_json_dict()] = account.balance.int64
        return found

    async def payer_funds(self, account_id: str, assets: Sequence[str]) -> dict[str, int | None]:
        """What `account_id` can send of each asset ('XLM' or 'CODE:ISSUER'), in stroops:
        XLM less the minimum balance and selling liabilities, a trustline's balance less its
        selling liabilities, 0 without a trustline, None for an asset the account issues (it
        mints). One getLedgerEntries call for the account and its trustlines, and the base
        reserve from getLatestLedger's header (the network default when the RPC sends none)."""
        wanted = list(dict.fromkeys(a for a in assets if a != NATIVE))[:MAX_LEDGER_KEYS - 1]
        found: dict[str, int | None] = {NATIVE: 0}
        keys = [_account_key(account_id)]
        lines: dict[str, str] = {}
        for asset in wanted:
            code, _, issuer = asset.partition(":")
            if issuer == account_id:
                found[asset] = None
                continue
            found[asset] = 0
            key = stellar_xdr.LedgerKey(
                LedgerEntryType.TRUSTLINE, trust_line=stellar_xdr.LedgerKeyTrustLine(
                    AccountID.from_json_dict(account_id),
                    Asset(code, issuer).to_trust_line_asset_xdr_object()))
            keys.append(key)
            lines[key.to_xdr()] = asset
        try:
            latest = await asyncio.wait_for(self._server.get_latest_ledger(), self._timeout)
            response = await asyncio.wait_for(self._server.get_ledger_entries(keys),
                                              self._timeout)
        except (BaseRequestError, SorobanRpcErrorResponse, TimeoutError, OSError) as err:
            raise LedgerUnavailable(type(err).__name__) from None
        reserve = header_base_reserve(getattr(latest, "header_xdr", None))
        seen_account = False
        for entry in response.entries or []:
            data = LedgerEntryData.from_xdr(entry.xdr)
            if data.account is not None:
                seen_account = True
                found[NATIVE] = _native_spendable(data.account, reserve)
            elif data.trust_line is not None and entry.key in lines:
                line = data.trust_line
                v1 = line.ext.v1
                found[lines[entry.key]] = trustline_spendable(
                    line.balance.int64,
                    selling_liabilities=v1.liabilities.selling.int64 if v1 else 0)
        if not seen_account:
            raise SourceAccountMissing(account_id)
        return found

    async def latest_ledger(self) -> LedgerInfo:
        try:
            latest = await asyncio.wait_for(self._server.get_latest_ledger(), self._timeout)
        except (BaseRequestError, TimeoutError, OSError) as err:
            raise LedgerUnavailable(type(err).__name__) from None
        close_time = int(getattr(latest, "close_time", 0) or 0)
        return LedgerInfo(sequence=latest.sequence, close_time=close_time,
                          max_tx_set_size=header_max_tx_set_size(
                              getattr(latest, "header_xdr", None)))

    async def inclusion_fee_p90(self, lane: str = "soroban") -> int | None:
        """The network's recent p90 inclusion fee in a lane ("soroban", or "classic": per
        operation, surge priced on its own); None when the RPC cannot say (the bid then
        falls back to the protocol minimum)."""
        try:
            stats = await asyncio.wait_for(self._server.get_fee_stats(), self._timeout)
            fees = stats.inclusion_fee if lane == "classic" else stats.soroban_inclusion_fee
            return int(fees.p90)
        except (BaseRequestError, SorobanRpcErrorResponse, TimeoutError, OSError, ValueError):
            return None

    async def prepare(self, envelope: TransactionEnvelope) -> TransactionEnvelope:
        """Simulate and assemble: footprint, auth and resource fee set from simulation."""
        try:
            return await asyncio.wait_for(self._server.prepare_transaction(envelope), self._timeout)
        except PrepareTransactionException as err:
            detail = err.simulate_transaction_response.error or "simulation failed"
            raise SimulationFailed(detail[:500]) from None
        except SorobanRpcErrorResponse as err:
            raise SimulationFailed(f"rpc error {err.code}: {err.message}"[:500]) from None
        except (BaseRequestError, TimeoutError, OSError) as err:
            raise LedgerUnavailable(type(err).__name__) from None

    async def send(self, envelope_xdr: str) -> SendOutcome:
        # The stored XDR as is: decoding a 100-operation envelope only to encode it again
        # was a quarter of a batch worker's CPU (the confirmer re-sends while it waits).
        try:
            response = await asyncio.wait_for(
                self._server.send_transaction(envelope_xdr), self._timeout
            )
        except (BaseRequestError, TimeoutError, OSError) as err:
            return RetryLater(type(err).__name__)
        if response.status == SendTransactionStatus.PENDING:
            return Accepted(response.latest_ledger)
        if response.status == SendTransactionStatus.DUPLICATE:
            return Duplicate(response.latest_ledger)
        if response.status == SendTransactionStatus.TRY_AGAIN_LATER:
            return RetryLater("TRY_AGAIN_LATER")
        code = "txUNKNOWN"
        if response.error_result_xdr:
            code, _ = result_code(response.error_result_xdr)
            if code == "txFAILED":
                # Refused at submission with an operation at fault: stellar-core checks each
                # operation source's signatures there (opBAD_AUTH) and its existence
                # (opNO_ACCOUNT); the operation's code says why.
                code = next((c for c in operation_codes(response.error_result_xdr)
                             if c.startswith("op") and c != "opINNER"), code)
        return Rejected(code)

    async def _get_transaction(self, tx_hash: str) -> GetTransactionResponse:
        try:
            return await asyncio.wait_for(self._server.get_transaction(tx_hash), self._timeout)
        except (BaseRequestError, TimeoutError, OSError) as err:
            raise LedgerUnavailable(type(err).__name__) from None

    async def lookup(self, tx_hash: str) -> LookupOutcome:
        response = await self._get_transaction(tx_hash)
        if response.status == GetTransactionStatus.NOT_FOUND:
            return NotFound(
                latest_ledger=response.latest_ledger,
                latest_ledger_close_time=int(response.latest_ledger_close_time),
                oldest_ledger=response.oldest_ledger,
            )
        code, fee = result_code(response.result_xdr) if response.result_xdr else ("txUNKNOWN", 0)
        return Included(
            successful=response.status == GetTransactionStatus.SUCCESS,
            ledger=response.ledger or 0,
            result_code=code,
            fee_charged=fee,
            op_codes=operation_codes(response.result_xdr) if response.result_xdr else (),
            envelope_xdr=response.envelope_xdr or "", meta_xdr=response.result_meta_xdr or "",
            close_time=int(response.create_at or 0),
            application_order=int(response.application_order or 0),
        )

    async def included_envelope(self, tx_hash: str) -> str | None:
        """The envelope XDR of an included transaction as the chain recorded it (signatures
        and all), or None if it is not found."""
        response = await self._get_transaction(tx_hash)
        if response.status == GetTransactionStatus.NOT_FOUND:
            return None
        envelope: str | None = response.envelope_xdr
        return envelope

    async def existing_accounts(self, accounts: Sequence[str]) -> set[str]:
        """Which of these G… accounts exist: one getLedgerEntries call for the whole batch."""
        unique = list(dict.fromkeys(accounts))
        if not unique:
            return set()
        keys = [LedgerKey(LedgerEntryType.ACCOUNT, account=LedgerKeyAccount(AccountID(PublicKey(
            PublicKeyType.PUBLIC_KEY_TYPE_ED25519,
            ed25519=Uint256(StrKey.decode_ed25519_public_key(a)))))) for a in unique]
        try:
            response = await asyncio.wait_for(self._server.get_ledger_entries(keys),
                                              self._timeout)
        except (BaseRequestError, SorobanRpcErrorResponse, TimeoutError, OSError) as err:
            raise LedgerUnavailable(type(err).__name__) from None
        found = set()
        for entry in response.entries or []:
            data = LedgerEntryData.from_xdr(entry.xdr)
            key = data.account.account_id.account_id.ed25519 if data.account else None
            if key is not None:
                found.add(StrKey.encode_ed25519_public_key(key.uint256))
        return found
