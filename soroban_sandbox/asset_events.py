"""The CAP-67 event a movement of an asset emits, classic or Soroban. Pure.

One decision for every movement the sandbox makes (SAC ``transfer``, the payout contract,
classic Payment, CreateAccount, AccountMerge):

* the name: ``mint`` when the asset's issuer sends to someone else, ``burn`` when someone else
  sends to the issuer, ``transfer`` otherwise (also issuer to issuer, and any move of XLM).
  stellar-core src/transactions/EventManager.cpp ``eventForTransferWithIssuerCheck``;
  soroban-env-host stellar_asset_contract/event.rs ``transfer_maybe_with_issuer``.
* the topics: ``[transfer, from, to, asset]``, ``[mint, to, asset]``, ``[burn, from, asset]``,
  every address non-muxed (``getAddressWithDroppedMuxedInfo``), the asset as its SEP-11 string.
* the data: the amount as i128, or, when the destination carries a muxed id, the map
  ``{amount: i128, to_muxed_id: u64 | string | bytes}`` (``getPossibleMuxedData``;
  ``get_amount_data_maybe_muxed``). ``burn`` never carries one.

Which id a move carries is decided where the move is made: a muxed ``M...`` destination's id
(CAP-67 rule 1), or for a classic operation to a plain account the transaction memo (rule 2,
``memo_muxed_id``).
"""

from __future__ import annotations

from stellar_sdk import scval
from stellar_sdk import xdr as x
from stellar_sdk.memo import HashMemo, IdMemo, Memo, ReturnHashMemo, TextMemo

from .contracts import MuxedId, TokenMove
from .xdr_build import contract_event


def memo_muxed_id(memo: Memo) -> MuxedId | None:
    """CAP-67 rule 2 (stellar-core TransactionUtils.cpp ``makeClassicMemoSCVal``): MEMO_ID as
    u64, MEMO_TEXT as string, MEMO_HASH and MEMO_RETURN as bytes; MEMO_NONE carries none."""
    if isinstance(memo, IdMemo):
        return MuxedId("u64", memo.memo_id)
    if isinstance(memo, TextMemo):
        return MuxedId("string", memo.memo_text)
    if isinstance(memo, HashMemo):
        return MuxedId("bytes", memo.memo_hash)
    if isinstance(memo, ReturnHashMemo):
        return MuxedId("bytes", memo.memo_return)
    return None


def muxed_id_val(muxed: MuxedId) -> x.SCVal:
    if muxed.kind == "u64":
        assert isinstance(muxed.value, int)
        return scval.to_uint64(muxed.value)
    assert isinstance(muxed.value, bytes)
    if muxed.kind == "string":
        return x.SCVal(x.SCValType.SCV_STRING, str=x.SCString(muxed.value))
    return scval.to_bytes(muxed.value)


def event_name(move: TokenMove) -> str:
    issuer = move.issuer
    if move.from_ != move.to and move.from_ == issuer:
        return "mint"
    if move.from_ != move.to and move.to == issuer:
        return "burn"
    return "transfer"


def event_data(amount: int, to_muxed_id: MuxedId | None) -> x.SCVal:
    if to_muxed_id is None:
        return scval.to_int128(amount)
    return scval.to_map(
        {
            scval.to_symbol("amount"): scval.to_int128(amount),
            scval.to_symbol("to_muxed_id"): muxed_id_val(to_muxed_id),
        }
    )


def asset_event(move: TokenMove) -> x.ContractEvent:
    name = event_name(move)
    asset = scval.to_string(move.asset)
    if name == "mint":
        topics = [scval.to_symbol(name), scval.to_address(move.to), asset]
    elif name == "burn":
        topics = [scval.to_symbol(name), scval.to_address(move.from_), asset]
    else:
        topics = [
            scval.to_symbol(name),
            scval.to_address(move.from_),
            scval.to_address(move.to),
            asset,
        ]
    data = event_data(move.amount, None if name == "burn" else move.to_muxed_id)
    return contract_event(move.token_id, topics, data)
