#!/usr/bin/python
# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sglang_ha
short_description: See and move the roles of the SGLang fleet (status, switchover, failover, pause, drain)
description:
  - Reads and changes the live state the HA agents keep in Redis (P(inferops.sglang.ha_agent#role)).
  - V(status) reports every pool (mode, leader and epoch, paused or not), every instance (state, why, load, drained or
    not), each load balancer's applied epoch and the recent changes, also as a table (RV(table)).
  - V(switchover) asks an active-standby pool's leader to hand its lease to a healthy candidate (a named node, or the best
    one); it is refused, naming the reason, when the candidate is not healthy or not in the pool, or the pool is paused. It
    waits until the lease moved and every load balancer applied the new epoch.
  - V(failover) moves the lease at once, whoever holds it, for when the leader cannot be reached; it still refuses an
    unhealthy candidate unless O(allow_unhealthy=true).
  - V(pause) / V(resume) stop and restart automatic role changes of a pool (maintenance, as Patroni's pause).
  - V(drain) stops new requests to one instance (every load balancer renders it down and reloads gracefully; requests in
    flight finish) and waits until it runs nothing; V(undrain) puts it back. Draining the last serving instance of a pool
    needs O(force=true). Draining the leader's instance of an active-standby pool first hands the lease over (a checked
    switchover).
  - While an instance is drained its agent still probes it but never restarts it; the operator owns its container (a
    rolling update replaces it).
  - Every change carries a new epoch and is recorded as an event naming who asked (O(by)) and why (O(reason)).
  - Runs on a host with an HA agent (it reads the agent's configuration for Redis and the pools, normally a load balancer).
    The logic is C(plugins/module_utils/_operations.py), on the same keys and scripts the agents use.
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
options:
  state:
    description: The operation.
    type: str
    required: true
    choices: [status, switchover, failover, pause, resume, drain, undrain]
  pool:
    description: The pool (a deployment's name with C(-) as C(_)). Required except for V(status).
    type: str
  candidate:
    description: The node (inventory name) to move the lease to; the healthiest, least loaded other node when omitted.
    type: str
  node:
    description: The node of the instance to drain or undrain.
    type: str
  instance:
    description: The instance (container name) to drain or undrain.
    type: str
  reason:
    description: Why; recorded in the event.
    type: str
    default: ""
  by:
    description: Who asks; recorded in the event.
    type: str
    default: operator
  force:
    description: Drain even the last serving instance of a pool.
    type: bool
    default: false
  allow_unhealthy:
    description: Let V(failover) pick a candidate without a healthy instance.
    type: bool
    default: false
  wait_idle:
    description:
      - After a drain, wait until the instance runs nothing (C(sglang:num_running_reqs) and its queue are 0).
      - After an undrain, wait until its agent reports it serving again (a replaced container has to pass its probes
        first) and every load balancer rendered it.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the change (the hand-over, every load balancer's apply, the drain).
    type: float
    default: 60
  load_balancers:
    description: Inventory names of the load balancers whose applied epoch is waited for.
    type: list
    elements: str
    default: []
  agent_config:
    description: The HA agent's configuration on this host (Redis, the Sentinels, the pools).
    type: path
    default: /etc/inferops/agent/agent.json
  events:
    description: How many recent events V(status) returns.
    type: int
    default: 20
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Every check runs; nothing is requested.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
"""

EXAMPLES = r"""
- name: Hand the chat pool to gpu-2
  inferops.sglang.sglang_ha:
    state: switchover
    pool: chat
    candidate: gpu-2
    reason: GPU firmware update on gpu-1
    load_balancers: "{{ groups['lb_nodes'] }}"

- name: Drain one instance and wait until it is idle
  inferops.sglang.sglang_ha:
    state: drain
    pool: chat
    node: gpu-1
    instance: sglang-chat-1
    timeout: 600
"""

RETURN = r"""
status:
  description: With V(status), the pools, the load balancers and the recent events.
  returned: when state is status
  type: dict
table:
  description: With V(status), the same as lines of a table.
  returned: when state is status
  type: list
  elements: str
before:
  description: The state before the change (leader and epoch, paused, drained).
  returned: when state is not status
  type: dict
after:
  description: The state after the change, with its epoch.
  returned: when state is not status
  type: dict
lbs:
  description: Each load balancer's applied epoch once the change was applied.
  returned: when something changed
  type: dict
msg:
  description: What was done (or, in check mode, what would be), with the epoch.
  returned: always
  type: str
  sample: standby handed over from gpu-1 to gpu-2 at epoch 41
in_flight_at_drain:
  description: With V(drain), the requests the instance was running or queueing when every load balancer had drained it.
  returned: when state is drain and wait_idle
  type: int
idle_after_s:
  description: With V(drain), seconds until the instance ran nothing.
  returned: when state is drain and wait_idle
  type: float
switchover:
  description: With V(drain) of an active-standby leader's instance, the hand-over done first (before and after).
  returned: when the drained instance's node held the lease
  type: dict
field:
  description: On a refusal, the option at fault (V(pool), V(candidate), V(instance) or V(timeout)); nothing changed.
  returned: failure
  type: str
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.sglang.plugins.module_utils._operations import (
    Fleet,
    OperationError,
    connect,
    load_lb_agent_config,
    format_status,
)
from ansible_collections.inferops.sglang.plugins.module_utils._redis import RedisError


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "required": True,
                      "choices": ["status", "switchover", "failover", "pause", "resume", "drain", "undrain"]},
            "pool": {"type": "str"},
            "candidate": {"type": "str"},
            "node": {"type": "str"},
            "instance": {"type": "str"},
            "reason": {"type": "str", "default": ""},
            "by": {"type": "str", "default": "operator"},
            "force": {"type": "bool", "default": False},
            "allow_unhealthy": {"type": "bool", "default": False},
            "wait_idle": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 60.0},
            "load_balancers": {"type": "list", "elements": "str", "default": []},
            "agent_config": {"type": "path", "default": "/etc/inferops/agent/agent.json"},
            "events": {"type": "int", "default": 20},
        },
        required_if=[
            ("state", "switchover", ["pool"]), ("state", "failover", ["pool"]), ("state", "pause", ["pool"]),
            ("state", "resume", ["pool"]), ("state", "drain", ["pool", "node", "instance"]),
            ("state", "undrain", ["pool", "node", "instance"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    try:
        config = load_lb_agent_config(p["agent_config"])
    except OperationError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    pools = config["lb"]["pools"]
    try:
        client = connect(config)
    except (RedisError, OSError) as exc:
        module.fail_json(msg="cannot reach Redis through the Sentinels: %s" % exc)
    fleet = Fleet(client, pools, p["load_balancers"])
    try:
        if p["state"] == "status":
            status = fleet.status(p["events"])
            module.exit_json(changed=False, status=status, table=format_status(status))
        if p["state"] == "switchover":
            result = fleet.switchover(p["pool"], p["candidate"], p["reason"], p["by"], p["timeout"], module.check_mode)
        elif p["state"] == "failover":
            result = fleet.failover(p["pool"], p["candidate"], p["reason"], p["by"], p["allow_unhealthy"], p["timeout"],
                                    module.check_mode)
        elif p["state"] in ("pause", "resume"):
            result = fleet.pause(p["pool"], p["state"] == "pause", p["reason"], p["by"], module.check_mode)
        else:
            result = fleet.drain(p["pool"], p["node"], p["instance"], p["state"] == "drain", p["reason"], p["by"],
                                 p["force"], p["wait_idle"], p["timeout"], module.check_mode)
    except OperationError as exc:
        module.fail_json(msg=str(exc), field=exc.field)
    except RedisError as exc:
        module.fail_json(msg="Redis: %s" % exc)
    finally:
        client.close()
    if module._diff:
        result["diff"] = {"before": json.dumps(result["before"], sort_keys=True, indent=1) + "\n",
                          "after": json.dumps(result["after"], sort_keys=True, indent=1) + "\n"}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
