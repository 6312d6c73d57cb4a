"""The signer's TOML configuration, owned by the security team. Validated whole at start-up."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stellar_sdk import StrKey

from signer_service.policy import (
    ARG_TYPES,
    CHANNEL_KEYS,
    NATIVE,
    TRANSFER_ARGS,
    WILDCARD,
    ApprovalRule,
    ArgSpec,
    AssetLimits,
    CallRule,
    ChannelFunding,
    KeyPolicy,
)

CONFIG_ENV = "PAYOUTS_SIGNER_CONFIG"
DEFAULT_PIN_ENV = "PAYOUTS_SIGNER_PKCS11_PIN"
DEFAULT_HOT_SECRET_ENV = "PAYOUT_HOT_SIGNER_SECRET"  # noqa: S105 - a variable name
DEFAULT_AUDIT_LABEL = "signer-audit-hmac"


class ConfigError(Exception):
    """One line naming the setting that is wrong. Never carries a secret value."""


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    client_ca: Path


@dataclass(frozen=True)
class Pkcs11Config:
    module: Path
    token_label: str
    pin_env: str
    pin_file: Path | None


@dataclass(frozen=True)
class KeyConfig:
    key_id: str
    backend: str  # "pkcs11" | "hot"
    label: str | None  # pkcs11: label of the key pair on the token
    secret_file: Path | None  # hot: file holding the S... seed
    secret_env: str | None  # hot: env var holding the S... seed
    allowed_clients: frozenset[str]
    policy: KeyPolicy
    role: str = "payout"  # "payout" | "funding" | "channel" (ListKeys reports it)


@dataclass(frozen=True)
class ChannelKeysConfig:
    """[channel_keys]: every Ed25519 key pair on the token whose label starts with
    `label_prefix` (what `signerctl channel-keys generate` makes) is a channel key, its key id
    the label, under `template`'s clients and policy (role channel). The signer re-lists the
    token every `refresh_seconds` and on an unknown key id, so a key generated or destroyed
    while it runs is picked up or dropped without a restart."""

    label_prefix: str
    template: KeyConfig
    refresh_seconds: float = 10.0

    def key(self, label: str) -> KeyConfig:
        return replace(self.template, key_id=label, label=label)


@dataclass(frozen=True)
class SignerConfig:
    listen_addr: str
    metrics_port: int | None
    metrics_addr: str
    network_passphrase: str
    tls: TlsConfig
    audit_path: Path
    audit_key_id: str  # the key whose backend keys the audit chain
    audit_hmac_label: str  # pkcs11: label of the token's audit HMAC key
    pkcs11: Pkcs11Config | None
    keys: tuple[KeyConfig, ...]
    channel_keys: ChannelKeysConfig | None = None
    # Signer instances holding these keys; each signs at most 1/instances of every daily
    # limit (the policies here are already divided), so together they never exceed it.
    instances: int = 1
    # Names this instance's audit chain (its chain key and HSM checkpoint); "" alone.
    instance_name: str = ""
    # Seconds per ledger a current_ledger claim may advance (policy.ledger_ceiling).
    min_ledger_close_seconds: int = 1


def config_path_from(cli_value: str | None, env: Mapping[str, str]) -> Path:
    value = cli_value or env.get(CONFIG_ENV, "").strip()
    if not value:
        raise ConfigError(f"no configuration: pass --config PATH or set {CONFIG_ENV}")
    return Path(value)


def load_config(path: Path) -> SignerConfig:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err.__class__.__name__}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    return parse_config(raw, os.environ)


def parse_config(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> SignerConfig:
    """`env` supplies what the file names by variable (server.instance_name_env)."""
    server = _table(raw, "server")
    passphrase = _str(server, "server.network_passphrase")
    listen = _str(server, "server.listen_addr")
    if ":" not in listen:
        raise ConfigError(f"server.listen_addr must be HOST:PORT, got {listen!r}")
    metrics_port = server.get("metrics_port")
    if metrics_port is not None and (
        not isinstance(metrics_port, int) or isinstance(metrics_port, bool)
        or not 0 <= metrics_port <= 65535
    ):
        raise ConfigError("server.metrics_port must be a port number (0-65535)")
    metrics_addr = server.get("metrics_addr", "0.0.0.0")  # noqa: S104 - scrape port, by design
    if not isinstance(metrics_addr, str):
        raise ConfigError("server.metrics_addr must be a string")
    instances, instance_name = _instances(server, env or {})
    min_close = server.get("min_ledger_close_seconds", 1)
    if isinstance(min_close, bool) or not isinstance(min_close, int) or not 1 <= min_close <= 60:
        raise ConfigError("server.min_ledger_close_seconds must be a whole number of seconds "
                          "from 1 to 60")

    tls_t = _table(raw, "tls")
    tls = TlsConfig(
        cert=_existing_file(tls_t, "tls.cert"),
        key=_existing_file(tls_t, "tls.key"),
        client_ca=_existing_file(tls_t, "tls.client_ca"),
    )
    audit_t = _table(raw, "audit")
    audit_path = Path(_str(audit_t, "audit.path"))
    if not audit_path.parent.is_dir():
        raise ConfigError(f"audit.path folder {audit_path.parent} does not exist")

    pkcs11_t = raw.get("pkcs11")
    legacy = raw.get("backend")
    if pkcs11_t is None and isinstance(legacy, dict) and legacy.get("kind") == "pkcs11":
        # deploy/k8s/payout-signer/configmap.yaml spells the table [backend] kind = "pkcs11".
        pkcs11_t = {k: v for k, v in legacy.items() if k != "kind"}
    pkcs11 = _pkcs11(pkcs11_t) if pkcs11_t is not None else None
    keys_raw = raw.get("keys")
    if not isinstance(keys_raw, list) or not keys_raw:
        raise ConfigError("keys: at least one [[keys]] entry is required")
    keys = tuple(_key(i, k, pkcs11, passphrase) for i, k in enumerate(keys_raw))
    ids = [k.key_id for k in keys]
    for key_id in ids:
        if ids.count(key_id) > 1:
            raise ConfigError(f"keys: key id {key_id!r} is defined twice")
    channel_keys = _channel_keys(raw.get("channel_keys"), pkcs11, passphrase)
    if channel_keys is not None:
        clash = [k for k in ids if k.startswith(channel_keys.label_prefix)]
        if clash:
            raise ConfigError(f"keys: key id {clash[0][:64]!r} starts with channel_keys."
                              "label_prefix (those ids belong to the token's channel keys)")
    audit_key_id = audit_t.get("key_id", keys[0].key_id)
    if audit_key_id not in ids:
        raise ConfigError(f"audit.key_id {str(audit_key_id)[:64]!r} is not a configured key id")
    audit_hmac_label = audit_t.get("hmac_label", DEFAULT_AUDIT_LABEL)
    if not isinstance(audit_hmac_label, str) or not audit_hmac_label:
        raise ConfigError("audit.hmac_label must be a non-empty string")
    keys = tuple(replace(k, policy=daily_share(k.policy, instances, f"keys.{k.key_id}.policy"))
                 for k in keys)
    if channel_keys is not None:
        template = channel_keys.template
        channel_keys = replace(channel_keys, template=replace(template, policy=daily_share(
            template.policy, instances, "channel_keys.policy")))
    return SignerConfig(
        listen_addr=listen,
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
        network_passphrase=passphrase,
        tls=tls,
        audit_path=audit_path,
        audit_key_id=audit_key_id,
        audit_hmac_label=audit_hmac_label,
        pkcs11=pkcs11,
        keys=keys,
        channel_keys=channel_keys,
        instances=instances,
        instance_name=instance_name,
        min_ledger_close_seconds=min_close,
    )


INSTANCE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _instances(server: Mapping[str, Any], env: Mapping[str, str]) -> tuple[int, str]:
    instances = server.get("instances", 1)
    if isinstance(instances, bool) or not isinstance(instances, int) or not 1 <= instances <= 16:
        raise ConfigError("server.instances must be a whole number from 1 to 16")
    name = server.get("instance_name", "")
    # One configuration file for every replica of a StatefulSet: each takes its name from
    # its own environment (the pod name through the Downward API).
    name_env = server.get("instance_name_env")
    if name_env is not None:
        if not isinstance(name_env, str) or not name_env:
            raise ConfigError("server.instance_name_env must name an environment variable")
        if name:
            raise ConfigError("server.instance_name and server.instance_name_env exclude "
                              "each other")
        name = env.get(name_env, "")
        if not name:
            raise ConfigError(f"{name_env} is not set (server.instance_name_env)")
    if not isinstance(name, str) or len(name) > 32 or not set(name) <= INSTANCE_NAME_CHARS:
        raise ConfigError("server.instance_name must be up to 32 of a-z, 0-9, '-' and '_'")
    if instances > 1 and not name:
        raise ConfigError("server.instance_name is required with server.instances > 1 (each "
                          "instance keeps its own audit chain)")
    return instances, name


def daily_share(policy: KeyPolicy, instances: int, where: str) -> KeyPolicy:
    """What one of `instances` signers may sign per rolling day: the configured daily limits
    divided (rounded down), so that the instances together never exceed them. Per-operation
    and per-transaction limits bound each signature wherever it is made: not divided."""
    if instances == 1:
        return policy

    def share(limit: int, name: str) -> int:
        if limit < instances:
            raise ConfigError(f"{where}.{name} ({limit}) cannot be shared by {instances} "
                              "instances")
        return limit // instances

    assets = {asset: replace(limits, per_day=share(limits.per_day, "max_amount_stroops_per_day"
                                                   if asset == NATIVE else f"limits.{asset}"))
              for asset, limits in policy.payment_assets.items()}
    return replace(policy, max_amount_stroops_per_day=share(
        policy.max_amount_stroops_per_day, "max_amount_stroops_per_day"), payment_assets=assets)


def _channel_keys(
    value: Any, pkcs11: Pkcs11Config | None, passphrase: str
) -> ChannelKeysConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError("channel_keys must be a table")
    unknown = sorted(set(value) - {"label_prefix", "allowed_clients", "policy",
                                   "refresh_seconds"})
    if unknown:
        raise ConfigError(f"channel_keys: unknown setting {unknown[0][:64]!r}")
    if pkcs11 is None:
        raise ConfigError("channel_keys needs a [pkcs11] table (channel keys live on the token)")
    prefix = _str(value, "channel_keys.label_prefix")
    refresh = value.get("refresh_seconds", 10)
    if isinstance(refresh, bool) or not isinstance(refresh, int | float) \
            or not 1 <= refresh <= 3600:
        raise ConfigError("channel_keys.refresh_seconds must be a number from 1 to 3600")
    # The template is checked like a [[keys]] entry of role channel (merge_into required).
    try:
        template = _key(0, {"id": prefix, "backend": "pkcs11", "label": prefix,
                            "role": "channel", "allowed_clients": value.get("allowed_clients"),
                            "policy": value.get("policy")}, pkcs11, passphrase)
    except ConfigError as err:
        raise ConfigError(f"channel_keys: {err}") from None
    return ChannelKeysConfig(prefix, template, float(refresh))


def read_pin(config: Pkcs11Config, env: Mapping[str, str]) -> str:
    """The user PIN, from the pin file when configured, else from the named env variable."""
    if config.pin_file is not None:
        try:
            pin = config.pin_file.read_text().strip()
        except OSError:
            raise ConfigError(f"pkcs11.pin_file {config.pin_file} cannot be read") from None
        if not pin:
            raise ConfigError(f"pkcs11.pin_file {config.pin_file} is empty")
        return pin
    pin = env.get(config.pin_env, "")
    if not pin:
        raise ConfigError(f"{config.pin_env} is not set (the PKCS#11 user PIN, pkcs11.pin_env)")
    return pin


def read_hot_secret(key: KeyConfig, env: Mapping[str, str]) -> str:
    """The hot key's S... seed; only the signer process reads it."""
    if key.secret_file is not None:
        try:
            secret = key.secret_file.read_text().strip()
        except OSError:
            raise ConfigError(f"keys.{key.key_id}.secret_file cannot be read") from None
        source = f"keys.{key.key_id}.secret_file"
    else:
        name = key.secret_env or DEFAULT_HOT_SECRET_ENV
        secret = env.get(name, "").strip()
        source = name
    if not StrKey.is_valid_ed25519_secret_seed(secret):
        # Never echo the value: it may be a real (mistyped) seed.
        raise ConfigError(f"{source} does not hold a valid Stellar secret seed (S...)")
    return secret


