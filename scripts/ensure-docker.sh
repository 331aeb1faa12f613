#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io when no daemon binary exists,
# and starts dockerd in the background when `docker info` fails (no systemd on CI machines).
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
if ! command -v dockerd >/dev/null 2>&1; then
  echo "[ensure-docker] installing docker.io"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io >/dev/null
fi
if command -v systemctl >/dev/null 2>&1 && [ "$(systemctl is-system-running 2>/dev/null || true)" != "offline" ] \
   && systemctl start docker 2>/dev/null && docker info >/dev/null 2>&1; then
  exit 0
fi
echo "[ensure-docker] starting dockerd in the background (log: /var/log/inferops-dockerd.log)"
$SUDO sh -c 'nohup dockerd >/var/log/inferops-dockerd.log 2>&1 &'
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "[ensure-docker] dockerd did not answer within 60 s; see /var/log/inferops-dockerd.log" >&2
exit 1
