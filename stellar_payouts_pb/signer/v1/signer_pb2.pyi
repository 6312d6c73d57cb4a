from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_BACKEND_UNSPECIFIED: _ClassVar[KeyBackend]
    KEY_BACKEND_PKCS11: _ClassVar[KeyBackend]
    KEY_BACKEND_HOT: _ClassVar[KeyBackend]

class KeyRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KEY_ROLE_UNSPECIFIED: _ClassVar[KeyRole]
    KEY_ROLE_FUNDING: _ClassVar[KeyRole]
    KEY_ROLE_CHANNEL: _ClassVar[KeyRole]
    KEY_ROLE_PAYOUT: _ClassVar[KeyRole]
KEY_BACKEND_UNSPECIFIED: KeyBackend
KEY_BACKEND_PKCS11: KeyBackend
KEY_BACKEND_HOT: KeyBackend
KEY_ROLE_UNSPECIFIED: KeyRole
KEY_ROLE_FUNDING: KeyRole
KEY_ROLE_CHANNEL: KeyRole
KEY_ROLE_PAYOUT: KeyRole

class SigningContext(_message.Message):
    __slots__ = ("payout_id", "attempt", "correlation_id")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    attempt: int
    correlation_id: str
    def __init__(self, payout_id: _Optional[str] = ..., attempt: _Optional[int] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class Key(_message.Message):
    __slots__ = ("key_id", "public_key", "backend", "role")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    public_key: str
    backend: KeyBackend
    role: KeyRole
    def __init__(self, key_id: _Optional[str] = ..., public_key: _Optional[str] = ..., backend: _Optional[_Union[KeyBackend, str]] = ..., role: _Optional[_Union[KeyRole, str]] = ...) -> None: ...

class SignTransactionRequest(_message.Message):
    __slots__ = ("key_id", "envelope_xdr", "request_id", "context", "approvals")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_XDR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    envelope_xdr: str
    request_id: str
    context: SigningContext
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    def __init__(self, key_id: _Optional[str] = ..., envelope_xdr: _Optional[str] = ..., request_id: _Optional[str] = ..., context: _Optional[_Union[SigningContext, _Mapping]] = ..., approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("operation_index", "approver_public_key", "signature", "payout_id", "expires_at")
    OPERATION_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPROVER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    operation_index: int
    approver_public_key: str
    signature: bytes
    payout_id: str
    expires_at: int
    def __init__(self, operation_index: _Optional[int] = ..., approver_public_key: _Optional[str] = ..., signature: _Optional[bytes] = ..., payout_id: _Optional[str] = ..., expires_at: _Optional[int] = ...) -> None: ...

class SignTransactionResponse(_message.Message):
    __slots__ = ("signed_envelope_xdr", "decorated_signature_xdr", "tx_hash", "public_key")
    SIGNED_ENVELOPE_XDR_FIELD_NUMBER: _ClassVar[int]
    DECORATED_SIGNATURE_XDR_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    signed_envelope_xdr: str
    decorated_signature_xdr: str
    tx_hash: str
    public_key: str
    def __init__(self, signed_envelope_xdr: _Optional[str] = ..., decorated_signature_xdr: _Optional[str] = ..., tx_hash: _Optional[str] = ..., public_key: _Optional[str] = ...) -> None: ...

class SignTransactionsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SignTransactionRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SignTransactionRequest, _Mapping]]] = ...) -> None: ...

class SigningError(_message.Message):
    __slots__ = ("code", "message", "field", "rule", "account")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    field: str
    rule: str
    account: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., field: _Optional[str] = ..., rule: _Optional[str] = ..., account: _Optional[str] = ...) -> None: ...

class SignTransactionResult(_message.Message):
    __slots__ = ("signed", "error")
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    signed: SignTransactionResponse
    error: SigningError
    def __init__(self, signed: _Optional[_Union[SignTransactionResponse, _Mapping]] = ..., error: _Optional[_Union[SigningError, _Mapping]] = ...) -> None: ...

class SignTransactionsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SignTransactionResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SignTransactionResult, _Mapping]]] = ...) -> None: ...

class SignAuthorizationEntryRequest(_message.Message):
    __slots__ = ("key_id", "entry_xdr", "signature_expiration_ledger", "request_id", "context", "current_ledger")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_XDR_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_EXPIRATION_LEDGER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_LEDGER_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    entry_xdr: str
    signature_expiration_ledger: int
    request_id: str
    context: SigningContext
    current_ledger: int
    def __init__(self, key_id: _Optional[str] = ..., entry_xdr: _Optional[str] = ..., signature_expiration_ledger: _Optional[int] = ..., request_id: _Optional[str] = ..., context: _Optional[_Union[SigningContext, _Mapping]] = ..., current_ledger: _Optional[int] = ...) -> None: ...

class SignAuthorizationEntryResponse(_message.Message):
    __slots__ = ("signed_entry_xdr", "public_key")
    SIGNED_ENTRY_XDR_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    signed_entry_xdr: str
    public_key: str
    def __init__(self, signed_entry_xdr: _Optional[str] = ..., public_key: _Optional[str] = ...) -> None: ...

class ListKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[Key]
    def __init__(self, keys: _Optional[_Iterable[_Union[Key, _Mapping]]] = ...) -> None: ...

class GetPublicKeyRequest(_message.Message):
    __slots__ = ("key_id",)
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    def __init__(self, key_id: _Optional[str] = ...) -> None: ...

class GetPublicKeyResponse(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: Key
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ...) -> None: ...

class GetAuditCheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAuditCheckpointResponse(_message.Message):
    __slots__ = ("records", "head_hash", "checkpoint_mac", "audit_key_id")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_MAC_FIELD_NUMBER: _ClassVar[int]
    AUDIT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    records: int
    head_hash: str
    checkpoint_mac: str
    audit_key_id: str
    def __init__(self, records: _Optional[int] = ..., head_hash: _Optional[str] = ..., checkpoint_mac: _Optional[str] = ..., audit_key_id: _Optional[str] = ...) -> None: ...

class CheckTransactionRequest(_message.Message):
    __slots__ = ("key_id", "envelope_xdr", "request_id", "context", "approvals")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_XDR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    envelope_xdr: str
    request_id: str
    context: SigningContext
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    def __init__(self, key_id: _Optional[str] = ..., envelope_xdr: _Optional[str] = ..., request_id: _Optional[str] = ..., context: _Optional[_Union[SigningContext, _Mapping]] = ..., approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ...) -> None: ...

class CheckTransactionResponse(_message.Message):
    __slots__ = ("would_sign", "rule", "key_id", "account", "message", "tx_hash")
    WOULD_SIGN_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    would_sign: bool
    rule: str
    key_id: str
    account: str
    message: str
    tx_hash: str
    def __init__(self, would_sign: _Optional[bool] = ..., rule: _Optional[str] = ..., key_id: _Optional[str] = ..., account: _Optional[str] = ..., message: _Optional[str] = ..., tx_hash: _Optional[str] = ...) -> None: ...
