"""The contracts the sandbox knows: Stellar Asset Contracts and one payout contract.

Both are modelled by their effect only: ``fn(from: Address, to: Address, amount: i128)`` moves
``amount`` of one asset from ``from`` to ``to``; the payout contract's batch method
``distribute_batch(from: Address, payouts: Vec<(Address, i128)>)`` (a Soroban tuple is an
``SCV_VEC``) moves each amount of XLM from ``from`` to each destination, atomically
(the interface payout-service's contract batch mode calls). There is no WASM here; anything
else a client invokes is an unknown contract or function and traps on chain, as a missing
contract would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from stellar_sdk import Asset, StrKey, scval
from stellar_sdk import xdr as x
from stellar_sdk.address import Address, AddressType

SAC_TRANSFER = "transfer"
DEFAULT_PAYOUT_METHOD = "distribute_winnings"
DEFAULT_PAYOUT_BATCH_METHOD = "distribute_batch"


class ContractError(Exception):
    """A host-level failure: the invocation traps (INVOKE_HOST_FUNCTION_TRAPPED)."""


@dataclass(frozen=True)
class MuxedId:
    """The ``to_muxed_id`` of a CAP-67 transfer or mint event: a muxed account's id (u64), or
    for a classic payment to a plain account the transaction memo (MEMO_ID as u64, MEMO_TEXT
    as string, MEMO_HASH and MEMO_RETURN as bytes)."""

    kind: Literal["u64", "string", "bytes"]
    value: int | bytes

    def as_json(self) -> int | str:
        """u64 as a number, string as its text, bytes as hex."""
        if isinstance(self.value, int):
            return self.value
        if self.kind == "string":
            return self.value.decode(errors="replace")
        return self.value.hex()


@dataclass(frozen=True)
class TokenMove:
    """What one successful invocation does to balances."""

    contract_id: str  # the contract that was invoked
    function: str
    token_id: str  # the SAC whose balances move (the payout contract pays in XLM)
    asset: str  # "native" or "CODE:ISSUER", the SEP-11 name used in transfer events
    from_: str
    to: str  # G or C address; a muxed M address is resolved to its G account
    amount: int
    to_muxed_id: MuxedId | None = None  # what the CAP-67 event carries besides ``to``

    @property
    def issuer(self) -> str | None:
        return None if self.asset == "native" else self.asset.partition(":")[2]


@dataclass(frozen=True)
class Invocation:
    """What one contract call does: ``from_`` authorises, every move leaves ``from_``."""

    contract_id: str
    function: str
    token_id: str
    from_: str
    moves: tuple[TokenMove, ...]

    @property
    def total(self) -> int:
        return sum(m.amount for m in self.moves)

    @property
    def is_sac_call(self) -> bool:
        """A call of the Stellar Asset Contract itself (not of the payout contract)."""
        return self.contract_id == self.token_id


def asset_name(asset: Asset) -> str:
    return "native" if asset.is_native() else f"{asset.code}:{asset.issuer}"


def default_payout_contract_id(passphrase: str) -> str:
    """A stable made-up contract id per network, used when none is configured."""
    seed = hashlib.sha256(f"soroban-sandbox payout contract|{passphrase}".encode()).digest()
    return StrKey.encode_contract(seed)


@dataclass
class ContractRegistry:
    passphrase: str
    payout_contract_id: str
    payout_method: str = DEFAULT_PAYOUT_METHOD
    payout_batch_method: str = DEFAULT_PAYOUT_BATCH_METHOD
    assets: dict[str, Asset] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.register_asset(Asset.native())

    @cached_property
    def native_id(self) -> str:
        return Asset.native().contract_id(self.passphrase)

    def register_asset(self, asset: Asset) -> str:
        """Deploy a SAC. Real networks need a deploy transaction; the harness does it by fiat."""
        contract_id = asset.contract_id(self.passphrase)
        self.assets[contract_id] = asset
        return contract_id

    def interpret(self, call: x.InvokeContractArgs) -> Invocation:
        contract_id = Address.from_xdr_sc_address(call.contract_address).address
        function = call.function_name.sc_symbol.decode()
        if contract_id in self.assets:
            if function != SAC_TRANSFER:
                raise ContractError(f"function {function!r} not supported on SAC {contract_id}")
            token_id = contract_id
        elif contract_id == self.payout_contract_id:
            if function not in (self.payout_method, self.payout_batch_method):
                raise ContractError(f"payout contract has no function {function!r}")
            token_id = self.native_id
        else:
            raise ContractError(f"contract {contract_id} does not exist")
        if contract_id == self.payout_contract_id and function == self.payout_batch_method:
            from_, payouts = _batch_args(call.args)
        else:
            # Only the SAC's ``to`` is a MuxedAddress; the payout contract takes an Address.
            from_, to, amount = _transfer_args(call.args, muxed_to=token_id == contract_id)
            payouts = [(to, amount)]
        asset = asset_name(self.assets[token_id])
        moves = tuple(
            TokenMove(contract_id, function, token_id, asset, from_, to.account, amount, to.muxed)
            for to, amount in payouts
        )
        return Invocation(contract_id, function, token_id, from_, moves)


@dataclass(frozen=True)
class Destination:
    """A ``to`` argument: the account or contract credited, and the muxed id it carried."""

    account: str
    muxed: MuxedId | None = None


def _batch_args(args: list[x.SCVal]) -> tuple[str, list[tuple[Destination, int]]]:
    """``(from: Address, payouts: Vec<(Address, i128)>)``; the host refuses any other shape
    (a trap), and the contract traps on a negative amount."""
    if len(args) != 2:
        raise ContractError(
            f"expected (from: Address, payouts: Vec<(Address, i128)>), got {len(args)} args"
        )
    from_val, payouts_val = args
    if payouts_val.type != x.SCValType.SCV_VEC or payouts_val.vec is None:
        raise ContractError("payouts must be a Vec<(Address, i128)>")
    payouts = []
    for item in payouts_val.vec.sc_vec:
        if item.type != x.SCValType.SCV_VEC or item.vec is None or len(item.vec.sc_vec) != 2:
            raise ContractError("each payout must be a tuple (Address, i128)")
        _, to, amount = _transfer_args([from_val, *item.vec.sc_vec])
        payouts.append((to, amount))
    from_, _, _ = _transfer_args([from_val, from_val, scval.to_int128(0)])
    return from_, payouts


def _transfer_args(
    args: list[x.SCVal], *, muxed_to: bool = False
) -> tuple[str, Destination, int]:
    if len(args) != 3:
        raise ContractError(
            f"expected (from: Address, to: Address, amount: i128), got {len(args)} args"
        )
    from_val, to_val, amount_val = args
    if from_val.type != x.SCValType.SCV_ADDRESS or to_val.type != x.SCValType.SCV_ADDRESS:
        raise ContractError("from and to must be Address values")
    if amount_val.type != x.SCValType.SCV_I128 or amount_val.i128 is None:
        raise ContractError("amount must be an i128")
    assert from_val.address is not None and to_val.address is not None
    from_addr = Address.from_xdr_sc_address(from_val.address)
    if from_addr.type not in (AddressType.ACCOUNT, AddressType.CONTRACT):
        raise ContractError("from must be an account or contract address")
    to = _destination(to_val.address, muxed_to=muxed_to)
    parts = amount_val.i128
    amount = (parts.hi.int64 << 64) | parts.lo.uint64
    if amount < 0:
        # The SAC rejects negative amounts (check_nonnegative_amount).
        raise ContractError("amount must not be negative")
    return from_addr.address, to, amount


def _destination(address: x.SCAddress, *, muxed_to: bool) -> Destination:
    """CAP-67: the SAC's ``to`` is a MuxedAddress: an SC_ADDRESS_TYPE_MUXED_ACCOUNT credits its
    G account exactly as that account would be credited; only the event carries the id
    (soroban-env-host stellar_asset_contract/contract.rs ``transfer``: ``to_mux.address()``,
    event.rs ``transfer_maybe_with_issuer``). A parameter of type Address does not take a
    muxed address: the host fails the call (CAP-67 "MuxedAddressObject host object")."""
    if address.type == x.SCAddressType.SC_ADDRESS_TYPE_MUXED_ACCOUNT:
        if not muxed_to:
            raise ContractError(
                "Error(Value, UnexpectedType): a muxed address where the function takes an "
                "Address (only the Stellar Asset Contract's transfer takes a MuxedAddress)"
            )
        muxed = address.muxed_account
        assert muxed is not None
        account = StrKey.encode_ed25519_public_key(muxed.ed25519.uint256)
        return Destination(account, MuxedId("u64", muxed.id.uint64))
    to_addr = Address.from_xdr_sc_address(address)
    if to_addr.type not in (AddressType.ACCOUNT, AddressType.CONTRACT):
        raise ContractError("to must be an account, muxed account or contract address")
    return Destination(to_addr.address)
