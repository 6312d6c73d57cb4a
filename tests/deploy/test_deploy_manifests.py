"""Offline checks of deploy/: Kubernetes manifests, systemd unit, Prometheus, Grafana, compose.

Structural checks need only PyYAML. Checks by real validators run when their packages are
importable (promql-parser, kubernetes-validate, jsonschema) and are skipped otherwise;
deploy/validate.sh installs them and sets DEPLOY_REQUIRE_VALIDATORS=1, which turns those
skips into failures.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PROM = DEPLOY / "prometheus"
REQUIRE = os.environ.get("DEPLOY_REQUIRE_VALIDATORS") == "1"

PAYOUT_ENV = [
    "PAYOUTS_LIVE_EXECUTION", "PAYOUTS_MAX_GAS_STROOPS", "PAYOUTS_MAX_ATTEMPTS",
    "PAYOUTS_CONFIRM_POLL_MS", "PAYOUTS_CONFIRM_MAX_POLLS", "PAYOUT_CONTRACT_ID",
    "PAYOUT_METHOD_NAME", "PAYOUT_SOURCE_ACCOUNT", "STELLAR_NETWORK_PASSPHRASE",
    "SOROBAN_RPC_URL", "PAYOUTS_SIGNER_ADDR", "PAYOUTS_SIGNER_CA_CERT",
    "PAYOUTS_SIGNER_CLIENT_CERT", "PAYOUTS_SIGNER_CLIENT_KEY", "PAYOUTS_LISTEN_ADDR",
    "PAYOUTS_METRICS_PORT",
]
CONTRACT_METRICS = [
    "payouts_total", "payouts_by_state", "payouts_queue_depth",
    "payouts_oldest_submitted_age_seconds", "payouts_oldest_pending_age_seconds",
    "payouts_confirmation_seconds", "payouts_fee_stroops_total", "payouts_amount_stroops_total",
    "payouts_attempts_total", "payouts_rpc_errors_total", "payouts_system_errors_total",
    "grpc_server_handled_total", "grpc_server_handling_seconds", "signer_decisions_total",
    "signer_backend_sign_seconds", "payouts_rounds_total",
    "payouts_watchdog_open_findings", "payouts_watchdog_findings_total",
    "payouts_watchdog_cursor_ledger", "payouts_watchdog_lag_ledgers",
    "payouts_watchdog_last_read_age_seconds", "payouts_watchdog_transactions_total",
    "payouts_sending_paused",
]
REQUIRED_ALERTS = [
    "PayoutFailureRateHigh", "PayoutPendingHigh", "PayoutProcessingDelay", "PayoutAmountHigh",
    "PayoutSystemErrors", "PayoutStuckSubmitted", "SignerRefusals", "ServiceDown",
    "PayoutWatchdogFinding", "PayoutWatchdogBehind", "PayoutSendingPaused",
]
NAMESPACED = {"ConfigMap", "Secret", "Deployment", "StatefulSet", "Service", "PodDisruptionBudget",
              "NetworkPolicy", "PersistentVolumeClaim"}


def _need(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        if REQUIRE:
            pytest.fail(f"{module} is required (DEPLOY_REQUIRE_VALIDATORS=1) but not importable")
        pytest.skip(f"{module} not installed: run deploy/validate.sh for this check")


# ---------------------------------------------------------------- loading

def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    out = []
    for path in manifest_files():
        out.extend(load_docs(path))
    return out


def find(objs: list[dict[str, Any]], kind: str, name: str, namespace: str) -> dict[str, Any]:
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name
            and o["metadata"].get("namespace") == namespace]
    assert len(hits) == 1, f"expected one {kind} {namespace}/{name}, found {len(hits)}"
    return hits[0]


def container(deploy: dict[str, Any]) -> dict[str, Any]:
    containers = deploy["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def port_number(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in c.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"named port {port!r} not declared by container {c['name']}")


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------- generic manifest checks

def test_manifests_exist_and_have_identity(objects: list[dict[str, Any]]) -> None:
    assert len(manifest_files()) >= 10
    for o in objects:
        assert o.get("apiVersion") and o.get("kind"), o
        meta = o.get("metadata") or {}
        assert meta.get("name"), o
        if o["kind"] in NAMESPACED:
            assert meta.get("namespace") in ("payouts", "payout-signer"), (o["kind"], meta)


def test_kustomizations_list_every_manifest() -> None:
    top = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(top["resources"]) == ["payout-signer", "payouts"]
    for sub in ("payouts", "payout-signer"):
        kust = yaml.safe_load((K8S / sub / "kustomization.yaml").read_text())
        listed = sorted(kust["resources"])
        present = sorted(
            p.name for p in (K8S / sub).glob("*.yaml") if p.name != "kustomization.yaml"
        )
        assert listed == present, sub


def test_namespaces(objects: list[dict[str, Any]]) -> None:
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    assert names == {"payouts", "payout-signer"}


def pod_security_problems(deploy: dict[str, Any]) -> list[str]:
    problems = []
    pod = deploy["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        problems.append("pod runAsNonRoot")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod seccomp")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{c['name']} readOnlyRootFilesystem")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']} allowPrivilegeEscalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{c['name']} capabilities.drop")
        if sc.get("capabilities", {}).get("add"):
            problems.append(f"{c['name']} capabilities.add")
        if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{c['name']} seccomp")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(part, {})):
                problems.append(f"{c['name']} resources.{part}")
    return problems


@pytest.mark.parametrize("kind,ns,name", [("Deployment", "payouts", "payout-service"),
                                          ("StatefulSet", "payout-signer", "signer-service")])
def test_deployment_hardening(
    objects: list[dict[str, Any]], kind: str, ns: str, name: str
) -> None:
    assert pod_security_problems(find(objects, kind, name, ns)) == []


def test_hardening_check_can_fail(objects: list[dict[str, Any]]) -> None:
    d = copy.deepcopy(find(objects, "Deployment", "payout-service", "payouts"))
    c = d["spec"]["template"]["spec"]["containers"][0]
    c["securityContext"]["readOnlyRootFilesystem"] = False
    c["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    del c["resources"]["limits"]
    assert len(pod_security_problems(d)) == 3


def test_services_and_pdb_select_their_pods(objects: list[dict[str, Any]]) -> None:
    for kind, ns, name in (("Deployment", "payouts", "payout-service"),
                           ("StatefulSet", "payout-signer", "signer-service")):
        d = find(objects, kind, name, ns)
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert labels_match(d["spec"]["selector"]["matchLabels"], labels)
        svc = find(objects, "Service", name, ns)
        assert labels_match(svc["spec"]["selector"], labels)
        c = container(d)
        for p in svc["spec"]["ports"]:
            assert port_number(c, p["targetPort"]) == p["port"]
    pdb = find(objects, "PodDisruptionBudget", "payout-service", "payouts")
    d = find(objects, "Deployment", "payout-service", "payouts")
    assert labels_match(pdb["spec"]["selector"]["matchLabels"],
                        d["spec"]["template"]["metadata"]["labels"])
    assert pdb["spec"]["minAvailable"] < d["spec"]["replicas"]


# ---------------------------------------------------------------- payout-service

def test_payout_deployment_shape(objects: list[dict[str, Any]]) -> None:
    d = find(objects, "Deployment", "payout-service", "payouts")
    assert d["spec"]["replicas"] == 3
    c = container(d)
    assert c["image"] == "stellar-payouts:0.1.0"
    assert c["command"] == ["payout-service"]
    assert port_number(c, "grpc") == 50051
    assert port_number(c, "metrics") == 9464


def test_payout_env_names_all_present(objects: list[dict[str, Any]]) -> None:
    d = find(objects, "Deployment", "payout-service", "payouts")
    c = container(d)
    names: dict[str, str] = {}
    for ref in c.get("envFrom", []):
        cm = find(objects, "ConfigMap", ref["configMapRef"]["name"], "payouts")
        names.update(cm["data"])
    missing = [n for n in PAYOUT_ENV if n not in names]
    assert missing == []
    assert all(isinstance(v, str) for v in names.values()), "ConfigMap values must be strings"
    assert "DATABASE_URL" not in names, "DATABASE_URL belongs in a Secret"
    assert "PAYOUT_HOT_SIGNER_SECRET" not in names, "payout-service must never hold a key"
    db = [e for e in c["env"] if e["name"] == "DATABASE_URL"]
    assert len(db) == 1
    ref = db[0]["valueFrom"]["secretKeyRef"]
    secret = find(objects, "Secret", ref["name"], "payouts")
    assert ref["key"] in secret["stringData"]
    assert names["PAYOUTS_LISTEN_ADDR"].endswith(":50051")
    assert names["PAYOUTS_METRICS_PORT"] == "9464"
    assert names["PAYOUT_METHOD_NAME"] == "distribute_winnings"


def file_in_mounts(objs: list[dict[str, Any]], d: dict[str, Any], path: str) -> bool:
    """True when path is a key of a Secret/ConfigMap mounted at its directory (or subPath)."""
    ns = d["metadata"]["namespace"]
    for m in container(d)["volumeMounts"]:
        vol = next(v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == m["name"])
        if "subPath" in m:
            if m["mountPath"] != path:
                continue
            key = m["subPath"]
        elif os.path.dirname(path) == m["mountPath"].rstrip("/"):
            key = os.path.basename(path)
        else:
            continue
        if "secret" in vol:
            data = find(objs, "Secret", vol["secret"]["secretName"], ns).get("stringData", {})
        elif "configMap" in vol:
            data = find(objs, "ConfigMap", vol["configMap"]["name"], ns).get("data", {})
        else:
            return True  # a writable volume: the path is the service's to create
        return key in data
    return False


def test_payout_cert_paths_are_mounted(objects: list[dict[str, Any]]) -> None:
    d = find(objects, "Deployment", "payout-service", "payouts")
    cm = find(objects, "ConfigMap", "payout-service-config", "payouts")["data"]
    for name in ("PAYOUTS_SIGNER_CA_CERT", "PAYOUTS_SIGNER_CLIENT_CERT",
                 "PAYOUTS_SIGNER_CLIENT_KEY", "PAYOUTS_TLS_CERT", "PAYOUTS_TLS_KEY",
                 "PAYOUTS_TLS_CLIENT_CA"):
        assert file_in_mounts(objects, d, cm[name]), f"{name}={cm[name]} is not a mounted file"
    assert not file_in_mounts(objects, d, "/etc/payouts/nowhere/tls.crt")


def test_signer_addr_lists_every_signer_instance(objects: list[dict[str, Any]]) -> None:
    """payout-service dials each instance of the signer's StatefulSet by its own name, as many
    as the StatefulSet runs and the signer's configuration divides its daily limits by."""
    cm = find(objects, "ConfigMap", "payout-service-config", "payouts")["data"]
    signers = find(objects, "StatefulSet", "signer-service", "payout-signer")
    svc = find(objects, "Service", "signer-service", "payout-signer")
    assert svc["spec"].get("clusterIP") == "None"
    assert signers["spec"]["serviceName"] == "signer-service"
    replicas = signers["spec"]["replicas"]
    hosts = []
    for address in cm["PAYOUTS_SIGNER_ADDR"].split(","):
        host, _, port = address.rpartition(":")
        assert int(port) == 50052 and int(port) in [p["port"] for p in svc["spec"]["ports"]]
        hosts.append(host.split(".")[:3])
    assert hosts == [[f"signer-service-{i}", "signer-service", "payout-signer"]
                     for i in range(replicas)]
    assert replicas >= 2
    signer_toml = tomllib.loads(
        find(objects, "ConfigMap", "signer-config", "payout-signer")["data"]["signer.toml"])
    assert signer_toml["server"]["instances"] == replicas
    assert signer_toml["server"]["instance_name_env"] == "POD_NAME"
    env = {e["name"]: e for e in container(signers)["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    anti = signers["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == \
        "kubernetes.io/hostname"
    pdb = find(objects, "PodDisruptionBudget", "signer-service", "payout-signer")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_payout_probes(objects: list[dict[str, Any]]) -> None:
    d = find(objects, "Deployment", "payout-service", "payouts")
    c = container(d)
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c[kind]
        handlers = [h for h in ("grpc", "tcpSocket", "exec", "httpGet") if h in probe]
        assert len(handlers) == 1, kind
        if "grpc" in probe:
            assert probe["grpc"]["port"] == 50051
        if "tcpSocket" in probe:
            assert port_number(c, probe["tcpSocket"]["port"]) == 50051
    # The readiness probe runs the mounted health-check script with mounted certificates.
    cmd = c["readinessProbe"]["exec"]["command"]
    script = next(a for a in cmd if a.endswith(".py"))
    assert file_in_mounts(objects, d, script)
    for arg in cmd:
        if arg.startswith(("--ca=", "--cert=", "--key=")):
            assert file_in_mounts(objects, d, arg.split("=", 1)[1]), arg
        if arg.startswith("--addr="):
            assert arg.endswith(":50051")


# ---------------------------------------------------------------- signer

def test_signer_deployment_shape(objects: list[dict[str, Any]]) -> None:
    d = find(objects, "StatefulSet", "signer-service", "payout-signer")
    c = container(d)
    assert c["command"] == ["signer-service", "--config", "/etc/signer/signer.toml"]
    assert port_number(c, "grpc-mtls") == 50052
    assert port_number(c, "metrics") == 9465
    assert d["spec"]["replicas"] == 2 and d["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    data = [t for t in d["spec"]["volumeClaimTemplates"] if t["metadata"]["name"] == "data"]
    assert data and data[0]["spec"]["accessModes"] == ["ReadWriteOnce"], "a volume per instance"
    assert file_in_mounts(objects, d, "/etc/signer/signer.toml")
    pin = [e for e in c["env"] if e["name"] == "PAYOUTS_SIGNER_PKCS11_PIN"]
    assert len(pin) == 1
    ref = pin[0]["valueFrom"]["secretKeyRef"]
    assert ref["key"] in find(objects, "Secret", ref["name"], "payout-signer")["stringData"]


def test_signer_probes_do_not_use_plaintext_grpc(objects: list[dict[str, Any]]) -> None:
    c = container(find(objects, "StatefulSet", "signer-service", "payout-signer"))
    for kind in ("livenessProbe", "readinessProbe"):
        probe = c[kind]
        assert "grpc" not in probe, "the kubelet's gRPC probe cannot do mTLS"
        assert "tcpSocket" in probe or "exec" in probe
        if "tcpSocket" in probe:
            assert port_number(c, probe["tcpSocket"]["port"]) == 50052


def test_signer_toml_example(objects: list[dict[str, Any]]) -> None:
    d = find(objects, "StatefulSet", "signer-service", "payout-signer")
    cm = find(objects, "ConfigMap", "signer-config", "payout-signer")
    cfg = tomllib.loads(cm["data"]["signer.toml"])
    assert cfg["server"]["listen_addr"].endswith(":50052")
    assert cfg["server"]["metrics_port"] == 9465
    for key in ("cert", "key", "client_ca"):
        assert file_in_mounts(objects, d, cfg["tls"][key]), cfg["tls"][key]
    assert cfg["backend"]["pin_env"] == "PAYOUTS_SIGNER_PKCS11_PIN"
    data_mounts = [m["mountPath"] for m in container(d)["volumeMounts"] if m["name"] == "data"]
    assert cfg["audit"]["path"].startswith(tuple(data_mounts))
    # The PIN is named, never given: no key of the backend table holds a PIN value.
    assert {k for k in cfg["backend"] if "pin" in k.lower()} == {"pin_env"}


def test_secrets_are_placeholders_only(objects: list[dict[str, Any]]) -> None:
    secrets = [o for o in objects if o["kind"] == "Secret"]
    assert secrets
    for s in secrets:
        assert "data" not in s, "use stringData placeholders, never base64 blobs"
        for key, value in s["stringData"].items():
            assert "REPLACE_ME" in value, f"{s['metadata']['name']}.{key} is not a placeholder"
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "PRIVATE KEY-----" not in text, path
            assert not re.search(r"\bS[A-Z2-7]{55}\b", text), f"Stellar secret seed in {path}"


# ---------------------------------------------------------------- NetworkPolicy

def netpol_problems(objs: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    signer = find(objs, "StatefulSet", "signer-service", "payout-signer")
    payout = find(objs, "Deployment", "payout-service", "payouts")
    signer_labels = signer["spec"]["template"]["metadata"]["labels"]
    payout_labels = payout["spec"]["template"]["metadata"]["labels"]
    pols = [o for o in objs if o["kind"] == "NetworkPolicy"
            and o["metadata"]["namespace"] == "payout-signer"]
    covering = [p for p in pols if labels_match(p["spec"]["podSelector"].get("matchLabels", {}),
                                                signer_labels)]
    if not any(set(p["spec"].get("policyTypes", [])) >= {"Ingress", "Egress"} for p in covering):
        problems.append("no policy isolates the signer for both ingress and egress")
    for p in covering:
        for rule in p["spec"].get("ingress", []):
            ports = {x["port"] for x in rule.get("ports", [])}
            peers = rule.get("from", [])
            if not ports or not peers:
                problems.append("ingress rule open to all ports or all peers")
                continue
            for peer in peers:
                ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
                pod = peer.get("podSelector", {}).get("matchLabels", {})
                if "ipBlock" in peer or not ns or not pod:
                    problems.append(f"peer too broad: {peer}")
                    continue
                if ports == {50052}:
                    if ns != {"kubernetes.io/metadata.name": "payouts"}:
                        problems.append(f"50052 open to namespace {ns}")
                    if pod != {"app": "payout-service"} or not labels_match(pod, payout_labels):
                        problems.append(f"50052 peer {pod} does not match payout-service pods")
                elif ports != {9465}:
                    problems.append(f"ingress to ports {ports}")
        for rule in p["spec"].get("egress", []):
            ports = {(x.get("protocol", "TCP"), x["port"]) for x in rule.get("ports", [])}
            if not ports or {port for _, port in ports} != {53}:
                problems.append(f"egress beyond DNS: {rule}")
    return problems


def test_signer_network_policy(objects: list[dict[str, Any]]) -> None:
    assert netpol_problems(objects) == []
    deny = find(objects, "NetworkPolicy", "default-deny-all", "payout-signer")
    assert deny["spec"]["podSelector"] == {}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


def test_network_policy_check_can_fail(objects: list[dict[str, Any]]) -> None:
    objs = copy.deepcopy(objects)
    pol = find(objs, "NetworkPolicy", "signer-service", "payout-signer")
    pol["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app"] = "other"
    pol["spec"]["egress"].append({"to": [], "ports": [{"protocol": "TCP", "port": 443}]})
    assert len(netpol_problems(objs)) == 2


def test_manifests_against_kubernetes_schemas() -> None:
    kv = _need("kubernetes_validate")
    errors = []
    for path in manifest_files():
        for doc in load_docs(path):
            try:
                kv.validate(doc, "1.33", strict=True)
            except kv.ValidationError as err:  # type: ignore[attr-defined]
                errors.append(f"{path.name}: {err}")
    assert errors == []
    bad = copy.deepcopy(load_docs(K8S / "payouts" / "deployment.yaml")[0])
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, "1.33", strict=True)


# ---------------------------------------------------------------- health-check probe script

def _make_certs(tmp: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "payout-service")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("payout-service.payouts.svc")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": tmp / "ca.crt", "cert": tmp / "tls.crt", "key": tmp / "tls.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


def test_probe_script_checks_health_over_mtls(tmp_path: Path) -> None:
    grpc = pytest.importorskip("grpc")
    health_mod = pytest.importorskip("grpc_health.v1.health")
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    cm = load_docs(K8S / "payouts" / "probe-configmap.yaml")[0]
    script = tmp_path / "grpc_health_probe.py"
    script.write_text(cm["data"]["grpc_health_probe.py"])
    certs = _make_certs(tmp_path)
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health_mod.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    creds = grpc.ssl_server_credentials(
        [(certs["key"].read_bytes(), certs["cert"].read_bytes())],
        root_certificates=certs["ca"].read_bytes(), require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), f"--addr=127.0.0.1:{port}", f"--ca={certs['ca']}",
             "--server-name=payout-service.payouts.svc", *extra],
            capture_output=True, text=True, timeout=30, check=False)

    try:
        ident = (f"--cert={certs['cert']}", f"--key={certs['key']}")
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        ok = run(*ident)
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "SERVING"
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert run(*ident).returncode == 1
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        no_client_cert = run()
        assert no_client_cert.returncode == 1, "mTLS server must refuse a probe without a cert"
    finally:
        server.stop(None)
    # Nothing listening any more.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    dead = subprocess.run(
        [sys.executable, str(script), f"--addr=127.0.0.1:{free}", f"--ca={certs['ca']}",
         f"--cert={certs['cert']}", f"--key={certs['key']}", "--timeout=2"],
        capture_output=True, text=True, timeout=30, check=False)
    assert dead.returncode == 1


