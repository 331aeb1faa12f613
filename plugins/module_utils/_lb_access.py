# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Who may reach what through the load balancer: API keys, the routes each key opens, limits.

The ``nginx_lb`` role renders its nginx maps and locations from what ``check_access`` returns,
and refuses the run with every error it lists (each names the variable the user wrote). Pure
functions, no Ansible imports; the values of keys never appear in a message.

Model: a client key opens the client routes of every pool; the admin key (optional) opens the
admin routes and nothing else; any other path is answered by nginx itself, so it never
reaches an instance.
"""

from __future__ import annotations

import re

KEY_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{16,}$")
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RATE_RE = re.compile(r"^[1-9][0-9]*r/[sm]$")
ROUTE_PATH_RE = re.compile(r"^/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*/?$")
# The access log and the admin map call the admin key by this name; no client key may use it.
ADMIN_NAME = "admin"
ROUTE_KEYS = frozenset(("path", "prefix"))
# Paths the load balancer answers itself.
RESERVED_PREFIXES = ("/lb/", "/pools/")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(value):
    """Inventory values typed as strings ("64") count as integers; anything else does not."""
    if _is_int(value):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _routes(routes, var_name, errors):
    if not isinstance(routes, list):
        errors.append("%s: must be a list of {path, prefix}" % var_name)
        return []
    result = []
    for index, route in enumerate(routes):
        field = "%s[%d]" % (var_name, index)
        if isinstance(route, str):
            route = {"path": route}
        if not isinstance(route, dict):
            errors.append("%s: must be a dictionary with path (and prefix)" % field)
            continue
        for key in sorted(set(route) - ROUTE_KEYS, key=str):
            errors.append("%s.%s: unknown key (known keys: path, prefix)" % (field, key))
        path = route.get("path")
        prefix = route.get("prefix", False)
        if not isinstance(path, str) or not ROUTE_PATH_RE.match(path):
            errors.append("%s.path: %r must be an absolute path of [A-Za-z0-9._~-] segments" % (field, path))
            continue
        if not isinstance(prefix, bool):
            errors.append("%s.prefix: must be true or false, got %r" % (field, prefix))
            continue
        if prefix != path.endswith("/"):
            why = "must end with / when prefix is true" if prefix else "ends with /: set prefix: true to allow the paths below it"
            errors.append("%s.path: %r %s" % (field, path, why))
            continue
        if ".." in path.split("/") or "." in path.split("/"):
            errors.append("%s.path: %r has a dot segment" % (field, path))
            continue
        if path.startswith(RESERVED_PREFIXES):
            errors.append("%s.path: %r is under %s, which the load balancer answers itself" % (
                field, path, " or ".join(RESERVED_PREFIXES)))
            continue
        result.append({"path": path, "prefix": prefix, "field": field})
    return result


def _overlaps(first, second):
    """Whether two routes can match the same request path."""
    if first["path"] == second["path"]:
        return True
    for outer, inner in ((first, second), (second, first)):
        if outer["prefix"] and inner["path"].startswith(outer["path"]):
            return True
    return False


def _keys(api_keys, defaults, errors):
    if not isinstance(api_keys, list):
        errors.append("nginx_lb_api_keys: must be a list of {name, key, rate, burst, max_concurrent}")
        return []
    result = []
    names = {}
    values = {}
    for index, entry in enumerate(api_keys):
        field = "nginx_lb_api_keys[%d]" % index
        if not isinstance(entry, dict):
            errors.append("%s: must be a dictionary with name and key" % field)
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not KEY_NAME_RE.match(name):
            errors.append("%s.name: must match [A-Za-z0-9_.-]{1,64}" % field)
        elif name.lower() == ADMIN_NAME:
            errors.append("%s.name: '%s' is reserved for nginx_lb_admin_api_key" % (field, name))
        elif name.lower() in names:
            errors.append("%s.name: '%s' is already used by %s (names are compared without case)" % (
                field, name, names[name.lower()]))
        else:
            names[name.lower()] = field
        key = entry.get("key")
        if not isinstance(key, str) or not KEY_RE.match(key):
            errors.append("%s.key: must be at least 16 characters of [A-Za-z0-9._~+/=-] (value not shown)" % field)
        elif key in values:
            errors.append("%s.key: the same key as %s (value not shown)" % (field, values[key]))
        else:
            values[key] = field
        rate = str(entry.get("rate", defaults["rate"]))
        if not RATE_RE.match(rate):
            errors.append("%s.rate: %r must look like 20r/s or 600r/m" % (field, rate))
        burst = _as_int(entry.get("burst", defaults["burst"]))
        if burst is None or burst < 0:
            errors.append("%s.burst: must be an integer >= 0, got %r" % (field, entry.get("burst")))
        concurrent = _as_int(entry.get("max_concurrent", defaults["max_concurrent"]))
        if concurrent is None or concurrent < 1:
            errors.append("%s.max_concurrent: must be an integer >= 1, got %r" % (
                field, entry.get("max_concurrent", defaults["max_concurrent"])))
        unknown = sorted(set(entry) - {"name", "key", "rate", "burst", "max_concurrent"}, key=str)
        for extra in unknown:
            errors.append("%s.%s: unknown key (known keys: name, key, rate, burst, max_concurrent)" % (field, extra))
        result.append({"name": name, "rate": rate, "burst": burst, "max_concurrent": concurrent})
    return result, values


def check_access(api_keys, client_routes, admin_routes=None, admin_api_key="", backend_api_key="",
                 backend_admin_api_key="", auth_enabled=True, default_rate="20r/s", default_burst=40,
                 default_max_concurrent=64, anonymous_rate="5r/s", health_rate="10r/s"):
    """Check the access settings as a whole.

    Returns ``{"errors": [...], "keys": [...], "client_routes": [...], "admin_routes": [...],
    "admin_enabled": bool, "admin_name": "admin"}``; the lists hold normalized entries (key names, rates, bursts and
    concurrency caps, never key values) and are empty when there are errors.
    """
    errors = []
    defaults = {"rate": default_rate, "burst": default_burst, "max_concurrent": default_max_concurrent}
    keys, values = _keys(api_keys, defaults, errors)
    if auth_enabled and isinstance(api_keys, list) and not api_keys:
        errors.append("nginx_lb_api_keys: empty while nginx_lb_auth_enabled is true")
    for var, value in (("nginx_lb_anonymous_rate", anonymous_rate), ("nginx_lb_health_rate", health_rate)):
        if not RATE_RE.match(str(value)):
            errors.append("%s: %r must look like 5r/s or 300r/m" % (var, value))
    for var, value in (("nginx_lb_backend_api_key", backend_api_key),
                       ("nginx_lb_backend_admin_api_key", backend_admin_api_key)):
        if value and (not isinstance(value, str) or not re.match(r"^[A-Za-z0-9._~+/=-]+$", value)):
            errors.append("%s: only [A-Za-z0-9._~+/=-] allowed (value not shown)" % var)
    admin_enabled = bool(admin_api_key)
    if admin_enabled:
        if not isinstance(admin_api_key, str) or not KEY_RE.match(admin_api_key):
            errors.append("nginx_lb_admin_api_key: must be at least 16 characters of [A-Za-z0-9._~+/=-] "
                          "(value not shown)")
        elif admin_api_key in values:
            errors.append("nginx_lb_admin_api_key: the same as %s; the admin key must open operator routes only "
                          "(value not shown)" % values[admin_api_key])
    client = _routes(client_routes, "nginx_lb_client_routes", errors)
    admin = _routes(admin_routes or [], "nginx_lb_admin_routes", errors) if admin_enabled else []
    every = client + admin
    for index, route in enumerate(every):
        for other in every[:index]:
            if _overlaps(route, other):
                errors.append("%s.path: %r overlaps %s (%r); a path belongs to one list once" % (
                    route["field"], route["path"], other["field"], other["path"]))
    if errors:
        return {"errors": errors, "keys": [], "client_routes": [], "admin_routes": [], "admin_enabled": admin_enabled,
                "admin_name": ADMIN_NAME}
    strip = [{"path": r["path"], "prefix": r["prefix"]} for r in every]
    return {"errors": [], "keys": keys, "client_routes": strip[:len(client)], "admin_routes": strip[len(client):],
            "admin_enabled": admin_enabled, "admin_name": ADMIN_NAME}