def _pkcs11(value: Any) -> Pkcs11Config:
    if not isinstance(value, dict):
        raise ConfigError("pkcs11 must be a table")
    module = _existing_file(value, "pkcs11.module")
    pin_file = value.get("pin_file")
    if pin_file is not None and not isinstance(pin_file, str):
        raise ConfigError("pkcs11.pin_file must be a path string")
    pin_env = value.get("pin_env", DEFAULT_PIN_ENV)
    if not isinstance(pin_env, str) or not pin_env:
        raise ConfigError("pkcs11.pin_env must name an environment variable")
    return Pkcs11Config(
        module=module,
        token_label=_str(value, "pkcs11.token_label"),
        pin_env=pin_env,
        pin_file=Path(pin_file) if pin_file else None,
    )


def _key(index: int, value: Any, pkcs11: Pkcs11Config | None, passphrase: str) -> KeyConfig:
    if not isinstance(value, dict):
        raise ConfigError(f"keys[{index}] must be a table")
    key_id = _str(value, f"keys[{index}].id")
    where = f"keys.{key_id}"
    backend = value.get("backend", "pkcs11")
    label = secret_file = secret_env = None
    if backend == "pkcs11":
        if pkcs11 is None:
            raise ConfigError(f"{where}.backend is pkcs11 but there is no [pkcs11] table")
        label = _str(value, f"{where}.label")
    elif backend == "hot":
        if "secret_file" in value:
            secret_file = Path(_str(value, f"{where}.secret_file"))
        else:
            secret_env = value.get("secret_env", DEFAULT_HOT_SECRET_ENV)
            if not isinstance(secret_env, str) or not secret_env:
                raise ConfigError(f"{where}.secret_env must name an environment variable")
    else:
        raise ConfigError(f"{where}.backend must be 'pkcs11' or 'hot', got {backend!r}")
    clients = _str_list(value, f"{where}.allowed_clients", allow_wildcard=False)
    if not clients:
        raise ConfigError(f"{where}.allowed_clients must name at least one client identity")
    policy_t = value.get("policy")
    if not isinstance(policy_t, dict):
        raise ConfigError(f"{where}.policy table is required")
    role = value.get("role", "payout")
    if role not in ("payout", "funding", "channel"):
        raise ConfigError(f"{where}.role must be 'payout', 'funding' or 'channel'")
    if role == "channel" and "merge_into" not in policy_t:
        raise ConfigError(f"{where}: a channel key needs policy.merge_into (the funding account)")
    if role == "funding" and "channel_funding" not in policy_t:
        raise ConfigError(f"{where}: a funding key needs policy.channel_funding")
    return KeyConfig(
        key_id=key_id,
        backend=backend,
        label=label,
        secret_file=secret_file,
        secret_env=secret_env,
        allowed_clients=frozenset(clients),
        policy=_policy(policy_t, f"{where}.policy", passphrase),
        role=role,
    )