# ---------------------------------------------------------------- systemd

def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"bad line: {raw!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_hardening() -> None:
    unit = read_unit(DEPLOY / "systemd" / "signer-service.service")
    svc = unit["Service"]
    assert svc["ExecStart"][0].split()[0].endswith("/signer-service")
    assert "--config /etc/signer/signer.toml" in svc["ExecStart"][0]
    assert svc.get("DynamicUser") == ["yes"] or svc.get("User")
    assert svc["ProtectSystem"] == ["strict"]
    assert svc["PrivateTmp"] == ["yes"]
    assert svc["NoNewPrivileges"] == ["yes"]
    assert svc["CapabilityBoundingSet"] == [""]
    assert svc["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "MemoryDenyWriteExecute" not in svc, "breaks cffi callbacks: leave it off"
    rw = " ".join(svc["ReadWritePaths"]).split()
    assert any("audit" in p for p in rw) and any("token" in p for p in rw)
    assert svc["EnvironmentFile"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    env_example = (DEPLOY / "systemd" / "signer-service.env.example").read_text()
    assert "PAYOUTS_SIGNER_PKCS11_PIN=REPLACE_ME" in env_example


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not on this machine")
    text = (DEPLOY / "systemd" / "signer-service.service").read_text()
    # verify insists that ExecStart exists here; point it at a binary that does.
    text = re.sub(r"^ExecStart=\S+", "ExecStart=/bin/true", text, flags=re.M)
    unit = tmp_path / "signer-service.service"
    unit.write_text(text)
    res = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                         timeout=60, check=False)
    # verify exits 0 on unknown keys and bad values but warns: any output is a failure.
    out = "\n".join(x for x in (res.stdout + res.stderr).splitlines()
                    if "signer-service.service" in x or "Unknown" in x or "Failed" in x)
    assert res.returncode == 0 and out == "", res.stdout + res.stderr
    bad = tmp_path / "bad.service"
    bad.write_text(text.replace("ProtectSystem=strict", "ProtectSystm=strict"))
    res = subprocess.run([tool, "verify", str(bad)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert "ProtectSystm" in res.stdout + res.stderr


# ---------------------------------------------------------------- Prometheus and Grafana

def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "payouts-dashboard.json").read_text())


def dashboard_exprs() -> list[str]:
    out = []
    for p in dashboard()["panels"]:
        for t in p.get("targets", []):
            out.append(t["expr"])
    return out


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")


def contract_metrics() -> set[str]:
    names = set()
    for line in (PROM / "METRICS.md").read_text().splitlines():
        m = re.match(r"\|\s*`([a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|", line)
        if m:
            names.add(m.group(1))
    return names


HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def base_metric(name: str, contract: set[str]) -> str:
    if name in contract:
        return name
    for suffix in HIST_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in contract:
            return name[: -len(suffix)]
    return name


def metrics_in(expr: str) -> set[str]:
    pp = _need("promql_parser")
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, pp.VectorSelector):
            if node.name:
                found.add(node.name)
            for m in node.matchers.matchers if hasattr(node.matchers, "matchers") else []:
                if m.name == "__name__":
                    found.add(m.value)

    pp.walk(pp.parse(expr), visit)
    return found


