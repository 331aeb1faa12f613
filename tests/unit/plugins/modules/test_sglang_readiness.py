"""sglang_readiness: bad input is refused before anything is asked, naming the option."""

from __future__ import annotations

import json

import pytest

from ansible_collections.inferops.sglang.plugins.modules import sglang_readiness


@pytest.fixture
def agent_config(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"redis": {"sentinels": [["127.0.0.1", 9]], "master_name": "inferops"},
                                "lb": {"pools": [{"name": "chat", "mode": "active_active", "servers": []}]}}))
    return str(path)


# args, the message starts with
REFUSALS = [
    ({"agent_config": "/nonexistent/agent.json", "checks": ["lb_health"]},
     "agent_config: /nonexistent/agent.json does not exist; run the module on a host with an HA agent"),
    ({"checks": ["isolation", "memory"]}, "nodes: empty; the isolation and memory check(s) need each GPU node's plan"),
    ({"nodes": [{"name": "gpu1", "plan": {}}], "checks": ["memory"]}, "nodes[0].plan: must be a list"),
    ({"structured_requests": 0}, "structured_requests: must be at least 1, got 0"),
    ({"structured_timeout": 0}, "structured_timeout: must be above 0, got 0"),
]


@pytest.mark.parametrize("args, message", REFUSALS)
def test_bad_input_is_refused_naming_the_option(run_module, agent_config, args, message):
    out = run_module(sglang_readiness.main, dict({"agent_config": agent_config}, **args))
    assert out["failed"] is True and out["msg"].startswith(message), out["msg"]


def test_a_load_balancer_without_pools_is_refused(run_module, tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"redis": {}, "lb": {"pools": []}}))
    out = run_module(sglang_readiness.main, {"agent_config": str(path), "checks": ["lb_health"]})
    assert out["failed"] is True and out["msg"] == "agent_config: %s lists no pools; run the module on a load balancer" % path


def test_an_unreachable_deployment_fails_the_checks_not_the_module(run_module, agent_config):
    out = run_module(sglang_readiness.main, {"agent_config": agent_config, "checks": ["lb_health", "sentinels"],
                                             "lb_url": "http://127.0.0.1:9", "api_key": "secret-key-0001"})
    assert "failed" not in out and out["changed"] is False and out["all_passed"] is False
    assert out["failed_checks"] == ["lb_health", "sentinels"]
    assert out["checks"][-1] == {"check": "failover_drill", "ok": True, "skipped": True,
                                 "evidence": "not asked (drill: true runs it)"}
    assert out["msg"] == "readiness: 0 of 2 checks passed (1 skipped); FAILED: lb_health, sentinels"


def test_an_agent_config_that_is_not_json_is_named(tmp_path, run_module):
    path = tmp_path / "agent.json"
    path.write_text("{not json")
    out = run_module(sglang_readiness.main, {"agent_config": str(path), "checks": ["lb_health"]})
    assert out["failed"] is True and out["msg"].startswith("agent_config: %s cannot be read as JSON: " % path)
