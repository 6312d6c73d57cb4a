"""Records out and files in, over real gRPC with mutual TLS against PostgreSQL: ExportPayouts
(filters, CSV and JSON Lines, resuming after a cut with no duplicate and no gap, bad filters
named) and `payoutctl export` / `payoutctl bulk create` as an operator runs them."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from stellar_sdk import Keypair

from payout_service.adapters.embedded_postgres import free_port
from payout_service.core.exports import EXPORT_COLUMNS
from stellar_payouts_pb.payout.v1 import payout_pb2 as pb
from stellar_payouts_pb.payout.v1 import payout_pb2_grpc, rounds_pb2_grpc
from stellar_payouts_pb.payout.v1 import rounds_pb2 as rpb
from tests.integration.rpcs import status_details
from tests.tls_certs import DevCA, Issued

PAYOUTCTL = str(Path(sys.executable).parent / "payoutctl")
TIMEOUT = 30.0


@dataclass
class Secured:
    port: int
    ca: Path
    operator: Issued
    admin: Issued

    def channel(self, who: Issued, port: int | None = None) -> grpc.aio.Channel:
        creds = grpc.ssl_channel_credentials(
            self.ca.read_bytes(), who.key.read_bytes(), who.cert.read_bytes())
        return grpc.aio.secure_channel(f"127.0.0.1:{port or self.port}", creds)

    def env(self, port: int | None = None) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYOUTCTL_")}
        return {**clean, "PAYOUTCTL_TARGET": f"127.0.0.1:{port or self.port}",
                "PAYOUTCTL_CA_CERT": str(self.ca),
                "PAYOUTCTL_CLIENT_CERT": str(self.operator.cert),
                "PAYOUTCTL_CLIENT_KEY": str(self.operator.key)}


async def secured(payout_service_factory, folder: Path, **env: Any) -> Secured:
    ca = DevCA(folder)
    server = ca.issue("localhost", server=True)
    running = await payout_service_factory(
        PAYOUTS_PLAINTEXT="", PAYOUTS_TLS_CERT=server.cert, PAYOUTS_TLS_KEY=server.key,
        PAYOUTS_TLS_CLIENT_CA=ca.path, PAYOUTS_ADMIN_IDENTITIES="ops-admin", **env)
    return Secured(running.port, ca.path, ca.issue("operator"), ca.issue("ops-admin"))


@pytest.fixture
async def service(payout_service_factory, tmp_path) -> Secured:
    return await secured(payout_service_factory, tmp_path)


@pytest.fixture
async def stub(service: Secured) -> AsyncIterator[payout_pb2_grpc.PayoutServiceStub]:
    async with service.channel(service.operator) as channel:
        yield payout_pb2_grpc.PayoutServiceStub(channel)


def item(payout_id: str, destination: str, amount: str = "1.5") -> pb.CreatePayoutRequest:
    return pb.CreatePayoutRequest(payout_id=payout_id, idempotency_key=payout_id,
                                  destination=destination, amount=amount, asset="XLM")


async def create_many(stub: Any, prefix: str, count: int, batch_id: str = "") -> None:
    for start in range(0, count, 500):
        await stub.CreatePayoutBatch(pb.CreatePayoutBatchRequest(
            batch_id=batch_id, items=[item(f"{prefix}-{i}", Keypair.random().public_key)
                                      for i in range(start, min(count, start + 500))]),
            timeout=TIMEOUT)


async def export(stub: Any, **fields: Any) -> tuple[str, list[pb.ExportPayoutsResponse]]:
    chunks = [c async for c in stub.ExportPayouts(pb.ExportPayoutsRequest(**fields),
                                                  timeout=TIMEOUT)]
    return "".join(c.data for c in chunks), chunks


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def stamp(when: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(when)
    return value


async def test_exports_select_by_every_filter_in_csv_and_json_lines(service, stub):
    await create_many(stub, "run", 5, batch_id="run-20261101")
    loner = Keypair.random().public_key
    for i in range(3):
        await stub.CreatePayout(item(f"solo-{i}", loner, "2.25"), timeout=TIMEOUT)
    await stub.CancelPayout(pb.CancelPayoutRequest(payout_id="solo-2", reason="typo"),
                            timeout=TIMEOUT)
    async with service.channel(service.admin) as admin:
        rounds = rounds_pb2_grpc.RoundServiceStub(admin)
        await rounds.CreateRound(rpb.CreateRoundRequest(round_id="r-9", asset="XLM"))
        await rounds.CloseRound(rpb.CloseRoundRequest(round_id="r-9"))
        await rounds.ResolveRound(rpb.ResolveRoundRequest(round_id="r-9", winners=[
            rpb.Winner(rank=n, destination=Keypair.random().public_key, amount="3")
            for n in (1, 2)]))

    text, _ = await export(stub, format=pb.EXPORT_FORMAT_CSV)
    assert text.splitlines()[0] == ",".join(EXPORT_COLUMNS)
    rows = csv_rows(text)
    assert len(rows) == 10
    assert [(r["created_at"], r["id"]) for r in rows] == sorted(
        (r["created_at"], r["id"]) for r in rows)
    solo = next(r for r in rows if r["payout_id"] == "solo-0")
    assert solo["gross_stroops"] == "22500000" and solo["state"] == "BUILT"
    assert int(solo["fee_stroops"]) + int(solo["net_stroops"]) == 22500000
    assert solo["destination"] == loner and solo["created_at"].endswith("Z")
    assert json.loads(solo["metadata"]) == {}

    lines, _ = await export(stub, format=pb.EXPORT_FORMAT_JSONL)
    objects = [json.loads(line) for line in lines.splitlines()]
    assert [tuple(o) for o in objects] == [EXPORT_COLUMNS] * 10
    assert [o["id"] for o in objects] == [r["id"] for r in rows]
    assert {o["gross_stroops"] for o in objects} == {"15000000", "22500000", "30000000"}

    async def ids(**filters: Any) -> set[str]:
        got, _ = await export(stub, format=pb.EXPORT_FORMAT_CSV, **filters)
        return {r["payout_id"] for r in csv_rows(got)}

    assert await ids(run_id="run-20261101") == {f"run-{i}" for i in range(5)}
    assert await ids(destination=loner) == {"solo-0", "solo-1", "solo-2"}
    assert await ids(states=[pb.PAYOUT_STATE_CANCELLED]) == {"solo-2"}
    round_ids = await ids(round_id="r-9")
    assert len(round_ids) == 2 and not round_ids & {r["payout_id"] for r in rows[:8]}
    first_solo = datetime.fromisoformat(solo["created_at"])
    assert await ids(created_before=stamp(first_solo)) == {f"run-{i}" for i in range(5)}
    assert await ids(created_from=stamp(first_solo), states=[pb.PAYOUT_STATE_BUILT],
                     destination=loner) == {"solo-0", "solo-1"}
    assert await ids(created_from=stamp(datetime.now(UTC) + timedelta(hours=1))) == set()


async def test_a_resumed_export_continues_after_the_cut_with_no_duplicate_and_no_gap(stub):
    await create_many(stub, "cut", 37)
    whole, _ = await export(stub, format=pb.EXPORT_FORMAT_CSV, rows_per_chunk=5)
    every = [r["id"] for r in csv_rows(whole)]
    assert len(every) == 37

    call = stub.ExportPayouts(pb.ExportPayoutsRequest(format=pb.EXPORT_FORMAT_CSV,
                                                      rows_per_chunk=5))
    received = []
    async for chunk in call:
        received.append(chunk)
        if len(received) == 3:
            call.cancel()
            break
    before = "".join(c.data for c in received)
    rest, chunks = await export(stub, format=pb.EXPORT_FORMAT_CSV, rows_per_chunk=5,
                                resume_cursor=received[-1].resume_cursor)
    assert not rest.startswith("id,"), "a resumed CSV export repeats no header"
    assert [r["id"] for r in csv_rows(before + rest)] == every
    assert sum(c.row_count for c in chunks) == 37 - 15

    jsonl, chunks = await export(stub, format=pb.EXPORT_FORMAT_JSONL, rows_per_chunk=10)
    tail, _ = await export(stub, format=pb.EXPORT_FORMAT_JSONL, rows_per_chunk=10,
                           resume_cursor=chunks[1].resume_cursor)
    assert [json.loads(x)["id"] for x in tail.splitlines()] == every[20:]
    last, _ = await export(stub, format=pb.EXPORT_FORMAT_JSONL,
                           resume_cursor=chunks[-1].resume_cursor)
    assert last == ""


@pytest.mark.parametrize(("fields", "field"), [
    ({}, "format"),
    ({"created_from": stamp(datetime(2026, 2, 1, tzinfo=UTC)),
      "created_before": stamp(datetime(2026, 1, 1, tzinfo=UTC))}, "created_before"),
    ({"created_from": Timestamp(seconds=-10**12)}, "created_from"),
    ({"states": [99]}, "states"),
    ({"destination": "GNOTANACCOUNT"}, "destination"),
    ({"round_id": "has space"}, "round_id"),
    ({"rows_per_chunk": 5000}, "rows_per_chunk"),
    ({"resume_cursor": "bm90LWEtY3Vyc29y"}, "resume_cursor"),
])
async def test_a_bad_filter_is_invalid_argument_naming_the_field(stub, fields, field):
    request = {"format": pb.EXPORT_FORMAT_JSONL, **fields}
    if field == "format":
        request.pop("format")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await export(stub, **request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [f for f, _ in status_details(caught.value)]


class CuttingProxy:
    """A TCP forwarder that aborts its first connection after `cut_after` bytes from the
    server: a connection dropped in the middle of a stream."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.port = free_port()
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        limit = self.cut_after if self.connections == 1 else None
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       budget: int | None) -> None:
            sent = 0
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(4096):
                    dst.write(data)
                    await dst.drain()
                    sent += len(data)
                    if budget is not None and sent >= budget:
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, None), pipe(up_reader, writer, limit))