POLICY_SETTINGS = frozenset({
    "network_passphrase", "source_accounts", "contract_ids", "function_names", "calls",
    "max_fee_stroops", "max_amount_stroops_per_tx", "max_amount_stroops_per_day",
    "max_time_window_seconds", "max_signature_expiration_ledgers", "max_amount_stroops_per_op",
    "payments", "merge_into", "channel_funding", "approvals",
})
PAYMENT_SETTINGS = frozenset({"assets", "allow_muxed_destinations", "allow_memo", "limits"})
LIMIT_SETTINGS = ("max_amount_stroops_per_op", "max_amount_stroops_per_tx",
                  "max_amount_stroops_per_day")


def _policy(value: dict[str, Any], where: str, passphrase: str) -> KeyPolicy:
    unknown = sorted(set(value) - POLICY_SETTINGS)
    if unknown:
        # A misspelt limit must not silently fall back to a default.
        raise ConfigError(f"{where}: unknown setting {unknown[0][:64]!r}")
    pol_passphrase = _str(value, f"{where}.network_passphrase")
    if pol_passphrase != passphrase:
        raise ConfigError(
            f"{where}.network_passphrase differs from server.network_passphrase"
        )
    sources = _str_list(value, f"{where}.source_accounts", allow_wildcard=True)
    for account in sources:
        if account not in (WILDCARD, CHANNEL_KEYS) and \
                not StrKey.is_valid_ed25519_public_key(account):
            raise ConfigError(f"{where}.source_accounts: {account!r} is not a G... account")
    per_op = None
    if "max_amount_stroops_per_op" in value:
        per_op = _positive_int(value, f"{where}.max_amount_stroops_per_op")
    payments = value.get("payments", {})
    if not isinstance(payments, dict):
        raise ConfigError(f"{where}.payments must be a table")
    merge_into = value.get("merge_into")
    if merge_into is not None and (not isinstance(merge_into, str)
                                   or not StrKey.is_valid_ed25519_public_key(merge_into)):
        raise ConfigError(f"{where}.merge_into must be a G... account")
    return KeyPolicy(
        network_passphrase=pol_passphrase,
        source_accounts=frozenset(sources),
        calls=_calls(value, where, required=not payments and merge_into is None),
        max_fee_stroops=_positive_int(value, f"{where}.max_fee_stroops"),
        max_amount_stroops_per_tx=_positive_int(value, f"{where}.max_amount_stroops_per_tx"),
        max_amount_stroops_per_day=_positive_int(value, f"{where}.max_amount_stroops_per_day"),
        max_time_window_seconds=_positive_int(value, f"{where}.max_time_window_seconds"),
        max_signature_expiration_ledgers=_positive_int(
            {"max_signature_expiration_ledgers": 120, **value},
            f"{where}.max_signature_expiration_ledgers"),
        max_amount_stroops_per_op=per_op,
        payment_assets=_payment_assets(payments, f"{where}.payments", AssetLimits(
            per_op or value["max_amount_stroops_per_tx"], value["max_amount_stroops_per_tx"],
            value["max_amount_stroops_per_day"])),
        allow_muxed_destinations=_bool(payments, f"{where}.payments.allow_muxed_destinations"),
        allow_memo=_bool(payments, f"{where}.payments.allow_memo"),
        merge_into=merge_into,
        channel_funding=_channel_funding(value, f"{where}.channel_funding"),
        approvals=_approvals(value, f"{where}.approvals"),
    )


