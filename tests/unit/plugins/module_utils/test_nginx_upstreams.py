# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Unit tests for the nginx upstream renderer shared by the nginx_lb role and the HA agent."""

from __future__ import annotations

import os
import re
import sys

import pytest


def _collection_roots():
    # ansible-test puts the collection on sys.path itself; plain pytest run from
    # <root>/ansible_collections/inferops/sglang finds it through the logical working directory
    # (PWD keeps the symlinked path) or ANSIBLE_COLLECTIONS_PATH.
    roots = [p for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p]
    pwd = os.environ.get("PWD", "")
    parts = pwd.rstrip("/").split("/")
    if len(parts) > 3 and parts[-3] == "ansible_collections":
        roots.insert(0, "/".join(parts[:-3]))
    return roots


try:
    from ansible_collections.inferops.sglang.plugins.module_utils import (
        _nginx_upstreams as nu,
    )
except ImportError:
    sys.path[:0] = [root for root in _collection_roots() if root not in sys.path]
    from ansible_collections.inferops.sglang.plugins.module_utils import (
        _nginx_upstreams as nu,
    )


def pool(**kwargs):
    base = {"name": "chat", "servers": [{"address": "10.0.0.1:30000"}, {"address": "10.0.0.2:30000"}]}
    base.update(kwargs)
    return base


def server_lines(text):
    return [line.split("#")[0].strip() for line in text.splitlines() if line.strip().startswith("server ")]


# --- rendering -------------------------------------------------------------------------------

def test_least_conn_pool_renders_zone_servers_and_keepalive():
    text = nu.render_upstream(pool(max_fails=3, fail_timeout=7, keepalive=16, keepalive_timeout=3))
    assert "upstream inferops_pool_chat {" in text
    assert "    zone inferops_pool_chat 64k;" in text
    assert "    least_conn;" in text
    assert server_lines(text) == [
        "server 10.0.0.1:30000 max_fails=3 fail_timeout=7s;",
        "server 10.0.0.2:30000 max_fails=3 fail_timeout=7s;",
    ]
    assert "    keepalive 16;" in text
    assert "    keepalive_timeout 3s;" in text
    assert "    keepalive_requests 1000;" in text
    assert "hash " not in text


def test_keepalive_timeout_default_is_below_sglang_keepalive():
    text = nu.render_upstream(pool())
    seconds = int(re.search(r"keepalive_timeout (\d+)s;", text).group(1))
    assert seconds < 5


def test_keepalive_zero_renders_no_keepalive_directives():
    text = nu.render_upstream(pool(keepalive=0))
    assert "keepalive" not in text


@pytest.mark.parametrize(
    "state,expected",
    [
        ("primary", "server 10.0.0.9:1 max_fails=2 fail_timeout=10s;"),
        ("backup", "server 10.0.0.9:1 max_fails=2 fail_timeout=10s backup;"),
        ("down", "server 10.0.0.9:1 max_fails=2 fail_timeout=10s down;"),
        ("draining", "server 10.0.0.9:1 max_fails=2 fail_timeout=10s down;  # draining"),
    ],
)
def test_each_state_renders_its_nginx_flag(state, expected):
    text = nu.render_upstream(pool(servers=[{"address": "10.0.0.9:1", "state": state}]))
    assert server_lines(text) == [expected.split("  #")[0]]
    assert text.splitlines()[next(i for i, line in enumerate(text.splitlines()) if "10.0.0.9" in line)].strip() == expected


def test_weight_and_max_conns_are_rendered_only_when_not_default():
    text = nu.render_upstream(pool(servers=[
        {"address": "a.example:80", "weight": 3, "max_conns": 8},
        {"address": "b.example:80", "weight": 1, "max_conns": 0},
    ]))
    assert server_lines(text) == [
        "server a.example:80 weight=3 max_conns=8 max_fails=2 fail_timeout=10s;",
        "server b.example:80 max_fails=2 fail_timeout=10s;",
    ]