def test_metrics_contract_lists_every_metric() -> None:
    assert set(CONTRACT_METRICS) <= contract_metrics()


def test_required_alerts_and_annotations() -> None:
    rules = alert_rules()
    names = {r["alert"] for r in rules}
    assert set(REQUIRED_ALERTS) <= names
    runbook = (PROM / "RUNBOOK.md").read_text().lower()
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        ann = r["annotations"]
        assert ann["summary"] and ann["description"], r["alert"]
        anchor = ann["runbook_url"].rsplit("#", 1)[1]
        assert f"## {r['alert'].lower()}" in runbook and anchor == r["alert"].lower()
        if "for" in r:
            assert re.fullmatch(r"\d+[smh]", r["for"])
    sev = {(r["alert"], r["labels"]["severity"]) for r in rules}
    for name in ("PayoutFailureRateHigh", "PayoutProcessingDelay"):
        assert {(name, "warning"), (name, "critical")} <= sev


def test_alert_thresholds() -> None:
    by: dict[tuple[str, str], str] = {}
    for r in alert_rules():
        key = (r["alert"], r["labels"]["severity"])
        by[key] = by.get(key, "") + " | " + " ".join(r["expr"].split())
    assert "> 0.10" in by[("PayoutFailureRateHigh", "warning")]
    assert "> 0.25" in by[("PayoutFailureRateHigh", "critical")]
    assert "> 50" in by[("PayoutPendingHigh", "warning")]
    assert "> 900" in by[("PayoutProcessingDelay", "warning")]
    assert "> 3600" in by[("PayoutProcessingDelay", "critical")]
    assert "> 300" in by[("PayoutStuckSubmitted", "warning")]
    assert "> 100000000000" in by[("PayoutAmountHigh", "warning")]
    assert 'decision="refuse"' in by[("SignerRefusals", "warning")]
    assert "== 0" in by[("ServiceDown", "critical")]
    assert "payouts_watchdog_open_findings) > 0" in by[("PayoutWatchdogFinding", "critical")]
    assert "> 0" in by[("PayoutSendingPaused", "warning")]


