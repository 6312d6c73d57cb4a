#!/usr/bin/env bash
# Offline validation of deploy/ and the Containerfile. Installs its validators from
# requirements/validate.txt into a cached virtualenv, and (step 7) the image's runtime lock into
# a throwaway one; exits non-zero on the first failing step.
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
#      mTLS gRPC health check run through the probe script and the image's HEALTHCHECK.
#   6. hadolint over the Containerfile (every rule, info level included, no inline ignores)
#   7. the image's Python install without a container engine: deploy/container/install-python.sh,
#      the script the Containerfile runs, into a fresh virtualenv from requirements/runtime.txt
#      (hashes, wheels only), then the project's wheel with --no-deps; then every entry point
#      is loaded and run. DEPLOY_SKIP_IMAGE_INSTALL=1 skips this step.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="${DEPLOY_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/stellar-payouts/deploy-validate-venv}"
PY="${PYTHON:-python3}"

# The validators are pinned, with hashes, in requirements/validate.txt (scripts/lock), so that
# a validator's new release cannot change a verdict silently.
REQS_LOCK="$ROOT/requirements/validate.txt"
# docker-compose 1.29.2 (PyPI) ships the Compose Specification JSON schema; only the schema is
# used, the package itself is never installed.
COMPOSE_WHEEL="docker-compose==1.29.2"

step() { printf '\n== %s\n' "$*"; }

step "validator environment: $VENV"
# One setup at a time (two checkouts on one machine share the cache), and a venv left half
# made by an interrupted run (no pip in it) is made again instead of failing every later run.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.deploy-reqs"
want="$(sha256sum "$REQS_LOCK" | cut -d' ' -f1) $COMPOSE_WHEEL"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
    -r "$REQS_LOCK"
  rm -rf "$VENV/share/compose" && mkdir -p "$VENV/share/compose"
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    "$COMPOSE_WHEEL" -d "$VENV/share/compose"
  "$VENV/bin/python" - "$VENV/share/compose" <<'PYEOF'
import glob, sys, zipfile
d = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{d}/docker_compose-*.whl")[0]) as z:
    open(f"{d}/compose_spec.json", "wb").write(z.read("compose/config/compose_spec.json"))
PYEOF
  echo "$want" > "$stamp"
fi
flock -u 9
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

step "hadolint (Containerfile)"
"$VENV/bin/hadolint" --failure-threshold info --disable-ignore-pragma Containerfile
echo "Containerfile: clean"

step "the image's Python install from the lock (deploy/container/install-python.sh)"
if [[ "${DEPLOY_SKIP_IMAGE_INSTALL:-}" == 1 ]]; then
  echo "skipped (DEPLOY_SKIP_IMAGE_INSTALL=1)"
else
  "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "the image and its lock are CPython 3.11; $PY is not" >&2; exit 1; }
  image="$(mktemp -d)"
  trap 'rm -rf "$image" ${tmp:+"$tmp"}' EXIT
  # The build context as the Containerfile sees it: the files git tracks or would track.
  mkdir "$image/src"
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
      | (cd "$ROOT" && xargs -0 -r -I{} sh -c '[ -e "$1" ] && printf "%s\0" "$1"' _ {}) \
      | tar -C "$ROOT" --null -T - -cf - | tar -C "$image/src" -xf -
  else
    cp -R "$ROOT/." "$image/src" && rm -rf "$image/src/.venv"
  fi
  # pip's own output goes to a log, shown when a step fails.
  for phase in "dependencies requirements" "project $image/src"; do
    # shellcheck disable=SC2086
    if ! PYTHON="$PY" sh deploy/container/install-python.sh $phase "$image/venv" \
        >"$image/pip.log" 2>&1; then
      grep -v "^WARNING: Location" "$image/pip.log" >&2
      echo "install-python.sh ${phase%% *} failed" >&2; exit 1
    fi
  done
  echo "runtime.txt installed with hashes, wheels only; project wheel installed with --no-deps"
  # Isolated (-I) and away from the checkout: the modules must come from the installed wheel,
  # never from the sources next to the current directory.
  (cd "$image" && "$image/venv/bin/python" -I - <<'PYEOF'
from importlib.metadata import distributions, entry_points

import payout_service
import signer_service

scripts = {ep.name: ep for ep in entry_points(group="console_scripts")
           if ep.dist is not None and ep.dist.name == "stellar-payouts"}
for name in ("payout-service", "signer-service", "payoutctl", "signerctl"):
    scripts[name].load()
assert "/venv/lib/" in payout_service.__file__ and "/venv/lib/" in signer_service.__file__
print(f"{len(list(distributions()))} distributions installed; entry points load:",
      ", ".join(sorted(scripts)))
PYEOF
  )
  for cmd in signer-service payoutctl signerctl; do
    (cd "$image" && "$image/venv/bin/$cmd" --help >/dev/null)
  done
  # Without configuration payout-service must refuse to start with a message, not a traceback.
  if out="$(cd "$image" && env -i PATH=/usr/bin:/bin "$image/venv/bin/payout-service" 2>&1)"; then
    echo "payout-service started without configuration" >&2; exit 1
  fi
  if grep -q Traceback <<<"$out"; then echo "$out" >&2; exit 1; fi
  echo "payout-service without configuration: ${out%%$'\n'*}"
  "$image/venv/bin/python" deploy/container/healthcheck.py --help >/dev/null
  echo "entry points run from the lock-only install"
fi

step "deploy/ is valid"
