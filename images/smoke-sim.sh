#!/usr/bin/env bash
# Smoke test of the simulator image as a user would run it: `docker run` it (published on
# 127.0.0.1 only), wait for /health 200 after the simulated load time, generate, and expect
# `docker stop` to end it cleanly (exit 0 after the drain). The conformance suite covers the
# lifecycle in detail; this proves the image itself.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' simulator/pyproject.toml | head -1)
image=inferops/sglang-sim:$version
name=inferops-smoke-sim-$$
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() { docker rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

docker run -d --name "$name" -p "127.0.0.1:$port:30000" "$image" \
  python3 -m sglang.launch_server --model-path /models/tiny --host 0.0.0.0 --port 30000 \
  --sim-load-seconds 2 >/dev/null
url=http://127.0.0.1:$port
status=000
for _ in $(seq 1 60); do
  status=$(curl -s -o /dev/null -w '%{http_code}' "$url/health" || true)
  [ "$status" = 200 ] && break
  sleep 0.5
done
[ "$status" = 200 ] || { echo "FAIL: /health never answered 200 (last: $status)"; docker logs "$name" | tail -20; exit 1; }
body=$(curl -fsS "$url/generate" -H 'Content-Type: application/json' \
  -d '{"text":"The capital city of France is","sampling_params":{"max_new_tokens":4,"temperature":0}}')
echo "$body" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["meta_info"]["completion_tokens"] == 4, d'
docker stop -t 20 "$name" >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { echo "FAIL: exit code $code after docker stop"; exit 1; }
echo "image smoke test: $image answered /health 200, generated 4 tokens, stopped cleanly"
