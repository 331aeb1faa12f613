# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A small Redis client (RESP2 over TCP) and the Sentinel rules for finding the master.

One implementation for every Redis conversation of the collection: the ``redis_command``
module (the ``redis`` role), the ``sglang_ha`` module and the HA agent. No Ansible imports and
no third-party package, so the same file runs inside a module on any host and in the agent.

Passwords are sent in ``AUTH`` over the socket, never on a command line or in an environment,
and never appear in an exception message.

Master discovery follows the Sentinel client protocol (research/ha.md section 2.2): ask the
Sentinels in turn with a short timeout for ``SENTINEL get-master-addr-by-name``, then check with
``ROLE`` that the address really is a master, and start over on every reconnect.
"""

from __future__ import annotations

import hashlib
import re
import socket

from ansible_collections.inferops.sglang.plugins.module_utils._address import format_address, parse_address


class RedisError(Exception):
    """Base class."""


class RedisConnectionError(RedisError):
    """No answer: refused, reset, timed out, or a protocol error (the connection is closed)."""


class RedisReplyError(RedisError):
    """An error reply (``-ERR ...``, ``-NOPERM ...``, ``-READONLY ...``): the server answered."""

    @property
    def code(self):
        return str(self).split(" ", 1)[0]


class MasterNotFoundError(RedisError):
    """No Sentinel named a master that answers ROLE as master."""


def _encode(arg):
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, bool):
        return b"1" if arg else b"0"
    if isinstance(arg, (int, float)):
        return repr(arg).encode()
    return str(arg).encode("utf-8")


def pack_command(args):
    """RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _encode(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RedisClient:
    """One connection. Not thread-safe; reconnects lazily after a connection error.

    Replies: simple strings and bulk strings as ``str`` (UTF-8, ``None`` for nil), integers as
    ``int``, arrays as ``list``. Error replies raise RedisReplyError (``execute``) or are
    returned as RedisReplyError objects (``pipeline``).
    """

    def __init__(self, host="127.0.0.1", port=6379, username=None, password=None, timeout=1.0,
                 connect_timeout=None, client_name=None):
        self.host = host
        self.port = int(port)
        self.username = username
        self._password = password
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout if connect_timeout is not None else timeout)
        self.client_name = client_name
        self._sock = None
        self._buf = b""

    def __repr__(self):
        return "RedisClient(%s, user=%s)" % (format_address(self.host, self.port), self.username)

    @property
    def address(self):
        return format_address(self.host, self.port)

    def set_timeout(self, timeout):
        """Change the answer timeout (a blocking command such as WAIT needs more than usual)."""
        self.timeout = float(timeout)
        if self._sock is not None:
            self._sock.settimeout(self.timeout)

    # ---- connection -------------------------------------------------------------------
    def connect(self):
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise RedisConnectionError("cannot connect to %s: %s" % (self.address, exc.strerror or exc))
        sock.settimeout(self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buf = b""
        try:
            if self._password:
                auth = ["AUTH", self.username, self._password] if self.username else ["AUTH", self._password]
                reply = self._roundtrip([auth])[0]
                if isinstance(reply, RedisReplyError):
                    # The reply names no secret; say which user was refused.
                    raise RedisReplyError("%s (as user %s on %s)" % (reply, self.username or "default", self.address))
            if self.client_name:
                self._roundtrip([["CLIENT", "SETNAME", self.client_name]])
        except RedisError:
            self.close()
            raise

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buf = b""

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- protocol ---------------------------------------------------------------------
    def _receive(self, at_least=65536):
        try:
            chunk = self._sock.recv(max(65536, at_least))
        except socket.timeout:
            raise RedisConnectionError("%s did not answer within %gs" % (self.address, self.timeout))
        except OSError as exc:
            raise RedisConnectionError("connection to %s failed: %s" % (self.address, exc.strerror or exc))
        if not chunk:
            raise RedisConnectionError("%s closed the connection" % self.address)
        self._buf += chunk

    def _read_line(self):
        while b"\r\n" not in self._buf:
            self._receive()
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _read_exact(self, size):
        while len(self._buf) < size + 2:
            self._receive(size + 2 - len(self._buf))
        data, self._buf = self._buf[:size], self._buf[size + 2:]
        return data

    def _read_reply(self):
        line = self._read_line()
        if not line:
            raise RedisConnectionError("empty reply line from %s" % self.address)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RedisReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._read_exact(size).decode("utf-8", "replace")
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [self._read_reply() for dummy in range(count)]
        raise RedisConnectionError("protocol error from %s: %r" % (self.address, line[:40]))

    def _roundtrip(self, commands):
        payload = b"".join(pack_command(cmd) for cmd in commands)
        try:
            self._sock.sendall(payload)
        except OSError as exc:
            raise RedisConnectionError("sending to %s failed: %s" % (self.address, exc.strerror or exc))
        return [self._read_reply() for dummy in commands]

    # ---- public -----------------------------------------------------------------------
    def pipeline(self, commands):
        """Send every command at once; return the replies (error replies as objects, in place)."""
        self.connect()
        try:
            return self._roundtrip([list(cmd) for cmd in commands])
        except RedisConnectionError:
            self.close()
            raise

    def execute(self, *args):
        """One command; raises RedisReplyError for an error reply."""
        reply = self.pipeline([args])[0]
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply


def role(client):
    """``ROLE`` as a dict: ``{"role": "master"}`` or ``{"role": "slave", "master": "h:p", "state": ...}``."""
    reply = client.execute("ROLE")
    kind = reply[0]
    if kind == "master":
        return {"role": "master", "offset": reply[1]}
    if kind == "slave":
        return {"role": "slave", "master": format_address(reply[1], reply[2]), "state": reply[3], "offset": reply[4]}
    return {"role": kind}


def ask_sentinels(sentinels, master_name, username=None, password=None, timeout=0.5):
    """Each Sentinel's answer to ``get-master-addr-by-name``, in order: a list of dicts with
    ``sentinel``, and ``master`` (``host:port``) or ``error``."""
    answers = []
    for host, port in sentinels:
        client = RedisClient(host, port, username=username, password=password, timeout=timeout)
        try:
            reply = client.execute("SENTINEL", "get-master-addr-by-name", master_name)
            if reply:
                answers.append({"sentinel": client.address, "master": format_address(reply[0], reply[1])})
            else:
                answers.append({"sentinel": client.address, "error": "does not know %s" % master_name})
        except RedisError as exc:
            answers.append({"sentinel": client.address, "error": str(exc)})
        finally:
            client.close()
    return answers


def discover_master(sentinels, master_name, sentinel_username=None, sentinel_password=None,
                    username=None, password=None, timeout=0.5):
    """The Sentinel client protocol: the first Sentinel that names a master whose ``ROLE`` is
    master wins. Returns ``(host, port)``; raises MasterNotFoundError saying what each answered."""
    tried = []
    for answer in ask_sentinels(sentinels, master_name, sentinel_username, sentinel_password, timeout):
        if "error" in answer:
            tried.append("%s: %s" % (answer["sentinel"], answer["error"]))
            continue
        host, port = parse_address(answer["master"])
        client = RedisClient(host, port, username=username, password=password, timeout=timeout)
        try:
            found = role(client)["role"]
        except RedisError as exc:
            tried.append("%s named %s, which failed: %s" % (answer["sentinel"], answer["master"], exc))
            continue
        finally:
            client.close()
        if found == "master":
            return host, port
        tried.append("%s named %s, which is a %s" % (answer["sentinel"], answer["master"], found))
    raise MasterNotFoundError("no master for %s: %s" % (master_name, "; ".join(tried) or "no Sentinel given"))


def current_master(nodes, bootstrap_host):
    """Which inventory host is the Redis master now (the ``redis`` role's decision).

    ``nodes``: one dict per inventory host with ``host`` (inventory name), ``address``
    (``host:port`` others reach it at), ``sentinel_master`` (what its local Sentinel names,
    or None) and ``replica_of`` (the master its local Redis follows, or None).

    1. What the Sentinels report, the address most of them name: after a failover this is the
       promoted replica, and the role must follow it, never the inventory.
    2. Before any Sentinel monitors the set: the master the running replicas follow.
    3. Otherwise (bootstrap): ``bootstrap_host``.

    Returns ``{"host", "address", "source", "detail"}``; ``host`` is "" when the winning address
    is none of the inventory's (the role then stops rather than repoint replicas).
    """
    by_address = {node["address"]: node["host"] for node in nodes if node.get("address")}
    sentinel = [node["sentinel_master"] for node in nodes if node.get("sentinel_master")]
    replicas = [node["replica_of"] for node in nodes if node.get("replica_of")]
    answers, source = (sentinel, "sentinel") if sentinel else (replicas, "replicas")
    if answers:
        # Most votes; a tie goes to the answer seen first (inventory order).
        best = max(dict.fromkeys(answers), key=answers.count)
        return {"host": by_address.get(best, ""), "address": best, "source": source, "detail": ", ".join(answers)}
    address = next((node["address"] for node in nodes if node["host"] == bootstrap_host), "")
    return {"host": bootstrap_host, "address": address, "source": "inventory", "detail": ""}


# ---- ACL users -------------------------------------------------------------------------------
# Every client of Redis and Sentinel gets its own user with only what it needs; the default user
# is off. The names are defined here once: the redis role writes the ACL files from them, the
# agent and the modules log in with them.
ADMIN_USER = "inferops-admin"              # the redis role (REPLICAOF, CONFIG REWRITE, ROLE)
REPLICATION_USER = "inferops-replica"      # replicas syncing from the master
SENTINEL_USER = "inferops-sentinel"        # Sentinel on Redis, and Sentinels among themselves
SENTINEL_CLIENT_USER = "inferops-client"   # clients asking a Sentinel for the master
AGENT_USER = "inferops-agent"              # the HA agents and the sglang_ha module
EXPORTER_USER = "inferops-exporter"        # the Prometheus Redis exporter (monitoring role), on Redis and Sentinels

# What the agents run: their keys and channels only (prefix), no admin or dangerous command.
AGENT_COMMANDS = (
    "ping", "hello", "auth", "client|setname", "role", "time", "select", "multi", "exec", "discard",
    "get", "set", "del", "exists", "mget", "incr", "expire", "pexpire", "ttl", "pttl", "type",
    "hset", "hget", "hmget", "hgetall", "hdel", "hincrby", "sadd", "srem", "smembers",
    "zadd", "zrem", "zrange", "zrangebyscore", "xadd", "xrange", "xrevrange", "xlen", "xtrim",
    "eval", "evalsha", "script|load", "script|exists", "wait", "publish", "subscribe", "unsubscribe",
)
# Sentinel on Redis (the commands the Redis documentation lists for a Sentinel user).
SENTINEL_ON_REDIS_COMMANDS = (
    "multi", "slaveof", "ping", "exec", "subscribe", "config|rewrite", "role", "publish", "info",
    "client|setname", "client|kill", "script|kill",
)
# A Sentinel client: find the master, nothing else (no SENTINEL FAILOVER, REMOVE, SET, ...).
SENTINEL_CLIENT_COMMANDS = ("ping", "hello", "auth", "client|setname", "sentinel|get-master-addr-by-name")
REPLICATION_COMMANDS = ("psync", "replconf", "ping")
# The Redis exporter: server statistics, no key and no admin command.
EXPORTER_COMMANDS = (
    "ping", "hello", "auth", "client|setname", "info", "config|get", "slowlog|get", "slowlog|len",
    "latency|latest", "dbsize", "select", "role",
)
# The Redis exporter on a Sentinel: what it reports about the masters it watches.
EXPORTER_SENTINEL_COMMANDS = (
    "ping", "hello", "auth", "client|setname", "info", "sentinel|masters", "sentinel|master", "sentinel|slaves",
    "sentinel|replicas", "sentinel|sentinels", "sentinel|ckquorum",
)

_PASSWORD_RE_TEXT = r"^[A-Za-z0-9._~+/=-]{16,}$"


def _password_hash(password):
    return "#" + hashlib.sha256(password.encode("utf-8")).hexdigest()


def _commands(commands):
    return " ".join("+" + command for command in commands)


def redis_acl(passwords, key_prefix="inferops:", extra_users=None):
    """The ACL file of a Redis server: one line per user (passwords as SHA-256 hashes).

    ``passwords``: ``admin``, ``replication``, ``sentinel``, ``agent`` (each required), and
    ``exporter`` (optional: the monitoring user exists only with a password).
    ``extra_users``: site users, each ``{"name", "password", "rules"}`` (ACL rules as written).
    """
    lines = [
        "user default off resetkeys resetchannels -@all",
        "user %s on %s ~* &* +@all" % (ADMIN_USER, _password_hash(passwords["admin"])),
        "user %s on %s resetkeys resetchannels -@all %s" % (
            REPLICATION_USER, _password_hash(passwords["replication"]), _commands(REPLICATION_COMMANDS)),
        "user %s on %s resetkeys allchannels -@all %s" % (
            SENTINEL_USER, _password_hash(passwords["sentinel"]), _commands(SENTINEL_ON_REDIS_COMMANDS)),
        "user %s on %s resetkeys ~%s* resetchannels &%s* -@all %s" % (
            AGENT_USER, _password_hash(passwords["agent"]), key_prefix, key_prefix, _commands(AGENT_COMMANDS)),
    ]
    if passwords.get("exporter"):
        lines.append("user %s on %s resetkeys resetchannels -@all %s" % (
            EXPORTER_USER, _password_hash(passwords["exporter"]), _commands(EXPORTER_COMMANDS)))
    for user in extra_users or []:
        lines.append("user %s on %s %s" % (user["name"], _password_hash(user["password"]), user["rules"]))
    return "\n".join(lines) + "\n"


def sentinel_acl(passwords):
    """The ACL file of a Sentinel: ``sentinel`` (peers and the redis role), ``client`` and, with
    a password, ``exporter``."""
    lines = [
        "user default off resetchannels -@all",
        "user %s on %s ~* &* +@all" % (SENTINEL_USER, _password_hash(passwords["sentinel"])),
        "user %s on %s resetchannels -@all %s" % (
            SENTINEL_CLIENT_USER, _password_hash(passwords["client"]), _commands(SENTINEL_CLIENT_COMMANDS)),
    ]
    if passwords.get("exporter"):
        lines.append("user %s on %s resetchannels -@all %s" % (
            EXPORTER_USER, _password_hash(passwords["exporter"]), _commands(EXPORTER_SENTINEL_COMMANDS)))
    return "\n".join(lines) + "\n"


def acl_errors(passwords, extra_users=None, key_prefix="inferops:"):
    """Problems with the ACL settings, naming the redis role's variables (never a value)."""
    names = {"admin": "redis_password", "replication": "redis_replication_password",
             "sentinel": "redis_sentinel_password", "client": "redis_sentinel_client_password",
             "agent": "redis_agent_password"}
    errors = []
    pattern = re.compile(_PASSWORD_RE_TEXT)
    seen = {}
    if passwords.get("exporter"):
        names["exporter"] = "redis_exporter_password"
    for key, var in names.items():
        value = passwords.get(key)
        if not isinstance(value, str) or not pattern.match(value):
            errors.append("%s: must be at least 16 characters of [A-Za-z0-9._~+/=-] (value not shown)" % var)
        elif value in seen:
            errors.append("%s: the same as %s; every user gets its own password (value not shown)" % (var, seen[value]))
        else:
            seen[value] = var
    if not isinstance(key_prefix, str) or not re.match(r"^[A-Za-z0-9_.-]+:$", key_prefix):
        errors.append("redis_agent_key_prefix: %r must be letters, digits, _ . - ending with ':'" % (key_prefix,))
    reserved = {"default", ADMIN_USER, REPLICATION_USER, SENTINEL_USER, AGENT_USER, EXPORTER_USER}
    for index, user in enumerate(extra_users or []):
        field = "redis_extra_acl_users[%d]" % index
        if not isinstance(user, dict):
            errors.append("%s: must be a dictionary with name, password and rules" % field)
            continue
        name = user.get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name) or name in reserved:
            errors.append("%s.name: %r must be [A-Za-z0-9_.-]{1,64} and not one of the role's users (%s)" % (
                field, name, ", ".join(sorted(reserved))))
        if not isinstance(user.get("password"), str) or not pattern.match(user["password"]):
            errors.append("%s.password: must be at least 16 characters of [A-Za-z0-9._~+/=-] (value not shown)" % field)
        rules = user.get("rules")
        if not isinstance(rules, str) or not rules.strip() or any(char in rules for char in "\r\n#>"):
            errors.append("%s.rules: ACL rules on one line, without passwords (no '>' or '#')" % field)
    return errors
