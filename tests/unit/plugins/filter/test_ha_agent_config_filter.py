"""The agent's configuration as the roles build it: the load balancer pools come from the
nginx_upstreams filter (with what the role's templates add), and the agent must render them."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.sglang.plugins.filter.nginx_upstreams import nginx_upstreams
from ansible_collections.inferops.sglang.plugins.filter.sglang_container_label import sglang_container_label
from ansible_collections.inferops.sglang.plugins.module_utils import _ha as ha
from ansible_collections.inferops.sglang.plugins.module_utils._agent_config import agent_config
from ansible_collections.inferops.sglang.plugins.module_utils._nginx_upstreams import render_upstream_files

PATHS = {"sentinel_password_file": "/s", "password_file": "/p", "state_file": "/st", "event_log": "/ev",
         "listen": "127.0.0.1:9"}
POOLS = [{"name": "chat", "mode": "active_standby", "servers": [
    {"address": "10.0.0.1:30001", "node": "gpu-1", "instance": "sglang-chat-1"},
    {"address": "10.0.0.2:30001", "node": "gpu-2", "instance": "sglang-chat-1"}]}]


def test_the_lb_agent_renders_the_pools_the_role_validated():
    validated = nginx_upstreams(POOLS)
    assert validated["errors"] == [] and validated["pools"][0]["upstream"]
    built = agent_config("lb-1", {}, ["10.0.0.9:26379"], PATHS, lb={"pools": validated["pools"], "upstreams_dir": "/u"})
    assert built["errors"] == []
    pools = built["config"]["lb"]["pools"]
    records = {("chat", "gpu-1", "sglang-chat-1"): {"state": "healthy", "epoch": 3}}
    rendered, dummy, dummy, dummy = ha.render_pools(pools, records, {"chat": ("gpu-1", 3)})
    text = render_upstream_files(rendered)["upstream-chat.conf"]
    assert "server 10.0.0.1:30001" in text and "server 10.0.0.2:30001 max_fails=2 fail_timeout=10s backup" in text


def test_container_labels_come_from_one_place():
    assert sglang_container_label("pool") == "inferops.sglang.pool"
    with pytest.raises(AnsibleFilterError, match="'node' is no label"):
        sglang_container_label("node")
