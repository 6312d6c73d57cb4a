"""Did a payout land as the payee asked: its memo and its muxed id, read from the included
transaction. Pure: no I/O.

An exchange credits a deposit by what it sees on chain: the transaction's memo and the
payment's muxed destination (classic), or the `to_muxed_id` of the SAC transfer event
(Soroban, CAP-67: the event's data is the map `{amount, to_muxed_id}` when `to` was muxed).
"""

from __future__ import annotations

from stellar_sdk import xdr as x

from payout_service.core.validation import Memo, MemoKind


def memo_text(memo: x.Memo) -> str:
    """A transaction memo in the stored form of core/validation (kind:value), '' for none."""
    if memo.type == x.MemoType.MEMO_TEXT and memo.text is not None:
        return f"text:{memo.text.decode('utf-8', 'replace')}"
    if memo.type == x.MemoType.MEMO_ID and memo.id is not None:
        return f"id:{memo.id.uint64}"
    if memo.type == x.MemoType.MEMO_HASH and memo.hash is not None:
        return f"hash:{memo.hash.hash.hex()}"
    if memo.type == x.MemoType.MEMO_RETURN and memo.ret_hash is not None:
        return f"return:{memo.ret_hash.hash.hex()}"
    return ""


def _expected_memo(memo: Memo | None) -> str:
    return f"{memo.kind.value}:{memo.value}" if memo is not None else ""


def operation_events(meta: x.TransactionMeta, op_index: int) -> list[x.ContractEvent]:
    if meta.v4 is not None:
        ops = meta.v4.operations
        return list(ops[op_index].events) if op_index < len(ops) else []
    if meta.v3 is not None and meta.v3.soroban_meta is not None:
        return list(meta.v3.soroban_meta.events)  # one operation per Soroban transaction
    return []


def transfer_muxed_id(events: list[x.ContractEvent]) -> tuple[bool, int | None]:
    """(a transfer event was found, its to_muxed_id as u64 or None)."""
    for event in events:
        body = event.body.v0
        if body is None or not body.topics or body.topics[0].sym is None:
            continue
        if body.topics[0].sym.sc_symbol != b"transfer":
            continue
        data = body.data
        if data.map is not None and data.map.sc_map is not None:
            for entry in data.map.sc_map:
                key = entry.key.sym.sc_symbol if entry.key.sym is not None else b""
                if key == b"to_muxed_id" and entry.val.u64 is not None:
                    return True, entry.val.u64.uint64
        return True, None
    return False, None


def landed_payee_problem(envelope_xdr: str, meta_xdr: str, *, op_index: int,
                         memo: Memo | None, muxed_id: int | None) -> str | None:
    """What of the payee's memo or muxed id did not land as asked, or None.

    Classic: the transaction's memo, and the muxed id of the Payment's destination at
    `op_index`. Soroban (an InvokeHostFunction operation): the transfer event's
    `to_muxed_id`; such a transaction never carries a memo (txSOROBAN_INVALID)."""
    tx = x.TransactionEnvelope.from_xdr(envelope_xdr).v1
    if tx is None:
        return "the included envelope is not a v1 transaction"
    landed_memo, asked_memo = memo_text(tx.tx.memo), _expected_memo(memo)
    if landed_memo != asked_memo:
        return f"memo {landed_memo or 'none'} landed, {asked_memo or 'none'} was asked"
    operations = tx.tx.operations
    if not 0 <= op_index < len(operations):
        return f"no operation {op_index} in the included transaction"
    body = operations[op_index].body
    if body.payment_op is not None:
        destination = body.payment_op.destination
        landed = destination.med25519.id.uint64 if destination.med25519 is not None else None
    elif body.invoke_host_function_op is not None:
        found, landed = transfer_muxed_id(
            operation_events(x.TransactionMeta.from_xdr(meta_xdr), op_index))
        if not found:
            return "no transfer event in the included transaction"
    else:
        landed = None  # CreateAccount: never muxed (planning refuses a muxed one)
    if landed != muxed_id:
        return f"muxed id {landed} landed, {muxed_id} was asked"
    return None


def payee_memo(memo_type: str | None, memo_value: str | None) -> Memo | None:
    """A stored payout's memo (payouts.memo_type, memo_value)."""
    if memo_type is None or memo_value is None:
        return None
    return Memo(MemoKind(memo_type), memo_value)
