#!/bin/sh
# The image's Python install, from the lock and nothing else. The Containerfile runs it, and so
# does deploy/validate.sh in CI (no container engine runs there): one script, so the two cannot
# drift apart.
#
#   install-python.sh dependencies REQUIREMENTS_DIR VENV   # runtime.txt, hashes required
#   install-python.sh project SOURCE_DIR VENV              # the project's wheel, --no-deps
#
# The image sets PIP_NO_CACHE_DIR; CI keeps its cache.
# Wheels only (--only-binary :all:): no compiler is needed in any stage, and a dependency that
# stops publishing a wheel for linux x86_64 or aarch64 fails the build instead of compiling.
# The project's wheel is built in a separate throwaway environment with setuptools pinned in
# build.txt, so the runtime environment holds exactly runtime.txt plus the project.
set -eu

PYTHON=${PYTHON:-python3}
PIP_FLAGS="--disable-pip-version-check --no-input"

# The runtime environment has no pip, setuptools or wheel of its own (nothing there installs
# packages at run time): the base interpreter's pip installs into it.
fresh_venv() {
  [ -x "$1/bin/python" ] || "$PYTHON" -m venv --without-pip "$1"
}
pip_into() {
  target=$1; shift
  "$PYTHON" -m pip --python "$target/bin/python" "$@"
}

case "${1:-}" in
  dependencies)
    reqs=$2 venv=$3
    fresh_venv "$venv"
    # shellcheck disable=SC2086
    pip_into "$venv" install $PIP_FLAGS --require-hashes --only-binary :all: \
      --no-deps -r "$reqs/runtime.txt"
    ;;
  project)
    src=$2 venv=$3
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$PYTHON" -m venv "$work/build-env"
    # shellcheck disable=SC2086
    "$work/build-env/bin/python" -m pip install $PIP_FLAGS --require-hashes \
      --only-binary :all: --no-deps -r "$src/requirements/build.txt"
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    cp -R "$src" "$work/src"
    rm -rf "$work/src/build" "$work/src"/*.egg-info
    # shellcheck disable=SC2086
    "$work/build-env/bin/python" -m pip wheel $PIP_FLAGS --no-deps --no-build-isolation \
      --wheel-dir "$work/dist" "$work/src" >/dev/null
    # shellcheck disable=SC2086
    pip_into "$venv" install $PIP_FLAGS --no-deps --no-index "$work"/dist/*.whl
    pip_into "$venv" check
    ;;
  *)
    echo "usage: $0 dependencies REQUIREMENTS_DIR VENV | project SOURCE_DIR VENV" >&2
    exit 2
    ;;
esac
