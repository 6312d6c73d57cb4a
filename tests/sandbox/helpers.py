"""Building, sending and confirming real Soroban transactions with stellar-sdk."""

from __future__ import annotations

from stellar_sdk import (
    Asset,
    Keypair,
    SorobanServerAsync,
    TransactionBuilder,
    TransactionEnvelope,
    scval,
    xdr,
)
from stellar_sdk.soroban_rpc import GetTransactionResponse, GetTransactionStatus

from tests.waiting import eventually


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
