"""Property-based fuzzing of every RPC and every field of PayoutService, RoundService and
PayoutAdminService, against payout-service as a real process over gRPC on a real PostgreSQL.

Properties: no answer is INTERNAL or UNKNOWN (nor a hang: every call has a deadline), every
INVALID_ARGUMENT names its fields in a BadRequest, every status message stays small, the log
has no traceback, and afterwards the database holds its invariants. One exact exception: a
request larger than the server's maximum receive size gets RESOURCE_EXHAUSTED from gRPC itself
before any handler runs, which is the right answer for it (and the only one it may get).
Requests mix values the service accepts (so calls reach the database) with NUL and control
characters, huge strings, any unicode, negative and overflowing numbers, unknown enum values
and random bytes.

Bounded by FUZZ_EXAMPLES examples (env PAYOUTS_FUZZ_EXAMPLES to go further) so the suite stays
fast.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from stellar_sdk import Keypair

from payout_service.adapters.embedded_postgres import free_port
from payout_service.core.amounts import INT64_MAX, format_amount
from tests.aggregate_recount import aggregate_differences
from tests.conftest import _with_database
from tests.integration.rpcs import Rpc, all_rpcs, status_details
from tests.waiting import eventually_blocking

FUZZ_EXAMPLES = int(os.environ.get("PAYOUTS_FUZZ_EXAMPLES", "400"))
CALL_DEADLINE = 5.0
NEVER = {
    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DATA_LOSS,
}
# gRPC core refuses a received message over the server's limit, by default
# GRPC_DEFAULT_MAX_RECV_MESSAGE_LENGTH (4 * 1024 * 1024, include/grpc/impl/grpc_types.h), with
# RESOURCE_EXHAUSTED "Received message larger than max (N vs. LIMIT)". The service's real limit
# is read from that answer at start (Service.max_receive_bytes), not assumed.
GRPC_DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024
OVER_LIMIT = re.compile(r"larger than max \((\d+) vs\. (\d+)\)")


def run_async(coroutine: Any) -> Any:
    """Runs a coroutine on a loop of its own thread (this test is synchronous: hypothesis)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# ---- values ---------------------------------------------------------------------------------

DESTINATIONS = [Keypair.random().public_key for _ in range(3)]
ISSUER = Keypair.random().public_key
IDS = ["p-1", "p-2", "r-1", "r-2", "e-1", "b-1", "run-x", "00000000-0000-0000-0000-000000000001"]

# Values a field of this name accepts, so fuzzed calls also get past validation.
PLAUSIBLE: dict[str, list[str]] = {
    "destination": DESTINATIONS,
    "amount": ["1", "100.5", "0.0000001", format_amount(INT64_MAX), "30"],
    "decimal": ["0", "25", format_amount(INT64_MAX)],
    "asset": ["XLM", "native", f"USD:{ISSUER}"],
    "timezone": ["UTC", "Europe/Paris"],
    "alert_id": IDS[-1:],
    "page_token": [""] + [
        # Shaped like the tokens the service issues, with contents it never issues.
        base64.urlsafe_b64encode(text.encode()).decode() for text in (
            "2020-01-01T00:00:00+00:00|\x00", "0001-01-01T00:00:00+01:00|r-1",
            "9999-12-31T23:59:59-14:00|00000000-0000-0000-0000-000000000001",
            "2020-01-01|r-1", "2020-01-01T00:00:00+00:00|" + "x" * 300, "|", "a|b|c",
        )
    ],
}
# Printable values no field accepts, or only some do.
ODD = ["", "-1", "0", "1e5", "1.12345678", "922337203686", "USD", "Mars/Olympus", " 1",
       "G" + "A" * 55, "M" + "A" * 68, "C" + "A" * 55, "１２３", "NaN"]

hostile_text = st.one_of(
    st.sampled_from(ODD),
    st.text(max_size=40),  # any unicode, control characters included
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["\x00", "a\x00b", "\x1b[31m", "\u202e", "\x7f", "\x85", "é" * 129,
                     "'; DROP TABLE payouts; --", "%s%n", "../../etc/passwd"]),
    st.builds(lambda char, n: char * n, st.characters(codec="utf-8"),
              st.sampled_from([129, 257, 513, 4096, 300_000])),
)


def string_for(name: str, hostile: bool) -> st.SearchStrategy[str]:
    plausible = st.sampled_from(PLAUSIBLE.get(name, IDS))
    return st.one_of(plausible, hostile_text) if hostile else plausible


INT_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
}


def integers(low: int, high: int, hostile: bool) -> st.SearchStrategy[int]:
    small = st.integers(max(low, 0), min(high, 3))
    if not hostile:
        return small
    edges = [v for v in (low, high, -1, 0, 1, 2, 7, 24, 28, 59, 200, 501, 1001) if low <= v <= high]
    return st.one_of(small, st.sampled_from(edges), st.integers(low, high))