def _payment_assets(
    value: dict[str, Any], where: str, native: AssetLimits
) -> dict[str, AssetLimits]:
    """Classic batches: each allowed asset with its limits. Native counts toward the key's own
    limits; a CODE:ISSUER asset needs its own `limits` table (stroops of that asset), since
    its units are not XLM's: no limits, no signature (deny by default)."""
    if not value:
        return {}
    unknown = sorted(set(value) - PAYMENT_SETTINGS)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0][:64]!r}")
    limits_t = value.get("limits", {})
    if not isinstance(limits_t, dict):
        raise ConfigError(f"{where}.limits must be a table of assets")
    assets: dict[str, AssetLimits] = {}
    for asset in _str_list(value, f"{where}.assets", allow_wildcard=False):
        if asset == NATIVE:
            assets[NATIVE] = native  # the key's own limits (KeyPolicy.native_limits)
            continue
        code, _, issuer = asset.partition(":")
        if not 1 <= len(code) <= 12 or not code.isalnum() or \
                not StrKey.is_valid_ed25519_public_key(issuer):
            raise ConfigError(f"{where}.assets: {asset[:64]!r} is not 'native' or CODE:ISSUER")
        table = limits_t.get(asset)
        if not isinstance(table, dict):
            raise ConfigError(f"{where}.limits.{code}: asset {code} has no limits table "
                              "(max_amount_stroops_per_op, _per_tx, _per_day)")
        at = f"{where}.limits.{code}"
        unknown = sorted(set(table) - set(LIMIT_SETTINGS))
        if unknown:
            raise ConfigError(f"{at}: unknown setting {unknown[0][:64]!r}")
        assets[asset] = AssetLimits(*(_positive_int(table, f"{at}.{n}") for n in LIMIT_SETTINGS))
    extra = sorted(set(limits_t) - set(assets) | ({NATIVE} & set(limits_t)))
    if extra:
        raise ConfigError(f"{where}.limits: {extra[0][:64]!r} is not in assets")
    return assets


