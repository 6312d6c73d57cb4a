"""Configuration from the environment (every variable: docs/configuration.md), parsed once at
start-up.

Bad configuration fails at start-up with one line naming the variable and the rule
(ConfigError). Renamed variables are read under their old name too, for one release, with a
warning naming the new one (RENAMED).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from payout_service.adapters.database import parse_database_url
from payout_service.core.amounts import AmountError, parse_amount
from payout_service.core.approvals import ApprovalRules, parse_approval_rules
from payout_service.core.batches import (
    MAX_OPERATIONS_PER_TX,
    PUBLISHED_TX_WRITE_ENTRIES,
    contract_batch_capacity,
)
from payout_service.core.health import AlertThresholds
from payout_service.core.validation import is_account_id, is_contract_id
from payout_service.failpoints import NAMES as FAILPOINTS

TESTNET_PASSPHRASE = "Test SDF Network ; September 2015"  # noqa: S105 - public
# Networks with SDF's 5 s ledger close target (mainnet, testnet, futurenet).
FIVE_SECOND_NETWORKS = frozenset({
    "Public Global Stellar Network ; September 2015",
    TESTNET_PASSPHRASE,
    "Test SDF Future Network ; October 2022",
})


def min_tx_window_seconds(passphrase: str) -> int:
    """The shortest time-bounds window a transaction may carry on this network.

    stellar-core refuses (txTOO_LATE) a maxTime below the last close time plus
    EXPECTED_CLOSE_TIME_MULT (2) x the expected ledger close time plus the time since that close
    (TransactionFrame::isTooLate, getUpperBoundCloseTimeOffset): 10 s on 5 s networks, counted
    from when the transaction reaches the node; one more ledger leaves time to sign and send.
    Other networks (standalone, the sandbox) set their own close time: 5 s is the floor.
    """
    return 3 * 5 if passphrase in FIVE_SECOND_NETWORKS else 5


DEFAULT_MAX_BULK_ITEMS = 500
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Spellings Python's logging (and so signer-service, which shares the variable) also accepts.
LOG_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "NOTSET": "DEBUG"}


class ConfigError(Exception):
    """One clear line naming the variable at fault."""


def _hot_key_as_signing_mode(raw: str) -> str:
    # The seed's "hot key" signing meant signing automatically, now by the signer service
    # (whose backend, HSM or hot key, is the signer's own business); false meant external.
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return "signer"
    if lowered in ("0", "false", "no", "off"):
        return "external"
    raise ConfigError(f"PAYOUTS_SIGN_WITH_HOT_KEY must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Renamed:
    new: str
    # The old variable's value as the new variable spells it.
    translate: Callable[[str], str] = str.strip


# Old name -> new name. The old name still works for one release, with a warning at start-up;
# set together with the new one to a different value, it is a configuration error.
RENAMED: Mapping[str, Renamed] = {
    # Rows claimed per loop iteration of the prepare, send and confirm loops.
    "PAYOUTS_BATCH_SIZE": Renamed("PAYOUTS_CLAIM_SIZE"),
    # Items in one CreatePayoutBatch request (a "bulk"; a "batch" is a transaction).
    "PAYOUTS_MAX_BATCH_ITEMS": Renamed("PAYOUTS_MAX_BULK_ITEMS"),
    "PAYOUTS_SIGN_WITH_HOT_KEY": Renamed("PAYOUTS_SIGNING_MODE", _hot_key_as_signing_mode),
}


class _Environment(dict[str, str]):
    """The environment with renamed variables under their new names; remembers which old
    name each value came from, for error messages."""

    def __init__(self, values: Mapping[str, str], renamed_from: Mapping[str, str]) -> None:
        super().__init__(values)
        self.renamed_from = dict(renamed_from)


def _label(env: Mapping[str, str], name: str) -> str:
    """The variable as the operator set it (errors name what is in their environment)."""
    old = env.renamed_from.get(name) if isinstance(env, _Environment) else None
    return f"{old} (renamed {name})" if old else name


def _canonical(value: str) -> str:
    """A value as the parser reads it: ` 50`, `50` and `050` agree."""
    stripped = value.strip()
    return str(int(stripped)) if stripped.isascii() and stripped.isdigit() else stripped


def resolve_renamed(env: Mapping[str, str]) -> tuple[_Environment, tuple[str, ...]]:
    """The environment under the new names, and the old names in use (to warn about)."""
    values = dict(env)
    renamed_from: dict[str, str] = {}
    used: list[str] = []
    for old, rename in RENAMED.items():
        raw = env.get(old, "")
        if not raw.strip():
            continue
        used.append(old)
        value = rename.translate(raw)
        current = env.get(rename.new, "").strip()
        if current and _canonical(current) != _canonical(value):
            raise ConfigError(
                f"{old} (deprecated) and {rename.new} are both set and disagree "
                f"({old}={raw.strip()!r} means {rename.new}={value!r}, but {rename.new}="
                f"{current!r}): unset {old}"
            )
        if not current:
            values[rename.new] = value
            renamed_from[rename.new] = old
    return _Environment(values, renamed_from), tuple(used)


def warn_renamed(config: Config, log: logging.Logger | None = None) -> None:
    """One line per old variable name still in use (names only, never values): structured
    through `log` in the service, on stderr in a command-line tool."""
    for old in config.renamed_in_use:
        if log is None:
            print(f"warning: {old} is deprecated: use {RENAMED[old].new}", file=sys.stderr)
        else:
            log.warning("deprecated environment variable", extra={
                "variable": old, "use_instead": RENAMED[old].new,
            })


@dataclass(frozen=True)
class SignerClientConfig:
    # One signer instance's host:port, or several, comma-separated (failover, in order).
    address: str
    ca_cert: str
    client_cert: str
    client_key: str
    key_id: str
    # Name in the signer's server certificate, when it differs from the address host.
    server_name: str | None
    # Channel account address -> the signer key id that holds its key.
    channel_keys: Mapping[str, str] = field(default_factory=dict)

    @property
    def addresses(self) -> tuple[str, ...]:
        """The signer instances, in the order they are tried first."""
        return tuple(a.strip() for a in self.address.split(","))


@dataclass(frozen=True)
class ChannelPoolConfig:
    """The channel pool's lifecycle (create, top-up, merge) and its size plan."""

    # Pays CreateAccount and top-ups, receives merges; its key in the signer.
    funding_account: str
    funding_key_id: str
    # Automatic sizing within [minimum, maximum] when maximum > 0.
    minimum: int = 0
    maximum: int = 0
    # Automatic top-up of channels below `top_up_below_stroops` to `top_up_to_stroops` (0: off).
    top_up_below_stroops: int = 0
    top_up_to_stroops: int = 0
    payouts_per_transaction: int = 1
    close_time_ms: int = 5000
    drain_seconds: int = 60
    interval_seconds: float = 1.0


