"""Token administration for signerctl: init a token, generate or import an Ed25519 key.

python-pkcs11 has no C_InitToken, so token init calls the module's C_* functions through ctypes
(softhsm2-util would need the PINs on its command line or a terminal).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import NoSuchKey, PKCS11Error
from pkcs11.util.ec import encode_named_curve_parameters
from stellar_sdk import Keypair

from signer_service.backends import BackendError
from signer_service.backends.pkcs11 import ED25519_OID, open_token, raw_public_key

_CKF_RW_SESSION, _CKF_SERIAL_SESSION, _CKU_SO = 0x2, 0x4, 0
_CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191


@dataclass(frozen=True)
class TokenKey:
    label: str
    address: str


def _check(rv: int, step: str) -> None:
    if rv != 0:
        raise BackendError(f"{step} failed (CKR 0x{rv:x})")


def init_token(module: str, label: str, so_pin: str, user_pin: str) -> None:
    """Initialise the first free slot as token `label` with the given SO and user PINs."""
    if len(label.encode()) > 32:
        raise BackendError("token label is longer than 32 bytes")
    lib = ctypes.CDLL(module)
    ulong = ctypes.c_ulong
    rv = lib.C_Initialize(None)
    if rv not in (0, _CKR_CRYPTOKI_ALREADY_INITIALIZED):
        _check(rv, "C_Initialize")
    try:
        count = ulong(0)
        _check(lib.C_GetSlotList(ctypes.c_ubyte(1), None, ctypes.byref(count)), "C_GetSlotList")
        slots = (ulong * count.value)()
        _check(lib.C_GetSlotList(ctypes.c_ubyte(1), slots, ctypes.byref(count)), "C_GetSlotList")
        free = [s for s in slots[: count.value] if not _initialized(lib, s)]
        if not free:
            raise BackendError("no free (uninitialised) token slot")
        slot = ulong(free[0])
        so, user = so_pin.encode(), user_pin.encode()
        _check(lib.C_InitToken(slot, so, ulong(len(so)), label.encode().ljust(32, b" ")),
               "C_InitToken")
        session = ulong(0)
        _check(lib.C_OpenSession(slot, ulong(_CKF_SERIAL_SESSION | _CKF_RW_SESSION), None, None,
                                 ctypes.byref(session)), "C_OpenSession")
        try:
            _check(lib.C_Login(session, ulong(_CKU_SO), so, ulong(len(so))), "C_Login (SO)")
            _check(lib.C_InitPIN(session, user, ulong(len(user))), "C_InitPIN")
            lib.C_Logout(session)
        finally:
            lib.C_CloseSession(session)
    finally:
        lib.C_Finalize(None)


class _TokenInfo(ctypes.Structure):
    _fields_ = [  # noqa: RUF012 - ctypes layout (CK_TOKEN_INFO)
        ("label", ctypes.c_char * 32), ("manufacturer", ctypes.c_char * 32),
        ("model", ctypes.c_char * 16), ("serial", ctypes.c_char * 16),
        ("flags", ctypes.c_ulong), ("rest", ctypes.c_ubyte * 160),
    ]


def _initialized(lib: Any, slot: int) -> bool:
    info = _TokenInfo()
    _check(lib.C_GetTokenInfo(ctypes.c_ulong(slot), ctypes.byref(info)), "C_GetTokenInfo")
    return bool(info.flags & 0x400)  # CKF_TOKEN_INITIALIZED


def _session(module: str, token_label: str, pin: str) -> Any:
    token = open_token(module, token_label)
    try:
        return token.open(user_pin=pin, rw=True)
    except PKCS11Error as err:
        raise BackendError(f"cannot log in to token {token_label!r}: {type(err).__name__}") \
            from None


def _label_free(session: Any, label: str) -> None:
    try:
        session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
    except NoSuchKey:
        return
    raise BackendError(f"a key labelled {label!r} already exists on the token")


def _generate(session: Any, label: str) -> TokenKey:
    """A non-extractable Ed25519 key pair labelled `label` on the open session's token."""
    _label_free(session, label)
    pub, _priv = session.generate_keypair(
        KeyType.EC_EDWARDS, store=True, label=label,
        public_template={Attribute.EC_PARAMS: encode_named_curve_parameters(ED25519_OID)},
        private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
    )
    raw = raw_public_key(bytes(pub[Attribute.EC_POINT]))
    return TokenKey(label, Keypair.from_raw_ed25519_public_key(raw).public_key)


