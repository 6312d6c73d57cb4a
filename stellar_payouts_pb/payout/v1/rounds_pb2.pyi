import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from stellar_payouts_pb.payout.v1 import payout_pb2 as _payout_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoundState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUND_STATE_UNSPECIFIED: _ClassVar[RoundState]
    ROUND_STATE_OPEN: _ClassVar[RoundState]
    ROUND_STATE_CLOSED: _ClassVar[RoundState]
    ROUND_STATE_RESOLVED: _ClassVar[RoundState]
    ROUND_STATE_SETTLED: _ClassVar[RoundState]
ROUND_STATE_UNSPECIFIED: RoundState
ROUND_STATE_OPEN: RoundState
ROUND_STATE_CLOSED: RoundState
ROUND_STATE_RESOLVED: RoundState
ROUND_STATE_SETTLED: RoundState

class Round(_message.Message):
    __slots__ = ("round_id", "state", "asset", "winner_count", "total", "created_at", "closed_at", "resolved_at", "settled_at", "resolved_by")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    WINNER_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    state: RoundState
    asset: str
    winner_count: int
    total: _payout_pb2.Amount
    created_at: _timestamp_pb2.Timestamp
    closed_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    settled_at: _timestamp_pb2.Timestamp
    resolved_by: str
    def __init__(self, round_id: _Optional[str] = ..., state: _Optional[_Union[RoundState, str]] = ..., asset: _Optional[str] = ..., winner_count: _Optional[int] = ..., total: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., closed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., settled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_by: _Optional[str] = ...) -> None: ...

class Winner(_message.Message):
    __slots__ = ("rank", "destination", "amount", "memo")
    RANK_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    MEMO_FIELD_NUMBER: _ClassVar[int]
    rank: int
    destination: str
    amount: str
    memo: _payout_pb2.Memo
    def __init__(self, rank: _Optional[int] = ..., destination: _Optional[str] = ..., amount: _Optional[str] = ..., memo: _Optional[_Union[_payout_pb2.Memo, _Mapping]] = ...) -> None: ...

class CreateRoundRequest(_message.Message):
    __slots__ = ("round_id", "asset")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    asset: str
    def __init__(self, round_id: _Optional[str] = ..., asset: _Optional[str] = ...) -> None: ...

class CreateRoundResponse(_message.Message):
    __slots__ = ("round",)
    ROUND_FIELD_NUMBER: _ClassVar[int]
    round: Round
    def __init__(self, round: _Optional[_Union[Round, _Mapping]] = ...) -> None: ...

class GetRoundRequest(_message.Message):
    __slots__ = ("round_id",)
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    def __init__(self, round_id: _Optional[str] = ...) -> None: ...

class GetRoundResponse(_message.Message):
    __slots__ = ("round", "payouts")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    round: Round
    payouts: _containers.RepeatedCompositeFieldContainer[_payout_pb2.Payout]
    def __init__(self, round: _Optional[_Union[Round, _Mapping]] = ..., payouts: _Optional[_Iterable[_Union[_payout_pb2.Payout, _Mapping]]] = ...) -> None: ...

class ListRoundsRequest(_message.Message):
    __slots__ = ("states", "page_size", "page_token")
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[RoundState]
    page_size: int
    page_token: str
    def __init__(self, states: _Optional[_Iterable[_Union[RoundState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRoundsResponse(_message.Message):
    __slots__ = ("rounds", "next_page_token")
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rounds: _containers.RepeatedCompositeFieldContainer[Round]
    next_page_token: str
    def __init__(self, rounds: _Optional[_Iterable[_Union[Round, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CloseRoundRequest(_message.Message):
    __slots__ = ("round_id",)
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    def __init__(self, round_id: _Optional[str] = ...) -> None: ...

class CloseRoundResponse(_message.Message):
    __slots__ = ("round",)
    ROUND_FIELD_NUMBER: _ClassVar[int]
    round: Round
    def __init__(self, round: _Optional[_Union[Round, _Mapping]] = ...) -> None: ...

class ResolveRoundRequest(_message.Message):
    __slots__ = ("round_id", "winners")
    ROUND_ID_FIELD_NUMBER: _ClassVar[int]
    WINNERS_FIELD_NUMBER: _ClassVar[int]
    round_id: str
    winners: _containers.RepeatedCompositeFieldContainer[Winner]
    def __init__(self, round_id: _Optional[str] = ..., winners: _Optional[_Iterable[_Union[Winner, _Mapping]]] = ...) -> None: ...

class ResolveRoundResponse(_message.Message):
    __slots__ = ("round", "payouts")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    round: Round
    payouts: _containers.RepeatedCompositeFieldContainer[_payout_pb2.Payout]
    def __init__(self, round: _Optional[_Union[Round, _Mapping]] = ..., payouts: _Optional[_Iterable[_Union[_payout_pb2.Payout, _Mapping]]] = ...) -> None: ...
