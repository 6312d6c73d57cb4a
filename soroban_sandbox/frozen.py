"""Frozen ledger keys (CAP-77, protocol 26). Pure.

The network configuration setting ``CONFIG_SETTING_FROZEN_LEDGER_KEYS`` lists LedgerKeys
(XDR-encoded) that no transaction may access; validators change it by a
``CONFIG_SETTING_FROZEN_LEDGER_KEYS_DELTA`` upgrade (keys to freeze, keys to unfreeze). Here the
admin API applies that delta. A client reads the setting with getLedgerEntries (a
CONFIG_SETTING key) and is refused with ``txFROZEN_KEY_ACCESSED`` when it sends a transaction
that accesses a frozen key.

What "accesses" means is stellar-core's TransactionFrame::accessesFrozenKey: the transaction's
source account, every key of a Soroban footprint (read-only and read-write), each operation's
own source account, and what each operation names (OperationFrame ``doesAccessFrozenKey``):
Payment of XLM its destination account, Payment of an issued asset the source's and the
destination's trustlines (PaymentOpFrame.cpp); CreateAccount and AccountMerge their destination
account (CreateAccountOpFrame.cpp, MergeOpFrame.cpp). Only ACCOUNT, TRUSTLINE (not pool
shares, not an issuer's own), CONTRACT_DATA and CONTRACT_CODE keys can be frozen (CAP-77
"Settings for freezing the ledger keys").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from stellar_sdk import Asset, Keypair, TransactionEnvelope
from stellar_sdk import xdr as x
from stellar_sdk.operation import AccountMerge, CreateAccount, Operation, Payment

from . import xdr_build as b

FREEZABLE = (
    x.LedgerEntryType.ACCOUNT,
    x.LedgerEntryType.TRUSTLINE,
    x.LedgerEntryType.CONTRACT_DATA,
    x.LedgerEntryType.CONTRACT_CODE,
)
SETTING_KEY = x.LedgerKey(
    x.LedgerEntryType.CONFIG_SETTING,
    config_setting=x.LedgerKeyConfigSetting(
        x.ConfigSettingID.CONFIG_SETTING_FROZEN_LEDGER_KEYS
    ),
)


class FreezeError(ValueError):
    """A key the CAP-77 delta upgrade would refuse; the message names why."""


def freezable(raw: str) -> x.LedgerKey:
    """A base64 LedgerKey the CAP-77 delta accepts, decoded."""
    try:
        key = x.LedgerKey.from_xdr(raw)
    except Exception:  # noqa: BLE001 - any decode failure is the caller's bad key
        raise FreezeError(f"key: {raw!r} is not a base64 LedgerKey") from None
    if key.type not in FREEZABLE:
        raise FreezeError(
            f"key: {key.type.name} cannot be frozen (CAP-77: ACCOUNT, TRUSTLINE, "
            "CONTRACT_DATA or CONTRACT_CODE)"
        )
    line = key.trust_line
    if line is not None:
        if line.asset.type == x.AssetType.ASSET_TYPE_POOL_SHARE:
            raise FreezeError("key: a pool share trustline cannot be frozen (CAP-77)")
        asset = Asset.from_xdr_object(line.asset)
        holder = line.account_id.account_id.ed25519
        assert holder is not None
        if asset.issuer == Keypair.from_raw_ed25519_public_key(holder.uint256).public_key:
            raise FreezeError("key: an issuer's own trustline cannot be frozen (CAP-77)")
    return key


@dataclass
class FrozenKeys:
    """The ``frozenLedgerKeys`` setting: encoded keys in the order they were frozen."""

    keys: dict[bytes, None] = field(default_factory=dict)
    last_modified: int = 0

    def __contains__(self, key: x.LedgerKey) -> bool:
        return key.to_xdr_bytes() in self.keys

    def apply_delta(
        self, freeze: list[x.LedgerKey], unfreeze: list[x.LedgerKey], ledger_seq: int
    ) -> None:
        """Duplicates and unknown keys are ignored, as the upgrade does."""
        for key in freeze:
            self.keys.setdefault(key.to_xdr_bytes(), None)
        for key in unfreeze:
            self.keys.pop(key.to_xdr_bytes(), None)
        self.last_modified = ledger_seq

    def snapshot(self) -> frozenset[bytes]:
        return frozenset(self.keys)

    def setting(self) -> x.LedgerEntryData:
        """The CONFIG_SETTING entry getLedgerEntries serves."""
        entry = x.ConfigSettingEntry(
            x.ConfigSettingID.CONFIG_SETTING_FROZEN_LEDGER_KEYS,
            frozen_ledger_keys=x.FrozenLedgerKeys(
                keys=[x.EncodedLedgerKey(k) for k in self.keys]
            ),
        )
        return x.LedgerEntryData(x.LedgerEntryType.CONFIG_SETTING, config_setting=entry)


def _operation_keys(op: Operation, tx_source: str) -> Iterator[x.LedgerKey]:
    source = op.source.account_id if op.source else tx_source
    if op.source is not None:
        yield b.account_key(source)
    if isinstance(op, Payment):
        destination = op.destination.account_id
        if op.asset.is_native():
            yield b.account_key(destination)
        else:
            yield b.trustline_key(source, op.asset)
            yield b.trustline_key(destination, op.asset)
    elif isinstance(op, CreateAccount):
        yield b.account_key(op.destination)
    elif isinstance(op, AccountMerge):
        yield b.account_key(op.destination.account_id)


def accessed_keys(envelope: TransactionEnvelope) -> Iterator[x.LedgerKey]:
    tx = envelope.transaction
    source = tx.source.account_id
    yield b.account_key(source)
    if tx.soroban_data is not None:
        footprint = tx.soroban_data.resources.footprint
        yield from footprint.read_only
        yield from footprint.read_write
    for op in tx.operations:
        yield from _operation_keys(op, source)


def accesses_frozen_key(
    envelope: TransactionEnvelope, is_frozen: Callable[[x.LedgerKey], bool]
) -> bool:
    return any(is_frozen(key) for key in accessed_keys(envelope))