def test_promql_parses_and_uses_only_contract_metrics() -> None:
    pp = _need("promql_parser")
    contract = contract_metrics()
    exprs = [r["expr"] for r in alert_rules()] + [grafana_to_promql(e) for e in dashboard_exprs()]
    unknown: dict[str, str] = {}
    for expr in exprs:
        pp.parse(expr)  # raises ValueError on a syntax error
        for name in metrics_in(expr):
            if base_metric(name, contract) not in contract:
                unknown[name] = expr
    assert unknown == {}
    with pytest.raises(ValueError):
        pp.parse("sum(rate(payouts_total[5m])")
    assert metrics_in("rate(payouts_nope_total[5m])") == {"payouts_nope_total"}


def test_dashboard_covers_contract_metrics() -> None:
    contract = contract_metrics()
    used = set()
    for expr in dashboard_exprs():
        used |= {base_metric(n, contract) for n in metrics_in(grafana_to_promql(expr))}
    assert set(CONTRACT_METRICS) <= used


def test_dashboard_shape() -> None:
    d = dashboard()
    assert 36 <= d["schemaVersion"] <= 41
    assert d["uid"] and d["title"]
    var = [v for v in d["templating"]["list"] if v["type"] == "datasource"]
    assert var and var[0]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']} overlaps"
                cells.add((x, y))
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${" + var[0]["name"] + "}"
            assert p["targets"]
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for word in ("by state", "queue depth", "oldest submitted", "p50", "p95", "p99",
                 "failure rate", "fees", "rpc errors", "grpc", "signer decisions"):
        assert word in titles, word


