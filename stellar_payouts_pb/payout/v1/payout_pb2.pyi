import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PayoutState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYOUT_STATE_UNSPECIFIED: _ClassVar[PayoutState]
    PAYOUT_STATE_ACCEPTED: _ClassVar[PayoutState]
    PAYOUT_STATE_BUILT: _ClassVar[PayoutState]
    PAYOUT_STATE_AWAITING_SIGNATURE: _ClassVar[PayoutState]
    PAYOUT_STATE_QUEUED: _ClassVar[PayoutState]
    PAYOUT_STATE_SUBMITTED: _ClassVar[PayoutState]
    PAYOUT_STATE_CONFIRMED: _ClassVar[PayoutState]
    PAYOUT_STATE_FAILED: _ClassVar[PayoutState]
    PAYOUT_STATE_CANCELLED: _ClassVar[PayoutState]
    PAYOUT_STATE_AWAITING_APPROVAL: _ClassVar[PayoutState]
    PAYOUT_STATE_AWAITING_FUNDS: _ClassVar[PayoutState]

class ExecutionMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_MODE_UNSPECIFIED: _ClassVar[ExecutionMode]
    EXECUTION_MODE_BUILD_ONLY: _ClassVar[ExecutionMode]
    EXECUTION_MODE_SIGNER_SERVICE: _ClassVar[ExecutionMode]
    EXECUTION_MODE_EXTERNAL: _ClassVar[ExecutionMode]

class BatchItemOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_ITEM_OUTCOME_UNSPECIFIED: _ClassVar[BatchItemOutcome]
    BATCH_ITEM_OUTCOME_ACCEPTED: _ClassVar[BatchItemOutcome]
    BATCH_ITEM_OUTCOME_DUPLICATE: _ClassVar[BatchItemOutcome]
    BATCH_ITEM_OUTCOME_INVALID: _ClassVar[BatchItemOutcome]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CSV: _ClassVar[ExportFormat]
    EXPORT_FORMAT_JSONL: _ClassVar[ExportFormat]
PAYOUT_STATE_UNSPECIFIED: PayoutState
PAYOUT_STATE_ACCEPTED: PayoutState
PAYOUT_STATE_BUILT: PayoutState
PAYOUT_STATE_AWAITING_SIGNATURE: PayoutState
PAYOUT_STATE_QUEUED: PayoutState
PAYOUT_STATE_SUBMITTED: PayoutState
PAYOUT_STATE_CONFIRMED: PayoutState
PAYOUT_STATE_FAILED: PayoutState
PAYOUT_STATE_CANCELLED: PayoutState
PAYOUT_STATE_AWAITING_APPROVAL: PayoutState
PAYOUT_STATE_AWAITING_FUNDS: PayoutState
EXECUTION_MODE_UNSPECIFIED: ExecutionMode
EXECUTION_MODE_BUILD_ONLY: ExecutionMode
EXECUTION_MODE_SIGNER_SERVICE: ExecutionMode
EXECUTION_MODE_EXTERNAL: ExecutionMode
BATCH_ITEM_OUTCOME_UNSPECIFIED: BatchItemOutcome
BATCH_ITEM_OUTCOME_ACCEPTED: BatchItemOutcome
BATCH_ITEM_OUTCOME_DUPLICATE: BatchItemOutcome
BATCH_ITEM_OUTCOME_INVALID: BatchItemOutcome
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_CSV: ExportFormat
EXPORT_FORMAT_JSONL: ExportFormat

