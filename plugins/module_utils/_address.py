# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""How an address is written everywhere in the collection: ``host:port``, with brackets around
an IPv6 address (``[fd00::5]:30001``), as nginx, Redis and URLs want it. Defined once; the
instance plan, the load balancer pools, the Redis client and the agent read it from here."""

from __future__ import annotations

import ipaddress
import socket


def format_address(host, port):
    """``host:port``; an IPv6 address in brackets."""
    host = str(host)
    if host.startswith("["):
        return "%s:%s" % (host, port)
    return "[%s]:%s" % (host, port) if ":" in host else "%s:%s" % (host, port)


def parse_address(text, default_port=None):
    """``"10.0.0.1:6379"`` or ``"[::1]:6379"`` -> ``("10.0.0.1", 6379)``; raises ValueError."""
    text = str(text).strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
        if not sep:
            raise ValueError("%r: unclosed [" % text)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or ":" in host:
            host, port = text, ""
    if not port:
        if default_port is None:
            raise ValueError("%r has no port" % text)
        port = default_port
    return host, int(port)


def url_for(host, port, scheme="http"):
    return "%s://%s" % (scheme, format_address(host, port))


def is_ip(text):
    try:
        ipaddress.ip_address(str(text).strip("[]"))
        return True
    except ValueError:
        return False


def address_is_local(address):
    """Whether ``address`` is on one of this host's interfaces (a virtual IP held here): only a
    local address can be bound (with ``net.ipv4.ip_nonlocal_bind`` off, the default)."""
    family = socket.AF_INET6 if ":" in str(address) else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind((str(address), 0))
        return True
    except OSError:
        return False
    finally:
        probe.close()
