"""The input boundary: every string of every request checked before a handler runs, undecodable
bytes refused cleanly, short status messages, and PostgreSQL going away answered UNAVAILABLE."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from stellar_sdk import Keypair

from payout_service.adapters.embedded_postgres import free_port
from stellar_payouts_pb.payout.v1 import admin_pb2 as apb
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import rounds_pb2 as rpb
from tests.integration.rpcs import all_rpcs, status_details

TIMEOUT = 10


def create_request(**overrides: object) -> pb.CreatePayoutRequest:
    fields: dict[str, object] = {
        "payout_id": "b-1", "destination": Keypair.random().public_key, "amount": "1.5",
        "asset": "XLM", "idempotency_key": "b-1",
    }
    fields.update(overrides)
    return pb.CreatePayoutRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def channel(payout_service):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{payout_service.port}") as ch:
        yield ch


def rpc(name: str):
    return next(r for r in all_rpcs() if r.name == name)


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


@pytest.mark.parametrize(("name", "request_", "field"), [
    ("PayoutService/GetPayout", pb.GetPayoutRequest(payout_id="a\x00b"), "payout_id"),
    ("PayoutService/WatchPayout", pb.WatchPayoutRequest(payout_id="\x00"), "payout_id"),
    ("PayoutService/CancelPayout",
     pb.CancelPayoutRequest(payout_id="x", reason="stop\x00"), "reason"),
    ("PayoutService/ListPayouts", pb.ListPayoutsRequest(destination="G\x1b[31m"),
     "destination"),
    ("PayoutService/CreatePayout", create_request(metadata={"k": "v\x00"}),  "metadata[k]"),
    ("PayoutService/CreatePayout", create_request(metadata={"k\x00": "v"}), "metadata"),
    ("PayoutService/CreatePayout", create_request(reference="r\x7f"), "reference"),
    ("PayoutService/CreatePayoutBatch", pb.CreatePayoutBatchRequest(
        items=[create_request(), create_request(payout_id="b-2", reference="\x00")]),
     "items[1].reference"),
    ("RoundService/ResolveRound", rpb.ResolveRoundRequest(
        round_id="r", winners=[rpb.Winner(rank=1, destination="G\x00", amount="1")]),
     "winners[0].destination"),
    ("RoundService/GetRound", rpb.GetRoundRequest(round_id="r\x00"), "round_id"),
    ("PayoutAdminService/UpdateSchedule", apb.UpdateScheduleRequest(
        schedule=apb.Schedule(timezone="UTC\x00")), "schedule.timezone"),
])
async def test_control_characters_anywhere_are_invalid_argument_naming_the_field(
    channel, name, request_, field
):
    err = await refused(rpc(name).call(channel, request_, deadline=TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    fields = [f for f, _ in status_details(err)]
    assert field in fields, fields
    assert "control character" in dict(status_details(err))[field]


async def test_a_huge_identifier_gets_a_small_invalid_argument_not_resource_exhausted(channel):
    for name, request_ in [
        ("PayoutService/GetPayout", pb.GetPayoutRequest(payout_id="p" * (1 << 20))),
        ("PayoutService/CancelPayout", pb.CancelPayoutRequest(payout_id="p" * (1 << 20))),
        ("RoundService/CloseRound", rpb.CloseRoundRequest(round_id="r" * (1 << 20))),
    ]:
        err = await refused(rpc(name).call(channel, request_, deadline=TIMEOUT))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, err.code())
        assert len(err.details()) < 300
        assert "at most 128 characters" in err.details()


async def test_a_long_but_allowed_identifier_is_quoted_only_by_a_prefix(channel):
    err = await refused(rpc("PayoutService/GetPayout").call(
        channel, pb.GetPayoutRequest(payout_id="p" * 128), deadline=TIMEOUT))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "p" * 41 not in err.details()


async def test_undecodable_bytes_are_invalid_argument_without_a_traceback(channel, caplog):
    caplog.set_level(logging.DEBUG)
    for r in all_rpcs():
        # Field 1 as a varint with a truncated body: no message can parse it.
        err = await refused(r.call(channel, b"\x0a\xff\xff\xff\xff\x0f", deadline=TIMEOUT))
        assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                              grpc.StatusCode.PERMISSION_DENIED), (r.name, err.code())
        assert "DecodeError" not in err.details()
    assert "Traceback" not in caplog.text
    assert "Exception deserializing" not in caplog.text


class Proxy:
    """A TCP forwarder in front of PostgreSQL that the test can cut."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()
        await self.server.wait_closed()