class Amount(_message.Message):
    __slots__ = ("decimal", "stroops")
    DECIMAL_FIELD_NUMBER: _ClassVar[int]
    STROOPS_FIELD_NUMBER: _ClassVar[int]
    decimal: str
    stroops: int
    def __init__(self, decimal: _Optional[str] = ..., stroops: _Optional[int] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("code", "message", "retryable")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    retryable: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("number", "source_account", "sequence", "min_time", "max_time", "tx_hash", "fee_stroops", "status", "result_code", "ledger", "submitted_at", "proof")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_TIME_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    FEE_STROOPS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_CODE_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    number: int
    source_account: str
    sequence: int
    min_time: _timestamp_pb2.Timestamp
    max_time: _timestamp_pb2.Timestamp
    tx_hash: str
    fee_stroops: int
    status: str
    result_code: str
    ledger: int
    submitted_at: _timestamp_pb2.Timestamp
    proof: str
    def __init__(self, number: _Optional[int] = ..., source_account: _Optional[str] = ..., sequence: _Optional[int] = ..., min_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tx_hash: _Optional[str] = ..., fee_stroops: _Optional[int] = ..., status: _Optional[str] = ..., result_code: _Optional[str] = ..., ledger: _Optional[int] = ..., submitted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., proof: _Optional[str] = ...) -> None: ...

class Payout(_message.Message):
    __slots__ = ("id", "payout_id", "idempotency_key", "destination", "asset", "gross", "fee", "net", "state", "mode", "unsigned_envelope_xdr", "tx_hash", "ledger", "failure", "attempt_count", "current_attempt", "metadata", "round_id", "batch_id", "correlation_id", "created_at", "updated_at", "confirmed_at", "reference", "network_fee_stroops", "memo", "muxed_id", "proof")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    GROSS_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    NET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UNSIGNED_ENVELOPE_XDR_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_AT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FEE_STROOPS_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    MUXED_ID_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    id: str
    payout_id: str
    idempotency_key: str
    destination: str
    asset: str
    gross: Amount
    fee: Amount
    net: Amount
    state: PayoutState
    mode: ExecutionMode
    unsigned_envelope_xdr: str
    tx_hash: str
    ledger: int
    failure: Failure
    attempt_count: int
    current_attempt: Attempt
    metadata: _containers.ScalarMap[str, str]
    round_id: str
    batch_id: str
    correlation_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    confirmed_at: _timestamp_pb2.Timestamp
    reference: str
    network_fee_stroops: int
    memo: Memo
    muxed_id: int
    proof: PaymentProof
    def __init__(self, id: _Optional[str] = ..., payout_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., destination: _Optional[str] = ..., asset: _Optional[str] = ..., gross: _Optional[_Union[Amount, _Mapping]] = ..., fee: _Optional[_Union[Amount, _Mapping]] = ..., net: _Optional[_Union[Amount, _Mapping]] = ..., state: _Optional[_Union[PayoutState, str]] = ..., mode: _Optional[_Union[ExecutionMode, str]] = ..., unsigned_envelope_xdr: _Optional[str] = ..., tx_hash: _Optional[str] = ..., ledger: _Optional[int] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., attempt_count: _Optional[int] = ..., current_attempt: _Optional[_Union[Attempt, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., round_id: _Optional[str] = ..., batch_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., confirmed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reference: _Optional[str] = ..., network_fee_stroops: _Optional[int] = ..., memo: _Optional[_Union[Memo, _Mapping]] = ..., muxed_id: _Optional[int] = ..., proof: _Optional[_Union[PaymentProof, _Mapping]] = ...) -> None: ...

class PaymentProof(_message.Message):
    __slots__ = ("tx_hash", "ledger", "ledger_closed_at", "op_index", "event_id", "fee_charged_stroops", "fee_share_stroops", "memo", "muxed_id", "treasury")
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    LEDGER_CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    OP_INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    FEE_CHARGED_STROOPS_FIELD_NUMBER: _ClassVar[int]
    FEE_SHARE_STROOPS_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    MUXED_ID_FIELD_NUMBER: _ClassVar[int]
    TREASURY_FIELD_NUMBER: _ClassVar[int]
    tx_hash: str
    ledger: int
    ledger_closed_at: _timestamp_pb2.Timestamp
    op_index: int
    event_id: str
    fee_charged_stroops: int
    fee_share_stroops: int
    memo: Memo
    muxed_id: int
    treasury: str
    def __init__(self, tx_hash: _Optional[str] = ..., ledger: _Optional[int] = ..., ledger_closed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., op_index: _Optional[int] = ..., event_id: _Optional[str] = ..., fee_charged_stroops: _Optional[int] = ..., fee_share_stroops: _Optional[int] = ..., memo: _Optional[_Union[Memo, _Mapping]] = ..., muxed_id: _Optional[int] = ..., treasury: _Optional[str] = ...) -> None: ...

class Memo(_message.Message):
    __slots__ = ("text", "id", "hash", "return_hash")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    RETURN_HASH_FIELD_NUMBER: _ClassVar[int]
    text: str
    id: int
    hash: bytes
    return_hash: bytes
    def __init__(self, text: _Optional[str] = ..., id: _Optional[int] = ..., hash: _Optional[bytes] = ..., return_hash: _Optional[bytes] = ...) -> None: ...

class CreatePayoutRequest(_message.Message):
    __slots__ = ("payout_id", "destination", "amount", "asset", "idempotency_key", "metadata", "reference", "memo")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    destination: str
    amount: str
    asset: str
    idempotency_key: str
    metadata: _containers.ScalarMap[str, str]
    reference: str
    memo: Memo
    def __init__(self, payout_id: _Optional[str] = ..., destination: _Optional[str] = ..., amount: _Optional[str] = ..., asset: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., reference: _Optional[str] = ..., memo: _Optional[_Union[Memo, _Mapping]] = ...) -> None: ...

class CreatePayoutResponse(_message.Message):
    __slots__ = ("payout", "created")
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    created: bool
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetPayoutRequest(_message.Message):
    __slots__ = ("payout_id", "include_attempts")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    include_attempts: bool
    def __init__(self, payout_id: _Optional[str] = ..., include_attempts: _Optional[bool] = ...) -> None: ...

class GetPayoutResponse(_message.Message):
    __slots__ = ("payout", "attempts")
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ...) -> None: ...

class ListPayoutsRequest(_message.Message):
    __slots__ = ("states", "destination", "round_id", "batch_id", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[PayoutState]
    destination: str
    round_id: str
    batch_id: str
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[PayoutState, str]]] = ..., destination: _Optional[str] = ..., round_id: _Optional[str] = ..., batch_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPayoutsResponse(_message.Message):
    __slots__ = ("payouts", "next_page_token")
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payouts: _containers.RepeatedCompositeFieldContainer[Payout]
    next_page_token: str
    def __init__(self, payouts: _Optional[_Iterable[_Union[Payout, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubmitSignedTransactionRequest(_message.Message):
    __slots__ = ("payout_id", "signed_envelope_xdr")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNED_ENVELOPE_XDR_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    signed_envelope_xdr: str
    def __init__(self, payout_id: _Optional[str] = ..., signed_envelope_xdr: _Optional[str] = ...) -> None: ...

class SubmitSignedTransactionResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ...) -> None: ...

class WatchPayoutRequest(_message.Message):
    __slots__ = ("payout_id",)
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    def __init__(self, payout_id: _Optional[str] = ...) -> None: ...

class WatchPayoutResponse(_message.Message):
    __slots__ = ("payout", "previous_state", "changed_at")
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    previous_state: PayoutState
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ..., previous_state: _Optional[_Union[PayoutState, str]] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RetryPayoutRequest(_message.Message):
    __slots__ = ("payout_id", "reason")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    reason: str
    def __init__(self, payout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RetryPayoutResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ...) -> None: ...

class CancelPayoutRequest(_message.Message):
    __slots__ = ("payout_id", "reason")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    reason: str
    def __init__(self, payout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelPayoutResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: Payout
    def __init__(self, payout: _Optional[_Union[Payout, _Mapping]] = ...) -> None: ...

class CreatePayoutBatchRequest(_message.Message):
    __slots__ = ("items", "batch_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[CreatePayoutRequest]
    batch_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[CreatePayoutRequest, _Mapping]]] = ..., batch_id: _Optional[str] = ...) -> None: ...

class FieldError(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class BatchItemResult(_message.Message):
    __slots__ = ("index", "outcome", "payout", "errors")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    index: int
    outcome: BatchItemOutcome
    payout: Payout
    errors: _containers.RepeatedCompositeFieldContainer[FieldError]
    def __init__(self, index: _Optional[int] = ..., outcome: _Optional[_Union[BatchItemOutcome, str]] = ..., payout: _Optional[_Union[Payout, _Mapping]] = ..., errors: _Optional[_Iterable[_Union[FieldError, _Mapping]]] = ...) -> None: ...

class CreatePayoutBatchResponse(_message.Message):
    __slots__ = ("batch_id", "results")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    results: _containers.RepeatedCompositeFieldContainer[BatchItemResult]
    def __init__(self, batch_id: _Optional[str] = ..., results: _Optional[_Iterable[_Union[BatchItemResult, _Mapping]]] = ...) -> None: ...

class GetPayoutStatsRequest(_message.Message):
    __slots__ = ("destination",)
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    destination: str
    def __init__(self, destination: _Optional[str] = ...) -> None: ...

class PayoutStats(_message.Message):
    __slots__ = ("count", "confirmed_count", "failed_count", "pending_count", "total_gross", "total_fees", "total_net_confirmed", "success_rate")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_COUNT_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_GROSS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FEES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NET_CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    count: int
    confirmed_count: int
    failed_count: int
    pending_count: int
    total_gross: Amount
    total_fees: Amount
    total_net_confirmed: Amount
    success_rate: float
    def __init__(self, count: _Optional[int] = ..., confirmed_count: _Optional[int] = ..., failed_count: _Optional[int] = ..., pending_count: _Optional[int] = ..., total_gross: _Optional[_Union[Amount, _Mapping]] = ..., total_fees: _Optional[_Union[Amount, _Mapping]] = ..., total_net_confirmed: _Optional[_Union[Amount, _Mapping]] = ..., success_rate: _Optional[float] = ...) -> None: ...

class GetPayoutStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: PayoutStats
    def __init__(self, stats: _Optional[_Union[PayoutStats, _Mapping]] = ...) -> None: ...

class ExportPayoutsRequest(_message.Message):
    __slots__ = ("format", "created_from", "created_before", "states", "round_id", "run_id", "destination", "rows_per_chunk", "resume_cursor")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FROM_FIELD_NUMBER: _ClassVar[int]
    CREATED_BEFORE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESUME_CURSOR_FIELD_NUMBER: _ClassVar[int]
    format: ExportFormat
    created_from: _timestamp_pb2.Timestamp
    created_before: _timestamp_pb2.Timestamp
    states: _containers.RepeatedScalarFieldContainer[PayoutState]
    round_id: str
    run_id: str
    destination: str
    rows_per_chunk: int
    resume_cursor: str
    def __init__(self, format: _Optional[_Union[ExportFormat, str]] = ..., created_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., states: _Optional[_Iterable[_Union[PayoutState, str]]] = ..., round_id: _Optional[str] = ..., run_id: _Optional[str] = ..., destination: _Optional[str] = ..., rows_per_chunk: _Optional[int] = ..., resume_cursor: _Optional[str] = ...) -> None: ...

class ExportPayoutsResponse(_message.Message):
    __slots__ = ("data", "row_count", "resume_cursor")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESUME_CURSOR_FIELD_NUMBER: _ClassVar[int]
    data: str
    row_count: int
    resume_cursor: str
    def __init__(self, data: _Optional[str] = ..., row_count: _Optional[int] = ..., resume_cursor: _Optional[str] = ...) -> None: ...

class GetPayoutStatementRequest(_message.Message):
    __slots__ = ("round_id", "run_id")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    run_id: str
    def __init__(self, round_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class StatementLine(_message.Message):
    __slots__ = ("state", "asset", "count", "gross", "fees", "net", "network_fees", "network_fees_known")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    GROSS_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    NET_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FEES_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FEES_KNOWN_FIELD_NUMBER: _ClassVar[int]
    state: PayoutState
    asset: str
    count: int
    gross: Amount
    fees: Amount
    net: Amount
    network_fees: Amount
    network_fees_known: int
    def __init__(self, state: _Optional[_Union[PayoutState, str]] = ..., asset: _Optional[str] = ..., count: _Optional[int] = ..., gross: _Optional[_Union[Amount, _Mapping]] = ..., fees: _Optional[_Union[Amount, _Mapping]] = ..., net: _Optional[_Union[Amount, _Mapping]] = ..., network_fees: _Optional[_Union[Amount, _Mapping]] = ..., network_fees_known: _Optional[int] = ...) -> None: ...

class GetPayoutStatementResponse(_message.Message):
    __slots__ = ("round_id", "run_id", "lines", "totals", "count", "as_of")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    run_id: str
    lines: _containers.RepeatedCompositeFieldContainer[StatementLine]
    totals: _containers.RepeatedCompositeFieldContainer[StatementLine]
    count: int
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, round_id: _Optional[str] = ..., run_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[StatementLine, _Mapping]]] = ..., totals: _Optional[_Iterable[_Union[StatementLine, _Mapping]]] = ..., count: _Optional[int] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
