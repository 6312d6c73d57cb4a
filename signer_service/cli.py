"""signerctl: token and key administration, dev certificates, audit verification.

PINs and secret seeds are read from a file, an environment variable or a hidden prompt, never
from the command line (argv is visible to every user of the host) and never printed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from signer_service.audit import AuditError, Checkpoint, VerifyResult, verify_log
from signer_service.audit_files import AuditDirectoryError
from signer_service.backends import Backend, BackendError
from signer_service.certs import generate_dev_certs
from signer_service.config import (
    DEFAULT_AUDIT_LABEL,
    DEFAULT_PIN_ENV,
    ConfigError,
    SignerConfig,
    config_path_from,
    load_config,
)
from signer_service.policy import NATIVE
from signer_service.spending import spending_bucket

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
MODULE_ENV = "PAYOUTS_SIGNER_PKCS11_MODULE"
SO_PIN_ENV = "PAYOUTS_SIGNER_PKCS11_SO_PIN"


class CliError(Exception):
    pass


def _read_secret(file: str | None, env_name: str, prompt: str, *, confirm: bool = False) -> str:
    if file:
        value = Path(file).read_text().strip() if file != "-" else sys.stdin.readline().strip()
    elif os.environ.get(env_name):
        value = os.environ[env_name]
    elif sys.stdin.isatty():
        value = getpass.getpass(f"{prompt}: ")
        if confirm and getpass.getpass(f"{prompt} (again): ") != value:
            raise CliError(f"{prompt}: the two entries differ")
    else:
        raise CliError(f"{prompt}: give a file, set {env_name}, or run on a terminal")
    if not value:
        raise CliError(f"{prompt} is empty")
    return value


def _module(args: argparse.Namespace) -> str:
    return str(args.module or os.environ.get(MODULE_ENV) or DEFAULT_MODULE)


def _user_pin(args: argparse.Namespace, *, confirm: bool = False) -> str:
    return _read_secret(args.pin_file, DEFAULT_PIN_ENV, "user PIN", confirm=confirm)


def cmd_token_init(args: argparse.Namespace) -> int:
    from signer_service.backends.token_admin import init_token

    so_pin = _read_secret(args.so_pin_file, SO_PIN_ENV, "SO PIN", confirm=True)
    pin = _user_pin(args, confirm=True)
    init_token(_module(args), args.token_label, so_pin, pin)
    print(f"token {args.token_label} initialised")
    return 0


def cmd_key_generate(args: argparse.Namespace) -> int:
    from signer_service.backends.token_admin import generate_key

    key = generate_key(_module(args), args.token_label, _user_pin(args), args.label)
    print(f"{key.label} {key.address}")
    return 0


def cmd_channel_keys_generate(args: argparse.Namespace) -> int:
    import json

    from signer_service.backends.token_admin import generate_channel_keys

    if not 1 <= args.count <= 10_000:
        raise CliError("--count must be 1..10000")
    keys = generate_channel_keys(_module(args), args.token_label, _user_pin(args),
                                 args.label_prefix, args.count)
    for key in keys:  # key_id == label, as payoutctl channels create --from-file reads it
        print(json.dumps({"key_id": key.label, "public_key": key.address})
              if args.output == "json" else f"{key.label} {key.address}")
    return 0


def cmd_channel_keys_destroy(args: argparse.Namespace) -> int:
    from signer_service.backends.token_admin import destroy_channel_key

    address = destroy_channel_key(_module(args), args.token_label, _user_pin(args),
                                  args.label_prefix, args.label)
    print(f"{args.label} {address} destroyed")
    return 0


def cmd_key_import(args: argparse.Namespace) -> int:
    from stellar_sdk import StrKey

    from signer_service.backends.token_admin import import_key

    secret = _read_secret(args.secret_file, "PAYOUT_HOT_SIGNER_SECRET", "secret seed (S...)")
    if not StrKey.is_valid_ed25519_secret_seed(secret):
        raise CliError("the input is not a valid Stellar secret seed (S...)")
    key = import_key(_module(args), args.token_label, _user_pin(args), args.label, secret)
    print(f"{key.label} {key.address}")
    return 0


def cmd_key_show(args: argparse.Namespace) -> int:
    from signer_service.backends.token_admin import show_key

    key = show_key(_module(args), args.token_label, _user_pin(args), args.label)
    print(f"{key.label} {key.address}")
    return 0


def cmd_certs_dev(args: argparse.Namespace) -> int:
    certs = generate_dev_certs(Path(args.out), args.client, server_name=args.server_name)
    print(f"ca_cert     {certs.ca_cert}")
    print(f"server      {certs.server.cert} {certs.server.key}")
    for name, pair in certs.clients.items():
        print(f"client {name}  {pair.cert} {pair.key}")
    return 0


def _audit_backends(config_path: str | None) -> tuple[SignerConfig, dict[str, Backend]]:
    from signer_service.main import open_backends

    config = load_config(config_path_from(config_path, os.environ))
    return config, open_backends(config, os.environ, only={config.audit_key_id})


def _verify_one(config_path: str | None, log: str | None, expect: Checkpoint | None
                ) -> tuple[SignerConfig, VerifyResult | None, list[str]]:
    """One instance's log against its key and checkpoints: its result and report lines."""
    from signer_service.main import audit_key, hsm_checkpoint

    config, backends = _audit_backends(config_path)
    try:
        key = audit_key(config, backends)
        anchors = [cp for cp in [hsm_checkpoint(config, backends)] if cp]
    finally:
        for backend in set(backends.values()):
            backend.close()
    if expect is not None:
        anchors.append(expect)
    path = Path(log) if log else config.audit_path
    where = f" [{config.instance_name}]" if config.instance_name else ""
    try:
        result = verify_log(path, key, anchors)
    except (AuditError, AuditDirectoryError) as err:
        return config, None, [f"TAMPERED{where}: {err}"]
    if not result.ok:
        return config, None, [f"TAMPERED{where}: line {result.first_bad_line}: {result.reason} "
                              f"({result.records} good records before it)"]
    lines = [f"ok{where}: {result.records} records, head {result.last_hash}, audit key "
             f"{key.key_id}"]
    lines += [f"  matches checkpoint at record {cp.records}" for cp in anchors]
    if result.torn_tail:
        lines.append(f"  note: a torn final record ({len(result.torn_tail)} bytes without "
                     "newline); the signer moves it aside at start")
    return config, result, lines


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Chain MACs under the audit key, the checkpoint file, the HSM checkpoint, and (when
    given) a checkpoint published earlier (GetAuditCheckpoint / metrics); with several
    --config (one per instance), each log on its own, then one merged report."""
    configs = args.config or [None]
    if (args.expect_records is None) != (args.expect_head is None):
        raise CliError("--expect-records and --expect-head go together")
    if len(configs) > 1 and (args.log or args.expect_records is not None):
        raise CliError("--log and --expect-* take one --config")
    expect = Checkpoint(args.expect_records, args.expect_head) \
        if args.expect_records is not None else None
    verified: list[tuple[SignerConfig, VerifyResult]] = []
    failed = False
    for config_path in configs:
        config, result, lines = _verify_one(config_path, args.log, expect)
        print("\n".join(lines))
        if result is None:
            failed = True
        else:
            verified.append((config, result))
    if len(configs) > 1 and not failed:
        _print_merged(verified, args.records)
    return 1 if failed else 0


def _print_merged(verified: list[tuple[SignerConfig, VerifyResult]], records: bool) -> None:
    from signer_service.audit_report import InstanceLog, merged, report_lines

    logs = [InstanceLog(config.instance_name or str(config.audit_path), result.verified)
            for config, result in verified]
    last = max((float(r.get("time", 0.0)) for log in logs for r in log.records), default=0.0)
    limits: dict[str, int] = {}
    for config, _ in verified:  # the instances' shares together: the deployment's limit
        for key in config.keys:
            policy = key.policy
            limits[key.key_id] = policy.max_amount_stroops_per_day * config.instances
            for asset, asset_limits in policy.payment_assets.items():
                if asset != NATIVE:
                    limits[spending_bucket(key.key_id, asset)] = \
                        asset_limits.per_day * config.instances
    print("\n".join(report_lines(logs, last, limits)))
    if records:
        for row in merged(logs):
            print(json.dumps(row, sort_keys=True, separators=(",", ":")))


def cmd_audit_key_generate(args: argparse.Namespace) -> int:
    from signer_service.backends.token_admin import generate_audit_key

    generate_audit_key(_module(args), args.token_label, _user_pin(args), args.label)
    print(f"audit HMAC key {args.label} created on token {args.token_label}")
    return 0


def cmd_audit_reset_checkpoint(args: argparse.Namespace) -> int:
    """Operator procedure only: forget the HSM's checkpoint before starting a new log."""
    from signer_service.backends.pkcs11 import Pkcs11Backend

    config, backends = _audit_backends(args.config)
    try:
        backend = backends[config.audit_key_id]
        if not isinstance(backend, Pkcs11Backend):
            raise CliError("the audit key is a hot key: there is no HSM checkpoint to reset")
        removed = backend.clear_checkpoint_blocking()
    finally:
        for b in set(backends.values()):
            b.close()
    print(f"removed {removed} HSM checkpoint object(s)")
    return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    from signer_service.policy_check import explain

    xdr = sys.stdin.read().strip() if args.xdr == "-" else args.xdr
    lines, allowed = explain(Path(args.config), xdr, key_id=args.key,
                             current_ledger=args.current_ledger,
                             expiration_ledger=args.expiration_ledger, spent=args.spent,
                             account=args.account)
    print("\n".join(lines))
    return 0 if allowed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="signerctl", description=__doc__)
    sub = parser.add_subparsers(dest="group", required=True)

    def token_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--module", help=f"PKCS#11 module (${MODULE_ENV}, {DEFAULT_MODULE})")
        p.add_argument("--token-label", required=True)
        p.add_argument("--pin-file", help=f"user PIN file ('-' = stdin; else ${DEFAULT_PIN_ENV}"
                                           " or a prompt)")

    token = sub.add_parser("token", help="PKCS#11 token").add_subparsers(dest="cmd", required=True)
    p = token.add_parser("init", help="initialise a free SoftHSM slot as a token")
    token_args(p)
    p.add_argument("--so-pin-file", help=f"SO PIN file (else ${SO_PIN_ENV} or a prompt)")
    p.set_defaults(func=cmd_token_init)

    key = sub.add_parser("key", help="keys on the token").add_subparsers(dest="cmd", required=True)
    p = key.add_parser("generate", help="generate a non-extractable Ed25519 key")
    token_args(p)
    p.add_argument("--label", required=True)
    p.set_defaults(func=cmd_key_generate)
    p = key.add_parser("import", help="move a hot key (S...) onto the token")
    token_args(p)
    p.add_argument("--label", required=True)
    p.add_argument("--secret-file", help="file with the S... seed, '-' for stdin")
    p.set_defaults(func=cmd_key_import)
    channel_keys = sub.add_parser("channel-keys", help="channel account keys on the token"
                                  ).add_subparsers(dest="cmd", required=True)
    p = channel_keys.add_parser("generate", help="generate N non-extractable Ed25519 keys "
                                "labelled <prefix><n> after the highest existing n")
    token_args(p)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--label-prefix", default="channel-")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_channel_keys_generate)
    p = channel_keys.add_parser("destroy", help="destroy a retired channel's key pair (merge "
                                "its account home first); a running signer drops it")
    token_args(p)
    p.add_argument("--label", required=True)
    p.add_argument("--label-prefix", default="channel-")
    p.set_defaults(func=cmd_channel_keys_destroy)
    p = key.add_parser("show", help="print a key's G... address")
    token_args(p)
    p.add_argument("--label", required=True)
    p.set_defaults(func=cmd_key_show)

    certs = sub.add_parser("certs", help="TLS material").add_subparsers(dest="cmd", required=True)
    p = certs.add_parser("dev", help="dev CA, server cert and client certs (not for production)")
    p.add_argument("--out", required=True)
    p.add_argument("--client", action="append", default=[], help="client CN (repeatable)")
    p.add_argument("--server-name", default="signer-service")
    p.set_defaults(func=cmd_certs_dev)

    policy = sub.add_parser("policy", help="signing policy").add_subparsers(dest="cmd",
                                                                            required=True)
    p = policy.add_parser("check", help="explain the decision on a transaction envelope or "
                                        "authorization entry, node by node; exit 1 if refused")
    p.add_argument("config", help="the signer's TOML config (its [keys.policy] tables)")
    p.add_argument("xdr", help="base64 TransactionEnvelope or SorobanAuthorizationEntry "
                                 "('-' = stdin)")
    p.add_argument("--key", help="key id (default: the only key)")
    p.add_argument("--spent", type=int, default=0,
                   help="stroops already spent in 24 h (in the batch's asset)")
    p.add_argument("--account", default=None,
                   help="the key's G... account, payer of classic batches (default: the "
                        "policy's one source account)")
    p.add_argument("--current-ledger", type=int, default=0, help="auth entries: current ledger")
    p.add_argument("--expiration-ledger", type=int, default=0,
                   help="auth entries: signature expiration ledger")
    p.set_defaults(func=cmd_policy_check)

    audit = sub.add_parser("audit", help="audit log").add_subparsers(dest="cmd", required=True)
    p = audit.add_parser("verify", help="check the keyed chain and the checkpoints; exit 1 "
                                        "on tampering (needs the audit key: PIN or hot secret)")
    p.add_argument("--config", action="append",
                   help="signer TOML config (default: $PAYOUTS_SIGNER_CONFIG); repeat it, one "
                        "per instance, to verify each log and merge them into one report")
    p.add_argument("--records", action="store_true",
                   help="with several --config: print the merged records, one JSON line "
                        "each, ordered by time, with their instance")
    p.add_argument("--log", help="audit log (default: the config's audit.path)")
    p.add_argument("--expect-records", type=int,
                   help="a published checkpoint's record count (GetAuditCheckpoint, metrics)")
    p.add_argument("--expect-head", help="that checkpoint's head hash (hex)")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("key-generate", help="create the audit HMAC key on the token")
    token_args(p)
    p.add_argument("--label", default=DEFAULT_AUDIT_LABEL)
    p.set_defaults(func=cmd_audit_key_generate)
    p = audit.add_parser("reset-checkpoint", help="operator procedure: drop the HSM's audit "
                                                  "checkpoint before starting a new log")
    p.add_argument("--config", help="signer TOML config (default: $PAYOUTS_SIGNER_CONFIG)")
    p.set_defaults(func=cmd_audit_reset_checkpoint)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CliError, BackendError, ConfigError) as err:
        print(f"signerctl: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"signerctl: {type(err).__name__}: {err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
