"""Running one InvokeHostFunction against the ledger, in stellar-core's order: the footprint's
archived entries (restored when marked, else the call fails), then the host: authorization,
the Stellar Asset Contract's balance rules (``sac.py``), the declared resources.

A host failure rolls back everything the invocation did (balances, consumed nonces, restores);
the caller has already charged the fee and consumed the sequence number, as stellar-core does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stellar_sdk import xdr as x
from stellar_sdk.address import Address
from stellar_sdk.operation import InvokeHostFunction

from . import xdr_build as b
from .archival import archived_indices
from .authority import address_credentials, check_address_entry, invocation_matches
from .contracts import ContractError, Invocation, TokenMove
from .ledger_state import ArchivedEntry, LedgerState
from .resources import entry_size, instructions_needed
from .sac import WrittenEntry, run_invocation

Result = x.InvokeHostFunctionResultCode


@dataclass
class Execution:
    error: str | None = None
    moves: list[TokenMove] = field(default_factory=list)
    # Why a failed call failed: TRAPPED, or RESOURCE_LIMIT_EXCEEDED when the host needed more
    # than declared, or ENTRY_ARCHIVED for an archived entry the transaction did not mark.
    failure: x.InvokeHostFunctionResultCode = Result.INVOKE_HOST_FUNCTION_TRAPPED
    restored: int = 0  # archived entries restored before the call (CAP-66)


def contract_call(op: InvokeHostFunction) -> x.InvokeContractArgs:
    fn = op.host_function
    if (
        fn.type != x.HostFunctionType.HOST_FUNCTION_TYPE_INVOKE_CONTRACT
        or fn.invoke_contract is None
    ):
        raise ContractError("only contract invocations are supported by the sandbox")
    return fn.invoke_contract


def archived_error(data: x.SorobanTransactionData, archived: list[ArchivedEntry]) -> str | None:
    """InvokeHostFunctionOpFrame ``handleArchivedEntry``: an archived entry may be used only if
    the read-write footprint holds it and ``archivedSorobanEntries`` marks its index."""
    marked = set(archived_indices(data))
    for entry in archived:
        if entry.read_write_index is None or entry.read_write_index not in marked:
            return "trying to access an archived contract data entry"
    return None


def execute(
    ledger: LedgerState,
    op: InvokeHostFunction,
    op_source: str,
    seq: int,
    data: x.SorobanTransactionData,
    *,
    fail_on_chain: bool,
) -> Execution:
    if fail_on_chain:
        return Execution(error="injected fault: fail_on_chain")
    resources = data.resources
    archived = ledger.archived_entries(resources.footprint, seq)
    refused = archived_error(data, archived)
    if refused is not None:
        return Execution(error=refused, failure=Result.INVOKE_HOST_FUNCTION_ENTRY_ARCHIVED)
    # A restore is a disk read of the whole entry, metered before the host runs
    # (meterDiskReadResource).
    read_bytes = sum(a.size for a in archived)
    if read_bytes > resources.disk_read_bytes.uint32:
        return Execution(
            error=f"disk read bytes {read_bytes} exceed the declared "
            f"{resources.disk_read_bytes.uint32}",
            failure=Result.INVOKE_HOST_FUNCTION_RESOURCE_LIMIT_EXCEEDED,
        )
    try:
        call = contract_call(op)
        invocation = ledger.registry.interpret(call)
        nonce = require_auth(ledger, invocation.from_, call, op.auth, op_source, seq)
        run = run_invocation(ledger, invocation, seq)
        written = run.written()
        exceeded = _beyond_declared(resources, invocation, written)
        if exceeded is not None:
            return Execution(
                error=exceeded, failure=Result.INVOKE_HOST_FUNCTION_RESOURCE_LIMIT_EXCEEDED
            )
        _within_footprint(resources.footprint, written, nonce, invocation.from_)
    except ContractError as exc:
        return Execution(error=str(exc))
    ledger.restore([a.key for a in archived], seq)
    run.commit()
    if nonce is not None:
        ledger.used_nonces.add((invocation.from_, nonce))
    return Execution(moves=list(invocation.moves), restored=len(archived))


def _beyond_declared(
    resources: x.SorobanResources, invocation: Invocation, written: list[WrittenEntry]
) -> str | None:
    """The host stops when it needs more than declared (InvokeHostFunctionOpFrame:
    INVOKE_HOST_FUNCTION_RESOURCE_LIMIT_EXCEEDED)."""
    needed = instructions_needed(len(invocation.moves))
    if needed > resources.instructions.uint32:
        return f"Error(Budget, ExceededLimit): {needed} instructions needed, declared less"
    write_bytes = sum(entry_size(w.after) for w in written)
    if write_bytes > resources.write_bytes.uint32:
        return f"write bytes {write_bytes} exceed the declared {resources.write_bytes.uint32}"
    return None


def _within_footprint(
    footprint: x.LedgerFootprint, written: list[WrittenEntry], nonce: int | None, from_: str
) -> None:
    """Writing a key the footprint does not declare read-write traps in the host."""
    declared = {k.to_xdr_bytes() for k in footprint.read_write}
    keys = [w.key for w in written]
    if nonce is not None:
        keys.append(b.nonce_key(from_, nonce))
    for key in keys:
        if key.to_xdr_bytes() not in declared:
            raise ContractError(
                "Error(Storage, ExceededLimit): trying to access a ledger entry outside of the "
                "read-write footprint"
            )


def require_auth(
    ledger: LedgerState,
    address: str,
    call: x.InvokeContractArgs,
    entries: list[x.SorobanAuthorizationEntry],
    op_source: str,
    seq: int,
) -> int | None:
    """``address.require_auth()`` for this exact call. Returns the nonce an address entry spends.

    Source-account credentials stand for the operation's source (covered by the transaction
    signature); any other address needs an address-credential entry it signed.
    """
    problems: list[str] = []
    source_credentials = x.SorobanCredentialsType.SOROBAN_CREDENTIALS_SOURCE_ACCOUNT
    for entry in entries:
        if not invocation_matches(entry, call):
            continue
        if entry.credentials.type == source_credentials:
            if address == op_source:
                return None
            continue
        creds = address_credentials(entry)
        if creds is None or Address.from_xdr_sc_address(creds.address).address != address:
            continue
        nonce = creds.nonce.int64
        if (address, nonce) in ledger.used_nonces:
            problems.append("nonce already used")
            continue
        reason = check_address_entry(entry, passphrase=ledger.passphrase, ledger_seq=seq)
        if reason is None:
            return nonce
        problems.append(reason)
    detail = "; ".join(problems) or "no matching authorization entry"
    raise ContractError(f"Error(Auth, InvalidAction): {address} did not authorize: {detail}")