def test_hash_pool_balances_consistently_on_the_session_header_with_a_fallback_key():
    text = nu.render_upstream(pool(balance="hash", hash_header="X-Session-Id"))
    assert "    hash $inferops_pool_chat_hash_key consistent;" in text
    assert "least_conn" not in text
    # Requests without the header must not all land on one server.
    map_block = re.search(r"map \$http_x_session_id \$inferops_pool_chat_hash_key \{(.*?)\}", text, re.DOTALL)
    assert map_block is not None
    assert '""      $request_id;' in map_block.group(1)
    assert "default $http_x_session_id;" in map_block.group(1)
    # The map must be outside the upstream block (nginx only allows map at http level).
    assert text.index("map ") < text.index("upstream ")


def test_empty_pool_still_renders_valid_upstream_with_a_down_placeholder():
    text = nu.render_upstream(pool(servers=[]))
    assert server_lines(text) == ["server 127.0.0.1:9 down;"]


def test_all_down_pool_keeps_every_server_down():
    text = nu.render_upstream(pool(servers=[{"address": "10.0.0.1:1", "state": "down"},
                                            {"address": "10.0.0.2:1", "state": "draining"}]))
    assert all(line.endswith("down;") for line in server_lines(text))
    assert len(server_lines(text)) == 2


def test_header_lines_become_comments():
    text = nu.render_upstream(pool(), header=["Managed by Ansible", "", "second line"])
    assert text.splitlines()[:3] == ["# Managed by Ansible", "#", "# second line"]


def test_braces_balance_and_every_directive_ends_with_semicolon():
    text = nu.render_upstream(pool(balance="hash", servers=[{"address": "[2001:db8::1]:30000"}]))
    assert text.count("{") == text.count("}")
    for line in text.splitlines():
        stripped = line.split("#")[0].strip()
        if stripped and not stripped.endswith(("{", "}")):
            assert stripped.endswith(";"), line


def test_render_upstream_files_names_one_file_per_pool():
    files = nu.render_upstream_files([pool(), pool(name="embed")])
    assert sorted(files) == ["upstream-chat.conf", "upstream-embed.conf"]
    assert "upstream inferops_pool_embed {" in files["upstream-embed.conf"]


def test_rendering_is_deterministic():
    pools = [pool(balance="hash"), pool(name="b", servers=[])]
    assert nu.render_upstream_files(pools) == nu.render_upstream_files(pools)


def test_normalize_fills_defaults_and_keeps_input_untouched():
    original = pool()
    result = nu.normalize_pools([original])[0]
    assert result["balance"] == "least_conn"
    assert result["servers"][0] == {"address": "10.0.0.1:30000", "state": "primary", "weight": 1, "max_conns": 0,
                                    "node": None, "instance": None}
    assert result["mode"] == "active_active"
    assert "balance" not in original
    assert original["servers"][0] == {"address": "10.0.0.1:30000"}


def test_usable_servers_lists_primary_and_backup_only():
    p = pool(servers=[{"address": "a:1"}, {"address": "b:1", "state": "backup"},
                      {"address": "c:1", "state": "down"}, {"address": "d:1", "state": "draining"}])
    assert nu.usable_servers(p) == ["a:1", "b:1"]