def minimal_requests() -> dict[str, object]:
    dest = Keypair.random().public_key
    return {
        "PayoutService/CreatePayout": create_request(destination=dest),
        "PayoutService/GetPayout": pb.GetPayoutRequest(payout_id="x"),
        "PayoutService/ListPayouts": pb.ListPayoutsRequest(),
        "PayoutService/SubmitSignedTransaction": pb.SubmitSignedTransactionRequest(
            payout_id="x", signed_envelope_xdr="AAAA"),
        "PayoutService/WatchPayout": pb.WatchPayoutRequest(payout_id="x"),
        "PayoutService/RetryPayout": pb.RetryPayoutRequest(payout_id="x"),
        "PayoutService/CancelPayout": pb.CancelPayoutRequest(payout_id="x"),
        "PayoutService/CreatePayoutBatch": pb.CreatePayoutBatchRequest(
            items=[create_request(payout_id="b-9", idempotency_key="b-9")]),
        "PayoutService/GetPayoutStats": pb.GetPayoutStatsRequest(),
        "PayoutService/ExportPayouts": pb.ExportPayoutsRequest(format=pb.EXPORT_FORMAT_CSV),
        "PayoutService/GetPayoutStatement": pb.GetPayoutStatementRequest(round_id="r1"),
        "RoundService/CreateRound": rpb.CreateRoundRequest(round_id="r1"),
        "RoundService/GetRound": rpb.GetRoundRequest(round_id="r1"),
        "RoundService/ListRounds": rpb.ListRoundsRequest(),
        "RoundService/CloseRound": rpb.CloseRoundRequest(round_id="r1"),
        "RoundService/ResolveRound": rpb.ResolveRoundRequest(
            round_id="r1", winners=[rpb.Winner(rank=1, destination=dest, amount="1")]),
        "PayoutAdminService/GetSystemHealth": apb.GetSystemHealthRequest(),
        "PayoutAdminService/ListAlerts": apb.ListAlertsRequest(),
        "PayoutAdminService/AcknowledgeAlert": apb.AcknowledgeAlertRequest(
            alert_id="00000000-0000-0000-0000-000000000001"),
        "PayoutAdminService/ResolveAlert": apb.ResolveAlertRequest(
            alert_id="00000000-0000-0000-0000-000000000001"),
        "PayoutAdminService/RecordEarning": apb.RecordEarningRequest(
            destination=dest, amount="1", earning_id="e1"),
        "PayoutAdminService/GetSchedule": apb.GetScheduleRequest(),
        "PayoutAdminService/UpdateSchedule": apb.UpdateScheduleRequest(schedule=apb.Schedule(
            frequency=apb.SCHEDULE_FREQUENCY_DAILY, timezone="UTC")),
        "PayoutAdminService/TriggerScheduledRun": apb.TriggerScheduledRunRequest(dry_run=True),
        "PayoutAdminService/ListRuns": apb.ListRunsRequest(),
        "PayoutAdminService/GetAlertConfig": apb.GetAlertConfigRequest(),
        "PayoutAdminService/UpdateAlertConfig": apb.UpdateAlertConfigRequest(
            config=apb.AlertConfig(enabled=True, failure_rate_warning=0.1,
                                   failure_rate_critical=0.2)),
        "PayoutAdminService/ListChannels": apb.ListChannelsRequest(),
        "PayoutAdminService/AddChannels": apb.AddChannelsRequest(
            channels=[apb.ChannelKey(key_id="ch-1", public_key=dest)]),
        "PayoutAdminService/CreateChannels": apb.CreateChannelsRequest(
            channels=[apb.ChannelKey(key_id="ch-1", public_key=dest)],
            starting_balance=pb.Amount(decimal="5")),
        "PayoutAdminService/TopUpChannels": apb.TopUpChannelsRequest(
            below=pb.Amount(decimal="1"), to=pb.Amount(decimal="2")),
        "PayoutAdminService/RetireChannels": apb.RetireChannelsRequest(accounts=[dest]),
        "PayoutAdminService/PlanChannels": apb.PlanChannelsRequest(
            queued_payouts_per_ledger=10, payouts_per_transaction=1, close_time_ms=5000),
        "PayoutAdminService/GetWatchdogStatus": apb.GetWatchdogStatusRequest(),
        "PayoutAdminService/ListWatchdogFindings": apb.ListWatchdogFindingsRequest(),
        "PayoutAdminService/AcknowledgeWatchdogFinding": apb.AcknowledgeWatchdogFindingRequest(
            finding_id=1),
        "PayoutAdminService/ResolveWatchdogFinding": apb.ResolveWatchdogFindingRequest(
            finding_id=1, reason="explained"),
        "PayoutAdminService/PauseSending": apb.PauseSendingRequest(reason="incident"),
        "PayoutAdminService/ResumeSending": apb.ResumeSendingRequest(reason="done"),
        "PayoutAdminService/ListWebhookDeliveries": apb.ListWebhookDeliveriesRequest(),
        "PayoutAdminService/RedeliverWebhook": apb.RedeliverWebhookRequest(event_id="1"),
        "PayoutAdminService/AddScreeningEntry": apb.AddScreeningEntryRequest(
            destination=dest, list=apb.SCREENING_LIST_DENY, reason="sanctions"),
        "PayoutAdminService/RemoveScreeningEntry": apb.RemoveScreeningEntryRequest(
            destination=dest, list=apb.SCREENING_LIST_DENY, reason="cleared"),
        "PayoutAdminService/ListScreeningEntries": apb.ListScreeningEntriesRequest(),
        "PayoutAdminService/ApprovePayout": apb.ApprovePayoutRequest(
            payout_id="p1", approver_public_key=dest, signature=bytes(64),
            expires_at=2_000_000_000),
        "PayoutAdminService/RejectPayout": apb.RejectPayoutRequest(payout_id="p1",
                                                                   reason="not ours"),
    }