def test_prometheus_configs() -> None:
    alert_jobs = {"payout-service", "signer-service"}
    for name, ports in (("prometheus.yml", True), ("prometheus-kubernetes.yml", False)):
        cfg = yaml.safe_load((PROM / name).read_text())
        jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
        assert alert_jobs <= set(jobs), name
        assert [os.path.basename(f) for f in cfg["rule_files"]] == ["alerts.yml"]
        if ports:
            targets = {j: [t for sc in jobs[j]["static_configs"] for t in sc["targets"]]
                       for j in alert_jobs}
            assert all(t.endswith(":9464") for t in targets["payout-service"])
            assert all(t.endswith(":9465") for t in targets["signer-service"])
        else:
            ns = {j: jobs[j]["kubernetes_sd_configs"][0]["namespaces"]["names"] for j in alert_jobs}
            assert ns == {"payout-service": ["payouts"], "signer-service": ["payout-signer"]}
    serviced = " ".join(r["expr"] for r in alert_rules() if r["alert"] == "ServiceDown")
    for job in alert_jobs:
        assert job in serviced


# ---------------------------------------------------------------- compose

def test_compose_mounts_exist_and_match_prometheus() -> None:
    path = DEPLOY / "monitoring" / "docker-compose.yml"
    compose = yaml.safe_load(path.read_text())
    assert {"prometheus", "grafana"} <= set(compose["services"])
    targets = {}
    for svc in compose["services"].values():
        for vol in svc.get("volumes", []):
            src, dst = vol.split(":")[:2]
            if src.startswith("."):
                assert (path.parent / src).resolve().exists(), src
                targets[dst] = (path.parent / src).resolve()
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    for rule_file in prom["rule_files"]:
        assert targets[rule_file] == (PROM / "alerts.yml").resolve()
    cmd = compose["services"]["prometheus"]["command"]
    cfg = next(a.split("=", 1)[1] for a in cmd if a.startswith("--config.file="))
    assert targets[cfg] == (PROM / "prometheus.yml").resolve()


def test_compose_against_compose_spec() -> None:
    schema_path = os.environ.get("DEPLOY_COMPOSE_SCHEMA")
    if not schema_path:
        if REQUIRE:
            pytest.fail("DEPLOY_COMPOSE_SCHEMA is not set")
        pytest.skip("DEPLOY_COMPOSE_SCHEMA not set: run deploy/validate.sh for this check")
    jsonschema = _need("jsonschema")
    schema = json.loads(Path(schema_path).read_text())
    schema.pop("$schema", None)
    validator = jsonschema.Draft201909Validator(schema)
    compose = yaml.safe_load((DEPLOY / "monitoring" / "docker-compose.yml").read_text())
    assert [e.message for e in validator.iter_errors(compose)] == []
    compose["services"]["grafana"]["bogus"] = 1
    assert list(validator.iter_errors(compose))


def test_grafana_provisioning_points_at_dashboard() -> None:
    prov = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "payouts.yml").read_text())
    compose = yaml.safe_load((DEPLOY / "monitoring" / "docker-compose.yml").read_text())
    dst = [v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]
           if v.split(":")[0].endswith("payouts-dashboard.json")]
    assert os.path.dirname(dst[0]) == prov["providers"][0]["options"]["path"]
