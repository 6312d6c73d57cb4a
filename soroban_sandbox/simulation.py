"""simulateTransaction: a dry run that reports footprint, resource fee and required auth.

Host failures (unknown contract, bad arguments, insufficient balance) are reported the way
stellar-rpc does: a result with an ``error`` string, not a JSON-RPC error. The resource fee is a
fixed, documented schedule, not a metered cost: deterministic numbers are what tests need.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from stellar_sdk import FeeBumpTransactionEnvelope, scval
from stellar_sdk import xdr as x
from stellar_sdk.address import Address
from stellar_sdk.operation import InvokeHostFunction

from . import xdr_build as b
from .contracts import ContractError, TokenMove
from .execution import check_move, contract_call
from .ledger import InvalidEnvelope, Ledger

BASE_RESOURCE_FEE = 20_000  # stroops per invocation
WRITE_ENTRY_FEE = 5_000  # stroops per read-write footprint entry


@dataclass(frozen=True)
class Simulation:
    latest_ledger: int
    error: str | None = None
    transaction_data: str | None = None
    min_resource_fee: int | None = None
    auth: list[str] = field(default_factory=list)
    result_xdr: str | None = None


def simulate(ledger: Ledger, envelope_xdr: str) -> Simulation:
    """Raises InvalidEnvelope for transactions stellar-rpc refuses to simulate at all."""
    envelope = ledger.parse(envelope_xdr)
    if isinstance(envelope, FeeBumpTransactionEnvelope):
        raise InvalidEnvelope("fee bump transactions cannot be simulated")
    ops = envelope.transaction.operations
    if len(ops) != 1 or not isinstance(ops[0], InvokeHostFunction):
        raise InvalidEnvelope("transaction must contain exactly one InvokeHostFunction operation")
    op = ops[0]
    latest = ledger.latest.seq
    source = op.source.account_id if op.source else envelope.transaction.source.account_id
    try:
        call = contract_call(op)
        move = ledger.registry.interpret(call)
        check_move(ledger, move)
    except ContractError as exc:
        return Simulation(latest_ledger=latest, error=f"HostError: {exc}")
    nonce = None if move.from_ == source else _nonce(envelope_xdr, latest)
    entry = _auth_entry(call, move.from_, nonce)
    read_write = _written_keys(ledger, move)
    if nonce is not None:
        read_write.append(b.nonce_key(move.from_, nonce))
    read_only = [b.instance_key(move.contract_id)]
    if move.token_id != move.contract_id:
        read_only.append(b.instance_key(move.token_id))
    fee = BASE_RESOURCE_FEE + WRITE_ENTRY_FEE * len(read_write)
    data = b.soroban_data(read_only=read_only, read_write=read_write, resource_fee=fee)
    return Simulation(
        latest_ledger=latest,
        transaction_data=data.to_xdr(),
        min_resource_fee=fee,
        auth=[entry.to_xdr()],
        result_xdr=scval.to_void().to_xdr(),  # SAC transfer returns ()
    )


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


def _written_keys(ledger: Ledger, move: TokenMove) -> list[x.LedgerKey]:
    """Native XLM of G accounts lives in account entries; everything else in SAC storage."""
    asset = ledger.registry.assets[move.token_id]
    keys: list[x.LedgerKey] = []
    for holder in dict.fromkeys((move.from_, move.to)):
        if not asset.is_native() and holder == asset.issuer:
            continue
        if asset.is_native() and holder.startswith("G"):
            keys.append(b.account_key(holder))
        else:
            keys.append(b.balance_key(move.token_id, holder))
    return keys
