# Copyright: inferops engineers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)
"""Render nginx upstream include files from pool data.

One data structure decides upstream membership: a list of pools, each with servers in a state
(primary, backup, down, draining).  The Ansible role renders it through a filter plugin and the
HA agent renders the very same text on its own, so this file must stay free of Ansible imports
(standard library only) and every function here is pure: data in, text or errors out.

Targets open-source nginx 1.22 (Debian 12), which has no active health checks and no ``drain``
server flag; see the notes on ``draining`` below.
"""

from __future__ import annotations

import ipaddress
import re

STATES = ("primary", "backup", "down", "draining")
BALANCE_METHODS = ("least_conn", "hash")

# Pool keys and their defaults.  Keys with a default of None are required or conditional.
POOL_DEFAULTS = {
    "name": None,
    "servers": None,
    "balance": "least_conn",
    "hash_header": "X-Session-Id",
    "max_fails": 2,
    "fail_timeout": 10,
    "keepalive": 32,
    # SGLang's uvicorn closes idle connections after 5 s: nginx must give up on an idle upstream
    # connection first, or it may write a request into a socket the server is closing.
    "keepalive_timeout": 4,
    "keepalive_requests": 1000,
    "zone_size": "64k",
    # Every SGLang 0.5.x serves it; the pools built from the GPU nodes' plans set the path their
    # release has (plugins/module_utils/_sglang_api.py).
    "health_path": "/health",
    # How the HA agents drive the pool (plugins/module_utils/_ha.py); not rendered by nginx.
    "mode": "active_active",
    "failback": "off",
    "failback_hold_down": 300,
}
SERVER_DEFAULTS = {
    "address": None,
    "state": "primary",
    "weight": 1,
    "max_conns": 0,
    # Which GPU node and instance the server is (the HA agents' records); not rendered.
    "node": None,
    "instance": None,
}
MODES = ("active_active", "active_standby")

_POOL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_HEADER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
_HOSTNAME_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_ZONE_SIZE_RE = re.compile(r"^[1-9][0-9]*[kKmM]?$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]*$")

# An upstream block without a single server is a syntax error, so an empty pool gets a
# placeholder that is marked down and therefore never contacted (the discard port).
PLACEHOLDER_SERVER = "127.0.0.1:9"


class PoolConfigError(ValueError):
    """Raised with every problem found; ``errors`` lists them, each naming its field."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def upstream_name(pool_name):
    """The nginx upstream (and zone) name used for a pool."""
    return f"inferops_pool_{pool_name}"


def hash_key_variable(pool_name):
    """The nginx variable a hash pool balances on (set by a map in the same file)."""
    return f"$inferops_pool_{pool_name}_hash_key"


def header_variable(header):
    """nginx's variable for a request header: lower case, dashes become underscores."""
    return "$http_" + header.lower().replace("-", "_")


