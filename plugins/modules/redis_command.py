#!/usr/bin/python
# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: redis_command
short_description: Run commands on a Redis server or Sentinel as an ACL user, with the password kept off every command line
description:
  - Connects to one Redis server or Sentinel, authenticates as O(user) with O(password) (sent in C(AUTH) over the socket),
    sends O(commands) in one pipeline and returns the replies.
  - Unlike C(redis-cli) with C(REDISCLI_AUTH) in a task's C(environment), the password is never on the remote shell's
    command line, in the process list or in Ansible's output at any verbosity (the option is C(no_log)).
  - The client is C(plugins/module_utils/_redis.py), the same one the HA agent uses; it needs no Python package on
    the host.
  - The module does not decide whether a command changed anything; the task says so with C(changed_when). With
    O(read_only=true) it also runs in check mode.
author:
  - inferops engineers (@inferops)
version_added: 0.2.0
options:
  host:
    description: Address of the server.
    type: str
    default: 127.0.0.1
  port:
    description: Port of the server (6379 for Redis, 26379 for Sentinel by default).
    type: int
    default: 6379
  user:
    description: ACL user. Empty authenticates as the C(default) user (with O(password)) or not at all.
    type: str
    default: ""
  password:
    description: Password of O(user); empty sends no C(AUTH).
    type: str
    default: ""
  commands:
    description: The commands, each a list of its words, for example V([[ROLE], [CONFIG, REWRITE]]).
    type: list
    elements: list
    required: true
  read_only:
    description: The commands only read; run them in check mode too.
    type: bool
    default: false
  fail_on_error_reply:
    description: Fail when any command gets an error reply (C(-ERR), C(-NOPERM), ...). When false, error replies are returned.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the connection and for each answer.
    type: float
    default: 5.0
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: partial
    details: Runs only with O(read_only=true); otherwise reports that it would send the commands.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
"""

EXAMPLES = r"""
- name: Ask the local Redis for its replication role
  inferops.sglang.redis_command:
    port: 6379
    user: inferops-admin
    password: "{{ redis_password }}"
    commands: [[ROLE]]
    read_only: true
  register: role
  no_log: true

- name: Make this Redis a replica of the master
  inferops.sglang.redis_command:
    user: inferops-admin
    password: "{{ redis_password }}"
    commands:
      - [REPLICAOF, 10.0.0.31, "6379"]
      - [CONFIG, REWRITE]
  changed_when: true
"""

RETURN = r"""
replies:
  description: One reply per command, in order. Error replies are strings starting with their code (C(NOPERM ...)).
  returned: always
  type: list
  elements: raw
errors:
  description: The error replies, each as C(<command> - <reply>).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    RedisClient,
    RedisError,
    RedisReplyError,
)


def main():
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "default": "127.0.0.1"},
            "port": {"type": "int", "default": 6379},
            "user": {"type": "str", "default": ""},
            "password": {"type": "str", "default": "", "no_log": True},
            "commands": {"type": "list", "elements": "list", "required": True},
            "read_only": {"type": "bool", "default": False},
            "fail_on_error_reply": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 5.0},
        },
        supports_check_mode=True,
    )
    params = module.params
    commands = [[str(word) for word in command] for command in params["commands"]]
    if not commands or any(not command for command in commands):
        module.fail_json(msg="commands: every command needs at least one word")
    if module.check_mode and not params["read_only"]:
        module.exit_json(changed=False, replies=[], errors=[],
                         msg="check mode: would send %s" % ", ".join(command[0] for command in commands))
    client = RedisClient(params["host"], params["port"], username=params["user"] or None,
                         password=params["password"] or None, timeout=params["timeout"])
    try:
        replies = client.pipeline(commands)
    except RedisError as exc:
        module.fail_json(msg=str(exc), replies=[], errors=[])
    finally:
        client.close()
    errors = ["%s - %s" % (" ".join(command[:2]), reply) for command, reply in zip(commands, replies)
              if isinstance(reply, RedisReplyError)]
    shown = [str(reply) if isinstance(reply, RedisReplyError) else reply for reply in replies]
    if errors and params["fail_on_error_reply"]:
        module.fail_json(msg="; ".join(errors), replies=shown, errors=errors)
    module.exit_json(changed=False, replies=shown, errors=errors)


if __name__ == "__main__":
    main()
