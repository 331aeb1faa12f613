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
