"""Shared fixtures: a real PostgreSQL (DATABASE_URL when set, else a throwaway cluster); the
test markers; the hypothesis profiles."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import grpc.aio
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from payout_service.adapters.embedded_postgres import EmbeddedPostgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    cluster = EmbeddedPostgres().start()
    try:
        yield cluster.dsn
    finally:
        cluster.stop()


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    query = ""
    if "?" in url:
        query = "?" + url.split("?", 1)[1]
    return f"{base}/{name}{query}"


@pytest.fixture
async def fresh_database(postgres_url: str) -> AsyncIterator[str]:
    """A new, empty database per test, dropped afterwards."""
    name = f"payouts_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(postgres_url, name)
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# ---------------------------------------------------------------- markers
# Assigned here, from where a test sits and what it uses, so no test file has to carry them
# (pyproject.toml registers them; --strict-markers refuses any other):
#   db           uses PostgreSQL: its fixtures reach `postgres_url`
#   integration  starts a real process or server (payout-service, signer over mTLS, sandbox
#                over HTTP, gRPC on loopback): tests/integration, tests/deploy, the fixtures
#                and modules listed below
#   unit         neither: pure, no I/O. _unit_tests_do_no_io below fails one that tries.
#   property     a hypothesis test (deterministic by default: see the profiles below)
#   slow         takes more than a few seconds on the 2-core CI machine (SLOW below)
# `scripts/check` runs `-m unit`; `scripts/test` runs everything.

TESTS = Path(__file__).resolve().parent
INTEGRATION_DIRS = {"integration", "deploy", "programs"}
SERVER_FIXTURES = {
    "pkcs11_signer", "stub", "batch_signer", "pool_signer", "signer_server", "sandbox",
    "server", "stalled_sandbox", "js_client", "answers", "payout_service", "stack",
}
# Modules outside the directories above whose tests start a server or process inline.
INTEGRATION_MODULES = {
    "tests/sandbox/test_chain_lies.py",
    "tests/sandbox/test_running_sandbox.py",
    "tests/signer/test_approvals_service.py",
    "tests/signer/test_audit.py",
    "tests/signer/test_audit_bytes.py",
    "tests/signer/test_audit_files.py",
    "tests/signer/test_audit_service.py",
    "tests/signer/test_channel_key_refresh.py",
    "tests/signer/test_channel_keys_cli.py",
    "tests/signer/test_ledger_claims.py",
    "tests/signer/test_lifecycle.py",
    "tests/signer/test_policy_check.py",
    "tests/signer/test_request_ids.py",
    "tests/signer/test_signing_process.py",
    "tests/signer/test_two_instances.py",
    "tests/unit/test_caller_trace.py",
}
# Measured with the 30 slowest that scripts/test prints: ten seconds or more on the shared
# 2-core CI machine (three for a unit test). Modules, or test ids without parameters.
SLOW = {
    "tests/integration/test_crash_safety.py",
    "tests/integration/test_random_cancel_and_kill.py",
    "tests/integration/test_fuzz_rpcs.py",
    "tests/integration/test_dev_stack.py",
    "tests/integration/test_channel_pool_end_to_end.py",
    "tests/integration/test_channel_blame.py",
    "tests/integration/test_live_against_sandbox.py::test_faulty_rpc_never_double_pays_and_"
    "loses_nothing",
    "tests/integration/test_channel_pool.py::test_a_pool_added_at_run_time_without_a_seed_"
    "carries_payouts_and_a_retired_one_gives_them_back_to_the_payer",
    "tests/signer/test_channel_key_refresh.py",
    "tests/signer/test_audit_service.py::test_deleting_log_and_checkpoint_file_is_caught_by_"
    "the_hsm_checkpoint",
    "tests/signer/test_auth_tree.py::test_random_auth_trees_are_signed_exactly_when_the_"
    "specification_allows",
    "tests/signer/test_auth_tree.py::test_random_authorization_entries_are_signed_exactly_"
    "when_the_specification_allows",
}


def _marks_for(item: pytest.Item) -> list[str]:
    module = Path(str(item.path)).resolve().relative_to(TESTS.parent).as_posix()
    directory = Path(module).parts[1]
    uses = set(getattr(item, "fixturenames", ()))
    marks = []
    if "postgres_url" in uses:
        marks.append("db")
    if directory in INTEGRATION_DIRS or uses & SERVER_FIXTURES or module in INTEGRATION_MODULES:
        marks.append("integration")
    if not marks:
        marks.append("unit")
    if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
        marks.append("property")
    if module in SLOW or item.nodeid.partition("[")[0] in SLOW:
        marks.append("slow")
    return marks


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in _marks_for(item):
            item.add_marker(mark)


class UnitTestDidIO(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _unit_tests_do_no_io(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test marked unit that opens a connection, binds a port, starts a process, a gRPC
    server or channel, or a PostgreSQL connection fails: it belongs under db or integration
    (add its module to INTEGRATION_MODULES above)."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise UnitTestDidIO(f"{request.node.nodeid} is marked unit but does I/O: {what}")
        return refused

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refuse(f"socket.{name}"))
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("a subprocess"))
    for module, names in ((grpc, ("server", "insecure_channel", "secure_channel")),
                          (grpc.aio, ("server", "insecure_channel", "secure_channel")),
                          (asyncpg, ("connect", "create_pool"))):
        for name in names:
            monkeypatch.setattr(module, name, refuse(f"{module.__name__}.{name}"))


# ---------------------------------------------------------------- hypothesis profiles
# "ci", the default everywhere: derandomized (the same examples on every machine and every
# fresh clone, so a property fails for a change in the code, never by the draw), no example
# database (nothing replayed from an earlier run), no deadline and no too_slow health check
# (both measure this shared machine's load, not the code).
# "fuzz": random draws, many more examples, failures saved in var/hypothesis for replay:
# scripts/fuzz runs it. Select with HYPOTHESIS_PROFILE.
settings.register_profile(
    "ci", derandomize=True, database=None, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz", derandomize=False, deadline=None, print_blob=True, max_examples=2_000,
    database=DirectoryBasedExampleDatabase(str(TESTS.parent / "var" / "hypothesis")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
