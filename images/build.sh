#!/usr/bin/env bash
# Builds the project's container images on this machine from Debian packages alone (no registry
# is reachable): a debootstrap root file system imported as inferops/debian:bookworm, then
# every other image FROM it with `docker build` (the classic builder never pulls a local base).
# Each image is rebuilt only when its inputs change (a content hash is kept in a label), and
# images the roles load on hosts are saved as tarballs in .cache/images/.
#   images/build.sh all | rootfs | systemd | sim | fixtures
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=$ROOT/.cache/images
mkdir -p "$CACHE"
SIM_VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' simulator/pyproject.toml 2>/dev/null | head -1 || true)
SIM_VERSION=${SIM_VERSION:-0.1.0}
FIXTURES_VERSION=0.1.0
ROOTFS_REVISION=1

log() { printf '[images] %s\n' "$*"; }

mirror() {
  # The Debian mirror this machine is configured with (never written into the project).
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -v security | head -1 | awk '{print ($1=="deb") ? $2 : $2}')
  [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt" >&2; exit 1; }
  echo "$uri"
}

image_hash() { docker image inspect -f '{{ index .Config.Labels "inferops.hash" }}' "$1" 2>/dev/null || true; }

build_rootfs() {
  local img=inferops/debian:bookworm hash
  # Rebuilt only when the package list changes (bump ROOTFS_REVISION to force it).
  hash=$( (cat images/base/packages.txt; echo "$ROOTFS_REVISION") | sha256sum | cut -c1-16)
  if [ "$(image_hash $img)" = "$hash" ]; then log "$img is up to date"; return; fi
  local dir=$ROOT/.cache/rootfs/bookworm
  log "debootstrap bookworm into $dir (about a minute)"
  rm -rf "$dir"; mkdir -p "$dir"
  debootstrap --variant=minbase --include="$(grep -v '^#' images/base/packages.txt | xargs | tr ' ' ',')" \
    bookworm "$dir" "$(mirror)" > "$ROOT/.cache/rootfs/debootstrap.log" 2>&1 \
    || { tail -20 "$ROOT/.cache/rootfs/debootstrap.log"; exit 1; }
  # Containers use the same Debian mirror as this machine.
  cp /etc/apt/sources.list.d/*.sources "$dir/etc/apt/sources.list.d/" 2>/dev/null || true
  [ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$dir/etc/apt/sources.list"
  : > "$dir/etc/machine-id"; rm -f "$dir/var/lib/dbus/machine-id"
  chroot "$dir" apt-get clean; rm -rf "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -c . | docker import -c "LABEL inferops.hash=$hash" - $img >/dev/null
  rm -rf "$dir"
  log "built $img"
}

build_from_dockerfile() {
  # $1 image name, $2 Dockerfile dir, rest: extra inputs to hash
  local img=$1 dir=$2; shift 2
  local hash
  # Inputs: the Dockerfile, the base image's id, and every file under the given paths.
  hash=$( { docker image inspect -f '{{.Id}}' inferops/debian:bookworm
            find "$dir" "$@" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null | sort | xargs -r cat
          } | sha256sum | cut -c1-16)
  if [ "$(image_hash "$img")" = "$hash" ]; then log "$img is up to date"; return 1; fi
  log "building $img"
  docker build -q --label "inferops.hash=$hash" -t "$img" -f "$dir/Dockerfile" . >/dev/null
  log "built $img"
}

save_tarball() {
  local img=$1 out=$2
  if [ ! -f "$out" ] || [ "$(cat "$out.hash" 2>/dev/null)" != "$(image_hash "$img")" ]; then
    docker save "$img" -o "$out"
    image_hash "$img" > "$out.hash"
    log "saved $img to ${out#"$ROOT"/}"
  fi
}

build_systemd() { build_from_dockerfile inferops/debian-systemd:bookworm images/base || true; }
build_sim() {
  build_from_dockerfile "inferops/sglang-sim:$SIM_VERSION" images/sglang-sim simulator/sglang_sim simulator/pyproject.toml || true
  save_tarball "inferops/sglang-sim:$SIM_VERSION" "$CACHE/sglang-sim-$SIM_VERSION.tar"
}
build_fixtures() {
  [ -f images/fixtures/Dockerfile ] || { log "no fixtures image defined yet"; return; }
  build_from_dockerfile "inferops/fixtures:$FIXTURES_VERSION" images/fixtures tests/fixtures || true
}

target=${1:-all}
scripts/ensure-docker.sh
case $target in
  rootfs) build_rootfs ;;
  systemd) build_rootfs; build_systemd ;;
  sim) build_rootfs; build_sim ;;
  fixtures) build_rootfs; build_fixtures ;;
  all) build_rootfs; build_systemd; build_sim; build_fixtures ;;
  *) echo "usage: $0 all|rootfs|systemd|sim|fixtures" >&2; exit 2 ;;
esac