@dataclass(frozen=True)
class WatchdogConfig:
    """The watchdog (docs/design.md, invariant 9): live mode only, one replica at a time."""

    enabled: bool = True
    interval_seconds: float = 1.0
    # An unexplained outflow or a payout paid twice pauses sending until an operator resumes.
    pause_on_finding: bool = False
    # CONFIRMED payouts are checked against the chain for this long after confirmation.
    confirmed_window_seconds: int = 3600


@dataclass(frozen=True)
class WebhookSettings:
    """PAYOUTS_WEBHOOK_*: where payout events are delivered, and how retries back off."""

    urls: tuple[str, ...] = ()
    # Every active secret signs each delivery (one v1= each); the first also signs the older
    # X-Payout-Signature header.
    secrets: tuple[str, ...] = ()
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    timeout_seconds: float = 10.0
    # Failed attempts before an event is dead-lettered (and an alert raised).
    max_attempts: int = 30

    def __repr__(self) -> str:
        # Never let a secret reach a log line through a repr.
        return f"WebhookSettings(urls={self.urls!r}, secrets=<{len(self.secrets)}>)"


@dataclass(frozen=True)
class ProgramsConfig:
    """The programs' background loops (programs/wiring.py): alerts, webhooks, intervals."""

    thresholds: AlertThresholds = AlertThresholds()
    webhooks: WebhookSettings = WebhookSettings()
    scheduler_interval: float = 30.0
    settle_interval: float = 5.0
    alert_interval: float = 30.0
    outbox_interval: float = 1.0
    reconcile_interval: float = 3600.0
    # Events of payouts settled longer ago than this move to the archive (migration 060);
    # 0 keeps every event in payout_events.
    events_retention_days: float = 400.0
    events_retention_interval: float = 3600.0