def generate_key(module: str, token_label: str, pin: str, label: str) -> TokenKey:
    with _session(module, token_label, pin) as session:
        return _generate(session, label)


def next_numbers(labels: list[str], prefix: str, count: int) -> range:
    """The `count` numbers after the highest `<prefix><n>` already used (a re-run never
    reuses a label)."""
    used = [int(label[len(prefix):]) for label in labels
            if label.startswith(prefix) and label[len(prefix):].isdigit()]
    start = max(used, default=0) + 1
    return range(start, start + count)


def generate_channel_keys(
    module: str, token_label: str, pin: str, prefix: str, count: int
) -> list[TokenKey]:
    """`count` new channel keys labelled `<prefix><n>` in one session. A token error part way
    names the keys already made (they stay; a re-run continues after them)."""
    made: list[TokenKey] = []
    with _session(module, token_label, pin) as session:
        labels = [str(key[Attribute.LABEL])
                  for key in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})]
        for n in next_numbers(labels, prefix, count):
            try:
                made.append(_generate(session, f"{prefix}{n}"))
            except PKCS11Error as err:
                done = ", ".join(f"{k.label} {k.address}" for k in made) or "none"
                raise BackendError(f"generating {prefix}{n} failed ({type(err).__name__}); "
                                   f"made before it: {done}; run again for the rest") from None
    return made


def destroy_channel_key(module: str, token_label: str, pin: str, prefix: str, label: str) -> str:
    """Destroys a retired channel's key pair (after its account was merged home): a running
    signer stops signing with it at its next refresh. Only labels of the channel prefix, so a
    typo cannot destroy the paying key. Returns the G... address it had."""
    if not label.startswith(prefix) or label == prefix:
        raise BackendError(f"{label!r} is not a channel key label (prefix {prefix!r})")
    with _session(module, token_label, pin) as session:
        found = [*session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                       Attribute.LABEL: label}),
                 *session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                       Attribute.LABEL: label})]
        publics = [o for o in found if o[Attribute.CLASS] == ObjectClass.PUBLIC_KEY]
        if not publics or len(found) != 2:
            raise BackendError(f"no single key pair labelled {label!r} on the token")
        raw = raw_public_key(bytes(publics[0][Attribute.EC_POINT]))
        for obj in found:
            obj.destroy()
    return Keypair.from_raw_ed25519_public_key(raw).public_key


def import_key(module: str, token_label: str, pin: str, label: str, secret: str) -> TokenKey:
    """Store a hot key's seed on the token as a sensitive, non-extractable private key."""
    keypair = Keypair.from_secret(secret)
    params = encode_named_curve_parameters(ED25519_OID)
    with _session(module, token_label, pin) as session:
        _label_free(session, label)
        priv = session.create_object({
            Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
            Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False, Attribute.SIGN: True, Attribute.LABEL: label,
            Attribute.EC_PARAMS: params, Attribute.VALUE: keypair.raw_secret_key(),
        })
        session.create_object({
            Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
            Attribute.TOKEN: True, Attribute.VERIFY: True, Attribute.LABEL: label,
            Attribute.EC_PARAMS: params,
            Attribute.EC_POINT: b"\x04\x20" + keypair.raw_public_key(),
        })
        # Prove the token signs exactly as the hot key did before anyone relies on it.
        probe = os.urandom(32)
        if bytes(priv.sign(probe, mechanism=Mechanism.EDDSA)) != keypair.sign(probe):
            priv.destroy()
            raise BackendError("the imported key does not sign like the original")
    return TokenKey(label, keypair.public_key)


def show_key(module: str, token_label: str, pin: str, label: str) -> TokenKey:
    with _session(module, token_label, pin) as session:
        try:
            pub = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
        except NoSuchKey:
            raise BackendError(f"no public key labelled {label!r} on the token") from None
        raw = raw_public_key(bytes(pub[Attribute.EC_POINT]))
    return TokenKey(label, Keypair.from_raw_ed25519_public_key(raw).public_key)


def generate_audit_key(module: str, token_label: str, pin: str, label: str) -> None:
    """The audit log's HMAC key: a 256-bit generic secret, sensitive and non-extractable,
    usable only for CKM_SHA256_HMAC on the token."""
    with _session(module, token_label, pin) as session:
        try:
            session.get_key(key_type=KeyType.GENERIC_SECRET, label=label)
        except NoSuchKey:
            session.generate_key(KeyType.GENERIC_SECRET, 256, label=label, store=True, template={
                Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                Attribute.VERIFY: True,
            })
            return
        raise BackendError(f"an audit key labelled {label!r} already exists on the token")
