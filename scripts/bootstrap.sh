#!/usr/bin/env bash
# Sets up everything `make test` and `make lab` need on a fresh Debian/Ubuntu machine:
# Debian packages, the controller venv, collections from the `ansible` wheel, the ansible-test
# offline pip shim. Idempotent: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/versions.env
. scripts/versions.env

log() { printf '[bootstrap] %s\n' "$*"; }

need_pkgs=()
# nginx-light, redis-server and redis-sentinel: the integration tests run them as private
# processes on 127.0.0.1 (never the system services).
for pkg in python3-venv debootstrap gnupg dpkg-dev apt-utils unzip curl make shellcheck nginx-light redis-server redis-sentinel; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
# node and npm (the dashboard schema check): Debian's, unless some node with npm is installed
# already (NodeSource's nodejs ships npm and conflicts with Debian's npm package).
command -v npm >/dev/null 2>&1 || need_pkgs+=(nodejs npm)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

scripts/ensure-docker.sh

VENV=$ROOT/.venv
stamp=$VENV/.inferops-stamp
want="$( { cat scripts/versions.env scripts/requirements-dev.txt; cat simulator/pyproject.toml 2>/dev/null || true; } | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "creating the controller venv in .venv"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q \
    "ansible-core==$ANSIBLE_CORE_VERSION" \
    "molecule==$MOLECULE_VERSION" "molecule-plugins[docker]==$MOLECULE_PLUGINS_VERSION" \
    "ansible-lint==$ANSIBLE_LINT_VERSION" \
    -r scripts/requirements-dev.txt
  if [ -f simulator/pyproject.toml ]; then
    "$VENV/bin/pip" install -q -e simulator
  fi
  echo "$want" > "$stamp"
fi

# Collections we depend on, from the ansible wheel (Galaxy is not reachable).
COLL=$ROOT/.cache/collections
COLLECTIONS=(community/docker community/library_inventory_filtering_v1 ansible/posix community/crypto)
coll_stamp="$COLL/.ansible-$ANSIBLE_VERSION-$(printf '%s\n' "${COLLECTIONS[@]}" | sha256sum | cut -c1-12)"
if [ ! -f "$coll_stamp" ]; then
  log "unpacking ${COLLECTIONS[*]} from ansible==$ANSIBLE_VERSION"
  mkdir -p .cache/wheels
  ls .cache/wheels/ansible-"$ANSIBLE_VERSION"-*.whl >/dev/null 2>&1 || \
    "$VENV/bin/pip" download -q --no-deps "ansible==$ANSIBLE_VERSION" -d .cache/wheels
  rm -rf "$COLL"; mkdir -p "$COLL"
  patterns=()
  for c in "${COLLECTIONS[@]}"; do patterns+=("ansible_collections/$c/*"); done
  unzip -qo .cache/wheels/ansible-"$ANSIBLE_VERSION"-*.whl "${patterns[@]}" -d "$COLL"
  touch "$coll_stamp"
fi

# promtool and amtool (the monitoring role's rule tests), unpacked from Debian's packages into
# .cache/prometheus: installing the packages would start a Prometheus on this machine.
PROM=$ROOT/.cache/prometheus
if [ ! -x "$PROM/usr/bin/promtool" ] || [ ! -x "$PROM/usr/bin/amtool" ]; then
  log "unpacking promtool and amtool from Debian's prometheus packages"
  mkdir -p "$PROM/debs"
  (cd "$PROM/debs" && apt-get download -q prometheus prometheus-alertmanager >/dev/null)
  for deb in "$PROM"/debs/*.deb; do dpkg -x "$deb" "$PROM"; done
  rm -rf "$PROM/debs"
fi

# Grafana's dashboard types (@grafana/schema) and typescript for tests/monitoring/dashboard_schema.py,
# from npm with the lock file in tests/monitoring/dashboard-schema, into .cache/dashboard-schema
# (node_modules never lands in the checkout). Redone only when the pins change. Without the npm
# registry the rest of the set-up still works; only the dashboard check (make rules) then fails,
# saying what is missing.
DSCHEMA=$ROOT/.cache/dashboard-schema
dschema_want="$(cat tests/monitoring/dashboard-schema/package.json tests/monitoring/dashboard-schema/package-lock.json | sha256sum | cut -c1-16)"
if [ ! -x "$DSCHEMA/node_modules/typescript/bin/tsc" ] || [ "$(cat "$DSCHEMA/.inferops-stamp" 2>/dev/null)" != "$dschema_want" ]; then
  log "installing @grafana/schema and typescript (npm ci) into .cache/dashboard-schema"
  rm -rf "$DSCHEMA"; mkdir -p "$DSCHEMA"
  cp tests/monitoring/dashboard-schema/package.json tests/monitoring/dashboard-schema/package-lock.json "$DSCHEMA/"
  if (cd "$DSCHEMA" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null); then
    echo "$dschema_want" > "$DSCHEMA/.inferops-stamp"
  else
    rm -rf "$DSCHEMA/node_modules"
    log "WARNING: npm ci failed (is the npm registry, $(npm config get registry 2>/dev/null || echo unknown), reachable?)."
    log "WARNING: everything else is set up; the dashboard schema check in 'make rules' fails until a rerun succeeds."
  fi
fi

# This checkout, seen as ansible_collections/inferops/sglang (a symlink is enough for Ansible
# and pytest; ansible-test needs a real copy, made by scripts/test-tree.sh).
mkdir -p .build/collections/ansible_collections/inferops
ln -sfn "$ROOT" .build/collections/ansible_collections/inferops/sglang

# ansible-test downloads a pip bootstrap script from a host we cannot reach: give it an
# offline stand-in that installs pip from the PyPI wheel.
cache=$HOME/.ansible/test/cache
shim=$cache/get_pip_${ANSIBLE_TEST_PIP_VERSION//./_}.py
if [ ! -f "$shim" ]; then
  log "installing the offline pip bootstrap shim for ansible-test"
  mkdir -p "$cache"
  "$VENV/bin/pip" download -q --no-deps "pip==$ANSIBLE_TEST_PIP_VERSION" -d "$cache"
  cat > "$shim" <<PYEOF
"""Offline stand-in for ansible-test's get-pip bootstrap: install pip from the wheel beside this file."""
import os
import sys

WHEEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-${ANSIBLE_TEST_PIP_VERSION}-py3-none-any.whl")
sys.path.insert(0, WHEEL)
from pip._internal.cli.main import main  # noqa: E402

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", WHEEL] + args))
PYEOF
fi
log "ready"
