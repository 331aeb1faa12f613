# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: redis_acl_files
short_description: The ACL files of Redis and Sentinel, one least-privilege user per client
description:
  - Renders the ACL files the P(inferops.sglang.redis#role) role installs, from C(plugins/module_utils/_redis.py), where
    the user names and their commands are defined once (the HA agent logs in with the same names).
  - "Redis: C(default) off; C(inferops-admin) (the role); C(inferops-replica) (C(PSYNC), C(REPLCONF), C(PING));
    C(inferops-sentinel) (what Sentinel needs on a monitored server); C(inferops-agent) (the agents: their own key prefix
    and channels, no admin or dangerous command)."
  - "Sentinel: C(default) off; C(inferops-sentinel) (the Sentinels among themselves and the role);
    C(inferops-client) (may only ask for the master: C(SENTINEL get-master-addr-by-name))."
  - Passwords are stored as SHA-256 hashes. Errors name the role's variables and never show a value.
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
positional: _input
options:
  _input:
    description: The passwords, keyed C(admin), C(replication), C(sentinel), C(client), C(agent).
    type: dict
    required: true
  key_prefix:
    description: The agents' key and channel prefix.
    type: str
    default: "inferops:"
  extra_users:
    description: Site users for Redis, each C(name), C(password) and C(rules) (ACL rules without passwords).
    type: list
    elements: dict
    default: []
"""

EXAMPLES = r"""
- name: Write the Redis ACL file
  ansible.builtin.copy:
    content: "{{ acl.redis }}"
    dest: /etc/redis/inferops-redis.acl
    mode: "0640"
  vars:
    acl: "{{ {'admin': a, 'replication': r, 'sentinel': s, 'client': c, 'agent': g} | inferops.sglang.redis_acl_files }}"
  no_log: true
"""

RETURN = r"""
_value:
  description:
    - C(errors) (empty when valid), C(redis) and C(sentinel) (the file texts; empty when there are errors), and C(users)
      (the user names, keyed as the passwords are).
  type: dict
"""

from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    ADMIN_USER,
    AGENT_USER,
    REPLICATION_USER,
    SENTINEL_CLIENT_USER,
    SENTINEL_USER,
    acl_errors,
    redis_acl,
    sentinel_acl,
)
from ansible_collections.inferops.sglang.plugins.module_utils._redis import EXPORTER_USER

USERS = {"admin": ADMIN_USER, "replication": REPLICATION_USER, "sentinel": SENTINEL_USER,
         "client": SENTINEL_CLIENT_USER, "agent": AGENT_USER, "exporter": EXPORTER_USER}


def redis_acl_files(passwords, key_prefix="inferops:", extra_users=None):
    errors = acl_errors(passwords, extra_users, key_prefix)
    if errors:
        return {"errors": errors, "redis": "", "sentinel": "", "users": USERS}
    return {"errors": [], "redis": redis_acl(passwords, key_prefix, extra_users), "sentinel": sentinel_acl(passwords),
            "users": USERS}


class FilterModule:
    def filters(self):
        return {"redis_acl_files": redis_acl_files}
