"""Building, sending and confirming real Soroban transactions with stellar-sdk."""

from __future__ import annotations

from typing import Any

from stellar_sdk import (
    Asset,
    Keypair,
    SorobanServerAsync,
    TransactionBuilder,
    TransactionEnvelope,
    scval,
    xdr,
)
from stellar_sdk.soroban_rpc import (
    EventFilter,
    EventFilterType,
    EventInfo,
    GetTransactionResponse,
    GetTransactionStatus,
)

from soroban_sandbox.testing import SandboxClient
from tests.waiting import eventually

TRANSFER_TOPIC = scval.to_symbol("transfer").to_xdr()


def native_id(passphrase: str) -> str:
    return Asset.native().contract_id(passphrase)


async def transfer_tx(
    server: SorobanServerAsync,
    passphrase: str,
    source: Keypair,
    to: str,
    amount: int,
    *,
    contract_id: str | None = None,
    function: str = "transfer",
    from_: str | None = None,
    valid_for: int = 30,
    prepare: bool = True,
) -> TransactionEnvelope:
    """An assembled (simulated) but unsigned ``function(from, to, amount)`` invocation."""
    account = await server.load_account(source.public_key)
    tx = (
        TransactionBuilder(account, passphrase, base_fee=100)
        .append_invoke_contract_function_op(
            contract_id or native_id(passphrase),
            function,
            [
                scval.to_address(from_ or source.public_key),
                scval.to_address(to),
                scval.to_int128(amount),
            ],
        )
        .set_timeout(valid_for)
        .build()
    )
    if prepare:
        tx = await server.prepare_transaction(tx)
    return tx


async def wait_for(
    server: SorobanServerAsync, tx_hash: str, within: float = 10.0
) -> GetTransactionResponse:
    """Poll getTransaction until the transaction is no longer NOT_FOUND."""

    async def found() -> GetTransactionResponse | None:
        answer = await server.get_transaction(tx_hash)
        return answer if answer.status != GetTransactionStatus.NOT_FOUND else None

    return await eventually(found, what=f"{tx_hash} no longer NOT_FOUND", within=within)


def result_code(result_xdr: str) -> xdr.TransactionResultCode:
    return xdr.TransactionResult.from_xdr(result_xdr).result.code


async def classic_builder(
    server: SorobanServerAsync, sandbox: SandboxClient, source: str
) -> TransactionBuilder:
    """A classic transaction from ``source`` at its current sequence number, 30 s to land."""
    account = await server.load_account(source)
    return TransactionBuilder(account, sandbox.passphrase, base_fee=100).set_timeout(30)


async def funded(sandbox: SandboxClient, count: int) -> list[Keypair]:
    """``count`` new accounts, each given 10,000 XLM by friendbot."""
    keys = [Keypair.random() for _ in range(count)]
    for kp in keys:
        await sandbox.fund(kp.public_key)
    return keys


async def land(
    server: SorobanServerAsync, tx: TransactionEnvelope, *signers: Keypair
) -> GetTransactionResponse:
    """Sign, send (it must be accepted) and wait until it is included."""
    for signer in signers:
        tx.sign(signer)
    sent = await server.send_transaction(tx)
    assert sent.status.value == "PENDING", sent
    return await wait_for(server, tx.hash_hex())


async def refusal(server: SorobanServerAsync, tx: TransactionEnvelope, *signers: Keypair) -> str:
    """Sign and send a transaction the node must refuse; its result code's name."""
    for signer in signers:
        tx.sign(signer)
    sent = await server.send_transaction(tx)
    assert sent.status.value == "ERROR", sent
    return result_code(sent.error_result_xdr or "").name


async def xlm_transfers_to(
    server: SorobanServerAsync, passphrase: str, start: int, address: str
) -> list[EventInfo]:
    """getEvents: the XLM SAC's ``transfer`` events whose ``to`` topic is ``address``."""
    found = await server.get_events(
        start_ledger=start,
        filters=[
            EventFilter(
                event_type=EventFilterType.CONTRACT,
                contract_ids=[native_id(passphrase)],
                topics=[[TRANSFER_TOPIC, "*", scval.to_address(address).to_xdr(), "*"]],
            )
        ],
    )
    return found.events


def contract_events(landed: GetTransactionResponse) -> list[xdr.ContractEvent]:
    """Every operation's contract events in getTransaction's meta (TransactionMetaV4)."""
    meta = xdr.TransactionMeta.from_xdr(landed.result_meta_xdr or "")
    assert meta.v4 is not None
    return [event for op in meta.v4.operations for event in op.events]


def event_view(event: xdr.ContractEvent) -> tuple[list[Any], Any]:
    """An event's topics and data as native values, addresses as strings (a muxed transfer's
    data is a dict)."""
    body = event.body.v0
    assert body is not None
    topics = [scval.to_native(t) for t in body.topics]
    return [getattr(t, "address", t) for t in topics], scval.to_native(body.data)
