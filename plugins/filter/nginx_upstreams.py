# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: nginx_upstreams
short_description: Validate load balancer pools and render their nginx upstream include files
description:
  - Takes the pool list of the P(inferops.sglang.nginx_lb#role) role (C(nginx_lb_pools)) and returns the problems found,
    the pools with every default filled in, and the text of one upstream include file per pool.
  - >-
    It never raises on bad pools; it returns the problems in RV(_value.errors), each naming the field, for example
    C(nginx_lb_pools[0].servers[2].state: 'backup' cannot be used with balance 'hash' ...), so a role can assert on them
    before it changes anything.
  - Server states are V(primary), V(backup), V(down) and V(draining). nginx 1.22 has no C(drain) flag, so a draining
    server is rendered as C(down); requests already in flight finish in the old worker processes after the reload.
  - The logic lives in C(plugins/module_utils/_nginx_upstreams.py), which the HA agent uses to render the same files.
author:
  - inferops engineers (@inferops)
version_added: 0.1.0
positional: _input
options:
  _input:
    description:
      - The pools. Each is a dictionary with C(name) (required, C([a-z][a-z0-9_]*)), C(servers) (required list, may be
        empty), C(balance) (V(least_conn) or V(hash), default V(least_conn)), C(hash_header) (default V(X-Session-Id),
        the request header a V(hash) pool balances on consistently), C(max_fails) (default 2), C(fail_timeout) (seconds,
        default 10), C(keepalive) (idle upstream connections per worker, default 32, 0 disables), C(keepalive_timeout)
        (seconds, default 4, keep it below the backend's own keep-alive of 5 s), C(keepalive_requests) (default 1000),
        C(zone_size) (default V(64k)) and C(health_path) (backend health path, default V(/health)).
      - Each server is a dictionary with C(address) (required, C(host:port) or C([ipv6]:port)), C(state) (default
        V(primary)), C(weight) (default 1) and C(max_conns) (default 0, unlimited).
    type: list
    elements: dict
    required: true
  var_name:
    description: Variable name used at the start of error messages.
    type: str
    default: nginx_lb_pools
  header:
    description: Comment lines put at the top of every file (without C(#)), for example the C(ansible_managed) text.
    type: list
    elements: str
    default: []
  dest_dir:
    description: The directory of the files; when given, RV(_value.entries) lists them with their full paths.
    type: str
"""

EXAMPLES = r"""
- name: Fail before changing anything when a pool is wrong
  ansible.builtin.assert:
    that: (nginx_lb_pools | inferops.sglang.nginx_upstreams).errors | length == 0
    fail_msg: "{{ (nginx_lb_pools | inferops.sglang.nginx_upstreams).errors | join('; ') }}"

- name: Write the upstream files
  ansible.builtin.copy:
    dest: "/etc/nginx/inferops/{{ item.key }}"
    content: "{{ item.value }}"
    mode: "0644"
  loop: "{{ (nginx_lb_pools | inferops.sglang.nginx_upstreams(header=['Managed by Ansible'])).files | dict2items }}"
  vars:
    nginx_lb_pools:
      - name: chat
        balance: least_conn
        servers:
          - {address: "10.0.0.11:30001"}
          - {address: "10.0.0.11:30002", state: draining}
          - {address: "10.0.0.12:30001", state: backup}
"""

RETURN = r"""
_value:
  description: The result.
  type: dict
  contains:
    errors:
      description: Every problem found, each naming its field. Empty when the pools are valid.
      type: list
      elements: str
    pools:
      description: The pools with defaults filled in, plus C(upstream) (the nginx upstream name). Empty when there are errors.
      type: list
      elements: dict
    files:
      description: File name (C(upstream-<pool>.conf)) to file text. Empty when there are errors.
      type: dict
    entries:
      description: With O(dest_dir), one C(path) and C(content) per file, in pool order (the form P(inferops.sglang.nginx_config#module) takes).
      type: list
      elements: dict
"""

from ansible_collections.inferops.sglang.plugins.module_utils._nginx_upstreams import (
    PoolConfigError,
    normalize_pools,
    render_upstream,
    upstream_filename,
    upstream_name,
)


def nginx_upstreams(pools, var_name="nginx_lb_pools", header=None, dest_dir=None):
    try:
        normalized = normalize_pools(pools, var_name)
    except PoolConfigError as exc:
        return {"errors": exc.errors, "pools": [], "files": {}, "entries": []}
    files = {upstream_filename(pool["name"]): render_upstream(pool, header) for pool in normalized}
    for pool in normalized:
        pool["upstream"] = upstream_name(pool["name"])
    entries = [{"path": "%s/%s" % (dest_dir.rstrip("/"), name), "content": text} for name, text in files.items()] \
        if dest_dir else []
    return {"errors": [], "pools": normalized, "files": files, "entries": entries}


class FilterModule:
    def filters(self):
        return {"nginx_upstreams": nginx_upstreams}
