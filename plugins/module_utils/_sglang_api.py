# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What each SGLang release serves: the one place that maps a version to paths and flags.

The ``sglang`` role (container healthcheck, ``--admin-api-key``), the instance plan and the load
balancer pools made from it (``/lb/health``), the ``sglang_probe`` module and the HA agent all
read this file, so a path that a release does not have is never asked for by one layer while
another knows better. No Ansible imports; stdlib only.

Facts (research/sglang.md, sections 1.1, 1.2 and 1.6; the route list of the released 0.5.6
package in research/sglang-0.5.6-routes.txt):

- ``/health`` and ``/health_generate`` run a one-token generation on every 0.5.x (at least about
  1 s; 503 after ``SGLANG_HEALTH_CHECK_TIMEOUT``, 20 s by default). ``/health_generate`` always
  generates; 0.5.23 can turn ``/health`` into a flag check (``SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION``).
- ``/ready`` (a flag check: Up, not draining, not paused) and ``--admin-api-key`` exist from
  0.5.23 on; 0.5.6 has neither.
- ``/metrics`` (with ``--enable-metrics``) and ``/health*`` need no key on any 0.5.x; ``/ready``
  needs none where it exists.
"""

from __future__ import annotations

import re

# The releases the collection is tested against (the simulator presents both: --sim-version).
TESTED_VERSIONS = ("0.5.6", "0.5.23")
# The first release with /ready and --admin-api-key.
READY_SINCE = (0, 5, 23)
MIN_VERSION = (0, 5, 0)

_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[.-]?(?:post|rc|dev)\d*)?$")
_IMAGE_TAG_RE = re.compile(r":v(\d+\.\d+\.\d+)(?:[-.][A-Za-z0-9_.-]*)?$")


class ApiVersionError(ValueError):
    """A version the collection cannot map; the message starts with the variable name."""


def parse_version(version, var_name="sglang_version"):
    """``"0.5.6"`` or ``"v0.5.6"`` -> ``(0, 5, 6)``; raises ApiVersionError naming ``var_name``."""
    text = str(version).strip() if version is not None else ""
    match = _VERSION_RE.match(text)
    if not match:
        raise ApiVersionError("%s: %r is not an SGLang release such as 0.5.6" % (var_name, version))
    parsed = tuple(int(part) for part in match.groups())
    if parsed < MIN_VERSION or parsed[:2] != MIN_VERSION[:2]:
        raise ApiVersionError("%s: %s is not supported; the collection knows SGLang 0.5.x (tested: %s)" % (
            var_name, text, ", ".join(TESTED_VERSIONS)))
    return parsed


def image_tag_version(image):
    """The release a ``v``-tag names (``lmsysorg/sglang:v0.5.6-cu126`` -> ``"0.5.6"``), else None."""
    match = _IMAGE_TAG_RE.search(str(image or ""))
    return match.group(1) if match else None


def api_profile(version, var_name="sglang_version"):
    """The paths and flags of one release, as a dict (stable keys, documented below).

    ``deep_health_path``
        A real generation: what proves an instance can serve (the agent's deep probe, the
        container healthcheck).
    ``cheap_probe_path``
        Answered without the scheduler, cheap enough for every second: ``/ready`` where it
        exists (it also says paused or draining), else ``/metrics`` (the HTTP server is up; the
        role always starts instances with ``--enable-metrics``).
    ``cheap_probe_needs_key``
        Whether the cheap probe must carry the API key (no release needs it for these paths).
    ``lb_health_path``
        What ``/lb/health`` asks an instance: ``/ready`` where it exists (no generation), else
        ``/health`` (0.5.6 has nothing cheaper that needs no key).
    ``admin_api_key``
        Whether ``--admin-api-key`` exists.
    ``load_path``
        The JSON load endpoint (``/v1/loads`` replaced ``/get_load`` in 0.5.23).
    """
    parsed = parse_version(version, var_name)
    newer = parsed >= READY_SINCE
    return {
        "version": ".".join(str(part) for part in parsed),
        "deep_health_path": "/health_generate",
        "container_health_path": "/health",
        "cheap_probe_path": "/ready" if newer else "/metrics",
        "cheap_probe_needs_key": False,
        "ready_path": "/ready" if newer else None,
        "lb_health_path": "/ready" if newer else "/health",
        "admin_api_key": newer,
        "load_path": "/v1/loads" if newer else "/get_load",
        "auth_exempt_prefixes": ["/health", "/ready", "/metrics"] if newer else ["/health", "/metrics"],
    }


def version_errors(version, image=None, admin_api_key=None, var_name="sglang_version",
                   image_var="sglang_image", admin_var="sglang_admin_api_key"):
    """Every problem with a version setting, each naming the variable the user wrote."""
    try:
        profile = api_profile(version, var_name)
    except ApiVersionError as exc:
        return [str(exc)]
    errors = []
    tagged = image_tag_version(image)
    if tagged and tagged != profile["version"]:
        errors.append("%s: %s, but %s (%s) is tagged %s; set %s to the release the image runs" % (
            var_name, profile["version"], image_var, image, tagged, var_name))
    if admin_api_key and not profile["admin_api_key"]:
        errors.append("%s: set, but SGLang %s has no --admin-api-key (it came with 0.5.23); leave it empty "
                      "(operator routes then need the API key, which only the load balancer holds)" % (
                          admin_var, profile["version"]))
    return errors
