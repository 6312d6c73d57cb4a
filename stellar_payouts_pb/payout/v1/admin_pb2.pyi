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

class HealthLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_LEVEL_UNSPECIFIED: _ClassVar[HealthLevel]
    HEALTH_LEVEL_HEALTHY: _ClassVar[HealthLevel]
    HEALTH_LEVEL_WARNING: _ClassVar[HealthLevel]
    HEALTH_LEVEL_CRITICAL: _ClassVar[HealthLevel]

class AlertKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_KIND_UNSPECIFIED: _ClassVar[AlertKind]
    ALERT_KIND_FAILURE_RATE: _ClassVar[AlertKind]
    ALERT_KIND_PENDING_THRESHOLD: _ClassVar[AlertKind]
    ALERT_KIND_PROCESSING_DELAY: _ClassVar[AlertKind]
    ALERT_KIND_AMOUNT_THRESHOLD: _ClassVar[AlertKind]
    ALERT_KIND_SYSTEM_ERROR: _ClassVar[AlertKind]
    ALERT_KIND_UNEXPLAINED_OUTFLOW: _ClassVar[AlertKind]
    ALERT_KIND_PAID_TWICE: _ClassVar[AlertKind]
    ALERT_KIND_CONFIRMED_UNSEEN: _ClassVar[AlertKind]
    ALERT_KIND_WATCHDOG_GAP: _ClassVar[AlertKind]
    ALERT_KIND_SENDING_PAUSED: _ClassVar[AlertKind]
    ALERT_KIND_CHANNELS_HELD: _ClassVar[AlertKind]
    ALERT_KIND_WEBHOOKS_DEAD_LETTERED: _ClassVar[AlertKind]
    ALERT_KIND_AWAITING_FUNDS: _ClassVar[AlertKind]

class AlertStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_STATUS_UNSPECIFIED: _ClassVar[AlertStatus]
    ALERT_STATUS_ACTIVE: _ClassVar[AlertStatus]
    ALERT_STATUS_ACKNOWLEDGED: _ClassVar[AlertStatus]
    ALERT_STATUS_RESOLVED: _ClassVar[AlertStatus]

class ScheduleFrequency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULE_FREQUENCY_UNSPECIFIED: _ClassVar[ScheduleFrequency]
    SCHEDULE_FREQUENCY_DAILY: _ClassVar[ScheduleFrequency]
    SCHEDULE_FREQUENCY_WEEKLY: _ClassVar[ScheduleFrequency]
    SCHEDULE_FREQUENCY_MONTHLY: _ClassVar[ScheduleFrequency]

class ChannelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANNEL_STATE_UNSPECIFIED: _ClassVar[ChannelState]
    CHANNEL_STATE_PENDING: _ClassVar[ChannelState]
    CHANNEL_STATE_FUNDING: _ClassVar[ChannelState]
    CHANNEL_STATE_ACTIVE: _ClassVar[ChannelState]
    CHANNEL_STATE_DRAINING: _ClassVar[ChannelState]
    CHANNEL_STATE_RETIRED: _ClassVar[ChannelState]
    CHANNEL_STATE_MERGING: _ClassVar[ChannelState]
    CHANNEL_STATE_MERGED: _ClassVar[ChannelState]

class WatchdogFindingKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WATCHDOG_FINDING_KIND_UNSPECIFIED: _ClassVar[WatchdogFindingKind]
    WATCHDOG_FINDING_KIND_UNEXPLAINED_OUTFLOW: _ClassVar[WatchdogFindingKind]
    WATCHDOG_FINDING_KIND_PAID_TWICE: _ClassVar[WatchdogFindingKind]
    WATCHDOG_FINDING_KIND_CONFIRMED_UNSEEN: _ClassVar[WatchdogFindingKind]
    WATCHDOG_FINDING_KIND_WATCHDOG_GAP: _ClassVar[WatchdogFindingKind]

class WatchdogFindingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WATCHDOG_FINDING_STATUS_UNSPECIFIED: _ClassVar[WatchdogFindingStatus]
    WATCHDOG_FINDING_STATUS_OPEN: _ClassVar[WatchdogFindingStatus]
    WATCHDOG_FINDING_STATUS_ACKNOWLEDGED: _ClassVar[WatchdogFindingStatus]
    WATCHDOG_FINDING_STATUS_RESOLVED: _ClassVar[WatchdogFindingStatus]

class WebhookDeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_DELIVERY_STATE_UNSPECIFIED: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_PENDING: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_DELIVERED: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_DEAD_LETTERED: _ClassVar[WebhookDeliveryState]

class ScreeningList(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCREENING_LIST_UNSPECIFIED: _ClassVar[ScreeningList]
    SCREENING_LIST_ALLOW: _ClassVar[ScreeningList]
    SCREENING_LIST_DENY: _ClassVar[ScreeningList]
HEALTH_LEVEL_UNSPECIFIED: HealthLevel
HEALTH_LEVEL_HEALTHY: HealthLevel
HEALTH_LEVEL_WARNING: HealthLevel
HEALTH_LEVEL_CRITICAL: HealthLevel
ALERT_KIND_UNSPECIFIED: AlertKind
ALERT_KIND_FAILURE_RATE: AlertKind
ALERT_KIND_PENDING_THRESHOLD: AlertKind
ALERT_KIND_PROCESSING_DELAY: AlertKind
ALERT_KIND_AMOUNT_THRESHOLD: AlertKind
ALERT_KIND_SYSTEM_ERROR: AlertKind
ALERT_KIND_UNEXPLAINED_OUTFLOW: AlertKind
ALERT_KIND_PAID_TWICE: AlertKind
ALERT_KIND_CONFIRMED_UNSEEN: AlertKind
ALERT_KIND_WATCHDOG_GAP: AlertKind
ALERT_KIND_SENDING_PAUSED: AlertKind
ALERT_KIND_CHANNELS_HELD: AlertKind
ALERT_KIND_WEBHOOKS_DEAD_LETTERED: AlertKind
ALERT_KIND_AWAITING_FUNDS: AlertKind
ALERT_STATUS_UNSPECIFIED: AlertStatus
ALERT_STATUS_ACTIVE: AlertStatus
ALERT_STATUS_ACKNOWLEDGED: AlertStatus
ALERT_STATUS_RESOLVED: AlertStatus
SCHEDULE_FREQUENCY_UNSPECIFIED: ScheduleFrequency
SCHEDULE_FREQUENCY_DAILY: ScheduleFrequency
SCHEDULE_FREQUENCY_WEEKLY: ScheduleFrequency
SCHEDULE_FREQUENCY_MONTHLY: ScheduleFrequency
CHANNEL_STATE_UNSPECIFIED: ChannelState
CHANNEL_STATE_PENDING: ChannelState
CHANNEL_STATE_FUNDING: ChannelState
CHANNEL_STATE_ACTIVE: ChannelState
CHANNEL_STATE_DRAINING: ChannelState
CHANNEL_STATE_RETIRED: ChannelState
CHANNEL_STATE_MERGING: ChannelState
CHANNEL_STATE_MERGED: ChannelState
WATCHDOG_FINDING_KIND_UNSPECIFIED: WatchdogFindingKind
WATCHDOG_FINDING_KIND_UNEXPLAINED_OUTFLOW: WatchdogFindingKind
WATCHDOG_FINDING_KIND_PAID_TWICE: WatchdogFindingKind
WATCHDOG_FINDING_KIND_CONFIRMED_UNSEEN: WatchdogFindingKind
WATCHDOG_FINDING_KIND_WATCHDOG_GAP: WatchdogFindingKind
WATCHDOG_FINDING_STATUS_UNSPECIFIED: WatchdogFindingStatus
WATCHDOG_FINDING_STATUS_OPEN: WatchdogFindingStatus
WATCHDOG_FINDING_STATUS_ACKNOWLEDGED: WatchdogFindingStatus
WATCHDOG_FINDING_STATUS_RESOLVED: WatchdogFindingStatus
WEBHOOK_DELIVERY_STATE_UNSPECIFIED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_PENDING: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_DELIVERED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_DEAD_LETTERED: WebhookDeliveryState
SCREENING_LIST_UNSPECIFIED: ScreeningList
SCREENING_LIST_ALLOW: ScreeningList
SCREENING_LIST_DENY: ScreeningList

class Alert(_message.Message):
    __slots__ = ("alert_id", "kind", "severity", "status", "message", "raised_at", "acknowledged_at", "resolved_at", "acknowledged_by")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RAISED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    kind: AlertKind
    severity: HealthLevel
    status: AlertStatus
    message: str
    raised_at: _timestamp_pb2.Timestamp
    acknowledged_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    acknowledged_by: str
    def __init__(self, alert_id: _Optional[str] = ..., kind: _Optional[_Union[AlertKind, str]] = ..., severity: _Optional[_Union[HealthLevel, str]] = ..., status: _Optional[_Union[AlertStatus, str]] = ..., message: _Optional[str] = ..., raised_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_by: _Optional[str] = ...) -> None: ...

class HealthMetrics(_message.Message):
    __slots__ = ("failure_rate", "pending_count", "oldest_pending_age_seconds", "amount_last_24h", "system_errors_last_hour", "open_watchdog_findings", "sending_paused", "channels_held")
    class OpenWatchdogFindingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    FAILURE_RATE_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_PENDING_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_LAST_24H_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ERRORS_LAST_HOUR_FIELD_NUMBER: _ClassVar[int]
    OPEN_WATCHDOG_FINDINGS_FIELD_NUMBER: _ClassVar[int]
    SENDING_PAUSED_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_HELD_FIELD_NUMBER: _ClassVar[int]
    failure_rate: float
    pending_count: int
    oldest_pending_age_seconds: float
    amount_last_24h: _payout_pb2.Amount
    system_errors_last_hour: int
    open_watchdog_findings: _containers.ScalarMap[str, int]
    sending_paused: bool
    channels_held: int
    def __init__(self, failure_rate: _Optional[float] = ..., pending_count: _Optional[int] = ..., oldest_pending_age_seconds: _Optional[float] = ..., amount_last_24h: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., system_errors_last_hour: _Optional[int] = ..., open_watchdog_findings: _Optional[_Mapping[str, int]] = ..., sending_paused: _Optional[bool] = ..., channels_held: _Optional[int] = ...) -> None: ...

class GetSystemHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSystemHealthResponse(_message.Message):
    __slots__ = ("level", "metrics", "active_alerts")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ALERTS_FIELD_NUMBER: _ClassVar[int]
    level: HealthLevel
    metrics: HealthMetrics
    active_alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, level: _Optional[_Union[HealthLevel, str]] = ..., metrics: _Optional[_Union[HealthMetrics, _Mapping]] = ..., active_alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("statuses",)
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[AlertStatus]
    def __init__(self, statuses: _Optional[_Iterable[_Union[AlertStatus, str]]] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...

class AcknowledgeAlertRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    def __init__(self, alert_id: _Optional[str] = ...) -> None: ...

class AcknowledgeAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class ResolveAlertRequest(_message.Message):
    __slots__ = ("alert_id",)
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    alert_id: str
    def __init__(self, alert_id: _Optional[str] = ...) -> None: ...

class ResolveAlertResponse(_message.Message):
    __slots__ = ("alert",)
    ALERT_FIELD_NUMBER: _ClassVar[int]
    alert: Alert
    def __init__(self, alert: _Optional[_Union[Alert, _Mapping]] = ...) -> None: ...

class RecordEarningRequest(_message.Message):
    __slots__ = ("destination", "amount", "asset", "earning_id")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    EARNING_ID_FIELD_NUMBER: _ClassVar[int]
    destination: str
    amount: str
    asset: str
    earning_id: str
    def __init__(self, destination: _Optional[str] = ..., amount: _Optional[str] = ..., asset: _Optional[str] = ..., earning_id: _Optional[str] = ...) -> None: ...

class RecordEarningResponse(_message.Message):
    __slots__ = ("balance",)
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    balance: _payout_pb2.Amount
    def __init__(self, balance: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("enabled", "frequency", "day_of_week", "day_of_month", "hour", "minute", "timezone", "minimum_threshold", "next_run_at")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    DAY_OF_WEEK_FIELD_NUMBER: _ClassVar[int]
    DAY_OF_MONTH_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    MINUTE_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    frequency: ScheduleFrequency
    day_of_week: int
    day_of_month: int
    hour: int
    minute: int
    timezone: str
    minimum_threshold: _payout_pb2.Amount
    next_run_at: _timestamp_pb2.Timestamp
    def __init__(self, enabled: _Optional[bool] = ..., frequency: _Optional[_Union[ScheduleFrequency, str]] = ..., day_of_week: _Optional[int] = ..., day_of_month: _Optional[int] = ..., hour: _Optional[int] = ..., minute: _Optional[int] = ..., timezone: _Optional[str] = ..., minimum_threshold: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., next_run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class UpdateScheduleRequest(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class UpdateScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: Schedule
    def __init__(self, schedule: _Optional[_Union[Schedule, _Mapping]] = ...) -> None: ...

class TriggerScheduledRunRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class RunError(_message.Message):
    __slots__ = ("destination", "message")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    destination: str
    message: str
    def __init__(self, destination: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "dry_run", "trigger", "payout_count", "skipped_below_threshold", "total", "started_at", "finished_at", "errors", "next_run_at", "correlation_id", "payouts")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_BELOW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    NEXT_RUN_AT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    dry_run: bool
    trigger: str
    payout_count: int
    skipped_below_threshold: int
    total: _payout_pb2.Amount
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    errors: _containers.RepeatedCompositeFieldContainer[RunError]
    next_run_at: _timestamp_pb2.Timestamp
    correlation_id: str
    payouts: _containers.RepeatedCompositeFieldContainer[_payout_pb2.Payout]
    def __init__(self, run_id: _Optional[str] = ..., dry_run: _Optional[bool] = ..., trigger: _Optional[str] = ..., payout_count: _Optional[int] = ..., skipped_below_threshold: _Optional[int] = ..., total: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., errors: _Optional[_Iterable[_Union[RunError, _Mapping]]] = ..., next_run_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., correlation_id: _Optional[str] = ..., payouts: _Optional[_Iterable[_Union[_payout_pb2.Payout, _Mapping]]] = ...) -> None: ...

class TriggerScheduledRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ...) -> None: ...

class AlertConfig(_message.Message):
    __slots__ = ("enabled", "failure_rate_warning", "failure_rate_critical", "pending_count", "processing_delay_seconds_warning", "processing_delay_seconds_critical", "amount_24h", "system_errors", "webhook_urls", "version", "updated_at", "updated_by")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    FAILURE_RATE_WARNING_FIELD_NUMBER: _ClassVar[int]
    FAILURE_RATE_CRITICAL_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_DELAY_SECONDS_WARNING_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_DELAY_SECONDS_CRITICAL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_24H_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ERRORS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URLS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    failure_rate_warning: float
    failure_rate_critical: float
    pending_count: int
    processing_delay_seconds_warning: float
    processing_delay_seconds_critical: float
    amount_24h: _payout_pb2.Amount
    system_errors: int
    webhook_urls: _containers.RepeatedScalarFieldContainer[str]
    version: int
    updated_at: _timestamp_pb2.Timestamp
    updated_by: str
    def __init__(self, enabled: _Optional[bool] = ..., failure_rate_warning: _Optional[float] = ..., failure_rate_critical: _Optional[float] = ..., pending_count: _Optional[int] = ..., processing_delay_seconds_warning: _Optional[float] = ..., processing_delay_seconds_critical: _Optional[float] = ..., amount_24h: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., system_errors: _Optional[int] = ..., webhook_urls: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[str] = ...) -> None: ...

class GetAlertConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetAlertConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: AlertConfig
    def __init__(self, config: _Optional[_Union[AlertConfig, _Mapping]] = ...) -> None: ...

class UpdateAlertConfigRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: AlertConfig
    def __init__(self, config: _Optional[_Union[AlertConfig, _Mapping]] = ...) -> None: ...

class UpdateAlertConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: AlertConfig
    def __init__(self, config: _Optional[_Union[AlertConfig, _Mapping]] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ("lookback_hours",)
    LOOKBACK_HOURS_FIELD_NUMBER: _ClassVar[int]
    lookback_hours: int
    def __init__(self, lookback_hours: _Optional[int] = ...) -> None: ...

class Mismatch(_message.Message):
    __slots__ = ("payout_id", "tx_hash", "problem")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    tx_hash: str
    problem: str
    def __init__(self, payout_id: _Optional[str] = ..., tx_hash: _Optional[str] = ..., problem: _Optional[str] = ...) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("checked", "mismatches", "unverified")
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    UNVERIFIED_FIELD_NUMBER: _ClassVar[int]
    checked: int
    mismatches: _containers.RepeatedCompositeFieldContainer[Mismatch]
    unverified: int
    def __init__(self, checked: _Optional[int] = ..., mismatches: _Optional[_Iterable[_Union[Mismatch, _Mapping]]] = ..., unverified: _Optional[int] = ...) -> None: ...

class Channel(_message.Message):
    __slots__ = ("account", "key_id", "state", "balance", "in_flight", "merge_requested", "top_up", "updated_at", "origin", "held_reason")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MERGE_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    TOP_UP_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    HELD_REASON_FIELD_NUMBER: _ClassVar[int]
    account: str
    key_id: str
    state: ChannelState
    balance: _payout_pb2.Amount
    in_flight: bool
    merge_requested: bool
    top_up: _payout_pb2.Amount
    updated_at: _timestamp_pb2.Timestamp
    origin: str
    held_reason: str
    def __init__(self, account: _Optional[str] = ..., key_id: _Optional[str] = ..., state: _Optional[_Union[ChannelState, str]] = ..., balance: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., in_flight: _Optional[bool] = ..., merge_requested: _Optional[bool] = ..., top_up: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., origin: _Optional[str] = ..., held_reason: _Optional[str] = ...) -> None: ...

class ChannelKey(_message.Message):
    __slots__ = ("key_id", "public_key")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    public_key: str
    def __init__(self, key_id: _Optional[str] = ..., public_key: _Optional[str] = ...) -> None: ...

class ChannelOperation(_message.Message):
    __slots__ = ("operation_id", "kind", "status", "tx_hash", "channels", "total", "result_code", "created_at")
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESULT_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    operation_id: str
    kind: str
    status: str
    tx_hash: str
    channels: int
    total: _payout_pb2.Amount
    result_code: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, operation_id: _Optional[str] = ..., kind: _Optional[str] = ..., status: _Optional[str] = ..., tx_hash: _Optional[str] = ..., channels: _Optional[int] = ..., total: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., result_code: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListChannelsRequest(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[ChannelState]
    def __init__(self, states: _Optional[_Iterable[_Union[ChannelState, str]]] = ...) -> None: ...

class ListChannelsResponse(_message.Message):
    __slots__ = ("channels", "operations")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    operations: _containers.RepeatedCompositeFieldContainer[ChannelOperation]
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ..., operations: _Optional[_Iterable[_Union[ChannelOperation, _Mapping]]] = ...) -> None: ...

class AddChannelsRequest(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[ChannelKey]
    def __init__(self, channels: _Optional[_Iterable[_Union[ChannelKey, _Mapping]]] = ...) -> None: ...

class AddChannelsResponse(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ...) -> None: ...

class CreateChannelsRequest(_message.Message):
    __slots__ = ("channels", "starting_balance")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    STARTING_BALANCE_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[ChannelKey]
    starting_balance: _payout_pb2.Amount
    def __init__(self, channels: _Optional[_Iterable[_Union[ChannelKey, _Mapping]]] = ..., starting_balance: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ...) -> None: ...

class CreateChannelsResponse(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ...) -> None: ...

class TopUpChannelsRequest(_message.Message):
    __slots__ = ("below", "to")
    BELOW_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    below: _payout_pb2.Amount
    to: _payout_pb2.Amount
    def __init__(self, below: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., to: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ...) -> None: ...

class TopUpChannelsResponse(_message.Message):
    __slots__ = ("channels", "total")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    total: _payout_pb2.Amount
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ..., total: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ...) -> None: ...

class RetireChannelsRequest(_message.Message):
    __slots__ = ("accounts", "merge")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedScalarFieldContainer[str]
    merge: bool
    def __init__(self, accounts: _Optional[_Iterable[str]] = ..., merge: _Optional[bool] = ...) -> None: ...

class RetireChannelsResponse(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ...) -> None: ...

class PlanChannelsRequest(_message.Message):
    __slots__ = ("queued_payouts_per_ledger", "payouts_per_transaction", "close_time_ms")
    QUEUED_PAYOUTS_PER_LEDGER_FIELD_NUMBER: _ClassVar[int]
    PAYOUTS_PER_TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    CLOSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    queued_payouts_per_ledger: int
    payouts_per_transaction: int
    close_time_ms: int
    def __init__(self, queued_payouts_per_ledger: _Optional[int] = ..., payouts_per_transaction: _Optional[int] = ..., close_time_ms: _Optional[int] = ...) -> None: ...

class PlanChannelsResponse(_message.Message):
    __slots__ = ("needed", "target", "queued_payouts_per_ledger", "transactions_per_ledger", "ceiling_payouts_per_minute", "limited_by", "queued_payouts", "active", "spare", "reactivate", "drain", "create")
    NEEDED_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    QUEUED_PAYOUTS_PER_LEDGER_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_PER_LEDGER_FIELD_NUMBER: _ClassVar[int]
    CEILING_PAYOUTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    LIMITED_BY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_PAYOUTS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SPARE_FIELD_NUMBER: _ClassVar[int]
    REACTIVATE_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    CREATE_FIELD_NUMBER: _ClassVar[int]
    needed: int
    target: int
    queued_payouts_per_ledger: int
    transactions_per_ledger: int
    ceiling_payouts_per_minute: int
    limited_by: str
    queued_payouts: int
    active: int
    spare: int
    reactivate: int
    drain: int
    create: int
    def __init__(self, needed: _Optional[int] = ..., target: _Optional[int] = ..., queued_payouts_per_ledger: _Optional[int] = ..., transactions_per_ledger: _Optional[int] = ..., ceiling_payouts_per_minute: _Optional[int] = ..., limited_by: _Optional[str] = ..., queued_payouts: _Optional[int] = ..., active: _Optional[int] = ..., spare: _Optional[int] = ..., reactivate: _Optional[int] = ..., drain: _Optional[int] = ..., create: _Optional[int] = ...) -> None: ...

class WatchdogFinding(_message.Message):
    __slots__ = ("finding_id", "kind", "status", "tx_hash", "ledger", "ledger_to", "payout_id", "accounts", "amount", "asset", "detail", "first_seen", "acknowledged_by", "acknowledged_at", "resolved_by", "resolved_at", "resolution")
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    LEDGER_TO_FIELD_NUMBER: _ClassVar[int]
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ASSET_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    finding_id: int
    kind: WatchdogFindingKind
    status: WatchdogFindingStatus
    tx_hash: str
    ledger: int
    ledger_to: int
    payout_id: str
    accounts: _containers.RepeatedScalarFieldContainer[str]
    amount: _payout_pb2.Amount
    asset: str
    detail: str
    first_seen: _timestamp_pb2.Timestamp
    acknowledged_by: str
    acknowledged_at: _timestamp_pb2.Timestamp
    resolved_by: str
    resolved_at: _timestamp_pb2.Timestamp
    resolution: str
    def __init__(self, finding_id: _Optional[int] = ..., kind: _Optional[_Union[WatchdogFindingKind, str]] = ..., status: _Optional[_Union[WatchdogFindingStatus, str]] = ..., tx_hash: _Optional[str] = ..., ledger: _Optional[int] = ..., ledger_to: _Optional[int] = ..., payout_id: _Optional[str] = ..., accounts: _Optional[_Iterable[str]] = ..., amount: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., asset: _Optional[str] = ..., detail: _Optional[str] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., acknowledged_by: _Optional[str] = ..., acknowledged_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_by: _Optional[str] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolution: _Optional[str] = ...) -> None: ...

class SendingPause(_message.Message):
    __slots__ = ("paused", "reason", "changed_by", "changed_at", "finding_id")
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    paused: bool
    reason: str
    changed_by: str
    changed_at: _timestamp_pb2.Timestamp
    finding_id: int
    def __init__(self, paused: _Optional[bool] = ..., reason: _Optional[str] = ..., changed_by: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finding_id: _Optional[int] = ...) -> None: ...

class GetWatchdogStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWatchdogStatusResponse(_message.Message):
    __slots__ = ("enabled", "started", "start_ledger", "verified_ledger", "cursor", "latest_ledger", "lag_ledgers", "last_read_at", "lease_owner", "transactions_read", "pages_read", "fees_charged", "sending", "pause_on_finding", "open_findings")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    START_LEDGER_FIELD_NUMBER: _ClassVar[int]
    VERIFIED_LEDGER_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LATEST_LEDGER_FIELD_NUMBER: _ClassVar[int]
    LAG_LEDGERS_FIELD_NUMBER: _ClassVar[int]
    LAST_READ_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_OWNER_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONS_READ_FIELD_NUMBER: _ClassVar[int]
    PAGES_READ_FIELD_NUMBER: _ClassVar[int]
    FEES_CHARGED_FIELD_NUMBER: _ClassVar[int]
    SENDING_FIELD_NUMBER: _ClassVar[int]
    PAUSE_ON_FINDING_FIELD_NUMBER: _ClassVar[int]
    OPEN_FINDINGS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    started: bool
    start_ledger: int
    verified_ledger: int
    cursor: str
    latest_ledger: int
    lag_ledgers: int
    last_read_at: _timestamp_pb2.Timestamp
    lease_owner: str
    transactions_read: int
    pages_read: int
    fees_charged: _payout_pb2.Amount
    sending: SendingPause
    pause_on_finding: bool
    open_findings: _containers.RepeatedCompositeFieldContainer[WatchdogFinding]
    def __init__(self, enabled: _Optional[bool] = ..., started: _Optional[bool] = ..., start_ledger: _Optional[int] = ..., verified_ledger: _Optional[int] = ..., cursor: _Optional[str] = ..., latest_ledger: _Optional[int] = ..., lag_ledgers: _Optional[int] = ..., last_read_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_owner: _Optional[str] = ..., transactions_read: _Optional[int] = ..., pages_read: _Optional[int] = ..., fees_charged: _Optional[_Union[_payout_pb2.Amount, _Mapping]] = ..., sending: _Optional[_Union[SendingPause, _Mapping]] = ..., pause_on_finding: _Optional[bool] = ..., open_findings: _Optional[_Iterable[_Union[WatchdogFinding, _Mapping]]] = ...) -> None: ...

class ListWatchdogFindingsRequest(_message.Message):
    __slots__ = ("statuses", "kinds", "page_size", "page_token")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedScalarFieldContainer[WatchdogFindingStatus]
    kinds: _containers.RepeatedScalarFieldContainer[WatchdogFindingKind]
    page_size: int
    page_token: str
    def __init__(self, statuses: _Optional[_Iterable[_Union[WatchdogFindingStatus, str]]] = ..., kinds: _Optional[_Iterable[_Union[WatchdogFindingKind, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWatchdogFindingsResponse(_message.Message):
    __slots__ = ("findings", "next_page_token")
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    findings: _containers.RepeatedCompositeFieldContainer[WatchdogFinding]
    next_page_token: str
    def __init__(self, findings: _Optional[_Iterable[_Union[WatchdogFinding, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AcknowledgeWatchdogFindingRequest(_message.Message):
    __slots__ = ("finding_id",)
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    finding_id: int
    def __init__(self, finding_id: _Optional[int] = ...) -> None: ...

class AcknowledgeWatchdogFindingResponse(_message.Message):
    __slots__ = ("finding",)
    FINDING_FIELD_NUMBER: _ClassVar[int]
    finding: WatchdogFinding
    def __init__(self, finding: _Optional[_Union[WatchdogFinding, _Mapping]] = ...) -> None: ...

class ResolveWatchdogFindingRequest(_message.Message):
    __slots__ = ("finding_id", "reason")
    FINDING_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    finding_id: int
    reason: str
    def __init__(self, finding_id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ResolveWatchdogFindingResponse(_message.Message):
    __slots__ = ("finding",)
    FINDING_FIELD_NUMBER: _ClassVar[int]
    finding: WatchdogFinding
    def __init__(self, finding: _Optional[_Union[WatchdogFinding, _Mapping]] = ...) -> None: ...

class PauseSendingRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class PauseSendingResponse(_message.Message):
    __slots__ = ("sending",)
    SENDING_FIELD_NUMBER: _ClassVar[int]
    sending: SendingPause
    def __init__(self, sending: _Optional[_Union[SendingPause, _Mapping]] = ...) -> None: ...

class ResumeSendingRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ResumeSendingResponse(_message.Message):
    __slots__ = ("sending",)
    SENDING_FIELD_NUMBER: _ClassVar[int]
    sending: SendingPause
    def __init__(self, sending: _Optional[_Union[SendingPause, _Mapping]] = ...) -> None: ...

class WebhookDeliveryAttempt(_message.Message):
    __slots__ = ("attempt", "url", "status_code", "latency_ms", "error", "attempted_at")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTED_AT_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    url: str
    status_code: int
    latency_ms: int
    error: str
    attempted_at: _timestamp_pb2.Timestamp
    def __init__(self, attempt: _Optional[int] = ..., url: _Optional[str] = ..., status_code: _Optional[int] = ..., latency_ms: _Optional[int] = ..., error: _Optional[str] = ..., attempted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("event_id", "event_type", "state", "attempts", "created_at", "next_attempt_at", "delivered_at", "dead_lettered_at", "last_error", "log")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event_type: str
    state: WebhookDeliveryState
    attempts: int
    created_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    delivered_at: _timestamp_pb2.Timestamp
    dead_lettered_at: _timestamp_pb2.Timestamp
    last_error: str
    log: _containers.RepeatedCompositeFieldContainer[WebhookDeliveryAttempt]
    def __init__(self, event_id: _Optional[str] = ..., event_type: _Optional[str] = ..., state: _Optional[_Union[WebhookDeliveryState, str]] = ..., attempts: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dead_lettered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., log: _Optional[_Iterable[_Union[WebhookDeliveryAttempt, _Mapping]]] = ...) -> None: ...

class ListWebhookDeliveriesRequest(_message.Message):
    __slots__ = ("event_id", "states", "page_size", "page_token")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    states: _containers.RepeatedScalarFieldContainer[WebhookDeliveryState]
    page_size: int
    page_token: str
    def __init__(self, event_id: _Optional[str] = ..., states: _Optional[_Iterable[_Union[WebhookDeliveryState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWebhookDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries", "next_page_token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    next_page_token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class RedeliverWebhookRequest(_message.Message):
    __slots__ = ("event_id",)
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    def __init__(self, event_id: _Optional[str] = ...) -> None: ...

class RedeliverWebhookResponse(_message.Message):
    __slots__ = ("delivery",)
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    delivery: WebhookDelivery
    def __init__(self, delivery: _Optional[_Union[WebhookDelivery, _Mapping]] = ...) -> None: ...

class ScreeningEntry(_message.Message):
    __slots__ = ("destination", "list", "reason", "added_by", "created_at")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ADDED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    destination: str
    list: ScreeningList
    reason: str
    added_by: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, destination: _Optional[str] = ..., list: _Optional[_Union[ScreeningList, str]] = ..., reason: _Optional[str] = ..., added_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AddScreeningEntryRequest(_message.Message):
    __slots__ = ("destination", "list", "reason")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    destination: str
    list: ScreeningList
    reason: str
    def __init__(self, destination: _Optional[str] = ..., list: _Optional[_Union[ScreeningList, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class AddScreeningEntryResponse(_message.Message):
    __slots__ = ("entry", "created")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    entry: ScreeningEntry
    created: bool
    def __init__(self, entry: _Optional[_Union[ScreeningEntry, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class RemoveScreeningEntryRequest(_message.Message):
    __slots__ = ("destination", "list", "reason")
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    destination: str
    list: ScreeningList
    reason: str
    def __init__(self, destination: _Optional[str] = ..., list: _Optional[_Union[ScreeningList, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class RemoveScreeningEntryResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: ScreeningEntry
    def __init__(self, entry: _Optional[_Union[ScreeningEntry, _Mapping]] = ...) -> None: ...

class ListScreeningEntriesRequest(_message.Message):
    __slots__ = ("list", "page_size", "page_token")
    LIST_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    list: ScreeningList
    page_size: int
    page_token: str
    def __init__(self, list: _Optional[_Union[ScreeningList, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListScreeningEntriesResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[ScreeningEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[ScreeningEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ApprovePayoutRequest(_message.Message):
    __slots__ = ("payout_id", "approver_public_key", "signature", "expires_at")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    approver_public_key: str
    signature: bytes
    expires_at: int
    def __init__(self, payout_id: _Optional[str] = ..., approver_public_key: _Optional[str] = ..., signature: _Optional[bytes] = ..., expires_at: _Optional[int] = ...) -> None: ...

class ApprovePayoutResponse(_message.Message):
    __slots__ = ("payout", "approvals", "required")
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    payout: _payout_pb2.Payout
    approvals: int
    required: int
    def __init__(self, payout: _Optional[_Union[_payout_pb2.Payout, _Mapping]] = ..., approvals: _Optional[int] = ..., required: _Optional[int] = ...) -> None: ...

class RejectPayoutRequest(_message.Message):
    __slots__ = ("payout_id", "reason")
    PAYOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    payout_id: str
    reason: str
    def __init__(self, payout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RejectPayoutResponse(_message.Message):
    __slots__ = ("payout",)
    PAYOUT_FIELD_NUMBER: _ClassVar[int]
    payout: _payout_pb2.Payout
    def __init__(self, payout: _Optional[_Union[_payout_pb2.Payout, _Mapping]] = ...) -> None: ...