@dataclass(frozen=True)
class ServerTls:
    cert: str
    key: str
    # When set, clients must present a certificate from this CA (mTLS).
    client_ca: str | None


@dataclass(frozen=True)
class Config:
    database_url: str
    listen_addr: str
    live_execution: bool
    signing_mode: str  # "signer" | "external"
    max_gas_stroops: int
    max_attempts: int
    confirm_poll_ms: int
    confirm_max_polls: int
    max_inclusion_fee_stroops: int
    contract_id: str | None
    method_name: str
    source_account: str
    network_passphrase: str
    rpc_url: str | None
    min_amount_stroops: int
    max_amount_stroops: int
    fee_bps: int
    tx_window_seconds: int
    external_window_seconds: int
    # PAYOUTS_CLAIM_SIZE: rows claimed per iteration of the prepare, send and confirm loops.
    claim_size: int
    metrics_port: int | None
    signer: SignerClientConfig | None
    tls: ServerTls | None = None
    health_check_seconds: float = 5.0
    rpc_timeout_seconds: float = 10.0
    admin_identities: frozenset[str] = frozenset()
    # On SIGTERM: NOT_SERVING first, keep answering this long (load balancers catch up).
    shutdown_delay_seconds: float = 0.0
    channel_pool: ChannelPoolConfig | None = None
    # "off" (one payout per transaction), "classic" (Payment/CreateAccount
    # operations) or "contract" (the payout contract's batch method).
    batch_mode: str = "off"
    max_payouts_per_tx: int = 1
    # PAYOUTS_FUNDS_CHECK: hold payouts the paying account cannot cover (core/funds.py).
    funds_check: bool = True
    batch_method_name: str = "distribute_batch"
    # PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER: classic operations per ledger when the RPC's
    # ledger header does not say, or a lower figure to leave room for other submitters; the
    # sender keeps twice this (the network's queue) in flight at most (core/pacing.py).
    network_classic_ops_per_ledger: int | None = None
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    # PAYOUTS_MAX_BULK_ITEMS: items in one CreatePayoutBatch request.
    max_bulk_items: int = DEFAULT_MAX_BULK_ITEMS
    # PAYOUTS_SCREENING_ALLOWLIST_ONLY: only destinations on the allow list are paid
    # (core/screening.py); the deny list applies either way.
    screening_allowlist_only: bool = False
    # PAYOUTS_APPROVERS / _APPROVALS_REQUIRED / _APPROVAL_THRESHOLDS (core/approvals.py);
    # None: no payout waits for approval.
    approval_rules: ApprovalRules | None = None
    programs: ProgramsConfig = field(default_factory=ProgramsConfig)
    log_level: str = "INFO"
    # Where spans go (OTLP gRPC); None: tracing off.
    otlp_endpoint: str | None = None
    # Tests only: the crash point (failpoints.NAMES) where the process kills itself.
    failpoint: str | None = None
    # Old variable names found in the environment (RENAMED), warned about at start-up.
    renamed_in_use: tuple[str, ...] = ()


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{_label(env, name)} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{_label(env, name)} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{_label(env, name)} must be at least {minimum}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    """None when unset (the code then asks the network); else as `_int`."""
    if not env.get(name, "").strip():
        return None
    return _int(env, name, minimum, minimum=minimum)


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{_label(env, name)} must be a number, got {raw!r}") from None
    if value != value or value < minimum:  # NaN or below the minimum
        raise ConfigError(
            f"{_label(env, name)} must be a number of at least {minimum}, got {raw!r}")
    return value


