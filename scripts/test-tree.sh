#!/usr/bin/env bash
# ansible-test insists on running from a real ansible_collections/<ns>/<name> directory (a
# symlink is not enough), so copy what the collection ships (galaxy.yml build_ignore) into a
# tree OUTSIDE this git checkout and run ansible-test there: inside the checkout, ansible-test
# asks git for the file list, finds the copy ignored, and silently skips every target.
#   scripts/test-tree.sh sanity [ansible-test args...]
#   scripts/test-tree.sh units  [ansible-test args...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"
cmd=${1:-sanity}; shift || true
BASE=${INFEROPS_TEST_TREE:-${TMPDIR:-/tmp}/inferops-test-tree-$(id -u)}
TREE=$BASE/ansible_collections/inferops/sglang
rm -rf "$BASE"; mkdir -p "$TREE"
tar --exclude=./.git --exclude=./.venv --exclude=./.cache --exclude=./.build --exclude=./tests/output \
    --exclude=./simulator --exclude=./benchmarks --exclude=./images --exclude=./scripts --exclude=./lab \
    --exclude=./.ci --exclude='__pycache__' --exclude='*.pyc' --exclude=./.pytest_cache --exclude=./.ruff_cache \
    -cf - . | tar -C "$TREE" -xf -
cd "$TREE"
# ansible-test needs the dependency collections beside this one.
export ANSIBLE_COLLECTIONS_PATH="$BASE:$ROOT/.cache/collections"
echo "== ansible-test $cmd"
ansible-test "$cmd" --venv --python 3.11 --color no "$@"
