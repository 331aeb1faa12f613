"""The VIP plan: priorities, peers, and every mistake named by its variable (issue 12)."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.sglang.plugins.module_utils._keepalived import plan_vrrp

HOSTS = [{"name": "lb-1", "address": "10.0.0.11"}, {"name": "lb-2", "address": "10.0.0.12"},
         {"name": "lb-3", "address": "10.0.0.13"}]


def test_every_host_is_planned_with_falling_priorities_and_the_others_as_peers():
    plan = plan_vrrp(HOSTS, "10.0.0.100", 24, 51, interface="eth0")
    assert plan["errors"] == [] and plan["vip"] == "10.0.0.100/24"
    assert [plan["hosts"][h["name"]]["priority"] for h in HOSTS] == [150, 140, 130]
    assert plan["hosts"]["lb-2"]["peers"] == ["10.0.0.11", "10.0.0.13"]
    assert plan["hosts"]["lb-2"]["src"] == "10.0.0.12"


@pytest.mark.parametrize("kwargs, message", [
    ({"hosts": HOSTS[:1]}, "keepalived_group: a virtual IP needs two load balancers or more, the group has 1 (lb-1)"),
    ({"vip": "10.0.0.300"}, "keepalived_vip: '10.0.0.300' is not an IP address"),
    ({"vip": "10.0.1.100"}, "keepalived_vip: 10.0.1.100/24 is not on lb-1's network (its address 10.0.0.11)"),
    ({"vip": "10.0.0.12"}, "keepalived_vip: 10.0.0.12 is lb-2's own address"),
    ({"vip_prefix": 33}, "keepalived_vip_prefix: 33 is not a prefix length"),
    ({"virtual_router_id": 256}, "keepalived_virtual_router_id: 256 must be 1-255"),
    ({"auth_pass": "123456789"}, "keepalived_auth_pass: VRRP PASS authentication takes 8 characters at most"),
    ({"interface": "eth0; rm -rf /"}, "keepalived_interface: 'eth0; rm -rf /' is not an interface name"),
    ({"hosts": [HOSTS[0], {"name": "lb-2", "address": ""}]}, "keepalived_unicast_src_ip on lb-2: '' is not an IP address"),
])
def test_mistakes_name_the_variable(kwargs, message):
    args = {"vip": "10.0.0.100", "vip_prefix": 24, "virtual_router_id": 51, "interface": "eth0"}
    args.update(kwargs)
    hosts = args.pop("hosts", HOSTS)
    plan = plan_vrrp(hosts, args["vip"], args["vip_prefix"], args["virtual_router_id"], interface=args["interface"],
                     auth_pass=args.get("auth_pass", ""))
    assert any(error.startswith(message) for error in plan["errors"]), plan["errors"]
    assert plan["hosts"] == {}
