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

from stellar_sdk import FeeBumpTransactionEnvelope, TransactionEnvelope, scval
from stellar_sdk import xdr as x
from stellar_sdk.address import Address
from stellar_sdk.memo import NoneMemo
from stellar_sdk.operation import ExtendFootprintTTL, InvokeHostFunction, RestoreFootprint

from . import xdr_build as b
from .archival import with_archived
from .asset_events import asset_event
from .contracts import ContractError
from .execution import contract_call, require_auth
from .fees import non_refundable_fee, refundable_fee
from .ledger import InvalidEnvelope, Ledger
from .resources import entry_size, instructions_needed, limit_error
from .sac import WrittenEntry, run_invocation

# soroban-simulation's default adjustment (used by stellar-rpc's preflight,
# cmd/stellar-rpc/lib/preflight/src/shared.rs): the refundable fee gets a 15% margin, the
# instructions a 50,000 additive floor that resourceConfig.instructionLeeway can raise.
REFUNDABLE_FEE_MARGIN = 1.15
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
    upgraded_auth: bool = False,
) -> Simulation:
    """Raises SimulationRefused where stellar-rpc refuses before running the host.

    ``upgraded_auth``: stellar-rpc's ``useUpgradedAuth`` (v27.1.0, simulate_transaction.go):
    recording mode writes SOROBAN_CREDENTIALS_ADDRESS_V2 entries (CAP-71-02) instead of
    ADDRESS."""
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
    # Best effort: a host that cannot emit ADDRESS_V2 (before protocol 27) ignores the flag
    # (go-stellar-sdk protocols/rpc SimulateTransactionRequest.UseUpgradedAuth).
    upgraded_auth = upgraded_auth and ledger.protocol.address_v2_credentials
    latest = ledger.latest.seq
    source = op.source.account_id if op.source else tx.source.account_id
    try:
        call = contract_call(op)
        invocation = ledger.registry.interpret(call)
        if mode == "enforce":
            require_auth(ledger, invocation.from_, call, op.auth, source, latest + 1)
        run = run_invocation(ledger, invocation, latest + 1)
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
        nonce = None if invocation.from_ == source else _nonce(envelope_xdr, latest)
        entries = [_auth_entry(call, invocation.from_, nonce, upgraded=upgraded_auth)]
    written = run.written()
    read_write = [w.key for w in written]
    if nonce is not None:
        read_write.append(b.nonce_key(invocation.from_, nonce))
    read_only = [b.instance_key(invocation.contract_id)]
    if invocation.token_id != invocation.contract_id:
        read_only.append(b.instance_key(invocation.token_id))
    # Archived entries the call reads are restored by it (CAP-66): soroban-simulation marks
    # their read-write indices and declares their disk reads and rent (e2e_invoke.rs
    # ``restored_rw_entry_indices``, resources.rs).
    footprint = x.LedgerFootprint(read_only=read_only, read_write=read_write)
    archived = ledger.archived_entries(footprint, latest + 1)
    restored = [a.read_write_index for a in archived if a.read_write_index is not None]
    transfers = [asset_event(m) for m in invocation.moves]
    refundable = math.ceil(refundable_fee(len(transfers), len(restored)) * REFUNDABLE_FEE_MARGIN)
    fee = non_refundable_fee(len(read_write), len(restored)) + refundable
    data = b.soroban_data(
        read_only=read_only,
        read_write=read_write,
        resource_fee=fee,
        instructions=instructions_needed(len(invocation.moves))
        + max(INSTRUCTIONS_ADDITIVE, instruction_leeway),
        write_bytes=sum(entry_size(w.after) for w in written),
        disk_read_bytes=sum(a.size for a in archived),
    )
    data = with_archived(data, restored)
    exceeded = limit_error(
        data.resources, _assembled_size(envelope, data, entries), ledger.tx_limits, len(restored)
    )
    if exceeded is not None:
        # The transaction could never be accepted (stellar-core checkSorobanResources); the
        # answer names the limit as stellar-core's diagnostic event does.
        return Simulation(
            latest_ledger=latest,
            error=f"HostError: Error(Budget, ExceededLimit): {exceeded}",
            events=[_fn_call_event(op).to_xdr()],
        )
    events = [
        _fn_call_event(op),
        *(x.DiagnosticEvent(in_successful_contract_call=True, event=t) for t in transfers),
        _fn_return_event(call),
    ]
    return Simulation(
        latest_ledger=latest,
        transaction_data=data.to_xdr(),
        min_resource_fee=fee,
        auth=[e.to_xdr() for e in entries],
        result_xdr=scval.to_void().to_xdr(),  # SAC transfer and the payout methods return ()
        events=[e.to_xdr() for e in events],
        state_changes=_state_changes(ledger, written, invocation.from_, nonce),
    )


def _assembled_size(
    envelope: TransactionEnvelope,
    data: x.SorobanTransactionData,
    entries: list[x.SorobanAuthorizationEntry],
) -> int:
    """The envelope's size once assembled: the simulated transaction data and auth entries in
    place of what it carried, plus one decorated signature (72 bytes) for its source."""
    tx = envelope.to_xdr_object()
    assert tx.v1 is not None
    size = len(tx.to_xdr_bytes())
    if envelope.transaction.soroban_data is None:
        size += len(data.to_xdr_bytes())
    op = tx.v1.tx.operations[0].body.invoke_host_function_op
    carried = sum(len(e.to_xdr_bytes()) for e in op.auth) if op is not None else 0
    size += sum(len(e.to_xdr_bytes()) for e in entries) - carried
    return size + 72 * max(0, 1 - len(tx.v1.signatures))


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
    call: x.InvokeContractArgs, from_: str, nonce: int | None, *, upgraded: bool
) -> x.SorobanAuthorizationEntry:
    """Recording-mode auth: source-account credentials when ``from`` is the operation source,
    otherwise unsigned address credentials (signature void, expiration 0) for the signer to
    fill: ADDRESS, or ADDRESS_V2 when the request asked for upgraded auth."""
    if nonce is None:
        creds = x.SorobanCredentials(x.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT)
    else:
        address = x.SorobanAddressCredentials(
            address=Address(from_).to_xdr_sc_address(),
            nonce=x.Int64(nonce),
            signature_expiration_ledger=x.Uint32(0),
            signature=scval.to_void(),
        )
        if upgraded:
            creds = x.SorobanCredentials(
                x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2, address_v2=address
            )
        else:
            creds = x.SorobanCredentials(
                x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS, address=address
            )
    invocation = x.SorobanAuthorizedInvocation(
        function=x.SorobanAuthorizedFunction(
            x.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN,
            contract_fn=call,
        ),
        sub_invocations=[],
    )
    return x.SorobanAuthorizationEntry(credentials=creds, root_invocation=invocation)


def _state_changes(
    ledger: Ledger, written: list[WrittenEntry], from_: str, nonce: int | None
) -> list[dict[str, Any]]:
    """stellar-rpc LedgerEntryChange: {type, key, before, after}, LedgerEntry XDR."""
    changes: list[dict[str, Any]] = []
    next_seq = ledger.latest.seq + 1
    for entry in written:
        found = ledger.ledger_entry(entry.key)
        changes.append(
            {
                "type": "updated" if found else "created",
                "key": entry.key.to_xdr(),
                "before": _entry(found.data, found.last_modified) if found else None,
                "after": _entry(entry.after, next_seq),
            }
        )
    if nonce is not None:
        key = b.nonce_key(from_, nonce)
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

