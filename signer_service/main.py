"""signer-service: load the config, open the keys and the audit log, serve mTLS gRPC."""

from __future__ import annotations

import os

from signer_service.peer import require_tls13

# gRPC core writes its own glog-style lines (e.g. every failed mTLS handshake at INFO) to
# stderr, which would break "one JSON object per line". It reads this before it starts.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
require_tls13()  # before grpc builds its TLS credentials (peer.py says how)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Mapping  # noqa: E402

from signer_service import metrics  # noqa: E402
from signer_service.audit import AuditError, AuditLog, ChainKey, Checkpoint  # noqa: E402
from signer_service.audit_files import AuditDirectoryError  # noqa: E402
from signer_service.backends import AuditAnchor, Backend, BackendError  # noqa: E402
from signer_service.backends.hot import HotKeyBackend  # noqa: E402
from signer_service.config import (  # noqa: E402
    DEFAULT_HOT_SECRET_ENV,
    ConfigError,
    SignerConfig,
    config_path_from,
    load_config,
    read_hot_secret,
    read_pin,
)
from signer_service.idempotency import SignedRequests  # noqa: E402
from signer_service.logs import log_event, setup_logging  # noqa: E402
from signer_service.server import SignerServicer, build_server  # noqa: E402
from signer_service.spending import SpentLedger, ledger_anchor  # noqa: E402
from signer_service.tracing import configure_tracing  # noqa: E402

HSM_CHECKPOINT_SECONDS = 5.0
# Where open_backends puts the backend that finds [channel_keys] on the token (no key id has
# this form: ids are TOML strings of 1+ characters, this one is reserved).
CHANNEL_KEYS_BACKEND = "[channel_keys]"


def open_backends(
    config: SignerConfig, env: Mapping[str, str], only: set[str] | None = None,
    signing_process: bool = False,
) -> dict[str, Backend]:
    """One backend object per kind; each key maps to the backend holding it. With
    `signing_process` (signer-service), the PKCS#11 session lives in a process of its own
    (backends/pkcs11_process.py); signerctl opens the token in its own process."""
    keys = [k for k in config.keys if only is None or k.key_id in only]
    by_key: dict[str, Backend] = {}
    hot = {k.key_id: read_hot_secret(k, env) for k in keys if k.backend == "hot"}
    if hot:
        hot_backend = HotKeyBackend(hot)
        by_key.update(dict.fromkeys(hot, hot_backend))
    labels = {k.key_id: k.label for k in keys if k.backend == "pkcs11" and k.label}
    if (labels or (config.channel_keys and only is None)) and config.pkcs11 is not None:
        pkcs11_backend: Backend
        if signing_process:
            from signer_service.backends.pkcs11_process import Pkcs11Process

            secret_env = {config.pkcs11.pin_env, DEFAULT_HOT_SECRET_ENV} | {
                k.secret_env for k in config.keys if k.secret_env}
            pkcs11_backend = Pkcs11Process(
                str(config.pkcs11.module), config.pkcs11.token_label,
                read_pin(config.pkcs11, env), labels, config.audit_hmac_label, env, secret_env,
                instance=config.instance_name,
            )
        else:
            # Imported here so a hot-key-only signer does not need the PKCS#11 module at all.
            from signer_service.backends.pkcs11 import Pkcs11Backend

            pkcs11_backend = Pkcs11Backend(
                str(config.pkcs11.module), config.pkcs11.token_label,
                read_pin(config.pkcs11, env), labels, audit_label=config.audit_hmac_label,
                instance=config.instance_name,
            )
        by_key.update(dict.fromkeys(labels, pkcs11_backend))
        if config.channel_keys is not None and only is None:
            by_key[CHANNEL_KEYS_BACKEND] = pkcs11_backend
    return by_key


def audit_key(config: SignerConfig, backends: Mapping[str, Backend]) -> ChainKey:
    secret = backends[config.audit_key_id].audit_chain_key(config.audit_key_id)
    return ChainKey(secret).for_instance(config.instance_name)


def hsm_checkpoint(config: SignerConfig, backends: Mapping[str, Backend]) -> Checkpoint | None:
    stored = backends[config.audit_key_id].load_checkpoint()
    return Checkpoint(*stored) if stored else None