# --- validation ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "pools,field,fragment",
    [
        ([pool(servers=[{"address": "a:1", "state": "standby"}])], "nginx_lb_pools[0].servers[0].state", "unknown state"),
        ([pool(balance="hash", servers=[{"address": "a:1"}, {"address": "b:1", "state": "backup"}])],
         "nginx_lb_pools[0].servers[1].state", "cannot be used with balance 'hash'"),
        ([pool(servers=[{"address": "a:1"}, {"address": "A:1"}])], "nginx_lb_pools[0].servers[1].address", "duplicate server"),
        ([pool(servers=[{"address": "a"}])], "nginx_lb_pools[0].servers[0].address", "is not 'host:port'"),
        ([pool(servers=[{"address": "a:0"}])], "nginx_lb_pools[0].servers[0].address", "port between 1 and 65535"),
        ([pool(servers=[{"address": "a:70000"}])], "nginx_lb_pools[0].servers[0].address", "port between 1 and 65535"),
        ([pool(servers=[{"address": "http://a:80"}])], "nginx_lb_pools[0].servers[0].address", ""),
        ([pool(servers=[{"address": "300.1.1.1:80"}])], "nginx_lb_pools[0].servers[0].address", "invalid IPv4"),
        ([pool(servers=[{"address": "::1:80"}])], "nginx_lb_pools[0].servers[0].address", "without brackets"),
        ([pool(servers=[{"address": "[zz::1]:80"}])], "nginx_lb_pools[0].servers[0].address", "invalid IPv6"),
        ([pool(servers=[{"address": "bad_host:80"}])], "nginx_lb_pools[0].servers[0].address", "invalid host name"),
        ([pool(servers=[{"address": "a:1; evil"}])], "nginx_lb_pools[0].servers[0].address", ""),
        ([pool(servers=[{"state": "primary"}])], "nginx_lb_pools[0].servers[0].address", "required"),
        ([pool(servers=[{"address": "a:1", "weight": 0}])], "nginx_lb_pools[0].servers[0].weight", ">= 1"),
        ([pool(servers=[{"address": "a:1", "weight": True}])], "nginx_lb_pools[0].servers[0].weight", ">= 1"),
        ([pool(servers=[{"address": "a:1", "max_conns": -1}])], "nginx_lb_pools[0].servers[0].max_conns", ">= 0"),
        ([pool(servers=[{"address": "a:1", "prio": 1}])], "nginx_lb_pools[0].servers[0].prio", "unknown key"),
        ([pool(servers=["a:1"])], "nginx_lb_pools[0].servers[0]", "must be a dictionary"),
        ([pool(balance="round_robin")], "nginx_lb_pools[0].balance", "unknown method"),
        ([pool(balance="hash", hash_header="X Session")], "nginx_lb_pools[0].hash_header", "not a valid HTTP header"),
        ([pool(name="Chat-1")], "nginx_lb_pools[0].name", "must match"),
        ([{"servers": []}], "nginx_lb_pools[0].name", "required"),
        ([{"name": "chat"}], "nginx_lb_pools[0].servers", "required"),
        ([pool(servers="a:1")], "nginx_lb_pools[0].servers", "must be a list"),
        ([pool(max_fails="2")], "nginx_lb_pools[0].max_fails", "integer"),
        ([pool(fail_timeout=0)], "nginx_lb_pools[0].fail_timeout", ">= 1"),
        ([pool(keepalive_timeout=0)], "nginx_lb_pools[0].keepalive_timeout", ">= 1"),
        ([pool(zone_size="lots")], "nginx_lb_pools[0].zone_size", "nginx size"),
        ([pool(health_path="ready")], "nginx_lb_pools[0].health_path", "absolute URL path"),
        ([pool(ballance="hash")], "nginx_lb_pools[0].ballance", "unknown key"),
        ([pool(), pool()], "nginx_lb_pools[1].name", "duplicate pool name"),
        (["chat"], "nginx_lb_pools[0]", "must be a dictionary"),
        ({"name": "chat"}, "nginx_lb_pools", "must be a list"),
    ],
)
def test_bad_input_is_reported_naming_the_field(pools, field, fragment):
    errors = nu.pool_errors(pools, "nginx_lb_pools")
    matching = [e for e in errors if e.startswith(field + ":")]
    assert matching, errors
    assert fragment in matching[0]


def test_every_error_is_reported_at_once():
    errors = nu.pool_errors([pool(balance="bogus", servers=[{"address": "a"}, {"address": "b:1", "state": "x"}])], "p")
    assert {e.split(":", maxsplit=1)[0] for e in errors} == {"p[0].balance", "p[0].servers[0].address", "p[0].servers[1].state"}


def test_valid_pools_have_no_errors():
    pools = [pool(), pool(name="s", balance="hash", servers=[{"address": "[::1]:1", "state": "down"}]),
             pool(name="e", servers=[]), pool(name="h", servers=[{"address": "gpu-1.example.com:30001", "state": "backup"}])]
    assert nu.pool_errors(pools) == []


def test_render_refuses_invalid_pool_with_all_errors():
    with pytest.raises(nu.PoolConfigError) as info:
        nu.render_upstream_files([pool(servers=[{"address": "a:1", "state": "gone"}, {"address": "a:1"}])], var_name="v")
    assert len(info.value.errors) == 2
    assert "v[0].servers[0].state" in str(info.value)
    assert "v[0].servers[1].address" in str(info.value)


def test_module_has_no_ansible_imports():
    with open(nu.__file__, encoding="utf-8") as handle:
        source = handle.read()
    assert not re.search(r"^\s*(from|import)\s+ansible\b", source, re.MULTILINE)