# Channel lifecycle RPCs answer FAILED_PRECONDITION at once when the service has no signer.
LIFECYCLE_NEEDS_SIGNER = {f"PayoutAdminService/{m}Channels" for m in ("Add", "Create", "TopUp")}
# Approvals answer FAILED_PRECONDITION at once when the service has no approvers configured.
APPROVALS_NEED_APPROVERS = {"PayoutAdminService/ApprovePayout", "PayoutAdminService/RejectPayout"}


async def test_postgresql_unreachable_is_unavailable_on_every_rpc(
    payout_service_factory, fresh_database
):
    url = urlsplit(fresh_database)
    proxy = Proxy(url.hostname or "127.0.0.1", url.port or 5432)
    await proxy.start()
    netloc = url.netloc.rsplit("@", 1)
    via_proxy = urlunsplit(url._replace(netloc=(
        f"{netloc[0]}@" if len(netloc) == 2 else "") + f"127.0.0.1:{proxy.port}"))
    service = await payout_service_factory(DATABASE_URL=via_proxy)
    requests = minimal_requests()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        await proxy.cut()
        for r in all_rpcs():
            if r.name not in requests:
                continue
            err = await refused(r.call(channel, requests[r.name], deadline=TIMEOUT))
            # Reconcile needs no database to say it has no Stellar RPC configured.
            if r.name in LIFECYCLE_NEEDS_SIGNER | APPROVALS_NEED_APPROVERS:
                # Refused before any database work: this service runs without the signer
                # and without approvers.
                assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, (r.name, err.details())
                continue
            assert err.code() == grpc.StatusCode.UNAVAILABLE, (r.name, err.code(), err.details())
    untested = {r.name for r in all_rpcs()} - set(requests) - {"PayoutAdminService/Reconcile"}
    assert not untested


