# inferops.sglang: every entry point a person or CI uses.
# `make test` runs every check; `make lab` brings up the local lab. Both set themselves up.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
BIN := $(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(ROOT)/.build/collections:$(ROOT)/.cache/collections
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false
export ANSIBLE_FORCE_COLOR := false
export ANSIBLE_NOCOLOR := true
export PY_COLORS := 0
export MOLECULE_NO_LOG := true

.PHONY: help deps images lint sanity units integration rules lane-static lane-node sim-tests molecule molecule-node molecule-default \
        molecule-lb image-tests \
        test lab lab-down bench clean distclean

help:
	@echo "make test      every check (lint, sanity, unit, simulator, molecule)"
	@echo "make lab       bring up the local lab on this machine's Docker; make lab-down removes it"
	@echo "make bench     run the benchmarks in benchmarks/ (prints figures)"

deps:
	@scripts/bootstrap.sh

images: deps
	@images/build.sh all

lint: deps
	@echo "== ansible-lint (production profile)"
	@ansible-lint --nocolor
	@echo "== ruff (simulator, test harness and fixtures, benchmarks, scripts)"
	@ruff check --quiet simulator tests/fixtures tests/harness tests/integration benchmarks scripts

sanity: deps
	@scripts/test-tree.sh sanity

units: deps
	@echo "== unit tests (module_utils, modules, filters, fake Hub, fake NVIDIA tools)"
	@cd .build/collections/ansible_collections/inferops/sglang && \
	  python -m pytest -q -p no:cacheprovider tests/unit tests/fixtures/nvidia/tests

# Real nginx, redis-server and redis-sentinel as private processes on 127.0.0.1.
integration: deps
	@echo "== integration tests (the LB configuration on nginx, Redis ACLs, Lua leases)"
	@cd .build/collections/ansible_collections/inferops/sglang && \
	  python -m pytest -q -p no:cacheprovider tests/integration

# promtool from Debian's prometheus package, unpacked by the bootstrap (no Prometheus runs here).
# The dashboard against Grafana's own dashboard types (npm @grafana/schema, tsc --strict), both
# installed by the bootstrap into .cache/dashboard-schema (no Grafana runs here either).
rules: deps
	@echo "== monitoring rules (promtool check rules, promtool test rules)"
	@.cache/prometheus/usr/bin/promtool check rules roles/monitoring/files/inferops.rules.yml
	@.cache/prometheus/usr/bin/promtool test rules tests/monitoring/rules_test.yml
	@echo "== Grafana dashboard (Grafana's dashboard schema: @grafana/schema types, tsc --strict)"
	@python tests/monitoring/dashboard_schema.py

sim-tests: deps
	@echo "== simulator conformance tests"
	@python -m pytest -q -p no:cacheprovider simulator/tests

image-tests: images
	@echo "== simulator image smoke test"
	@images/smoke-sim.sh

molecule-node: images
	@scripts/molecule-test.sh node

molecule-default: images
	@scripts/molecule-test.sh default

molecule-lb: images
	@scripts/molecule-test.sh lb

molecule: molecule-node molecule-default

# Two cores, two lanes, then molecule `default` alone. Lane A: the static checks (all CPU), then
# the integration tests (mostly waiting on agents, leases and timeouts). Lane B: the images, molecule
# `node` (which waits on apt, Docker and the simulator about as much as it computes), the simulator
# tests. The HA drills of `default` measure time under load, so nothing runs beside them.
# --output-sync prints each lane's parts in one piece each.
test: deps
	@$(MAKE) --no-print-directory -j2 --output-sync=recurse lane-static lane-node
	@$(MAKE) --no-print-directory molecule-default
	@echo "make test: all checks passed"

lane-static: deps
	@$(MAKE) --no-print-directory lint
	@$(MAKE) --no-print-directory sanity
	@$(MAKE) --no-print-directory units
	@$(MAKE) --no-print-directory rules
	@$(MAKE) --no-print-directory integration

lane-node: images
	@$(MAKE) --no-print-directory molecule-node
	@$(MAKE) --no-print-directory sim-tests
	@$(MAKE) --no-print-directory image-tests

lab: images
	@scripts/lab.sh up

lab-down: deps
	@scripts/lab.sh down

# The LB benchmark runs a private nginx process (never the system service); it only needs the binary.
bench: deps
	@command -v nginx >/dev/null || { sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get install -y -qq nginx-light >/dev/null; }
	@for b in benchmarks/sim_capacity.py benchmarks/lb_table.py; do echo "== $$b"; python "$$b"; done

clean:
	rm -rf .build tests/output

distclean: clean
	rm -rf .cache .venv