async def payoutctl(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        PAYOUTCTL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_payoutctl_export_resumes_by_itself_after_a_dropped_connection(service, stub):
    await create_many(stub, "drop", 300)
    whole, _ = await export(stub, format=pb.EXPORT_FORMAT_CSV)
    proxy = CuttingProxy(service.port, cut_after=30_000)
    await proxy.start()
    try:
        code, out, err = await payoutctl(service.env(proxy.port), "export", "--format", "csv",
                                         "--rows-per-chunk", "20")
    finally:
        await proxy.stop()
    assert code == 0, err
    assert proxy.connections >= 2 and "resuming" in err, err
    assert out == whole
    assert len(csv_rows(out)) == 300

    code, out, err = await payoutctl(service.env(), "export", "--format", "jsonl",
                                     "--state", "cancelled")
    assert code == 0 and out == "" and "exported 0 payouts" in err


def payout_file(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "destination", "amount", "asset", "metadata.region"])
        writer.writerows(rows)
    return path


async def test_bulk_create_names_every_bad_line_creates_nothing_then_nothing_twice(
    service, stub, tmp_path
):
    good = [[f"file-{i}", Keypair.random().public_key, f"{i + 1}.5", "", "eu"]
            for i in range(10)]
    bad = [row[:] for row in good]
    bad[1][2] = "-3"                       # line 3: amount
    bad[4][1] = "GBADADDRESS"              # line 6: destination
    bad[7][0] = "has space"                # line 9: id
    code, out, err = await payoutctl(service.env(), "bulk", "create",
                                     str(payout_file(tmp_path / "bad.csv", bad)))
    assert code == 1, err
    named = sorted(line for line in err.splitlines() if ": line " in line)
    assert [n.split(": ")[1:3] for n in named] == [
        ["line 3", "amount"], ["line 6", "destination"], ["line 9", "id"]], err
    assert "nothing was created" in err
    listed = await stub.ListPayouts(pb.ListPayoutsRequest(), timeout=TIMEOUT)
    assert list(listed.payouts) == []

    fixed = payout_file(tmp_path / "fixed.csv", good)
    code, out, err = await payoutctl(service.env(), "bulk", "create", str(fixed),
                                     "--chunk-size", "4")
    assert code == 0, err
    assert json.loads(out)["payouts"] == 10 and "10 created" in err
    code, out, err = await payoutctl(service.env(), "bulk", "create", str(fixed),
                                     "--chunk-size", "3", "--follow")
    assert code == 0, err
    assert "10 already there" in err and "created" not in err
    summary = json.loads(out)
    assert summary["payouts"] == 10 and summary["states"] == {"BUILT": 10}
    listed = await stub.ListPayouts(pb.ListPayoutsRequest(page_size=100), timeout=TIMEOUT)
    assert sorted(p.payout_id for p in listed.payouts) == sorted(r[0] for r in good)
    assert {p.metadata["region"] for p in listed.payouts} == {"eu"}

    code, out, err = await payoutctl(service.env(), "bulk", "create", str(fixed), "--follow",
                                     "--skip-invalid")
    assert code == 0 and json.loads(out)["states"] == {"BUILT": 10}


