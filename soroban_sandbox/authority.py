"""Signature checks: the transaction's own signatures and Soroban authorization entries.

The sandbox models every account as a master key with weight 1 and thresholds 0 (what friendbot
creates), so "authorised by G..." means "signed by the ed25519 key inside G...".
"""

from __future__ import annotations

from collections.abc import Sequence

from stellar_sdk import Keypair, StrKey
from stellar_sdk import xdr as x
from stellar_sdk.address import Address
from stellar_sdk.auth import authorization_payload_hash, build_authorization_preimage
from stellar_sdk.exceptions import BadSignatureError

ADDRESS_CREDENTIALS = (
    x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS,
    x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2,
)


def _verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Keypair.from_raw_ed25519_public_key(public_key).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def first_valid_signature(
    account_id: str,
    tx_hash: bytes,
    signatures: Sequence[x.DecoratedSignature],
    used: set[int],
) -> int | None:
    """Index of the first not-yet-used decorated signature that is the account's master key
    signing ``tx_hash`` (stellar-core SignatureChecker: one signature per signer key).

    The hash covers the network id, so a transaction signed for another network has none.
    """
    keypair = Keypair.from_public_key(account_id)
    hint = keypair.signature_hint()
    for index, sig in enumerate(signatures):
        if (
            index not in used
            and sig.hint.signature_hint == hint
            and _verify(keypair.raw_public_key(), tx_hash, sig.signature.signature)
        ):
            return index
    return None


def source_account_of(envelope_source: x.MuxedAccount) -> str:
    return StrKey.encode_ed25519_public_key(
        envelope_source.ed25519.uint256
        if envelope_source.ed25519 is not None
        else envelope_source.med25519.ed25519.uint256  # type: ignore[union-attr]
    )


def invocation_matches(entry: x.SorobanAuthorizationEntry, call: x.InvokeContractArgs) -> bool:
    fn = entry.root_invocation.function
    if fn.type != x.SorobanAuthorizedFunctionType.SOROBAN_AUTHORIZED_FUNCTION_TYPE_CONTRACT_FN:
        return False
    assert fn.contract_fn is not None
    return fn.contract_fn.to_xdr_bytes() == call.to_xdr_bytes()


def address_credentials(entry: x.SorobanAuthorizationEntry) -> x.SorobanAddressCredentials | None:
    creds = entry.credentials
    if creds.type == x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS:
        return creds.address
    if creds.type == x.SorobanCredentialsType.SOROBAN_CREDENTIALS_ADDRESS_V2:
        return creds.address_v2
    return None


def check_address_entry(
    entry: x.SorobanAuthorizationEntry, *, passphrase: str, ledger_seq: int
) -> str | None:
    """Why an address-credential entry does not authorise its address, or None if it does.

    Mirrors the host's default account ``__check_auth``: the signature is a
    ``Vec<Map{public_key, signature}>`` over sha256(HashIDPreimage), and an entry is void after
    ``signature_expiration_ledger``.
    """
    creds = address_credentials(entry)
    if creds is None:
        return "not address credentials"
    if creds.signature_expiration_ledger.uint32 < ledger_seq:
        return "signature expired (signature_expiration_ledger < ledger)"
    address = Address.from_xdr_sc_address(creds.address).address
    if not address.startswith("G"):
        return "contract accounts (custom __check_auth) are not supported by the sandbox"
    preimage = build_authorization_preimage(
        entry, creds.signature_expiration_ledger.uint32, passphrase
    )
    payload = authorization_payload_hash(preimage)
    expected_key = Keypair.from_public_key(address).raw_public_key()
    sig = creds.signature
    if sig.type != x.SCValType.SCV_VEC or sig.vec is None or len(sig.vec.sc_vec) != 1:
        return "signature must be Vec<Map{public_key, signature}> with one signer"
    item = sig.vec.sc_vec[0]
    if item.type != x.SCValType.SCV_MAP or item.map is None:
        return "signature entry must be a map"
    fields: dict[str, bytes] = {}
    for pair in item.map.sc_map:
        if pair.key.sym is not None and pair.val.bytes is not None:
            fields[pair.key.sym.sc_symbol.decode()] = pair.val.bytes.sc_bytes
    if fields.get("public_key") != expected_key:
        return "public_key does not belong to the address"
    if not _verify(expected_key, payload, fields.get("signature", b"")):
        return "bad authorization signature"
    return None
