"""What Prometheus scrapes, from the inventory: the targets, the errors that name the variable, and
a run limited to part of the fleet (--limit), which must leave the targets alone rather than drop
the hosts it does not know."""

from __future__ import annotations

from ansible_collections.inferops.sglang.plugins.filter.monitoring_targets import monitoring_targets

PORTS = {"nginx_exporter": 9113, "redis_exporter": 9121, "sentinel_exporter": 9355}
GROUPS = {"sglang_nodes": ["gpu-1"], "lb_nodes": ["lb-1"], "redis_nodes": ["redis-1"]}
PLAN = [{"name": "sglang-chat-1", "pool": "chat", "deployment": "chat", "host_port": 30001}]


def facts(address, **more):
    return dict({"ansible_facts": {"default_ipv4": {"address": address}}}, **more)


def fleet(**overrides):
    hostvars = {
        "gpu-1": facts("10.0.0.1", sglang_plan=PLAN, sglang_service_address="10.0.0.1", ha_agent_listen="10.0.0.1:9464"),
        "lb-1": facts("10.0.0.9", ha_agent_listen="10.0.0.9:9464"),
        "redis-1": facts("10.0.0.20"),
    }
    hostvars.update(overrides)
    return hostvars


def test_every_kind_of_target_labelled_with_the_inventory_names():
    result = monitoring_targets(GROUPS, fleet(), PORTS)
    assert result["errors"] == [] and result["left_out"] == []
    jobs = result["jobs"]
    assert jobs["sglang"] == [{"targets": ["10.0.0.1:30001"], "labels": {
        "node": "gpu-1", "pool": "chat", "sglang_instance": "sglang-chat-1", "deployment": "chat"}}]
    assert [entry["targets"] for entry in jobs["inferops_agent"]] == [["10.0.0.1:9464"], ["10.0.0.9:9464"]]
    assert jobs["nginx"][0]["targets"] == ["10.0.0.9:9113"]
    assert jobs["redis"][0]["targets"] == ["10.0.0.20:9121"]
    assert jobs["sentinel"][0]["targets"] == ["10.0.0.20:9355"]


def test_an_agent_on_loopback_is_an_error_naming_the_variable_and_the_host():
    result = monitoring_targets(GROUPS, fleet(**{"lb-1": facts("10.0.0.9", ha_agent_listen="127.0.0.1:9464")}), PORTS)
    assert len(result["errors"]) == 1
    assert result["errors"][0].startswith("ha_agent_listen on lb-1: 127.0.0.1:9464 listens on loopback")


def test_a_host_without_an_agent_has_no_agent_target():
    result = monitoring_targets(GROUPS, fleet(**{"lb-1": facts("10.0.0.9", inferops_ha_agent_enabled=False)}), PORTS)
    assert result["errors"] == []
    assert [entry["labels"]["node"] for entry in result["jobs"]["inferops_agent"]] == ["gpu-1"]


def test_a_run_limited_to_part_of_the_fleet_renders_no_targets():
    # --limit redis_nodes: the GPU node and the LB have no facts in this run.
    limited = fleet(**{"gpu-1": {}, "lb-1": {}})
    result = monitoring_targets(GROUPS, limited, PORTS)
    assert result == {"errors": [], "jobs": {}, "left_out": ["gpu-1", "lb-1"]}


def test_a_gpu_node_whose_plan_this_run_did_not_make_is_left_out():
    result = monitoring_targets(GROUPS, fleet(**{"gpu-1": facts("10.0.0.1")}), PORTS)
    assert result["left_out"] == ["gpu-1"] and result["jobs"] == {}