def _optional_table(value: Mapping[str, Any], where: str, settings: frozenset[str]
                    ) -> dict[str, Any] | None:
    """The policy's table named by `where`'s last part, None when absent; a misspelt setting
    in it is an error."""
    table = value.get(_leaf(where))
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - settings)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0][:64]!r}")
    return table


def _channel_funding(value: Mapping[str, Any], where: str) -> ChannelFunding | None:
    """A funding key: only native payments to this signer's channel keys, each bounded."""
    settings = ("max_starting_balance_stroops", "max_top_up_stroops")
    table = _optional_table(value, where, frozenset(settings))
    if table is None:
        return None
    payments = value.get("payments", {})
    if not isinstance(payments, dict) or payments.get("assets") != ["native"]:
        raise ConfigError(f"{where} needs payments.assets = [\"native\"] (channels are "
                          "funded in XLM only)")
    return ChannelFunding(*(_positive_int(table, f"{where}.{n}") for n in settings))


APPROVAL_SETTINGS = frozenset({"approvers", "required", "thresholds"})


def _approvals(value: Mapping[str, Any], where: str) -> ApprovalRule | None:
    """Four-eyes approvals: off unless the policy names approvers."""
    table = _optional_table(value, where, APPROVAL_SETTINGS)
    if table is None:
        return None
    approvers = _str_list(table, f"{where}.approvers", allow_wildcard=False)
    for approver in approvers:
        if not StrKey.is_valid_ed25519_public_key(approver):
            raise ConfigError(f"{where}.approvers: {approver[:64]!r} is not a G... public key")
    if len(set(approvers)) != len(approvers):
        raise ConfigError(f"{where}.approvers lists a key twice")
    required = _positive_int(table, f"{where}.required")
    if required > len(approvers):
        raise ConfigError(f"{where}.required {required} is more than the "
                          f"{len(approvers)} approvers listed")
    thresholds_t = table.get("thresholds", {})
    if not isinstance(thresholds_t, dict):
        raise ConfigError(f"{where}.thresholds must be a table of assets")
    thresholds: dict[str, int] = {}
    for asset, limit in thresholds_t.items():
        code, _, issuer = asset.partition(":")
        if asset != NATIVE and not StrKey.is_valid_contract(asset) and not (
            1 <= len(code) <= 12 and code.isalnum()
            and StrKey.is_valid_ed25519_public_key(issuer)
        ):
            raise ConfigError(f"{where}.thresholds: {asset[:64]!r} is not 'native', "
                              "CODE:ISSUER or a C... contract id")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ConfigError(f"{where}.thresholds.{code[:12]} must be an integer >= 0 "
                              "(stroops)")
        thresholds[asset] = limit
    return ApprovalRule(frozenset(approvers), required, thresholds)


