"""Builds the Soroban contract-call transaction for a payout. Pure: no network here."""

from __future__ import annotations

from dataclasses import dataclass

from stellar_sdk import Account, Asset, TransactionBuilder, scval
from stellar_sdk.transaction_envelope import TransactionEnvelope

# Inclusion fee bid on top of the resource fee; stellar-core's minimum is 100 stroops.
BASE_INCLUSION_FEE = 100


def inclusion_fee_bid(attempt_number: int, network_p90: int | None, cap: int) -> int:
    """The inclusion fee an attempt bids: the network's recent p90 (surge pricing) or the
    protocol minimum, doubled for every earlier attempt of the payout (one that died unseen
    may have been outbid), never above `cap` nor below the minimum."""
    base = max(BASE_INCLUSION_FEE, network_p90 or 0)
    return max(BASE_INCLUSION_FEE, min(cap, base << max(0, attempt_number - 1)))


@dataclass(frozen=True)
class PayoutCall:
    """Which contract function moves the money: SAC transfer or the payout contract."""

    contract_id: str
    function_name: str


def asset_contract_id(asset: str, network_passphrase: str) -> str:
    """The Stellar Asset Contract id, computed locally (no RPC needed)."""
    if asset == "XLM":
        return Asset.native().contract_id(network_passphrase)
    code, _, issuer = asset.partition(":")
    return Asset(code, issuer).contract_id(network_passphrase)


def payout_call(
    asset: str, network_passphrase: str, contract_id: str | None, method_name: str
) -> PayoutCall:
    if contract_id:
        return PayoutCall(contract_id, method_name)
    return PayoutCall(asset_contract_id(asset, network_passphrase), "transfer")


@dataclass(frozen=True)
class TxParams:
    source_account: str
    sequence: int  # the transaction's own sequence number (account seq + 1)
    min_time: int  # unix seconds
    max_time: int  # unix seconds; never 0 (invariant 2)
    network_passphrase: str


def build_payout_transaction(
    params: TxParams, call: PayoutCall, *, payer: str, destination: str, amount_stroops: int,
    operation_source: str | None = None, inclusion_fee: int = BASE_INCLUSION_FEE,
) -> TransactionEnvelope:
    """`call.function_name(from: Address, to: Address, amount: i128)`, unsigned, unprepared.

    With `operation_source` (the payer, when a channel account is the transaction's source)
    the payer's source-account authorisation follows the operation, not the transaction.
    """
    if params.max_time <= 0:
        raise ValueError("every payout transaction needs a max_time (invariant 2)")
    # TransactionBuilder increments the account's sequence, so hand it seq - 1.
    account = Account(params.source_account, params.sequence - 1)
    builder = TransactionBuilder(
        account, network_passphrase=params.network_passphrase, base_fee=inclusion_fee
    )
    builder.add_time_bounds(params.min_time, params.max_time)
    builder.append_invoke_contract_function_op(
        contract_id=call.contract_id,
        function_name=call.function_name,
        parameters=[
            scval.to_address(payer),
            scval.to_address(destination),
            scval.to_int128(amount_stroops),
        ],
        source=operation_source,
    )
    return builder.build()


def channel_sample(channel: str, call: PayoutCall, *, payer: str, destination: str,
                   network_passphrase: str, now: int, window_seconds: int
                   ) -> TransactionEnvelope:
    """A transaction of the shape a channel carries (the channel its source, the payer the
    operation's source, one stroop to `destination`), never sent: the signer is asked whether
    it would sign it (CheckTransaction) before the channel is used."""
    return build_payout_transaction(
        TxParams(channel, 1, 0, now + window_seconds, network_passphrase), call, payer=payer,
        destination=destination, amount_stroops=1, operation_source=payer)
