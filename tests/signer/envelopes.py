"""Real Stellar envelopes for signer tests, built with stellar-sdk."""

from __future__ import annotations

import time

from stellar_sdk import (
    Account,
    Asset,
    Keypair,
    Network,
    TransactionBuilder,
    scval,
)
from stellar_sdk import xdr as sx
from stellar_sdk.transaction import Transaction

PASSPHRASE = Network.TESTNET_NETWORK_PASSPHRASE
XLM_SAC = Asset.native().contract_id(PASSPHRASE)
OTHER_CONTRACT = "CAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABSC4"
SOURCE = Keypair.from_raw_ed25519_seed(bytes(range(32))).public_key
DESTINATION = Keypair.from_raw_ed25519_seed(bytes(range(1, 33))).public_key


def transfer_args(amount: int, *, source: str = SOURCE) -> list[sx.SCVal]:
    return [scval.to_address(source), scval.to_address(DESTINATION), scval.to_int128(amount)]


def build_tx(
    *,
    amount: int = 1_000_000,
    source: str = SOURCE,
    contract: str = XLM_SAC,
    function: str = "transfer",
    args: list[sx.SCVal] | None = None,
    fee: int = 100,
    timeout: int | None = 60,
    max_time: int | None = None,
    passphrase: str = PASSPHRASE,
    extra_payment: bool = False,
    payment_only: bool = False,
    sequence: int = 1,
) -> Transaction:
    builder = TransactionBuilder(Account(source, sequence), passphrase, base_fee=fee)
    if not payment_only:
        builder.append_invoke_contract_function_op(
            contract, function, args if args is not None else transfer_args(amount, source=source)
        )
    if extra_payment or payment_only:
        builder.append_payment_op(DESTINATION, Asset.native(), "1")
    if max_time is not None:
        builder.add_time_bounds(0, max_time)
    elif timeout is not None:
        builder.set_timeout(timeout)
    else:
        builder.add_time_bounds(0, 0)
    return builder.build().transaction


def envelope_xdr(**kwargs: object) -> str:
    tx = build_tx(**kwargs)  # type: ignore[arg-type]
    from stellar_sdk import TransactionEnvelope

    return TransactionEnvelope(tx, kwargs.get("passphrase", PASSPHRASE)).to_xdr()  # type: ignore[arg-type]


def now() -> int:
    return int(time.time())
