#!/usr/bin/env bash
# ansible-test insists on running from a real ansible_collections/<ns>/<name> directory (a
# symlink is not enough), so copy what the collection ships (galaxy.yml build_ignore) into
# .build/test-tree and run ansible-test there.
#   scripts/test-tree.sh sanity [ansible-test args...]
#   scripts/test-tree.sh units  [ansible-test args...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
cmd=${1:-sanity}; shift || true
TREE=$ROOT/.build/test-tree/ansible_collections/inferops/sglang
rm -rf "$ROOT/.build/test-tree"; mkdir -p "$TREE"
tar --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./.build --exclude=./tests/output \
    --exclude=./simulator --exclude=./benchmarks --exclude=./images --exclude=./scripts --exclude=./lab \
    --exclude=./.ci --exclude='__pycache__' --exclude='*.pyc' --exclude=./.pytest_cache --exclude=./.ruff_cache \
    -cf - . | tar -C "$TREE" -xf -
cd "$TREE"
# ansible-test needs the dependency collections beside this one.
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.build/test-tree:$ROOT/.cache/collections"
echo "== ansible-test $cmd"
ansible-test "$cmd" --venv --python 3.11 --color no "$@"
