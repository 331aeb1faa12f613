# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The load balancers' virtual IP: one VRRP instance shared by every LB host (keepalived).

``plan_vrrp`` turns the inventory (the LB hosts in order, their addresses, the VIP) into each
host's settings, and reports every mistake naming the variable the user wrote. The choices,
and why (research: keepalived 2.2.7's ``vrrp.c``):

- Every host starts as BACKUP with ``nopreempt``: the VIP stays where it is when a host with a
  higher priority comes back, so it moves once per failure, never back and forth.
- ``nopreempt`` ignores priority changes of the master, so the health check uses weight 0: a
  failing check puts the instance in FAULT, which sends a priority-0 advert and hands the VIP
  over within the peers' skew time (well under a second) instead of the 3 adverts of a dead host.
- Unicast between the peers (no multicast on most clouds and container networks).
- Priorities fall by 10 down the inventory order, so the first LB takes the VIP at the first
  election (at equal priority the higher address would win, which nobody expects).

No Ansible imports.
"""

from __future__ import annotations

import ipaddress
import re

PRIORITY_TOP = 150
PRIORITY_STEP = 10
AUTH_PASS_MAX = 8


def plan_vrrp(hosts, vip, vip_prefix, virtual_router_id, interface=None, auth_pass="", var_prefix="keepalived"):
    """``hosts``: ``[{"name", "address"}]`` in inventory order. Returns ``{"errors": [...],
    "hosts": {name: {"priority", "src", "peers", "router_id"}}}``."""
    errors = []
    v = var_prefix
    if len(hosts) < 2:
        errors.append("%s_group: a virtual IP needs two load balancers or more, the group has %d (%s)" % (
            v, len(hosts), ", ".join(h["name"] for h in hosts) or "none"))
    try:
        vip_address = ipaddress.ip_address(str(vip or ""))
    except ValueError:
        vip_address = None
        errors.append("%s_vip: %r is not an IP address" % (v, vip))
    try:
        prefix = int(vip_prefix)
        if vip_address is not None and not 0 < prefix <= vip_address.max_prefixlen:
            raise ValueError
    except (TypeError, ValueError):
        prefix = None
        errors.append("%s_vip_prefix: %r is not a prefix length for %s" % (v, vip_prefix, vip))
    try:
        router_id = int(virtual_router_id)
        if not 1 <= router_id <= 255:
            raise ValueError
    except (TypeError, ValueError):
        errors.append("%s_virtual_router_id: %r must be 1-255 (unique on the network segment)" % (v, virtual_router_id))
    if auth_pass and len(str(auth_pass)) > AUTH_PASS_MAX:
        errors.append("%s_auth_pass: VRRP PASS authentication takes %d characters at most" % (v, AUTH_PASS_MAX))
    if interface is not None and not re.match(r"^[A-Za-z0-9_.:@-]{1,15}$", str(interface)):
        errors.append("%s_interface: %r is not an interface name" % (v, interface))
    addresses = {}
    for host in hosts:
        try:
            addresses[host["name"]] = ipaddress.ip_address(str(host.get("address") or ""))
        except ValueError:
            errors.append("%s_unicast_src_ip on %s: %r is not an IP address" % (v, host["name"], host.get("address")))
    if vip_address is not None and prefix is not None:
        network = ipaddress.ip_interface("%s/%d" % (vip_address, prefix)).network
        for name, address in addresses.items():
            if address == vip_address:
                errors.append("%s_vip: %s is %s's own address; the VIP must be an unused one" % (v, vip_address, name))
            elif address.version != vip_address.version or address not in network:
                errors.append("%s_vip: %s/%d is not on %s's network (its address %s); VRRP peers share the VIP's "
                              "segment" % (v, vip_address, prefix, name, address))
    if errors:
        return {"errors": errors, "hosts": {}}
    planned = {}
    for index, host in enumerate(hosts):
        planned[host["name"]] = {
            "priority": max(PRIORITY_TOP - PRIORITY_STEP * index, 1),
            "src": str(addresses[host["name"]]),
            "peers": [str(addresses[other["name"]]) for other in hosts if other["name"] != host["name"]],
            "router_id": host["name"],
        }
    return {"errors": [], "hosts": planned, "vip": "%s/%d" % (vip_address, prefix)}
