#!/usr/bin/env bash
# The local lab: simulated GPU nodes, a load balancer and Redis with Sentinel, as systemd
# containers on this machine's Docker, provisioned by the same playbooks/site.yml as production.
#   scripts/lab.sh up | down | status
# `make lab` runs the set-up (venv, collections, images) first and then `up`; `up` is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH=$ROOT/.venv/bin:$PATH
export ANSIBLE_CONFIG=$ROOT/lab/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH=${ANSIBLE_COLLECTIONS_PATH:-$ROOT/.build/collections:$ROOT/.cache/collections}
export INFEROPS_LAB_ROOT=$ROOT
SECRETS=${INFEROPS_LAB_SECRETS:-$ROOT/.cache/lab-secrets}
export INFEROPS_LAB_SECRETS=$SECRETS
ENDPOINT=http://127.0.0.1:8080
PROMETHEUS=http://127.0.0.1:9090
# The VIP that keepalived moves between lb1 and lb2 (lab_vip in inventories/lab/group_vars/all),
# on the lab's Docker network: reachable from this machine, from nowhere else.
vip() {
  ansible -i inventories/lab localhost -m ansible.builtin.debug -a var=lab_vip 2>/dev/null \
    | python3 -c 'import re,sys; m=re.search(r"lab_vip\"?: \"?([0-9.]+)", sys.stdin.read()); print(m.group(1) if m else "")'
}

log() { printf '[lab] %s\n' "$*"; }

# One chat through the load balancer, the way a client sends it. The key goes to curl on stdin
# (-H @-), so it is neither printed nor on a command line.
smoke() {
  local key_file=$SECRETS/lb-api-key answer
  for attempt in 1 2 3 4 5; do
    if answer=$(printf 'Authorization: Bearer %s\n' "$(cat "$key_file")" | curl -sS --fail-with-body --max-time 30 \
        -H @- -H 'Content-Type: application/json' "$ENDPOINT/v1/chat/completions" \
        -d '{"model":"tiny-chat","messages":[{"role":"user","content":"Hello"}],"max_tokens":16}'); then
      python3 -c 'import json,sys; r=json.load(sys.stdin); print("[lab] chat through %s: HTTP 200, %d tokens: %r" % (sys.argv[1], r["usage"]["completion_tokens"], r["choices"][0]["message"]["content"]))' \
        "$ENDPOINT" <<<"$answer"
      return 0
    fi
    log "chat attempt $attempt failed: $answer"
    sleep 2
  done
  log "the load balancer at $ENDPOINT did not answer a chat"
  return 1
}

case ${1:-up} in
  up)
    start=$SECONDS
    log "creating the machines (containers inferops-lab-*, network inferops-lab-net)"
    ansible-playbook -i inventories/lab lab/create.yml
    log "preparing them (fake NVIDIA driver on the GPU nodes)"
    ansible-playbook -i inventories/lab lab/prepare.yml
    log "provisioning with playbooks/site.yml"
    ansible-playbook -i inventories/lab playbooks/site.yml
    smoke
    VIP_ADDRESS=$(vip)
    [ -n "$VIP_ADDRESS" ] || { log "could not read lab_vip from inventories/lab"; exit 1; }
    VIP_ENDPOINT=http://$VIP_ADDRESS:8080
    ENDPOINT=$VIP_ENDPOINT smoke
    cat <<MSG

The lab is up ($((SECONDS - start)) s). Endpoint: $ENDPOINT  (OpenAI-compatible; model "tiny-chat")
The VIP (keepalived, lb1 and lb2): $VIP_ENDPOINT   HTTPS: https://$VIP_ADDRESS:8443 (the lab CA: $SECRETS/ca.crt)
Prometheus (every target, the alert rules): $PROMETHEUS  (alerts: $PROMETHEUS/alerts)
The API keys are in $SECRETS/ (lb-api-key; lb-limited-api-key allows 2 requests/s).

  curl -s $ENDPOINT/v1/chat/completions \\
    -H "Authorization: Bearer \$(cat $SECRETS/lb-api-key)" -H 'Content-Type: application/json' \\
    -d '{"model":"tiny-chat","messages":[{"role":"user","content":"Hello"}],"max_tokens":16}'

Load balancer health (200 while an instance is usable): curl -si $ENDPOINT/lb/health
What runs where: scripts/lab.sh status        Remove the lab: make lab-down
MSG
    ;;
  down)
    ansible-playbook lab/destroy.yml
    log "removed"
    ;;
  status)
    docker ps --all --filter label=inferops.lab=true --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
    ;;
  *)
    echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