async def keep_hsm_checkpoint(anchor: AuditAnchor, audit: AuditLog, every: float) -> None:
    """Copies the head checkpoint to the HSM every few seconds when it moved (and once more on
    stop): deleting or rolling back the log *and* its checkpoint file then still shows."""
    stored = -1
    try:
        while True:
            await asyncio.sleep(every)
            cp = audit.checkpoint
            if cp.records != stored:
                await anchor.store_checkpoint(cp.records, cp.head)
                stored = cp.records
    finally:
        cp = audit.checkpoint
        if cp.records != stored:
            await anchor.store_checkpoint(cp.records, cp.head)


async def serve(config: SignerConfig, env: Mapping[str, str], trace_export: bool = False) -> None:
    backends = open_backends(config, env, signing_process=True)
    audit: AuditLog | None = None
    try:
        key = audit_key(config, backends)
        audit = AuditLog(config.audit_path, key,
                         on_checkpoint=lambda cp: metrics.publish_audit_checkpoint(
                             cp.records, cp.head))
        # The daily limits, the ledger anchor and the request ids signed come only from
        # records that verified.
        records = audit.open(hsm_checkpoint(config, backends))
        for aside in audit.repairs:
            log_event("audit log repaired: torn final record moved aside", logging.WARNING,
                      moved_to=aside)
        spent = SpentLedger.from_audit(records)
        channel_source = backends.get(CHANNEL_KEYS_BACKEND)
        servicer = SignerServicer(config, backends, audit, spent,
                                  ledger_anchor=ledger_anchor(records),
                                  signed=SignedRequests.from_audit(records, time.time()),
                                  channel_source=channel_source)  # type: ignore[arg-type]
        await servicer.keys.refresh()
        keys_task = asyncio.create_task(servicer.keys.keep_fresh())
        server, port, _health = await build_server(servicer, config.listen_addr, config.tls,
                                                   trace_export=trace_export)
        anchor_task = asyncio.create_task(keep_hsm_checkpoint(
            backends[config.audit_key_id], audit, HSM_CHECKPOINT_SECONDS))
        metrics_port = None
        if config.metrics_port is not None:
            metrics_port = metrics.serve_metrics(config.metrics_port, config.metrics_addr)
        log_event(
            "signer-service started", port=port, metrics_port=metrics_port, pid=os.getpid(),
            keys=servicer.keys.public_keys(), audit_records=audit.seq,
            audit_last_hash=audit.last_hash,
            audit_key_id=key.key_id, instance=config.instance_name, instances=config.instances,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # A lost PKCS#11 signing process stops the signer too (fail closed; the supervisor
        # restarts it with the PIN, which this process no longer holds).
        lost = [event for b in set(backends.values())
                if isinstance(event := getattr(b, "exited", None), asyncio.Event)]
        waiting = [asyncio.create_task(stop.wait()), *(asyncio.create_task(e.wait()) for e in lost)]
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for task in waiting:
            task.cancel()
        backend_lost = waiting[0] not in done
        log_event("signer-service stopping", logging.ERROR if backend_lost else logging.INFO,
                  reason="signing process lost" if backend_lost else "signal")
        await server.stop(grace=5)
        anchor_task.cancel()
        keys_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, BackendError):
            await anchor_task
        with contextlib.suppress(asyncio.CancelledError):
            await keys_task
        if backend_lost:
            raise BackendError("the PKCS#11 signing process exited; signing stopped")
    finally:
        for backend in set(backends.values()):
            backend.close()
        if audit is not None:
            audit.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="signer-service", description=__doc__)
    parser.add_argument("--config", help="TOML config file (default: $PAYOUTS_SIGNER_CONFIG)")
    parser.add_argument("--log-level", default=os.environ.get("PAYOUTS_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    setup_logging(args.log_level.upper())
    trace_export = configure_tracing()
    try:
        config = load_config(config_path_from(args.config, os.environ))
        asyncio.run(serve(config, os.environ, trace_export))
    except AuditError as err:
        # Fail closed: no decision may rest on a log that does not verify.
        print(f"signer-service: {err}; signing stopped (see the signer README, 'When the audit "
              "log does not verify')", file=sys.stderr)
        return 3
    except (ConfigError, BackendError, AuditDirectoryError) as err:
        # One line naming the setting; no traceback (it could only show our own code).
        print(f"signer-service: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"signer-service: {type(err).__name__}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 0
