"""simulateTransaction: a dry run that reports footprint, resource fee, auth, events and state.

Every refusal is answered the way stellar-rpc does (cmd/stellar-rpc/internal/methods/
simulate_transaction.go): a result with an ``error`` string, never a JSON-RPC error, including
undecodable XDR, a memo and a bad ``authMode``. The resource fee is a fixed, documented
schedule, not a metered cost: deterministic numbers are what tests need.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from stellar_sdk import FeeBumpTransactionEnvelope, scval
from stellar_sdk import xdr as x
from stellar_sdk.address import Address
from stellar_sdk.memo import NoneMemo
from stellar_sdk.operation import ExtendFootprintTTL, InvokeHostFunction, RestoreFootprint

from . import xdr_build as b
from .contracts import ContractError, TokenMove
from .execution import check_move, contract_call, require_auth
from .fees import EVENT_FEE, non_refundable_fee
from .ledger import InvalidEnvelope, Ledger

# soroban-simulation's default adjustment (used by stellar-rpc's preflight,
# cmd/stellar-rpc/lib/preflight/src/shared.rs): the refundable fee gets a 15% margin, the
# instructions a 50,000 additive floor that resourceConfig.instructionLeeway can raise.
REFUNDABLE_FEE_MARGIN = 1.15
BASE_INSTRUCTIONS = 3_000_000
INSTRUCTIONS_ADDITIVE = 50_000
MAX_INSTRUCTION_LEEWAY = 2**32 - 1  # u32::try_from(instruction_leeway) in preflight

AUTH_MODES = ("enforce", "record", "record_allow_nonroot")


class SimulationRefused(ValueError):
    """stellar-rpc answers ``{"error": message, "latestLedger": n}`` for this input."""


@dataclass(frozen=True)
class Simulation:
    latest_ledger: int
    error: str | None = None
    transaction_data: str | None = None
    min_resource_fee: int | None = None
    auth: list[str] = field(default_factory=list)
    result_xdr: str | None = None
    events: list[str] = field(default_factory=list)
    state_changes: list[dict[str, Any]] = field(default_factory=list)


def simulate(
    ledger: Ledger,
    envelope_xdr: str,
    *,
    auth_mode: str = "",
    instruction_leeway: int = 0,
) -> Simulation:
    """Raises SimulationRefused where stellar-rpc refuses before running the host."""
    try:
        envelope = ledger.parse(envelope_xdr)
    except InvalidEnvelope:
        raise SimulationRefused("Could not unmarshal transaction") from None
    if isinstance(envelope, FeeBumpTransactionEnvelope):
        raise SimulationRefused(
            "fee bump transactions are not modelled by soroban-sandbox (a test harness)"
        )
    tx = envelope.transaction
    if len(tx.operations) != 1:
        raise SimulationRefused("Transaction contains more than one operation")
    if not isinstance(tx.memo, NoneMemo):
        raise SimulationRefused(
            "Transaction contains a memo. Soroban transactions do not support memos."
        )
    op = tx.operations[0]
    if isinstance(op, ExtendFootprintTTL | RestoreFootprint):
        if tx.soroban_data is None:
            raise SimulationRefused(
                "To perform a SimulateTransaction for ExtendFootprintTtl or RestoreFootprint "
                "operations, SorobanTransactionData must be provided"
            )
        raise SimulationRefused(
            "ExtendFootprintTtl and RestoreFootprint are not modelled by soroban-sandbox"
        )
    if not isinstance(op, InvokeHostFunction):
        name = f"OperationType{type(op).__name__}"  # Go's xdr.OperationType String()
        raise SimulationRefused(f"Transaction contains unsupported operation type: {name}")
    mode = _auth_mode(auth_mode, has_auth=bool(op.auth))
    latest = ledger.latest.seq
    source = op.source.account_id if op.source else tx.source.account_id
    try:
        call = contract_call(op)
        move = ledger.registry.interpret(call)
        if mode == "enforce":
            require_auth(ledger, move.from_, call, op.auth, source, latest + 1)
        check_move(ledger, move)
    except ContractError as exc:
        return Simulation(
            latest_ledger=latest,
            error=f"HostError: {exc}",
            events=[_fn_call_event(op).to_xdr()],
        )
    if mode == "enforce":
        nonce = None
        entries = list(op.auth)
    else:
        nonce = None if move.from_ == source else _nonce(envelope_xdr, latest)
        entries = [_auth_entry(call, move.from_, nonce)]
    read_write = _written_keys(ledger, move)
    if nonce is not None:
        read_write.append(b.nonce_key(move.from_, nonce))
    read_only = [b.instance_key(move.contract_id)]
    if move.token_id != move.contract_id:
        read_only.append(b.instance_key(move.token_id))
    transfer = b.transfer_event(move.token_id, move.from_, move.to, move.amount, move.asset)
    refundable = math.ceil(EVENT_FEE * 1 * REFUNDABLE_FEE_MARGIN)
    fee = non_refundable_fee(len(read_write)) + refundable
    data = b.soroban_data(read_only=read_only, read_write=read_write, resource_fee=fee)
    data.resources.instructions = x.Uint32(
        BASE_INSTRUCTIONS + max(INSTRUCTIONS_ADDITIVE, instruction_leeway)
    )
    events = [
        _fn_call_event(op),
        x.DiagnosticEvent(in_successful_contract_call=True, event=transfer),
        _fn_return_event(call),
    ]
    return Simulation(
        latest_ledger=latest,
        transaction_data=data.to_xdr(),
        min_resource_fee=fee,
        auth=[e.to_xdr() for e in entries],
        result_xdr=scval.to_void().to_xdr(),  # SAC transfer returns ()
        events=[e.to_xdr() for e in events],
        state_changes=_state_changes(ledger, move, nonce),
    )


def _auth_mode(requested: str, *, has_auth: bool) -> str:
    """stellar-rpc validateAuthMode: enforce when the operation carries auth, else record."""
    if requested not in ("", *AUTH_MODES):
        raise SimulationRefused(
            "optional 'authMode' must be one of " + ",".join(AUTH_MODES) + " when included"
        )
    if requested == "":
        return "enforce" if has_auth else "record"
    if has_auth and requested in ("record", "record_allow_nonroot"):
        raise SimulationRefused(f"cannot set authMode to '{requested}' with an auth footprint")
    return requested


def _nonce(envelope_xdr: str, latest: int) -> int:
    """A fresh nonce per simulation, derived (not random) so runs replay exactly."""
    digest = hashlib.sha256(f"{envelope_xdr}|{latest}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _auth_entry(
    call: x.InvokeContractArgs, from_: str, nonce: int | None
) -> x.SorobanAuthorizationEntry:
    """Recording-mode auth: source-account credentials when ``from`` is the operation source,
    otherwise unsigned address credentials (signature void, expiration 0) for the signer to fill."""
    if nonce is None:
        creds = x.SorobanCredentials(x.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT)
    else:
        creds = x.SorobanCredentials(
            x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS,
            address=x.SorobanAddressCredentials(
                address=Address(from_).to_xdr_sc_address(),
                nonce=x.Int64(nonce),
                signature_expiration_ledger=x.Uint32(0),
                signature=scval.to_void(),
            ),
        )
    invocation = x.SorobanAuthorizedInvocation(
        function=x.SorobanAuthorizedFunction(
            x.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
            contract_fn=call,
        ),
        sub_invocations=[],
    )
    return x.SorobanAuthorizationEntry(credentials=creds, root_invocation=invocation)


def _holders(ledger: Ledger, move: TokenMove) -> list[str]:
    asset = ledger.registry.assets[move.token_id]
    return [
        h
        for h in dict.fromkeys((move.from_, move.to))
        if asset.is_native() or h != asset.issuer
    ]


def _written_keys(ledger: Ledger, move: TokenMove) -> list[x.LedgerKey]:
    """Native XLM of G accounts lives in account entries; everything else in SAC storage."""
    asset = ledger.registry.assets[move.token_id]
    return [
        b.account_key(h)
        if asset.is_native() and h.startswith("G")
        else b.balance_key(move.token_id, h)
        for h in _holders(ledger, move)
    ]


def _state_changes(ledger: Ledger, move: TokenMove, nonce: int | None) -> list[dict[str, Any]]:
    """stellar-rpc LedgerEntryChange: {type, key, before, after}, LedgerEntry XDR."""
    changes: list[dict[str, Any]] = []
    deltas = {move.from_: -move.amount}
    deltas[move.to] = deltas.get(move.to, 0) + move.amount
    next_seq = ledger.latest.seq + 1
    for holder, key in zip(_holders(ledger, move), _written_keys(ledger, move), strict=True):
        found = ledger.ledger_entry(key)
        if key.type == x.LedgerEntryType.ACCOUNT:
            account = ledger.accounts[holder]  # check_move refused missing accounts
            after = b.account_entry_data(holder, account.balance + deltas[holder], account.seq)
        else:
            held = ledger.token_balance(move.token_id, holder)
            after = b.balance_entry_data(move.token_id, holder, held + deltas[holder])
        changes.append(
            {
                "type": "updated" if found else "created",
                "key": key.to_xdr(),
                "before": _entry(*found) if found else None,
                "after": _entry(after, next_seq),
            }
        )
    if nonce is not None:
        key = b.nonce_key(move.from_, nonce)
        assert key.contract_data is not None
        nonce_data = x.LedgerEntryData(
            x.LedgerEntryType.CONTRACT_DATA,
            contract_data=x.ContractDataEntry(
                ext=x.ExtensionPoint(0),
                contract=key.contract_data.contract,
                key=key.contract_data.key,
                durability=x.ContractDataDurability.TEMPORARY,
                val=x.SCVal(x.SCValType.SCV_VOID),
            ),
        )
        changes.append(
            {
                "type": "created",
                "key": key.to_xdr(),
                "before": None,
                "after": _entry(nonce_data, next_seq),
            }
        )
    return changes


def _entry(data: x.LedgerEntryData, last_modified: int) -> str:
    return x.LedgerEntry(
        last_modified_ledger_seq=x.Uint32(last_modified), data=data, ext=x.LedgerEntryExt(0)
    ).to_xdr()


def _diagnostic(topics: list[x.SCVal], data: x.SCVal, contract: str | None) -> x.DiagnosticEvent:
    event = x.ContractEvent(
        ext=x.ExtensionPoint(0),
        contract_id=x.ContractID(x.Hash(Address(contract).key)) if contract else None,
        type=x.ContractEventType.DIAGNOSTIC,
        body=x.ContractEventBody(0, v0=x.ContractEventV0(topics=topics, data=data)),
    )
    return x.DiagnosticEvent(in_successful_contract_call=True, event=event)


def _fn_call_event(op: InvokeHostFunction) -> x.DiagnosticEvent:
    """The host's ``fn_call`` diagnostic event: [fn_call, Bytes(contract), Symbol(fn)], args."""
    call = op.host_function.invoke_contract
    if call is None:
        return _diagnostic([scval.to_symbol("fn_call")], scval.to_void(), None)
    contract = Address.from_xdr_sc_address(call.contract_address).address
    name = scval.to_symbol(call.function_name.sc_symbol.decode())
    topics = [scval.to_symbol("fn_call"), scval.to_bytes(Address(contract).key), name]
    return _diagnostic(topics, scval.to_vec(list(call.args)), None)


def _fn_return_event(call: x.InvokeContractArgs) -> x.DiagnosticEvent:
    contract = Address.from_xdr_sc_address(call.contract_address).address
    topics = [scval.to_symbol("fn_return"), scval.to_symbol(call.function_name.sc_symbol.decode())]
    return _diagnostic(topics, scval.to_void(), contract)

