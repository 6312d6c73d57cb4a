"""Configuration from the environment (every variable: docs/configuration.md).

Bad configuration fails at start-up with one line naming the variable (ConfigError).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from payout_service.adapters.database import parse_database_url
from payout_service.core.amounts import AmountError, parse_amount
from payout_service.core.batches import (
    MAX_OPERATIONS_PER_TX,
    PUBLISHED_TX_WRITE_ENTRIES,
    contract_batch_capacity,
)
from payout_service.core.validation import is_account_id, is_contract_id

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


class ConfigError(Exception):
    """One clear line naming the variable at fault."""


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
    batch_size: int
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
    batch_method_name: str = "distribute_batch"
    # PAYOUTS_NETWORK_CLASSIC_OPS_PER_LEDGER: classic operations per ledger when the RPC's
    # ledger header does not say, or a lower figure to leave room for other submitters; the
    # sender keeps twice this (the network's queue) in flight at most (core/pacing.py).
    network_classic_ops_per_ledger: int | None = None
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str, *, minimum: int = 0) -> int | None:
    """None when unset (the code then asks the network); else as `_int`."""
    if not env.get(name, "").strip():
        return None
    return _int(env, name, minimum, minimum=minimum)


def _amount(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
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


def load_config(env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
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
    # Seed name kept: "hot key" signing now means automatic signing by the signer service,
    # whose backend (HSM or hot key) is the signer's own business.
    auto_sign = _bool(env, "PAYOUTS_SIGN_WITH_HOT_KEY", True)
    signing_mode = env.get("PAYOUTS_SIGNING_MODE", "").strip() or (
        "signer" if auto_sign else "external"
    )
    if signing_mode not in ("signer", "external"):
        raise ConfigError("PAYOUTS_SIGNING_MODE must be 'signer' or 'external'")
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
        batch_size=_int(env, "PAYOUTS_BATCH_SIZE", 25, minimum=1),
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
