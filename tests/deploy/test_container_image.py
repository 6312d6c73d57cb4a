"""The Containerfile, its HEALTHCHECK script and the image names the manifests use.

No container engine runs here: deploy/validate.sh runs hadolint over the Containerfile and
the Containerfile's own install script from the lock. These tests check what those two
cannot: that the file keeps its promises (base pinned by digest, the lock-only install, every
package copied, non-root, no compiler), that the manifests name the images it builds, and that
the HEALTHCHECK script answers correctly against real gRPC servers, plaintext and mTLS.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.test_deploy_manifests import (
    K8S,
    ROOT,
    _make_certs,
    container,
    find,
    load_docs,
    manifest_files,
)

CONTAINERFILE = ROOT / "Containerfile"
HEALTHCHECK = ROOT / "deploy" / "container" / "healthcheck.py"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cc|python3-dev|libffi-dev)\b")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in instructions():
        if word == "FROM":
            name = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            current = named.setdefault(name, [])
        if current is not None:
            current.append((word, rest))
    return named


def test_every_base_image_is_pinned_by_digest() -> None:
    args = dict(rest.split("=", 1) for word, rest in instructions()
                if word == "ARG" and "=" in rest)
    stage_names = set(stages())
    for word, rest in instructions():
        if word != "FROM":
            continue
        image = rest.split()[0]
        if image in stage_names:
            continue
        image = args.get(image.strip("${}"), image)
        assert DIGEST.search(image), f"FROM {rest}: base image not pinned by digest"
        assert image.startswith("python:3.11-slim-bookworm@"), image


def test_python_comes_from_the_lock_through_the_script_ci_runs() -> None:
    runs = [rest for word, rest in stages()["python-install"] if word == "RUN"]
    assert any("install-python dependencies /src/requirements" in r for r in runs), runs
    assert any("install-python project /src" in r for r in runs), runs
    copies = " ".join(rest for word, rest in instructions() if word == "COPY")
    assert "deploy/container/install-python.sh /usr/local/bin/install-python" in copies
    assert "requirements/runtime.txt" in copies and "requirements/build.txt" in copies
    # No other pip install anywhere: the script is the only way in.
    assert not [r for w, r in instructions() if w == "RUN" and "pip install" in r]
    script = (ROOT / "deploy" / "container" / "install-python.sh").read_text()
    assert "--require-hashes --only-binary :all:" in script
    assert "--no-deps -r \"$reqs/runtime.txt\"" in script
    assert "--no-deps --no-index" in script


def test_every_project_package_is_copied_into_the_image() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in patterns}
    copied = {rest.split()[0].rstrip("/") for word, rest in stages()["python-install"]
              if word == "COPY"}
    missing = packages - copied
    assert not missing, f"pyproject.toml packages not copied by the Containerfile: {missing}"


@pytest.mark.parametrize("target,uid", [("runtime", "10001"), ("signer-softhsm", "10002")])
def test_final_stages_run_as_their_manifest_user(target: str, uid: str) -> None:
    users = [rest for word, rest in stages()[target] if word == "USER"]
    assert users and users[-1] == f"{uid}:{uid}", users
    objects = [d for p in manifest_files() for d in load_docs(p)]
    kind, name, namespace = {"10001": ("Deployment", "payout-service", "payouts"),
                             "10002": ("StatefulSet", "signer-service", "payout-signer")}[uid]
    d = find(objects, kind, name, namespace)
    assert str(d["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == uid


def test_final_stages_install_no_compiler_and_have_a_healthcheck() -> None:
    for target in ("runtime", "signer-softhsm"):
        for word, rest in stages()[target]:
            if word == "RUN" and "apt-get install" in rest:
                assert not COMPILERS.search(rest.split("apt-get install", 1)[1]), rest
        checks = [rest for word, rest in stages()[target] if word == "HEALTHCHECK"]
        assert checks and "/opt/stellar-payouts/healthcheck.py" in checks[-1]


def test_compiler_check_can_fail() -> None:
    assert COMPILERS.search(" -y --no-install-recommends gcc libpq-dev")
    assert not COMPILERS.search(" -y --no-install-recommends softhsm2=2.6.1-2.1")


def _kustomize_images(path: Path) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in load_docs(path)[0].get("images", [])}


@pytest.mark.parametrize("kind,ns,name,image", [
    ("Deployment", "payouts", "payout-service", "stellar-payouts"),
    ("StatefulSet", "payout-signer", "signer-service", "stellar-payouts-signer"),
])
def test_manifests_name_the_built_image_and_kustomize_maps_it(
    kind: str, ns: str, name: str, image: str
) -> None:
    objects = [d for p in manifest_files() for d in load_docs(p)]
    c = container(find(objects, kind, name, ns))
    assert c["image"].partition(":")[0] == image
    assert c["image"].partition(":")[2] == tomllib.loads(
        (ROOT / "pyproject.toml").read_text())["project"]["version"]
    mapped = _kustomize_images(K8S / ns / "kustomization.yaml")
    assert image in mapped and mapped[image].get("newName", "").endswith("/" + image)
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert f"-t {image}:" in readme, f"deploy/README.md does not show how to build {image}"


# ---------------------------------------------------------------- the HEALTHCHECK script

def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), "--timeout=3", *args],
        capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": os.environ.get("PATH", ""), **env},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health_server(creds: Any = None) -> tuple[Any, Any, int]:
    grpc = pytest.importorskip("grpc")
    health_mod = pytest.importorskip("grpc_health.v1.health")
    from grpc_health.v1 import health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health_mod.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if creds is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, servicer, port


def test_healthcheck_plaintext_follows_the_services_settings() -> None:
    from grpc_health.v1 import health_pb2

    server, servicer, port = _health_server()
    env = {"PAYOUTS_PLAINTEXT": "true", "PAYOUTS_LISTEN_ADDR": f"0.0.0.0:{port}"}
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        ok = _run(env=env)
        assert (ok.returncode, ok.stdout.strip()) == (0, "SERVING"), ok.stderr
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert _run(env=env).returncode == 1
    finally:
        server.stop(None)
    assert _run(env=env).returncode == 1, "nothing listening must be unhealthy"


def test_healthcheck_over_mtls_with_the_services_own_certificate(tmp_path: Path) -> None:
    grpc = pytest.importorskip("grpc")
    from grpc_health.v1 import health_pb2

    certs = _make_certs(tmp_path)
    creds = grpc.ssl_server_credentials(
        [(certs["key"].read_bytes(), certs["cert"].read_bytes())],
        root_certificates=certs["ca"].read_bytes(), require_client_auth=True)
    server, servicer, port = _health_server(creds)
    env = {"PAYOUTS_LISTEN_ADDR": f"0.0.0.0:{port}", "PAYOUTS_TLS_CERT": str(certs["cert"]),
           "PAYOUTS_TLS_KEY": str(certs["key"]), "PAYOUTS_TLS_CLIENT_CA": str(certs["ca"])}
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        ok = _run(env=env)
        assert (ok.returncode, ok.stdout.strip()) == (0, "SERVING"), ok.stderr
        # Plaintext against the TLS port fails: the script follows the settings, not a guess.
        assert _run(env={**env, "PAYOUTS_PLAINTEXT": "true"}).returncode == 1
        # TLS settings missing: a clear failure, not a traceback.
        broken = _run(env={"PAYOUTS_LISTEN_ADDR": f"127.0.0.1:{port}"})
        assert broken.returncode == 1 and "Traceback" not in broken.stderr
    finally:
        server.stop(None)


def test_healthcheck_tcp_mode_for_the_signer() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ok = _run("--tcp", f"0.0.0.0:{port}", env={})
        assert (ok.returncode, ok.stdout.strip()) == (0, "LISTENING"), ok.stderr
    assert _run("--tcp", f"127.0.0.1:{_free_port()}", env={}).returncode == 1


def test_the_monitoring_stack_images_are_pinned_by_digest() -> None:
    compose = load_docs(ROOT / "deploy" / "monitoring" / "docker-compose.yml")[0]
    for name, service in compose["services"].items():
        assert DIGEST.search(service["image"]), f"{name}: {service['image']} not pinned"