def _bool(table: Mapping[str, Any], name: str) -> bool:
    value = table.get(_leaf(name), False)
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false")
    return value


def _contract_ids(table: Mapping[str, Any], name: str) -> frozenset[str]:
    contracts = _str_list(table, name, allow_wildcard=True)
    for contract in contracts:
        if contract != WILDCARD and not StrKey.is_valid_contract(contract):
            raise ConfigError(f"{name}: {contract!r} is not a C... contract id")
    return frozenset(contracts)


def _calls(value: Mapping[str, Any], where: str, *, required: bool) -> tuple[CallRule, ...]:
    """`calls` (each: contract_ids, function, args) plus the shorthand `contract_ids` x
    `function_names`, which gives each listed function the schema (from, to, amount)."""
    rules: list[CallRule] = []
    if "contract_ids" in value or "function_names" in value:
        contracts = _contract_ids(value, f"{where}.contract_ids")
        names = _str_list(value, f"{where}.function_names", allow_wildcard=False)
        rules += [CallRule(contracts, name, TRANSFER_ARGS) for name in names]
    raw = value.get("calls", [])
    if not isinstance(raw, list):
        raise ConfigError(f"{where}.calls must be a list of tables")
    for i, call in enumerate(raw):
        at = f"{where}.calls[{i}]"
        if not isinstance(call, dict):
            raise ConfigError(f"{at} must be a table (contract_ids, function, args)")
        unknown = set(call) - {"contract_ids", "function", "args"}
        if unknown:
            raise ConfigError(f"{at}: unknown setting {sorted(unknown)[0]!r}")
        args = [_arg_spec(a, f"{at}.args") for a in _str_list_or_empty(call, f"{at}.args")]
        rules.append(CallRule(_contract_ids(call, f"{at}.contract_ids"),
                              _str(call, f"{at}.function"), tuple(args)))
    if not rules and required:
        raise ConfigError(f"{where}: no call is allowed; list calls or contract_ids and "
                          "function_names (deny by default)")
    for i, a in enumerate(rules):
        for b in rules[i + 1:]:
            overlap = WILDCARD in a.contract_ids or WILDCARD in b.contract_ids or \
                a.contract_ids & b.contract_ids
            if a.function == b.function and overlap:
                raise ConfigError(f"{where}: function {a.function!r} has two schemas for the "
                                  "same contract")
    return tuple(rules)


