"""The contracts the sandbox knows: Stellar Asset Contracts and one payout contract.

Both are modelled by their effect only: ``fn(from: Address, to: Address, amount: i128)`` moves
``amount`` of one asset from ``from`` to ``to``; the payout contract's batch method
``distribute_batch(from: Address, payouts: Vec<(Address, i128)>)`` (a Soroban tuple is an
``SCV_VEC``) moves each amount of XLM from ``from`` to each destination, atomically
(/work/notes/BATCH_INTERFACE.md, issue 14). There is no WASM here; anything else a client
invokes is an unknown contract or function and traps on chain, as a missing contract would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

from stellar_sdk import Asset, MuxedAccount, StrKey, scval
from stellar_sdk import xdr as x
from stellar_sdk.address import Address, AddressType

SAC_TRANSFER = "transfer"
DEFAULT_PAYOUT_METHOD = "distribute_winnings"
DEFAULT_PAYOUT_BATCH_METHOD = "distribute_batch"


class ContractError(Exception):
    """A host-level failure: the invocation traps (INVOKE_HOST_FUNCTION_TRAPPED)."""


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
            from_, to, amount = _transfer_args(call.args)
            payouts = [(to, amount)]
        asset = asset_name(self.assets[token_id])
        moves = tuple(
            TokenMove(contract_id, function, token_id, asset, from_, to, amount)
            for to, amount in payouts
        )
        return Invocation(contract_id, function, token_id, from_, moves)


def _batch_args(args: list[x.SCVal]) -> tuple[str, list[tuple[str, int]]]:
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


def _transfer_args(args: list[x.SCVal]) -> tuple[str, str, int]:
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
    to_addr = Address.from_xdr_sc_address(to_val.address)
    to = to_addr.address
    if to_addr.type == AddressType.MUXED_ACCOUNT:
        # CAP-67: a muxed destination credits the underlying G account; the id is for indexers.
        to = MuxedAccount.from_account(to).account_id
    elif to_addr.type not in (AddressType.ACCOUNT, AddressType.CONTRACT):
        raise ContractError("to must be an account, muxed account or contract address")
    parts = amount_val.i128
    amount = (parts.hi.int64 << 64) | parts.lo.uint64
    if amount < 0:
        # The SAC rejects negative amounts (check_nonnegative_amount).
        raise ContractError("amount must not be negative")
    return from_addr.address, to, amount
