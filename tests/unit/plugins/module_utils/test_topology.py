# -*- coding: utf-8 -*-
from __future__ import annotations

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils._topology import (
    TopologyError,
    pools_from_plans,
)


def _plan(*items):
    return [{"deployment": d, "host_port": p} for d, p in items]


def test_one_pool_per_deployment_in_node_then_plan_order():
    nodes = [
        {"name": "gpu1", "address": "10.0.0.1", "plan": _plan(("chat", 30001), ("chat", 30002), ("small-x", 30101))},
        {"name": "gpu2", "address": "10.0.0.2", "plan": _plan(("chat", 30001))},
    ]
    pools = pools_from_plans(nodes)
    assert [p["name"] for p in pools] == ["chat", "small_x"]
    assert [s["address"] for s in pools[0]["servers"]] == ["10.0.0.1:30001", "10.0.0.1:30002", "10.0.0.2:30001"]
    assert all(s["state"] == "primary" for p in pools for s in p["servers"])


def test_overrides_are_merged_per_pool():
    nodes = [{"name": "gpu1", "address": "10.0.0.1", "plan": _plan(("chat", 30001))}]
    pools = pools_from_plans(nodes, {"chat": {"balance": "hash", "hash_header": "X-Session-Id"}})
    assert pools[0]["balance"] == "hash"


def test_node_without_plan_is_named():
    with pytest.raises(TopologyError, match="gpu2: no instance plan"):
        pools_from_plans([{"name": "gpu2", "address": "10.0.0.2", "plan": None}])


def test_node_without_address_is_named():
    with pytest.raises(TopologyError, match="gpu1: no service address"):
        pools_from_plans([{"name": "gpu1", "address": "", "plan": _plan(("chat", 1))}])


def test_node_with_empty_plan_adds_nothing():
    assert pools_from_plans([{"name": "gpu1", "address": "", "plan": []}]) == []


def _versioned(version, *items):
    return [{"deployment": d, "host_port": p, "sglang_version": version} for d, p in items]


@pytest.mark.parametrize("versions, path", [
    (["0.5.6", "0.5.6"], "/health"),        # 0.5.6 has no /ready: the LB must ask /health
    (["0.5.23", "0.5.23"], "/ready"),       # a flag check where it exists
    (["0.5.6", "0.5.23"], "/health"),       # mixed (a rolling update): what both serve
    ([None], "/health"),                    # unknown release: what every 0.5.x serves
])
def test_health_path_follows_the_instances_release(versions, path):
    nodes = [{"name": "gpu%d" % i, "address": "10.0.0.%d" % i, "plan": _versioned(v, ("chat", 30001))}
             for i, v in enumerate(versions, start=1)]
    assert pools_from_plans(nodes)[0]["health_path"] == path


def _moded(mode, deployment="chat", name="x"):
    return [{"deployment": deployment, "host_port": 30001, "mode": mode, "name": name,
             "deployment_path": "sglang_deployments[0]"}]


def test_active_standby_needs_two_nodes_and_one_mode_per_pool():
    two = [{"name": "gpu1", "address": "10.0.0.1", "plan": _moded("active_standby")},
           {"name": "gpu2", "address": "10.0.0.2", "plan": _moded("active_standby")}]
    pool = pools_from_plans(two)[0]
    assert pool["mode"] == "active_standby"
    assert [(s["node"], s["instance"]) for s in pool["servers"]] == [("gpu1", "x"), ("gpu2", "x")]
    with pytest.raises(TopologyError, match=r"^sglang_deployments\[0\]\.mode: active_standby needs instances on at least two nodes"):
        pools_from_plans(two[:1])
    mixed = [two[0], {"name": "gpu2", "address": "10.0.0.2", "plan": _moded("active_active")}]
    with pytest.raises(TopologyError, match=r"^sglang_deployments\[0\]\.mode: active_active on gpu2"):
        pools_from_plans(mixed)


def test_ipv6_service_addresses_are_bracketed_and_names_refused():
    nodes = [{"name": "gpu1", "address": "fd00::11", "plan": _plan(("chat", 30001))}]
    assert pools_from_plans(nodes)[0]["servers"][0]["address"] == "[fd00::11]:30001"
    with pytest.raises(TopologyError, match="is not an IP address"):
        pools_from_plans([{"name": "gpu1", "address": "gpu1.example", "plan": _plan(("chat", 30001))}])