async def test_bulk_create_interrupted_by_a_refused_chunk_finishes_on_a_rerun_without_doubles(
    payout_service_factory, tmp_path
):
    service = await secured(payout_service_factory, tmp_path, PAYOUTS_MAX_AMOUNT="5")
    rows = [[f"cap-{i}", Keypair.random().public_key, amount, "", ""]
            for i, amount in enumerate(["1", "2", "3", "9", "4"])]
    code, out, err = await payoutctl(service.env(), "bulk", "create", "--chunk-size", "2",
                                     str(payout_file(tmp_path / "cap.csv", rows)))
    assert code == 1 and "Traceback" not in err
    assert "line 5: amount: is above the maximum" in err, err
    assert "chunk starting at line 4 was refused; 2 payouts before it were sent" in err

    rows[3][2] = "5"
    code, out, err = await payoutctl(service.env(), "bulk", "create", "--chunk-size", "2",
                                     str(payout_file(tmp_path / "cap.csv", rows)))
    assert code == 0, err
    assert "5/5 2 already there, 3 created" in err, err
    async with service.channel(service.operator) as channel:
        listed = await payout_pb2_grpc.PayoutServiceStub(channel).ListPayouts(
            pb.ListPayoutsRequest(page_size=100), timeout=TIMEOUT)
    assert sorted(p.payout_id for p in listed.payouts) == [f"cap-{i}" for i in range(5)]