@pytest.mark.parametrize(("content", "bad_time"), [
    ("2020-01-01T00:00:00+00:00|\x00", False), ("0001-01-01T00:00:00+01:00|r-1", True),
    ("9999-12-31T23:59:59-14:00|r-1", True), ("2020-01-01|r-1", True),
    ("2020-01-01T00:00:00+00:00|" + "x" * 300, False),
])
async def test_page_tokens_the_service_never_issued_are_invalid_argument(
    channel, content, bad_time
):
    import base64
    import uuid

    when = content.split("|")[0]
    calls = [("RoundService/ListRounds", rpb.ListRoundsRequest(
        page_token=base64.urlsafe_b64encode(content.encode()).decode()))]
    if bad_time:
        calls.append(("PayoutService/ListPayouts", pb.ListPayoutsRequest(
            page_token=base64.urlsafe_b64encode(f"{when}|{uuid.uuid4()}".encode()).decode())))
    for name, request_ in calls:
        err = await refused(rpc(name).call(channel, request_, deadline=TIMEOUT))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, err.details())
        assert [f for f, _ in status_details(err)] == ["page_token"]


def precondition_of(err: grpc.aio.AioRpcError) -> list[tuple[str, str, str]]:
    """(type, subject, description) of the PreconditionFailure detail of an error."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    found: list[tuple[str, str, str]] = []
    for packed in status.details if status else ():
        if packed.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            detail = error_details_pb2.PreconditionFailure()
            packed.Unpack(detail)
            found += [(v.type, v.subject, v.description) for v in detail.violations]
    return found


async def test_a_denied_destination_is_refused_at_creation_naming_the_field_and_nothing_is_stored(
    channel
):
    denied = Keypair.random().public_key
    (added,) = await rpc("PayoutAdminService/AddScreeningEntry").call(
        channel, apb.AddScreeningEntryRequest(
            destination=f" {denied.lower()} ", list=apb.SCREENING_LIST_DENY,
            reason="sanctions"), deadline=TIMEOUT)
    assert added.created and added.entry.destination == denied and added.entry.added_by
    err = await refused(rpc("PayoutService/CreatePayout").call(
        channel, create_request(destination=denied), deadline=TIMEOUT))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err.details()
    assert precondition_of(err) == [
        ("SCREENING", "destination", "destination: on the deny list: sanctions")]
    bulk = pb.CreatePayoutBatchRequest(items=[
        create_request(payout_id="b-2", idempotency_key="b-2"),
        create_request(destination=denied)])
    err = await refused(rpc("PayoutService/CreatePayoutBatch").call(
        channel, bulk, deadline=TIMEOUT))
    assert [v[1] for v in precondition_of(err)] == ["items[1].destination"]
    for payout_id in ("b-1", "b-2"):
        err = await refused(rpc("PayoutService/GetPayout").call(
            channel, pb.GetPayoutRequest(payout_id=payout_id), deadline=TIMEOUT))
        assert err.code() == grpc.StatusCode.NOT_FOUND, "nothing was written"
    (listed,) = await rpc("PayoutAdminService/ListScreeningEntries").call(
        channel, apb.ListScreeningEntriesRequest(list=apb.SCREENING_LIST_DENY),
        deadline=TIMEOUT)
    assert [e.destination for e in listed.entries] == [denied]
    await rpc("PayoutAdminService/RemoveScreeningEntry").call(
        channel, apb.RemoveScreeningEntryRequest(
            destination=denied, list=apb.SCREENING_LIST_DENY, reason="cleared"),
        deadline=TIMEOUT)
    (created,) = await rpc("PayoutService/CreatePayout").call(
        channel, create_request(destination=denied), deadline=TIMEOUT)
    assert created.payout.destination == denied