def _arg_spec(text: str, where: str) -> ArgSpec:
    name, sep, kind = (p.strip() for p in text.partition(":"))
    if not sep or not name or kind not in ARG_TYPES:
        raise ConfigError(f"{where}: {text[:40]!r} must be 'name: type' with type one of "
                          f"{', '.join(ARG_TYPES)}")
    return ArgSpec(name, kind)


def _str_list_or_empty(table: Mapping[str, Any], name: str) -> list[str]:
    value = table.get(_leaf(name), [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name} must be a list of strings")
    return list(value)


def _table(raw: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] table is required")
    return value


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _str(table: Mapping[str, Any], name: str) -> str:
    value = table.get(_leaf(name))
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} is required (a non-empty string)")
    return value


def _existing_file(table: Mapping[str, Any], name: str) -> Path:
    path = Path(_str(table, name))
    if not path.is_file():
        raise ConfigError(f"{name} file {path} does not exist")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{name} file {path} is not readable")
    return path


def _str_list(table: Mapping[str, Any], name: str, *, allow_wildcard: bool) -> list[str]:
    value = table.get(_leaf(name))
    if not isinstance(value, list) or not value or not all(
        isinstance(v, str) and v for v in value
    ):
        hint = ' (use ["*"] to allow any)' if allow_wildcard else ""
        raise ConfigError(f"{name} must be a non-empty list of strings{hint}")
    if WILDCARD in value and (not allow_wildcard or len(value) > 1):
        raise ConfigError(f"{name}: '*' must be the only entry, where it is allowed")
    return list(value)


def _positive_int(table: Mapping[str, Any], name: str) -> int:
    value = table.get(_leaf(name))
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer")
    return value