def scalar(field: FieldDescriptor, hostile: bool) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return string_for(field.name, hostile)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in INT_RANGES:
        return integers(*INT_RANGES[field.type], hostile)
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = st.sampled_from([v.number for v in field.enum_type.values])
        return st.one_of(known, st.integers(-5, 50)) if hostile else known
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True)
    if field.type == FieldDescriptor.TYPE_BYTES:
        # 32 bytes is what a hash memo takes; the others test its length check.
        plausible_bytes = st.binary(min_size=32, max_size=32)
        return st.one_of(plausible_bytes, st.binary(max_size=300)) if hostile \
            else plausible_bytes
    raise AssertionError(f"no strategy for {field.full_name}")


def message(
    descriptor: Descriptor, hostile: bool, depth: int = 0
) -> st.SearchStrategy[Message]:
    """A message of this type with its fields (all, or any subset) set to values a caller
    would send (hostile=False) or to anything at all (hostile=True)."""
    cls = GetMessageClass(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(lambda s, n: cls(seconds=s, nanos=n),
                         st.integers(-62135596800, 253402300799), st.integers(0, 999_999_999))

    def field_value(field: FieldDescriptor) -> st.SearchStrategy[Any]:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            return st.dictionaries(scalar(key, hostile), scalar(value, hostile), max_size=3)
        one = message(entry, hostile, depth + 1) if entry is not None else scalar(field, hostile)
        if field.is_repeated:
            return st.lists(one, max_size=4 if depth == 0 else 2)
        return one

    fields = [f for f in descriptor.fields if depth < 3 or f.message_type is None]
    strategies = {f.name: field_value(f) for f in fields}
    # Every field set (the usual well-formed call), or any subset of them.
    values = st.one_of(st.fixed_dictionaries(strategies),
                       st.fixed_dictionaries({}, optional=strategies))

    def build(chosen: dict[str, Any]) -> Message:
        msg = cls()
        for name, value in chosen.items():
            field = descriptor.fields_by_name[name]
            target = getattr(msg, name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif field.is_repeated:
                if field.message_type is not None:
                    for item in value:
                        target.add().CopyFrom(item)
                else:
                    target.extend(value)
            elif field.message_type is not None:
                target.CopyFrom(value)
            else:
                setattr(msg, name, value)
        return msg

    return values.map(build)


RPCS = list(all_rpcs())
CREATE_BATCH = next(r for r in RPCS if r.name == "PayoutService/CreatePayoutBatch")


def _batch_of_size(size: int) -> Message:
    """A CreatePayoutBatch request of exactly `size` serialized bytes: huge references, the
    shape of the generated request that first crossed gRPC's receive limit."""
    request = CREATE_BATCH.request_class()
    item = request.items.add(payout_id="p-1", destination=DESTINATIONS[0], amount="1",
                             asset="XLM", idempotency_key="k-1")
    item.reference = "x" * (size - request.ByteSize() - 8)
    while request.ByteSize() < size:
        item.reference += "x"
    while request.ByteSize() > size:
        item.reference = item.reference[:-1]
    assert request.ByteSize() == size
    return request


def over_the_receive_limit() -> Message:
    return _batch_of_size(GRPC_DEFAULT_MAX_RECEIVE + 100_000)


def just_under_the_receive_limit() -> Message:
    return _batch_of_size(GRPC_DEFAULT_MAX_RECEIVE)


def calls() -> st.SearchStrategy[tuple[Rpc, Message | bytes]]:
    def for_rpc(rpc: Rpc) -> st.SearchStrategy[tuple[Rpc, Message | bytes]]:
        body: st.SearchStrategy[Message | bytes] = st.one_of(
            message(rpc.method.input_type, hostile=False),
            message(rpc.method.input_type, hostile=True),
            st.binary(max_size=64),
        )
        return st.tuples(st.just(rpc), body)

    return st.sampled_from(RPCS).flatmap(for_rpc)


# ---- the service ------------------------------------------------------------------------------

class Service:
    def __init__(self, database_url: str, log_path: Path) -> None:
        self.database_url = database_url
        self.log_path = log_path
        self.port = free_port()
        env = {
            **os.environ, "DATABASE_URL": database_url,
            "PAYOUT_SOURCE_ACCOUNT": Keypair.random().public_key,
            "PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{self.port}", "PAYOUTS_PLAINTEXT": "true",
            "PAYOUTS_LIVE_EXECUTION": "false", "PAYOUTS_LOG_LEVEL": "INFO",
            "PAYOUTS_FEE_BPS": "150",
            "PAYOUTS_ALERT_INTERVAL_SECONDS": "0.5", "PAYOUTS_SCHEDULER_INTERVAL_SECONDS": "0.5",
        }
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own entry point
            [sys.executable, "-m", "payout_service"], env=env, stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self._wait_healthy()
        self.max_receive_bytes = self._max_receive_bytes()

    def _wait_healthy(self) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)

        def serving() -> bool:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        eventually_blocking(serving, what="payout-service SERVING", within=60, interval=0.1,
                            ignoring=(grpc.RpcError,))

    def _max_receive_bytes(self) -> int:
        """The server's maximum receive size, from its own answer to one byte too many."""
        check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=lambda b: b,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            check(b"\x00" * (GRPC_DEFAULT_MAX_RECEIVE + 1), timeout=CALL_DEADLINE)
        except grpc.RpcError as err:
            found = OVER_LIMIT.search(err.details() or "")  # type: ignore[attr-defined]
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and found:  # type: ignore[attr-defined]
                return int(found.group(2))
            raise
        raise AssertionError("the server accepts more than gRPC's default receive size: "
                             "probe with a larger message")

    def stop(self) -> None:
        self.channel.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def call(self, rpc: Rpc, request: Message | bytes) -> grpc.RpcError | None:
        serialize: Callable[[Any], bytes] = (lambda b: b) if isinstance(request, bytes) else (
            lambda m: m.SerializeToString())
        kind = self.channel.unary_stream if rpc.method.server_streaming else \
            self.channel.unary_unary
        stub = kind(rpc.path, request_serializer=serialize,
                    response_deserializer=rpc.response_class.FromString)
        try:
            answer = stub(request, timeout=CALL_DEADLINE)
            if rpc.method.server_streaming:
                list(answer)
        except grpc.RpcError as err:
            return err
        return None


@pytest.fixture(scope="module")
def service(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    name = f"payouts_fuzz_{os.getpid()}_{int(time.time())}"

    async def create() -> None:
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    run_async(create())
    running = Service(_with_database(postgres_url, name),
                      tmp_path_factory.mktemp("fuzz") / "payout-service.log")
    try:
        yield running
    finally:
        running.stop()
        run_async(drop())


# ---- the properties ---------------------------------------------------------------------------

@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(call=calls())
@example(call=(CREATE_BATCH, over_the_receive_limit()))
@example(call=(CREATE_BATCH, just_under_the_receive_limit()))
def test_no_request_gets_internal_unknown_or_a_hang(service: Service, call) -> None:
    rpc, request = call
    size = len(request) if isinstance(request, bytes) else request.ByteSize()
    err = service.call(rpc, request)
    if size > service.max_receive_bytes:
        # Refused by gRPC before any handler: the one case RESOURCE_EXHAUSTED is right.
        assert err is not None, (rpc.name, size, "an over-limit request was accepted")
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (  # type: ignore[attr-defined]
            rpc.name, size, err.code(), err.details())  # type: ignore[attr-defined]
        return
    if err is None:
        return
    code, details = err.code(), err.details() or ""  # type: ignore[attr-defined]
    assert code not in NEVER, (rpc.name, code, details)
    assert len(details) <= 1024, (rpc.name, len(details))
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert status_details(err), (rpc.name, details)  # type: ignore[arg-type]


def test_after_the_fuzzing_the_database_holds_its_invariants(service: Service) -> None:
    """Runs after the fuzz test above (pytest keeps file order); on its own it checks an
    empty database, which must hold them too."""

    async def check() -> dict[str, int]:
        conn = await asyncpg.connect(service.database_url)
        try:
            found = await aggregate_differences(conn)
            return found | dict(await conn.fetchrow("""SELECT
              (SELECT count(*) FROM payouts p WHERE NOT EXISTS (
                  SELECT 1 FROM payout_events e WHERE e.payout_id = p.id
                    AND e.from_state IS NULL)) AS without_creation_event,
              (SELECT count(*) FROM payouts p WHERE p.state IS DISTINCT FROM (
                  SELECT e.to_state FROM payout_events e WHERE e.payout_id = p.id
                  ORDER BY e.id DESC LIMIT 1)) AS state_not_last_event,
              (SELECT count(*) FROM payouts
                 WHERE gross_stroops <> fee_stroops + net_stroops) AS gross_not_fee_plus_net,
              (SELECT count(*) - count(DISTINCT idempotency_key) FROM payouts) AS duplicate_keys,
              (SELECT count(*) - count(DISTINCT payout_id) FROM payouts) AS duplicate_ids,
              (SELECT count(*) FROM scheduled_runs WHERE finished_at IS NULL) AS unfinished_runs,
              (SELECT count(*) FROM (SELECT 1 FROM earnings WHERE run_id IS NULL
                   GROUP BY destination, asset HAVING sum(amount_stroops) > $1) b)
                   AS balances_over_cap,
              (SELECT count(*) FROM rounds r WHERE r.state IN ('RESOLVED', 'SETTLED')
                   AND r.winner_count <> (SELECT count(*) FROM payouts p
                                          WHERE p.round_id = r.round_id))
                   AS rounds_without_all_payouts
            """, INT64_MAX))
        finally:
            await conn.close()

    time.sleep(1)  # one more pass of the alert and scheduler loops over what the fuzz left
    assert run_async(check()) == {
        "without_creation_event": 0, "state_not_last_event": 0, "gross_not_fee_plus_net": 0,
        "duplicate_keys": 0, "duplicate_ids": 0, "unfinished_runs": 0, "balances_over_cap": 0,
        "rounds_without_all_payouts": 0,
        "totals_differ_from_recount": 0, "minutes_differ_from_recount": 0,
    }
    log = service.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 2000:][:6000]
    assert "unhandled error" not in log
