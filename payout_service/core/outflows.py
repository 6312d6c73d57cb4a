"""What a transaction took from the watched accounts, as the chain records it. Pure: no I/O.

The watchdog reads every transaction of every ledger (getTransactions has no account filter),
so the common case must be cheap: `names_watched` base64-decodes the envelope and the result
meta once and looks for each watched account's raw 32-byte ed25519 key in the bytes. That
test is complete: every place an account can appear in a transaction or its effects (a source,
a fee source, an operation source, an address in a contract event or an authorisation entry,
a ledger entry of the account) carries those 32 bytes, muxed or not. Only a transaction that
names a watched account is decoded (`debits`):

- its source or fee source is watched: it spent our sequence number and our fee;
- an operation's source is watched: it acted as our account (it needed our signature);
- a Soroban authorisation entry with a watched account's address credentials: our key
  signed an authorisation the service did not build (a SAC `approve` of an allowance, say,
  before any `transfer_from` drains it);
- a CAP-67 / SEP-41 event debits a watched account: `transfer` (topics [transfer, from, to,
  asset]), `burn` ([burn, from, asset]), `clawback` ([clawback, from, asset]; before
  protocol 23 the SAC put the admin first: [clawback, admin, from, asset]) and `fee`
  ([fee, from], a positive amount charged, a negative one refunded). stellar-protocol
  core/cap-0067.md: since protocol 23 classic payments, account creations and merges, path
  payments, offers, claimable balances and liquidity pools emit the same events as the Stellar
  Asset Contract, and fee events sit in the transaction-level events of TransactionMetaV4.

An inflow (a `transfer` or `mint` to a watched account) is no debit.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from stellar_sdk import FeeBumpTransactionEnvelope, StrKey, scval
from stellar_sdk import xdr as x

# Debit kinds. The first three come from the envelope, the others from the events.
SOURCE = "source"  # the transaction's source: its sequence number and (unless bumped) its fee
FEE_SOURCE = "fee_source"  # a fee-bump's fee source
OPERATION_SOURCE = "operation_source"
AUTHORIZATION = "authorization"  # a Soroban authorisation entry signed for the account
DEBIT_EVENTS = ("transfer", "burn", "clawback", "fee")
NATIVE = "native"


@dataclass(frozen=True)
class WatchedAccounts:
    """G... addresses by their raw ed25519 keys."""

    by_key: dict[bytes, str]

    @classmethod
    def of(cls, accounts: Iterable[str]) -> WatchedAccounts:
        return cls({StrKey.decode_ed25519_public_key(a): a for a in accounts})

    def __len__(self) -> int:
        return len(self.by_key)


@dataclass(frozen=True)
class Debit:
    account: str  # the watched G... account debited
    kind: str  # SOURCE, FEE_SOURCE, OPERATION_SOURCE or an event name of DEBIT_EVENTS
    amount: int | None = None  # the asset's smallest unit (stroops); None: no amount moved
    asset: str | None = None  # "native", "CODE:ISSUER" (SEP-11), or the token's C... id

    def describe(self) -> str:
        what = {SOURCE: "transaction source", FEE_SOURCE: "fee-bump fee source",
                OPERATION_SOURCE: "operation source",
                AUTHORIZATION: "authorisation signed for"}.get(self.kind, f"{self.kind} event")
        moved = f" {self.amount} of {self.asset}" if self.amount is not None else ""
        return f"{what} {self.account}{moved}"


def names_watched(envelope_xdr: str, meta_xdr: str, watched: WatchedAccounts) -> bool:
    """The pre-filter: does any watched account's key appear in the envelope or the meta?"""
    envelope = base64.b64decode(envelope_xdr)
    meta = base64.b64decode(meta_xdr) if meta_xdr else b""
    return any(key in envelope or key in meta for key in watched.by_key)


def fee_charged(result_xdr: str) -> int:
    """TransactionResult.feeCharged: its first field, a big-endian int64, read without
    decoding the rest (what the fee source paid, net of a Soroban refund)."""
    head = base64.b64decode(result_xdr[:12])  # 12 base64 characters: the first 9 bytes
    return int.from_bytes(head[:8], "big", signed=True)


def inner_hash(envelope_xdr: str, passphrase: str) -> str | None:
    """The inner transaction's hash of a fee-bump envelope (getTransactions reports the outer
    hash: whoever bumped our signed envelope paid its fee, the inner one is ours), else None."""
    envelope = x.TransactionEnvelope.from_xdr(envelope_xdr)
    if envelope.fee_bump is None:
        return None
    bump = FeeBumpTransactionEnvelope.from_xdr(envelope_xdr, passphrase)
    return bump.transaction.inner_transaction_envelope.hash_hex()


def _muxed_key(account: x.MuxedAccount) -> bytes:
    if account.med25519 is not None:
        return bytes(account.med25519.ed25519.uint256)
    assert account.ed25519 is not None  # noqa: S101 - the two kinds of MuxedAccount
    return bytes(account.ed25519.uint256)


def _address_key(value: x.SCVal) -> bytes | None:
    return _sc_address_key(value.address) if value.address is not None else None