def upstream_filename(pool_name):
    return f"upstream-{pool_name}.conf"


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_address(address, field):
    """Return an error string for a bad ``host:port``, or None."""
    if not isinstance(address, str) or not address:
        return f"{field}: must be a non-empty string 'host:port'"
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            return f"{field}: '{address}' is not 'host:port' (IPv6 addresses are written [addr]:port)"
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{field}: '{address}' has an invalid IPv6 address"
    else:
        host, sep, port = address.rpartition(":")
        if not sep or not host:
            return f"{field}: '{address}' is not 'host:port'"
        if ":" in host:
            return f"{field}: '{address}' looks like an IPv6 address without brackets"
        if re.match(r"^[0-9.]+$", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                return f"{field}: '{address}' has an invalid IPv4 address"
        elif len(host) > 253 or not all(_HOSTNAME_LABEL_RE.match(label) for label in host.split(".")):
            return f"{field}: '{address}' has an invalid host name"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"{field}: '{address}' needs a port between 1 and 65535"
    return None


def _check_int(value, field, minimum, errors):
    if not _is_int(value) or value < minimum:
        errors.append(f"{field}: must be an integer >= {minimum}, got {value!r}")


def _check_unknown(item, known, field, errors):
    for key in sorted(set(item) - set(known), key=str):
        errors.append("{}.{}: unknown key (known keys: {})".format(field, key, ", ".join(sorted(known))))


def _normalize_server(server, field, balance, errors):
    if not isinstance(server, dict):
        errors.append(f"{field}: must be a dictionary with at least 'address'")
        return None
    _check_unknown(server, SERVER_DEFAULTS, field, errors)
    if "address" not in server:
        errors.append(f"{field}.address: required")
        return None
    result = dict(SERVER_DEFAULTS)
    result.update(server)
    error = _check_address(result["address"], field + ".address")
    if error:
        errors.append(error)
    if result["state"] not in STATES:
        errors.append("{}.state: unknown state {!r} (expected one of {})".format(field, result["state"], ", ".join(STATES)))
    elif result["state"] == "backup" and balance == "hash":
        errors.append(f"{field}.state: 'backup' cannot be used with balance 'hash' (nginx rejects backup servers "
                      "in hash upstreams); use 'down' or balance 'least_conn'")
    _check_int(result["weight"], field + ".weight", 1, errors)
    _check_int(result["max_conns"], field + ".max_conns", 0, errors)
    return result


def _normalize_pool(pool, field, errors):
    if not isinstance(pool, dict):
        errors.append(f"{field}: must be a dictionary with 'name' and 'servers'")
        return None
    _check_unknown(pool, POOL_DEFAULTS, field, errors)
    result = dict(POOL_DEFAULTS)
    result.update(pool)
    name = result["name"]
    if name is None:
        errors.append(f"{field}.name: required")
    elif not isinstance(name, str) or not _POOL_NAME_RE.match(name):
        errors.append(f"{field}.name: {name!r} must match {_POOL_NAME_RE.pattern} (it becomes part of nginx names)")
    balance = result["balance"]
    if balance not in BALANCE_METHODS:
        errors.append("{}.balance: unknown method {!r} (expected one of {})".format(field, balance, ", ".join(BALANCE_METHODS)))
    if balance == "hash" and (not isinstance(result["hash_header"], str) or not _HEADER_RE.match(result["hash_header"])):
        errors.append("{}.hash_header: {!r} is not a valid HTTP header name".format(field, result["hash_header"]))
    if result["mode"] not in MODES:
        errors.append("{}.mode: unknown mode {!r} (expected one of {})".format(field, result["mode"], ", ".join(MODES)))
    elif result["mode"] == "active_standby" and balance != "least_conn":
        errors.append(f"{field}.mode: active_standby puts the standby's servers in 'backup', which nginx refuses with "
                      f"balance {balance!r}; use least_conn")
    if result["failback"] not in ("off", "auto"):
        errors.append("{}.failback: {!r} must be off or auto".format(field, result["failback"]))
    _check_int(result["failback_hold_down"], field + ".failback_hold_down", 0, errors)
    _check_int(result["max_fails"], field + ".max_fails", 0, errors)
    _check_int(result["fail_timeout"], field + ".fail_timeout", 1, errors)
    _check_int(result["keepalive"], field + ".keepalive", 0, errors)
    _check_int(result["keepalive_timeout"], field + ".keepalive_timeout", 1, errors)
    _check_int(result["keepalive_requests"], field + ".keepalive_requests", 1, errors)
    if not isinstance(result["zone_size"], str) or not _ZONE_SIZE_RE.match(result["zone_size"]):
        errors.append("{}.zone_size: {!r} is not an nginx size such as 64k or 1m".format(field, result["zone_size"]))
    if not isinstance(result["health_path"], str) or not _PATH_RE.match(result["health_path"]):
        errors.append("{}.health_path: {!r} must be an absolute URL path".format(field, result["health_path"]))
    servers = result["servers"]
    if servers is None:
        errors.append(f"{field}.servers: required (an empty list is allowed)")
        servers = []
    elif not isinstance(servers, list):
        errors.append(f"{field}.servers: must be a list")
        servers = []
    normalized = []
    seen = {}
    for index, server in enumerate(servers):
        server_field = f"{field}.servers[{index}]"
        item = _normalize_server(server, server_field, balance, errors)
        if item is None:
            continue
        address = item["address"]
        if isinstance(address, str):
            key = address.lower()
            if key in seen:
                errors.append(f"{server_field}.address: duplicate server '{address}' (also {seen[key]})")
            else:
                seen[key] = server_field
        normalized.append(item)
    result["servers"] = normalized
    return result


def pool_errors(pools, var_name="pools"):
    """Every problem in ``pools`` as a list of strings naming the field; empty when valid."""
    errors = []
    if not isinstance(pools, list):
        return [f"{var_name}: must be a list of pools"]
    names = {}
    for index, pool in enumerate(pools):
        field = f"{var_name}[{index}]"
        item = _normalize_pool(pool, field, errors)
        if item is None:
            continue
        name = item["name"]
        if isinstance(name, str):
            if name in names:
                errors.append(f"{field}.name: duplicate pool name '{name}' (also {names[name]})")
            else:
                names[name] = field
    return errors


def normalize_pools(pools, var_name="pools"):
    """Pools with every default filled in; raises PoolConfigError listing all problems."""
    errors = pool_errors(pools, var_name)
    if errors:
        raise PoolConfigError(errors)
    scratch = []
    return [_normalize_pool(pool, f"{var_name}[{index}]", scratch) for index, pool in enumerate(pools)]


def _server_line(server, pool):
    params = []
    state = server["state"]
    if server["weight"] != 1:
        params.append(f"weight={server['weight']}")
    if server["max_conns"]:
        params.append(f"max_conns={server['max_conns']}")
    params.append(f"max_fails={pool['max_fails']}")
    params.append(f"fail_timeout={pool['fail_timeout']}s")
    comment = ""
    if state == "backup":
        params.append("backup")
    elif state == "down":
        params.append("down")
    elif state == "draining":
        # nginx 1.22 has no 'drain'.  'down' stops new requests at the next reload while the old
        # worker processes finish the requests already in flight (bounded by
        # worker_shutdown_timeout), which is what draining needs.
        params.append("down")
        comment = "  # draining"
    return "    server {} {};{}".format(server["address"], " ".join(params), comment)


def render_upstream(pool, header=None):
    """The include file text for one pool (validated and normalized first).

    ``header`` is a list of comment lines to put at the top (without '#').
    """
    pool = normalize_pools([pool], "pool")[0]
    name = pool["name"]
    lines = [f"# {line}" if line else "#" for line in (header or [])]
    lines.append(f"# Upstream for pool '{name}': {len(pool['servers'])} server(s), rendered from pool data by "
                 "inferops.sglang _nginx_upstreams; edits by hand are overwritten.")
    if pool["balance"] == "hash":
        # Requests without the session header would all hash to the same server; give each of
        # them a unique key instead so they spread.
        lines += [
            "map {} {} {{".format(header_variable(pool["hash_header"]), hash_key_variable(name)),
            '    ""      $request_id;',
            "    default {};".format(header_variable(pool["hash_header"])),
            "}",
        ]
    lines.append(f"upstream {upstream_name(name)} {{")
    lines.append("    zone {} {};".format(upstream_name(name), pool["zone_size"]))
    if pool["balance"] == "hash":
        lines.append(f"    hash {hash_key_variable(name)} consistent;")
    else:
        lines.append("    least_conn;")
    if pool["servers"]:
        for server in pool["servers"]:
            lines.append(_server_line(server, pool))
    else:
        lines.append("    # no servers: a placeholder keeps the syntax valid; requests get 502 (no live upstreams)")
        lines.append(f"    server {PLACEHOLDER_SERVER} down;")
    if pool["keepalive"]:
        lines.append(f"    keepalive {pool['keepalive']};")
        lines.append(f"    keepalive_timeout {pool['keepalive_timeout']}s;")
        lines.append(f"    keepalive_requests {pool['keepalive_requests']};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_upstream_files(pools, header=None, var_name="pools"):
    """Map of file name -> text for every pool; raises PoolConfigError naming every bad field."""
    normalized = normalize_pools(pools, var_name)
    return {upstream_filename(pool["name"]): render_upstream(pool, header) for pool in normalized}


def usable_servers(pool):
    """Addresses that may receive new requests (primary or backup), for status reports."""
    pool = normalize_pools([pool], "pool")[0]
    return [server["address"] for server in pool["servers"] if server["state"] in ("primary", "backup")]
