#!/usr/bin/python
# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sglang_readiness
short_description: Check a live SGLang deployment against the production-readiness checklist
description:
  - Runs the seed's production checklist against the running fleet and reports each line as passed or failed, with the
    evidence it saw (RV(checks), RV(table)). The module does not fail when a check fails; the playbook
    C(playbooks/readiness.yml) prints the table and then fails naming every failed check.
  - V(determinism) sends the same prompt at temperature 0 (O(prompt)) to every instance of each pool directly, with the
    instances' API key, and requires the same model, text and finish reason on all of them.
  - V(structured_output) sends O(structured_requests) generations constrained by a JSON schema (SGLang's C(json_schema)
    sampling parameter on C(/generate)) round-robin to every instance, at most O(structured_concurrency) at a time and
    none started after O(structured_timeout) seconds; every answer must parse and conform to the schema (an object with
    C(name), C(age), C(tier), C(active) and C(tags), bounds and an enum).
  - V(isolation) requires, from C(docker inspect) of the managed containers on each GPU node (O(nodes)), one running
    container per planned instance, published on its planned port and no other, with its own log directory, and no
    managed container the plan does not have.
  - V(memory) requires, per GPU, each instance's C(--mem-fraction-static) (the last one on its command line, as SGLang's
    argument parser reads it) to be the plan's, and the shares of the GPU's total memory the instances take when started
    in planned order (each takes its fraction of the memory still free) to add up to at most the planned fraction, never
    above 1. The GPUs' total memory from C(nvidia-smi) (M(inferops.sglang.gpu_facts)) is part of the evidence.
  - V(instance_health) requires every instance to answer its health path (per node, from
    P(inferops.sglang.sglang_api_profile#filter)) and C(/metrics) with 200.
  - V(lb_health) requires C(/lb/health) and every pool's C(/lb/health/<pool>) on O(lb_url) to answer 200.
  - V(sentinels) asks every Sentinel for the master (C(SENTINEL get-master-addr-by-name), as the Sentinel client user) and
    requires one answer from all; that address must answer C(ROLE) as master and each replica it lists must follow it
    (C(ROLE) as the agents' user).
  - With O(drill=true), C(failover_drill) moves the lease of one active-standby pool (O(drill_pool), or the first one) to
    its healthiest standby, as C(playbooks/failover.yml) does, and reports the takeover in seconds until every load
    balancer (O(load_balancers)) applied it. The pool then stays on its new leader.
  - Runs on a host with an HA agent, the first load balancer, and reads the agent's configuration for Redis, the Sentinels
    and the pools. The logic is C(plugins/module_utils/_readiness.py).
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
options:
  agent_config:
    description: The HA agent's configuration on this host (Redis, the Sentinels, the pools and their servers).
    type: path
    default: /etc/inferops/agent/agent.json
  api_key:
    description: The instances' API key (the C(sglang) role's C(sglang_api_key)); empty when they have none.
    type: str
    default: ""
  nodes:
    description:
      - What each GPU node reports, for V(isolation) and V(memory) (and each node's health path). One dictionary per
        node with C(name) (inventory name), C(plan) (C(sglang_plan)), C(containers) (the C(docker inspect) documents of
        the managed containers), C(gpus) (M(inferops.sglang.gpu_facts)' C(gpus)) and C(health_path).
      - A node given as C(name) and C(missing=true) reported nothing; V(isolation) and V(memory) fail for it.
      - Required when O(checks) has V(isolation) or V(memory).
    type: list
    elements: dict
    default: []
  checks:
    description: The lines of the checklist to run, in this order.
    type: list
    elements: str
    choices: [determinism, structured_output, isolation, memory, instance_health, lb_health, sentinels]
    default: [determinism, structured_output, isolation, memory, instance_health, lb_health, sentinels]
  lb_url:
    description: Where this load balancer answers C(/lb/health) (C(http://127.0.0.1:8080) for the role's defaults).
    type: str
    default: http://127.0.0.1:8080
  validate_certs:
    description: Check the load balancer's certificate when O(lb_url) is C(https://).
    type: bool
    default: true
  prompt:
    description: The prompt of the determinism check.
    type: str
    default: "Readiness check: name the three primary colours and stop."
  max_new_tokens:
    description: Tokens the determinism check asks for.
    type: int
    default: 32
  structured_requests:
    description: How many schema-constrained requests V(structured_output) sends.
    type: int
    default: 100
  structured_concurrency:
    description: How many of them are in flight at once.
    type: int
    default: 8
  structured_timeout:
    description: Seconds V(structured_output) may take; a request not started by then counts as failed.
    type: float
    default: 120
  request_timeout:
    description: Seconds one request may take.
    type: float
    default: 30
  drill:
    description:
      - Run the failover drill after the checks. It changes the fleet (the lease moves, with a new epoch and an event), so
        it runs only when asked, and never in check mode.
    type: bool
    default: false
  drill_pool:
    description: The active-standby pool to drill; the first one when omitted.
    type: str
  drill_timeout:
    description: Seconds the drill may take (the move and every load balancer's apply).
    type: float
    default: 60
  load_balancers:
    description: Inventory names of the load balancers whose applied epoch the drill waits for.
    type: list
    elements: str
    default: []
  by:
    description: Who runs the drill; recorded in its event.
    type: str
    default: readiness
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The checks only read (generations change nothing), so they run in check mode too; the drill is skipped.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - Only the drill changes anything; without it the module reports C(changed=false).
seealso:
  - module: inferops.sglang.sglang_ha
  - module: inferops.sglang.gpu_facts
"""

EXAMPLES = r"""
- name: Run the checklist (readiness.yml gathers the nodes' containers and GPUs first)
  inferops.sglang.sglang_readiness:
    api_key: "{{ sglang_api_key }}"
    nodes: "{{ groups['sglang_nodes'] | map('extract', hostvars, 'readiness_node') | list }}"
    lb_url: http://127.0.0.1:8080
  register: readiness

- name: Only the Sentinels and the load balancer, no GPU node data needed
  inferops.sglang.sglang_readiness:
    checks: [sentinels, lb_health]

- name: Also drill a failover of the standby pool
  inferops.sglang.sglang_readiness:
    api_key: "{{ sglang_api_key }}"
    checks: [instance_health, sentinels]
    drill: true
    drill_pool: standby
    load_balancers: "{{ groups['lb_nodes'] }}"
"""

RETURN = r"""
checks:
  description: One entry per line of the checklist, in order; the drill last (skipped unless asked).
  returned: always
  type: list
  elements: dict
  contains:
    check:
      description: The line (V(determinism), V(structured_output), V(isolation), V(memory), V(instance_health),
        V(lb_health), V(sentinels), V(failover_drill)).
      type: str
    ok:
      description: Whether it passed (true for a skipped line).
      type: bool
    evidence:
      description: What was seen, one line per pool, node or address.
      type: str
    skipped:
      description: Present and true when the line did not run.
      type: bool
  sample:
    - check: sentinels
      ok: true
      evidence: "3 Sentinel(s) agree: master of inferops is 10.0.0.21:6379"
table:
  description: The same as lines of a table (check, PASS/FAIL/SKIP, evidence) and a summary line.
  returned: always
  type: list
  elements: str
failed_checks:
  description: The names of the lines that failed.
  returned: always
  type: list
  elements: str
  sample: [determinism]
all_passed:
  description: Whether every line that ran passed.
  returned: always
  type: bool
msg:
  description: A summary.
  returned: always
  type: str
  sample: "readiness: 7 of 8 checks passed; FAILED: determinism"
"""

from functools import partial

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.sglang.plugins.module_utils._operations import (
    Fleet,
    OperationError,
    connect,
    load_lb_agent_config,
)
from ansible_collections.inferops.sglang.plugins.module_utils._readiness import (
    CHECKS,
    DEFAULT_PROMPT,
    ReadinessError,
    check_drill,
    failed_checks,
    format_table,
    node_errors,
    run_checklist,
    run_drill,
)
from ansible_collections.inferops.sglang.plugins.module_utils._redis import RedisError


def main():
    module = AnsibleModule(
        argument_spec={
            "agent_config": {"type": "path", "default": "/etc/inferops/agent/agent.json"},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "nodes": {"type": "list", "elements": "dict", "default": []},
            "checks": {"type": "list", "elements": "str", "choices": list(CHECKS), "default": list(CHECKS)},
            "lb_url": {"type": "str", "default": "http://127.0.0.1:8080"},
            "validate_certs": {"type": "bool", "default": True},
            "prompt": {"type": "str", "default": DEFAULT_PROMPT},
            "max_new_tokens": {"type": "int", "default": 32, "no_log": False},
            "structured_requests": {"type": "int", "default": 100},
            "structured_concurrency": {"type": "int", "default": 8},
            "structured_timeout": {"type": "float", "default": 120.0},
            "request_timeout": {"type": "float", "default": 30.0},
            "drill": {"type": "bool", "default": False},
            "drill_pool": {"type": "str"},
            "drill_timeout": {"type": "float", "default": 60.0},
            "load_balancers": {"type": "list", "elements": "str", "default": []},
            "by": {"type": "str", "default": "readiness"},
        },
        supports_check_mode=True,
    )
    p = module.params
    for name in ("max_new_tokens", "structured_requests", "structured_concurrency"):
        if p[name] < 1:
            module.fail_json(msg="%s: must be at least 1, got %d" % (name, p[name]))
    for name in ("structured_timeout", "request_timeout", "drill_timeout"):
        if p[name] <= 0:
            module.fail_json(msg="%s: must be above 0, got %g" % (name, p[name]))
    needed = [check for check in ("isolation", "memory") if check in p["checks"]]
    errors = node_errors(p["nodes"], needed)
    if errors:
        module.fail_json(msg="; ".join(errors))
    try:
        config = load_lb_agent_config(p["agent_config"])
    except OperationError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    pools = config["lb"]["pools"]

    client = None
    drill = None
    if p["drill"]:
        try:
            client = connect(config)
        except (RedisError, OSError) as exc:
            drill = partial(dict, {"pool": p["drill_pool"] or "-",
                                   "error": "cannot reach Redis through the Sentinels: %s" % exc})
        else:
            fleet = Fleet(client, pools, p["load_balancers"])
            try:
                # Checks drill_pool before any check runs, also in check mode.
                run_drill(fleet, p["drill_pool"], check_mode=True)
            except ReadinessError as exc:
                client.close()
                module.fail_json(msg=str(exc))
            drill = partial(run_drill, fleet, p["drill_pool"], "readiness drill", p["by"], p["drill_timeout"],
                            module.check_mode)
    try:
        results = run_checklist(
            config, p["nodes"], p["api_key"], p["checks"], p["lb_url"], p["validate_certs"], p["prompt"],
            p["max_new_tokens"], p["structured_requests"], p["structured_concurrency"], p["structured_timeout"],
            p["request_timeout"], drill)
    finally:
        if client is not None:
            client.close()
    if drill is None:
        results.append(check_drill({"skipped": "not asked (drill: true runs it)"}))
    failed = failed_checks(results)
    table = format_table(results)
    drilled = [r for r in results if r["check"] == "failover_drill" and r["ok"] and not r.get("skipped")]
    module.exit_json(changed=bool(drilled), checks=results, table=table, failed_checks=failed, all_passed=not failed,
                     msg="readiness: " + table[-1])


if __name__ == "__main__":
    main()