def _amount(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse_amount(raw)
    except AmountError as err:
        raise ConfigError(f"{name} {err}, got {raw!r}") from None


def _window(env: Mapping[str, str], name: str, default: int, floor: int) -> int:
    value = _int(env, name, default)
    if value < floor:
        raise ConfigError(
            f"{name} must be at least {floor} s on this network (stellar-core refuses a maxTime "
            f"under 2 ledger closes ahead: txTOO_LATE), got {value}"
        )
    return value


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required")
    return value


def _database_url(env: Mapping[str, str]) -> str:
    url = _required(env, "DATABASE_URL")
    try:
        parse_database_url(url)
    except ValueError as err:
        raise ConfigError(f"DATABASE_URL {err}") from None
    return url


def _approval_rules(env: Mapping[str, str]) -> ApprovalRules | None:
    try:
        return parse_approval_rules(env.get("PAYOUTS_APPROVAL_THRESHOLDS", ""),
                                    env.get("PAYOUTS_APPROVALS_REQUIRED", "1"),
                                    env.get("PAYOUTS_APPROVERS", ""))
    except ValueError as err:
        raise ConfigError(f"PAYOUTS_APPROVERS / PAYOUTS_APPROVALS_REQUIRED / "
                          f"PAYOUTS_APPROVAL_THRESHOLDS: {err}") from None


def load_config(env: Mapping[str, str] | None = None) -> Config:
    env, renamed_in_use = resolve_renamed(os.environ if env is None else env)
    if env.get("PAYOUT_HOT_SIGNER_SECRET"):
        # The payout process must never hold a key (docs/design.md, "Processes and trust
        # boundaries").
        raise ConfigError(
            "PAYOUT_HOT_SIGNER_SECRET is set in payout-service's environment; it belongs to "
            "signer-service only: remove it"
        )
    source = _required(env, "PAYOUT_SOURCE_ACCOUNT")
    if not is_account_id(source):
        raise ConfigError("PAYOUT_SOURCE_ACCOUNT must be a valid G... account id")
    contract = env.get("PAYOUT_CONTRACT_ID", "").strip() or None
    if contract is not None and not is_contract_id(contract):
        raise ConfigError("PAYOUT_CONTRACT_ID must be a valid C... contract id")
    live = _bool(env, "PAYOUTS_LIVE_EXECUTION", False)
    rpc_url = env.get("SOROBAN_RPC_URL", "").strip() or None
    if live and rpc_url is None:
        raise ConfigError("SOROBAN_RPC_URL is required when PAYOUTS_LIVE_EXECUTION=true")
    signing_mode = env.get("PAYOUTS_SIGNING_MODE", "").strip() or "signer"
    if signing_mode not in ("signer", "external"):
        raise ConfigError(f"{_label(env, 'PAYOUTS_SIGNING_MODE')} must be 'signer' or "
                          f"'external', got {signing_mode!r}")
    signer = _signer_config(env, source) if live and signing_mode == "signer" else None
    if env.get("PAYOUTS_CHANNEL_ACCOUNTS", "").strip() and signer is None:
        raise ConfigError(
            "PAYOUTS_CHANNEL_ACCOUNTS needs PAYOUTS_LIVE_EXECUTION=true and "
            "PAYOUTS_SIGNING_MODE=signer (every channel transaction needs two signatures)"
        )
    min_amount = _amount(env, "PAYOUTS_MIN_AMOUNT", 1)
    max_amount = _amount(env, "PAYOUTS_MAX_AMOUNT", 2**63 - 1)
    if min_amount > max_amount:
        raise ConfigError("PAYOUTS_MIN_AMOUNT must not exceed PAYOUTS_MAX_AMOUNT")
    fee_bps = _int(env, "PAYOUTS_FEE_BPS", 0)
    if fee_bps >= 10_000:
        raise ConfigError("PAYOUTS_FEE_BPS must be below 10000 (100%)")
    metrics_port = _int(env, "PAYOUTS_METRICS_PORT", 0)
    passphrase = env.get("STELLAR_NETWORK_PASSPHRASE", "").strip() or TESTNET_PASSPHRASE
    window_floor = min_tx_window_seconds(passphrase)
    tx_window = _window(env, "PAYOUTS_TX_WINDOW_SECONDS", 120, window_floor)
    external_window = _window(env, "PAYOUTS_EXTERNAL_SIGNING_WINDOW_SECONDS", 3600, window_floor)
    return Config(
        database_url=_database_url(env),
        listen_addr=env.get("PAYOUTS_LISTEN_ADDR", "").strip() or "127.0.0.1:50051",
        live_execution=live,
        signing_mode=signing_mode,
        max_gas_stroops=_int(env, "PAYOUTS_MAX_GAS_STROOPS", 2_000_000, minimum=100),
        max_attempts=_int(env, "PAYOUTS_MAX_ATTEMPTS", 5, minimum=1),
        confirm_poll_ms=_int(env, "PAYOUTS_CONFIRM_POLL_MS", 2500, minimum=10),
        confirm_max_polls=_int(env, "PAYOUTS_CONFIRM_MAX_POLLS", 20, minimum=1),
        max_inclusion_fee_stroops=_int(env, "PAYOUTS_MAX_INCLUSION_FEE_STROOPS", 100_000,
                                       minimum=100),
        contract_id=contract,
        method_name=env.get("PAYOUT_METHOD_NAME", "").strip() or "distribute_winnings",
        source_account=source,
        network_passphrase=passphrase,
        rpc_url=rpc_url,
        min_amount_stroops=min_amount,
        max_amount_stroops=max_amount,
        fee_bps=fee_bps,
        tx_window_seconds=tx_window,
        external_window_seconds=external_window,
        claim_size=_int(env, "PAYOUTS_CLAIM_SIZE", 25, minimum=1),
        metrics_port=metrics_port or None,
        signer=signer,
        tls=_server_tls(env),
        rpc_timeout_seconds=_int(env, "PAYOUTS_RPC_TIMEOUT_MS", 10_000, minimum=100) / 1000,
        health_check_seconds=float(_int(env, "PAYOUTS_HEALTH_CHECK_MS", 5000, minimum=50)) / 1000,
        shutdown_delay_seconds=_int(env, "PAYOUTS_SHUTDOWN_DELAY_MS", 0) / 1000,
        admin_identities=frozenset(
            name.strip() for name in env.get("PAYOUTS_ADMIN_IDENTITIES", "").split(",")
            if name.strip()
        ),
        channel_pool=_channel_pool(env, source, signer),
        network_classic_ops_per_ledger=_optional_int(
            env, "PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER", minimum=1),
        watchdog=_watchdog(env, live),
        **_batching(env, contract, signing_mode),
        funds_check=_bool(env, "PAYOUTS_FUNDS_CHECK", True),
        max_bulk_items=_int(env, "PAYOUTS_MAX_BULK_ITEMS", DEFAULT_MAX_BULK_ITEMS, minimum=1),
        screening_allowlist_only=_bool(env, "PAYOUTS_SCREENING_ALLOWLIST_ONLY", False),
        approval_rules=_approval_rules(env),
        programs=_programs(env),
        log_level=_log_level(env),
        otlp_endpoint=(env.get("PAYOUTS_OTLP_ENDPOINT", "").strip()
                       or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None),
        failpoint=_failpoint(env),
        renamed_in_use=renamed_in_use,
    )


def _log_level(env: Mapping[str, str]) -> str:
    level = env.get("PAYOUTS_LOG_LEVEL", "").strip().upper() or "INFO"
    level = LOG_LEVEL_ALIASES.get(level, level)
    if level not in LOG_LEVELS:
        raise ConfigError(f"PAYOUTS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, "
                          f"got {level!r}")
    return level


def _failpoint(env: Mapping[str, str]) -> str | None:
    name = env.get("PAYOUTS_FAILPOINT", "").strip() or None
    if name is not None and name not in FAILPOINTS:
        raise ConfigError(f"PAYOUTS_FAILPOINT must be one of {', '.join(sorted(FAILPOINTS))}, "
                          f"got {name!r}")
    return name


def load_thresholds(env: Mapping[str, str]) -> AlertThresholds:
    warning = _number(env, "PAYOUTS_ALERT_FAILURE_RATE", 0.10)
    critical = _number(env, "PAYOUTS_ALERT_FAILURE_RATE_CRITICAL", 0.25)
    delay = _number(env, "PAYOUTS_ALERT_DELAY_SECONDS", 900.0)
    delay_critical = _number(env, "PAYOUTS_ALERT_DELAY_SECONDS_CRITICAL", 3600.0)
    if warning > 1 or critical > 1:
        raise ConfigError("PAYOUTS_ALERT_FAILURE_RATE(_CRITICAL) must be between 0 and 1")
    if critical < warning:
        raise ConfigError(
            "PAYOUTS_ALERT_FAILURE_RATE_CRITICAL must not be below PAYOUTS_ALERT_FAILURE_RATE"
        )
    if delay_critical < delay:
        raise ConfigError(
            "PAYOUTS_ALERT_DELAY_SECONDS_CRITICAL must not be below PAYOUTS_ALERT_DELAY_SECONDS"
        )
    return AlertThresholds(
        failure_rate_warning=warning,
        failure_rate_critical=critical,
        pending_count=_int(env, "PAYOUTS_ALERT_PENDING_COUNT", 50),
        delay_seconds_warning=delay,
        delay_seconds_critical=delay_critical,
        amount_24h_stroops=_amount(env, "PAYOUTS_ALERT_AMOUNT_24H", 10_000 * 10_000_000),
    )


def load_webhooks(env: Mapping[str, str]) -> WebhookSettings:
    urls = tuple(u.strip() for u in env.get("PAYOUTS_WEBHOOK_URLS", "").split(",") if u.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"PAYOUTS_WEBHOOK_URLS entry {url!r} must be an http(s) URL")
    secrets = _webhook_secrets(env)
    if urls and not secrets:
        raise ConfigError("PAYOUTS_WEBHOOK_SECRETS (or PAYOUTS_WEBHOOK_SECRET) is required "
                          "when PAYOUTS_WEBHOOK_URLS is set")
    base = _number(env, "PAYOUTS_WEBHOOK_BACKOFF_SECONDS", 1.0, minimum=0.001)
    cap = _number(env, "PAYOUTS_WEBHOOK_MAX_BACKOFF_SECONDS", 300.0, minimum=0.001)
    return WebhookSettings(
        urls=urls, secrets=secrets, backoff_base_seconds=base,
        backoff_max_seconds=max(cap, base),
        timeout_seconds=_number(env, "PAYOUTS_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        max_attempts=_int(env, "PAYOUTS_WEBHOOK_MAX_ATTEMPTS", 30, minimum=1),
    )


def _webhook_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """PAYOUTS_WEBHOOK_SECRETS, comma-separated, for rotation; PAYOUTS_WEBHOOK_SECRET stays
    one secret read whole (never split: a secret already in use may contain a comma)."""
    listed = tuple(s.strip() for s in env.get("PAYOUTS_WEBHOOK_SECRETS", "").split(",")
                   if s.strip())
    single = env.get("PAYOUTS_WEBHOOK_SECRET", "")
    if listed and single and single not in listed:
        raise ConfigError("PAYOUTS_WEBHOOK_SECRET and PAYOUTS_WEBHOOK_SECRETS are both set and "
                          "PAYOUTS_WEBHOOK_SECRET is not one of PAYOUTS_WEBHOOK_SECRETS: unset "
                          "PAYOUTS_WEBHOOK_SECRET")
    if len(set(listed)) != len(listed):
        raise ConfigError("PAYOUTS_WEBHOOK_SECRETS names a secret twice")
    return listed or ((single,) if single else ())


def _programs(env: Mapping[str, str]) -> ProgramsConfig:
    return ProgramsConfig(
        thresholds=load_thresholds(env),
        webhooks=load_webhooks(env),
        scheduler_interval=_number(env, "PAYOUTS_SCHEDULER_INTERVAL_SECONDS", 30.0, minimum=0.01),
        settle_interval=_number(env, "PAYOUTS_SETTLE_INTERVAL_SECONDS", 5.0, minimum=0.01),
        alert_interval=_number(env, "PAYOUTS_ALERT_INTERVAL_SECONDS", 30.0, minimum=0.01),
        outbox_interval=_number(env, "PAYOUTS_OUTBOX_INTERVAL_SECONDS", 1.0, minimum=0.01),
        reconcile_interval=_number(env, "PAYOUTS_RECONCILE_INTERVAL_SECONDS", 3600.0,
                                   minimum=0.01),
        events_retention_days=_number(env, "PAYOUTS_EVENTS_RETENTION_DAYS", 400.0),
        events_retention_interval=_number(env, "PAYOUTS_EVENTS_RETENTION_INTERVAL_SECONDS",
                                          3600.0, minimum=0.01),
    )


def _watchdog(env: Mapping[str, str], live: bool) -> WatchdogConfig:
    enabled = _bool(env, "PAYOUTS_WATCHDOG_ENABLED", live)
    if enabled and not live:
        raise ConfigError("PAYOUTS_WATCHDOG_ENABLED=true needs PAYOUTS_LIVE_EXECUTION=true "
                          "(it reads the chain the live pipeline pays on)")
    return WatchdogConfig(
        enabled=enabled,
        interval_seconds=_int(env, "PAYOUTS_WATCHDOG_INTERVAL_MS", 1000, minimum=10) / 1000,
        pause_on_finding=_bool(env, "PAYOUTS_WATCHDOG_PAUSE_ON_FINDING", False),
        confirmed_window_seconds=_int(env, "PAYOUTS_WATCHDOG_CONFIRMED_WINDOW_SECONDS", 3600,
                                      minimum=60),
    )


def _channel_pool(
    env: Mapping[str, str], source_account: str, signer: SignerClientConfig | None
) -> ChannelPoolConfig:
    funding = env.get("PAYOUTS_CHANNEL_FUNDING_ACCOUNT", "").strip() or source_account
    if not is_account_id(funding):
        raise ConfigError(f"PAYOUTS_CHANNEL_FUNDING_ACCOUNT {funding!r} is not a G... account id")
    if signer is not None and funding in signer.channel_keys:
        raise ConfigError("PAYOUTS_CHANNEL_FUNDING_ACCOUNT cannot also be a channel")
    minimum = _int(env, "PAYOUTS_CHANNEL_POOL_MIN", 0)
    maximum = _int(env, "PAYOUTS_CHANNEL_POOL_MAX", 0)
    if maximum and maximum < minimum:
        raise ConfigError("PAYOUTS_CHANNEL_POOL_MAX must not be below PAYOUTS_CHANNEL_POOL_MIN")
    below = _amount(env, "PAYOUTS_CHANNEL_TOP_UP_BELOW", 0)
    to = _amount(env, "PAYOUTS_CHANNEL_TOP_UP_TO", 0)
    if below and to <= below:
        raise ConfigError("PAYOUTS_CHANNEL_TOP_UP_TO must be above PAYOUTS_CHANNEL_TOP_UP_BELOW")
    return ChannelPoolConfig(
        funding_account=funding,
        funding_key_id=(env.get("PAYOUTS_CHANNEL_FUNDING_KEY_ID", "").strip()
                        or (signer.key_id if signer else "payout")),
        minimum=minimum, maximum=maximum, top_up_below_stroops=below, top_up_to_stroops=to,
        payouts_per_transaction=_int(env, "PAYOUTS_CHANNEL_PLAN_PAYOUTS_PER_TX", 1, minimum=1),
        close_time_ms=_int(env, "PAYOUTS_CHANNEL_PLAN_CLOSE_TIME_MS", 5000, minimum=1),
        drain_seconds=_int(env, "PAYOUTS_CHANNEL_PLAN_DRAIN_SECONDS", 60, minimum=1),
        interval_seconds=_int(env, "PAYOUTS_CHANNEL_POOL_INTERVAL_MS", 1000, minimum=10) / 1000,
    )


def _batching(env: Mapping[str, str], contract: str | None, signing_mode: str) -> dict[str, Any]:
    """PAYOUTS_BATCH_MODE, PAYOUTS_MAX_PAYOUTS_PER_TX, PAYOUTS_TX_MAX_WRITE_ENTRIES,
    PAYOUT_BATCH_METHOD_NAME: many payouts in one transaction."""
    mode = env.get("PAYOUTS_BATCH_MODE", "").strip().lower() or "off"
    if mode not in ("off", "classic", "contract"):
        raise ConfigError(f"PAYOUTS_BATCH_MODE must be off, classic or contract, got {mode!r}")
    if mode == "off":
        return {"batch_mode": mode, "max_payouts_per_tx": 1}
    if signing_mode == "external":
        raise ConfigError("PAYOUTS_BATCH_MODE needs PAYOUTS_SIGNING_MODE=signer (external "
                          "signing of batches is not supported yet)")
    if mode == "contract" and not contract:
        raise ConfigError("PAYOUTS_BATCH_MODE=contract needs PAYOUT_CONTRACT_ID")
    wanted = _int(env, "PAYOUTS_MAX_PAYOUTS_PER_TX", MAX_OPERATIONS_PER_TX, minimum=1)
    if wanted > MAX_OPERATIONS_PER_TX:
        raise ConfigError(f"PAYOUTS_MAX_PAYOUTS_PER_TX must be at most "
                          f"{MAX_OPERATIONS_PER_TX} (stellar-core MAX_OPS_PER_TX), got {wanted}")
    if mode == "contract":
        write_entries = _int(env, "PAYOUTS_TX_MAX_WRITE_ENTRIES",
                             PUBLISHED_TX_WRITE_ENTRIES, minimum=2)
        wanted = min(wanted, contract_batch_capacity(write_entries))
    return {"batch_mode": mode, "max_payouts_per_tx": wanted,
            "batch_method_name": env.get("PAYOUT_BATCH_METHOD_NAME", "").strip()
            or "distribute_batch"}


def _server_tls(env: Mapping[str, str]) -> ServerTls | None:
    cert = env.get("PAYOUTS_TLS_CERT", "").strip()
    key = env.get("PAYOUTS_TLS_KEY", "").strip()
    plaintext = _bool(env, "PAYOUTS_PLAINTEXT", False)
    if not cert and not key:
        if not plaintext:
            raise ConfigError(
                "PAYOUTS_TLS_CERT and PAYOUTS_TLS_KEY are required (or PAYOUTS_PLAINTEXT=true "
                "for local use only)"
            )
        return None
    if not cert or not key:
        raise ConfigError("PAYOUTS_TLS_CERT and PAYOUTS_TLS_KEY must be set together")
    for name, path in (("PAYOUTS_TLS_CERT", cert), ("PAYOUTS_TLS_KEY", key)):
        if not os.path.isfile(path):
            raise ConfigError(f"{name} file {path} does not exist")
    client_ca = env.get("PAYOUTS_TLS_CLIENT_CA", "").strip() or None
    if client_ca and not os.path.isfile(client_ca):
        raise ConfigError(f"PAYOUTS_TLS_CLIENT_CA file {client_ca} does not exist")
    return ServerTls(cert=cert, key=key, client_ca=client_ca)


def parse_channels(raw: str, source_account: str) -> dict[str, str]:
    """PAYOUTS_CHANNEL_ACCOUNTS: `key_id=G...` entries, comma-separated -> {address: key_id}.

    Channel accounts are the transactions' sources (one in flight each), while the money
    still moves from PAYOUT_SOURCE_ACCOUNT as the operation's source: N channels give up to
    N payouts per ledger instead of one.
    """
    channels: dict[str, str] = {}
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        key_id, sep, address = (part.strip() for part in entry.partition("="))
        where = f"PAYOUTS_CHANNEL_ACCOUNTS entry {entry!r}"
        if not sep or not key_id:
            raise ConfigError(f"{where} must be key_id=G... (the signer key holding it)")
        if not is_account_id(address):
            raise ConfigError(f"{where}: {address!r} is not a valid G... account id")
        if address == source_account:
            raise ConfigError(f"{where}: the paying account cannot also be a channel")
        if address in channels:
            raise ConfigError(f"{where}: {address} is listed twice")
        channels[address] = key_id
    return channels


def _signer_config(env: Mapping[str, str], source_account: str) -> SignerClientConfig:
    addresses = [a.strip() for a in _required(env, "PAYOUTS_SIGNER_ADDR").split(",")]
    if not all(addresses) or len(set(addresses)) != len(addresses):
        raise ConfigError("PAYOUTS_SIGNER_ADDR must be host:port, or several signer instances "
                          "as host:port,host:port (no empty or repeated entry)")
    return SignerClientConfig(
        address=",".join(addresses),
        ca_cert=_required(env, "PAYOUTS_SIGNER_CA_CERT"),
        client_cert=_required(env, "PAYOUTS_SIGNER_CLIENT_CERT"),
        client_key=_required(env, "PAYOUTS_SIGNER_CLIENT_KEY"),
        key_id=env.get("PAYOUTS_SIGNER_KEY_ID", "").strip() or "payout",
        server_name=env.get("PAYOUTS_SIGNER_SERVER_NAME", "").strip() or None,
        channel_keys=parse_channels(env.get("PAYOUTS_CHANNEL_ACCOUNTS", ""), source_account),
    )
