"""Test set-up of classic issued assets, by fiat (a harness, not a node): open a trustline
with a limit, authorise or deauthorise it, and have the issuer pay a holder.

These stand for the ChangeTrust, SetTrustLineFlags and issuer Payment transactions a real
network needs; they keep stellar-core's rules where a test relies on them: the issuer must
exist and holds no trustline to its own asset, a trustline is a sub-entry that raises the
holder's minimum balance by one base reserve (ChangeTrustOpFrame: CHANGE_TRUST_LOW_RESERVE),
and the issuer's payment goes through the classic Payment rules (NO_TRUST, NOT_AUTHORIZED,
LINE_FULL).
"""

from __future__ import annotations

from stellar_sdk import Asset, StrKey
from stellar_sdk.operation import Payment

from .classic import apply_classic
from .contracts import asset_name
from .entry_history import account_key, trustline_key
from .ledger_state import LedgerState
from .records import INT64_MAX, Trustline, min_balance


class IssuedAssetError(ValueError):
    """The set-up asked for breaks a rule; the message names it."""


def parse_asset(name: str) -> Asset:
    """``CODE:ISSUER`` (or ``native``) as a stellar-sdk Asset."""
    if name == "native":
        return Asset.native()
    code, _, issuer = name.partition(":")
    try:
        return Asset(code, issuer)
    except Exception as exc:  # noqa: BLE001 - stellar-sdk raises several types for bad input
        raise IssuedAssetError(f"asset: {name!r} is not CODE:ISSUER ({exc})") from None


def open_trustline(
    ledger: LedgerState, holder: str, asset: Asset, limit: int = INT64_MAX, *,
    authorized: bool = True,
) -> Trustline:
    if asset.is_native():
        raise IssuedAssetError("asset: native XLM needs no trustline")
    if holder not in ledger.accounts:
        raise IssuedAssetError(f"account: {holder} does not exist")
    if asset.issuer not in ledger.accounts:
        raise IssuedAssetError(f"asset: issuer {asset.issuer} does not exist (NO_ISSUER)")
    if holder == asset.issuer:
        raise IssuedAssetError("account: the issuer holds no trustline to its own asset")
    if not 0 < limit <= INT64_MAX:
        raise IssuedAssetError(f"limit: must be 1..{INT64_MAX} stroops")
    key = (holder, asset_name(asset))
    if key in ledger.trustlines:
        raise IssuedAssetError(f"trustline: {holder} already trusts {key[1]}")
    account = ledger.accounts[holder]
    if account.balance < min_balance(account.num_sub_entries + 1):
        raise IssuedAssetError("account: balance below the new minimum balance (LOW_RESERVE)")
    ledger.before_write(account_key(holder), trustline_key(*key))
    account.num_sub_entries += 1
    account.last_modified = ledger.latest.seq
    line = Trustline(0, limit, authorized, ledger.latest.seq)
    ledger.trustlines[key] = line
    return line


def authorize_trustline(
    ledger: LedgerState, holder: str, asset: Asset, *, authorized: bool
) -> Trustline:
    line = ledger.trustlines.get((holder, asset_name(asset)))
    if line is None:
        raise IssuedAssetError(f"trustline: {holder} does not trust {asset_name(asset)}")
    ledger.before_write(trustline_key(holder, asset_name(asset)))
    line.authorized = authorized
    line.last_modified = ledger.latest.seq
    return line


def issue(ledger: LedgerState, asset: Asset, holder: str, amount: int) -> None:
    """The issuer pays ``amount`` stroops of ``asset`` to ``holder`` under the Payment rules."""
    if asset.issuer is None or amount <= 0:
        raise IssuedAssetError("asset and amount: an issued asset and a positive amount")
    if not StrKey.is_valid_ed25519_public_key(holder):
        raise IssuedAssetError("to: must be a G... account id")
    payment = Payment(holder, asset, _amount_string(amount), source=asset.issuer)
    issuer: str = asset.issuer
    run = apply_classic(ledger, issuer, [payment], ledger.latest.seq)
    if not run.successful:
        result = run.results[0]
        code = (
            result.tr.payment_result.code.name
            if result.tr and result.tr.payment_result
            else (result.code.name)
        )
        raise IssuedAssetError(f"payment from the issuer failed: {code}")


def _amount_string(stroops: int) -> str:
    return f"{stroops // 10_000_000}.{stroops % 10_000_000:07d}"