def _sc_address_key(address: x.SCAddress) -> bytes | None:
    if address.account_id is not None:
        ed25519 = address.account_id.account_id.ed25519
        return bytes(ed25519.uint256) if ed25519 is not None else None
    if address.muxed_account is not None:
        return bytes(address.muxed_account.ed25519.uint256)
    return None


def envelope_debits(envelope_xdr: str, watched: WatchedAccounts, fee: int) -> list[Debit]:
    """Sources: the transaction's (charged `fee` unless bumped), a bump's fee source, and
    each operation's."""
    envelope = x.TransactionEnvelope.from_xdr(envelope_xdr)
    found: list[Debit] = []

    def note(key: bytes, kind: str, amount: int | None = None) -> None:
        if key in watched.by_key:
            asset = NATIVE if amount is not None else None
            found.append(Debit(watched.by_key[key], kind, amount, asset))

    operations: list[x.Operation]
    if envelope.v0 is not None:
        note(bytes(envelope.v0.tx.source_account_ed25519.uint256), SOURCE, fee)
        operations = envelope.v0.tx.operations
    elif envelope.v1 is not None:
        note(_muxed_key(envelope.v1.tx.source_account), SOURCE, fee)
        operations = envelope.v1.tx.operations
    else:
        assert envelope.fee_bump is not None  # noqa: S101 - the three envelope types
        bump = envelope.fee_bump.tx
        note(_muxed_key(bump.fee_source), FEE_SOURCE, fee)
        inner = bump.inner_tx.v1
        assert inner is not None  # noqa: S101 - a fee bump wraps a v1 transaction
        note(_muxed_key(inner.tx.source_account), SOURCE)
        operations = inner.tx.operations
    for op in operations:
        if op.source_account is not None:
            note(_muxed_key(op.source_account), OPERATION_SOURCE)
        invoke = op.body.invoke_host_function_op
        for entry in invoke.auth if invoke is not None else ():
            key = _signer_key(entry.credentials)
            if key is not None:
                note(key, AUTHORIZATION)
    return found


def _signer_key(credentials: x.SorobanCredentials) -> bytes | None:
    """The account an authorisation entry was signed for (None: the transaction's source)."""
    address = credentials.address or credentials.address_v2 or (
        credentials.address_with_delegates.address_credentials
        if credentials.address_with_delegates is not None else None)
    return _sc_address_key(address.address) if address is not None else None


def _events(meta: x.TransactionMeta) -> Iterator[x.ContractEvent]:
    """The consensus events of a transaction: v4 (protocol 23) per operation plus the
    transaction-level fee events; v3 the Soroban events. Diagnostic events are not the
    chain's record (a node may or may not emit them) and are left out."""
    if meta.v4 is not None:
        for op in meta.v4.operations:
            yield from op.events
        for event in meta.v4.events:
            yield event.event
    elif meta.v3 is not None and meta.v3.soroban_meta is not None:
        yield from meta.v3.soroban_meta.events


def _amount(data: x.SCVal) -> int | None:
    """An event's amount: i128 data, or the `amount` entry of CAP-67's muxed map."""
    if data.type == x.SCValType.SCV_I128:
        return int(scval.from_int128(data))
    if data.map is not None and data.map.sc_map is not None:
        for entry in data.map.sc_map:
            if entry.key.sym is not None and entry.key.sym.sc_symbol == b"amount":
                return _amount(entry.val)
    return None


def event_debit(event: x.ContractEvent, watched: WatchedAccounts) -> Debit | None:
    body = event.body.v0
    if event.type != x.ContractEventType.CONTRACT or body is None or not body.topics:
        return None
    topics = body.topics
    name = topics[0].sym.sc_symbol.decode() if topics[0].sym is not None else ""
    if name not in DEBIT_EVENTS or len(topics) < 2:
        return None
    # The debited address: the first after the name, except the SAC's pre-CAP-67 clawback
    # ([clawback, admin, from, asset]).
    position = 2 if name == "clawback" and len(topics) == 4 else 1
    key = _address_key(topics[position])
    if key is None or key not in watched.by_key:
        return None
    amount = _amount(body.data)
    if name == "fee" and (amount is None or amount <= 0):
        return None  # a refund
    return Debit(watched.by_key[key], name, amount, _asset(event, topics))


def _asset(event: x.ContractEvent, topics: list[x.SCVal]) -> str | None:
    last = topics[-1]
    if topics[0].sym is not None and topics[0].sym.sc_symbol == b"fee":
        return NATIVE
    if last.str is not None:
        return last.str.sc_string.decode(errors="replace")  # SEP-11: native or CODE:ISSUER
    if event.contract_id is not None:
        return StrKey.encode_contract(bytes(event.contract_id.contract_id.hash))
    return None


def debits(
    envelope_xdr: str, result_xdr: str, meta_xdr: str, watched: WatchedAccounts
) -> list[Debit]:
    """Every way the transaction took from a watched account (decodes it: call it only for a
    transaction `names_watched` let through)."""
    found = envelope_debits(envelope_xdr, watched, fee_charged(result_xdr))
    if meta_xdr:
        meta = x.TransactionMeta.from_xdr(meta_xdr)
        for event in _events(meta):
            debit = event_debit(event, watched)
            if debit is not None:
                found.append(debit)
    return found
