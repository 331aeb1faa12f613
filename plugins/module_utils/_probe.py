# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Probe semantics for SGLang servers, and a Prometheus text parser for their metrics.

One source of truth for what "alive", "ready" and "healthy" mean: the
``sglang_probe`` module and the HA agent both import this file. No Ansible
imports; stdlib only; Python 3.9+.

What each check means (facts: SGLang 0.5.x ``http_server.py``):

``liveness``
    The HTTP server answers model info: ``GET /model_info`` (0.5.23+), falling
    back to ``GET /get_model_info`` on 404 (older 0.5.x). Nothing is generated,
    so it is cheap enough to run every second. It is true as soon as uvicorn is
    up, i.e. also while the server warms up.
``ready``
    ``GET /ready`` (0.5.23+: a flag check, no generation), falling back to
    ``GET /health`` on 404 for servers that predate ``/ready``.
``health``
    ``GET /health``. In 0.5.x this runs a one-token generation: it takes at
    least about 1 s and SGLang gives up after 20 s (SGLANG_HEALTH_CHECK_TIMEOUT),
    so the default timeout for deep checks is above that budget.
``health_generate``
    ``GET /health_generate``: always a real generation.

A check passes only on HTTP 200. Every other status, a refused connection or a
timeout fails it, with the reason in ``error``.
"""

from __future__ import annotations

import json
import math
import re
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

CHECKS = ("liveness", "ready", "health", "health_generate")

# Deep checks wait for a generation, which SGLang bounds at 20 s by default.
DEEP_CHECKS = frozenset(("health", "health_generate"))
DEFAULT_TIMEOUTS = {"liveness": 5.0, "ready": 5.0, "health": 30.0, "health_generate": 30.0}

# (primary path, fallback path used when the primary answers 404)
CHECK_PATHS = {
    "liveness": ("/model_info", "/get_model_info"),
    "ready": ("/ready", "/health"),
    "health": ("/health", None),
    "health_generate": ("/health_generate", None),
}
MODEL_INFO_PATHS = CHECK_PATHS["liveness"]

_MAX_BODY = 1024 * 1024


class ProbeError(ValueError):
    """Bad probe arguments (not a failed probe: those are results)."""


def default_timeout(check):
    return DEFAULT_TIMEOUTS[check]


def normalize_url(url):
    """Return ``url`` without trailing slash; a bare host:port gets ``http://``."""
    if not isinstance(url, str) or not url.strip():
        raise ProbeError("url must be a non-empty string, got %r" % (url,))
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ProbeError("url %r: only http and https are supported" % url)
    return url.rstrip("/")


def normalize_instances(urls=None, instances=None):
    """Merge ``urls`` (strings) and ``instances`` (dicts with url and optional name)."""
    result = []
    for url in urls or []:
        norm = normalize_url(url)
        result.append({"url": norm, "name": norm})
    for pos, item in enumerate(instances or []):
        if not isinstance(item, dict) or "url" not in item:
            raise ProbeError("instances[%d] must be a dict with a url key, got %r" % (pos, item))
        norm = normalize_url(item["url"])
        result.append({"url": norm, "name": str(item.get("name") or norm)})
    if not result:
        raise ProbeError("no instance to probe: give url, urls or instances")
    seen = set()
    for item in result:
        if item["url"] in seen:
            raise ProbeError("instance %s is listed twice" % item["url"])
        seen.add(item["url"])
    return result


def http_get(url, headers=None, timeout=5.0):
    """GET ``url``; return ``(status, body_bytes, error)``.

    ``status`` is None when no HTTP answer arrived (refused, reset, timeout);
    ``error`` then says why. HTTP error statuses are answers, not errors.
    """
    request = urllib.request.Request(url, headers=dict(headers or {}), method="GET")
    # A proxy from the environment must not sit between a prober and the instances
    # on the node's own network.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.read(_MAX_BODY), None
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read(_MAX_BODY)
        except (OSError, ValueError):
            body = b""
        return exc.code, body, None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return None, b"", "timed out after %gs" % timeout
        return None, b"", "connection failed: %s" % (reason,)
    except (socket.timeout, TimeoutError):
        return None, b"", "timed out after %gs" % timeout
    except (ConnectionError, OSError) as exc:
        return None, b"", "connection failed: %s" % (exc,)
    except ValueError as exc:
        return None, b"", "bad url: %s" % (exc,)


def _get_with_fallback(base_url, paths, headers, timeout, getter):
    primary, fallback = paths
    status, body, error = getter(base_url + primary, headers, timeout)
    path = primary
    if status == 404 and fallback:
        path = fallback
        status, body, error = getter(base_url + fallback, headers, timeout)
    return path, status, body, error


def _describe_status(status, body):
    text = body.decode("utf-8", "replace").strip() if body else ""
    if status == 401:
        return "HTTP 401 unauthorized (wrong or missing api_key)"
    if status == 503 and not text:
        # SGLang answers an empty 503 while starting, unhealthy or draining.
        return "HTTP 503 (starting, unhealthy or shutting down)"
    return "HTTP %d%s" % (status, (": " + text[:200]) if text else "")


def parse_model_info(body):
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    return data


def served_name(info):
    """SGLang 0.5.2's /get_model_info has no served_model_name; model_path is what it serves as."""
    if not info:
        return None
    return info.get("served_model_name") or info.get("model_path")


def probe_instance(url, check="liveness", api_key=None, timeout=None, expect_model=None, name=None, getter=None, clock=None):
    """Probe one instance; never raises for a failing server, returns a result dict."""
    if check not in CHECKS:
        raise ProbeError("check must be one of %s, got %r" % (", ".join(CHECKS), check))
    base = normalize_url(url)
    timeout = float(timeout) if timeout else default_timeout(check)
    getter = getter or http_get
    clock = clock or time.monotonic
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = "Bearer %s" % api_key

    result = {
        "url": base,
        "name": name or base,
        "check": check,
        "ok": False,
        "status": None,
        "latency_ms": None,
        "error": None,
        "endpoint": None,
        "served_model_name": None,
        "model_path": None,
    }
    started = clock()
    path, status, body, error = _get_with_fallback(base, CHECK_PATHS[check], headers, timeout, getter)
    result["latency_ms"] = round((clock() - started) * 1000.0, 1)
    result["endpoint"] = path
    result["status"] = status
    if error:
        result["error"] = error
        return result
    if status != 200:
        result["error"] = _describe_status(status, body)
        return result

    info = None
    if check == "liveness":
        info = parse_model_info(body)
        if info is None:
            result["error"] = "%s answered 200 but not with a JSON object" % path
            return result
    elif expect_model:
        ipath, istatus, ibody, ierror = _get_with_fallback(base, MODEL_INFO_PATHS, headers, timeout, getter)
        if ierror or istatus != 200:
            result["error"] = "%s passed but model info failed: %s" % (
                check, ierror or _describe_status(istatus, ibody))
            return result
        info = parse_model_info(ibody)
    if info is not None:
        result["served_model_name"] = info.get("served_model_name") or info.get("model_path")
        result["model_path"] = info.get("model_path")
    if expect_model and served_name(info) != expect_model:
        result["error"] = "serves model %r, expected %r" % (served_name(info), expect_model)
        return result
    result["ok"] = True
    return result


def probe_many(instances, check="liveness", api_key=None, timeout=None, expect_model=None, getter=None, max_workers=16):
    """Probe every instance in parallel (deep checks take >= 1 s each); results keep input order."""
    items = list(instances)
    if not items:
        return []

    def one(item):
        return probe_instance(item["url"], check=check, api_key=api_key, timeout=timeout,
                              expect_model=expect_model, name=item.get("name"), getter=getter)

    workers = max(1, min(max_workers, len(items)))
    if workers == 1:
        return [one(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, items))


def summarize(results):
    healthy = sum(1 for r in results if r["ok"])
    return {"all_ok": bool(results) and healthy == len(results), "healthy_count": healthy, "total": len(results)}


def wait_until_ok(instances, check="liveness", api_key=None, timeout=None, expect_model=None,
                  wait_timeout=300.0, interval=2.0, getter=None, clock=None, sleep=None):
    """Poll until every instance passes ``check`` or ``wait_timeout`` runs out.

    An instance that passed is not probed again: a server that answered ready
    once is not expected to flap during a start-up wait, and re-probing deep
    checks would cost a generation each round. Returns ``(results, attempts,
    elapsed_seconds)``; results hold each instance's last probe.
    """
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    items = list(instances)
    per_request = float(timeout) if timeout else default_timeout(check)
    deadline = clock() + float(wait_timeout)
    started = clock()
    last = {}
    attempts = 0
    while True:
        attempts += 1
        pending = [item for item in items if not last.get(item["url"], {}).get("ok")]
        remaining = deadline - clock()
        # Never let one request outlive the wait, but give it at least a second.
        request_timeout = max(1.0, min(per_request, remaining)) if remaining > 0 else 1.0
        for res in probe_many(pending, check=check, api_key=api_key, timeout=request_timeout,
                              expect_model=expect_model, getter=getter):
            last[res["url"]] = res
        if all(last[item["url"]]["ok"] for item in items):
            break
        remaining = deadline - clock()
        if remaining <= 0:
            break
        sleep(min(float(interval), remaining))
    results = [last[item["url"]] for item in items]
    for res in results:
        res["attempts"] = attempts
    return results, attempts, round(clock() - started, 3)


def failure_report(results):
    """One line per failing instance: ``name (url): status/error``."""
    lines = []
    for res in results:
        if res["ok"]:
            continue
        what = res["error"] or ("HTTP %s" % res["status"])
        label = res["name"] if res["name"] == res["url"] else "%s (%s)" % (res["name"], res["url"])
        lines.append("%s: %s" % (label, what))
    return "; ".join(lines)


# --------------------------------------------------------------------------------------
# Prometheus text exposition format (what SGLang's /metrics serves with --enable-metrics)

_SAMPLE_RE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{.*\})?\s+(?P<value>\S+)(?:\s+(?P<ts>-?\d+))?\s*$")
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


class MetricsParseError(ValueError):
    pass


def _unescape(value):
    out = []
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _parse_labels(text, lineno):
    inner = text[1:-1].strip()
    labels = {}
    pos = 0
    while pos < len(inner):
        match = _LABEL_RE.match(inner, pos)
        if not match:
            raise MetricsParseError("line %d: cannot parse labels %r" % (lineno, text))
        labels[match.group(1)] = _unescape(match.group(2))
        pos = match.end()
    return labels


def _parse_value(raw, lineno):
    lowered = raw.lower()
    if lowered in ("+inf", "inf"):
        return math.inf
    if lowered == "-inf":
        return -math.inf
    if lowered == "nan":
        return math.nan
    try:
        return float(raw)
    except ValueError:
        raise MetricsParseError("line %d: bad sample value %r" % (lineno, raw))


def parse_prometheus_text(text):
    """Parse the text format into ``{"samples": [...], "types": {...}, "help": {...}}``.

    Each sample is ``{"name", "labels", "value", "timestamp_ms"}``.
    """
    samples = []
    types = {}
    helps = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip() if len(parts) > 3 else "untyped"
            elif len(parts) >= 3 and parts[1] == "HELP":
                helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        match = _SAMPLE_RE.match(line)
        if not match:
            raise MetricsParseError("line %d: not a sample: %r" % (lineno, line))
        labels = _parse_labels(match.group("labels"), lineno) if match.group("labels") else {}
        samples.append({
            "name": match.group("name"),
            "labels": labels,
            "value": _parse_value(match.group("value"), lineno),
            "timestamp_ms": int(match.group("ts")) if match.group("ts") else None,
        })
    return {"samples": samples, "types": types, "help": helps}


def select(samples, name, **labels):
    """Samples called ``name`` whose labels include every ``labels`` item."""
    return [s for s in samples if s["name"] == name and all(s["labels"].get(k) == v for k, v in labels.items())]


# SGLang gauges an LB or the agent reads, and how to fold several series (one per
# TP/DP rank) into one number for the instance.
SGLANG_GAUGES = {
    "num_running_reqs": "sum",
    "num_queue_reqs": "sum",
    "num_used_tokens": "sum",
    "max_total_num_tokens": "sum",
    "token_usage": "max",
    "gen_throughput": "sum",
    "cache_hit_rate": "max",
    "utilization": "max",
    "num_grammar_queue_reqs": "sum",
    "num_retracted_reqs": "sum",
    "num_paused_reqs": "sum",
}
SGLANG_COUNTERS = (
    "prompt_tokens_total",
    "generation_tokens_total",
    "num_requests_total",
    "num_aborted_requests_total",
    "cached_tokens_total",
)


def sglang_load(text, model_name=None):
    """Fold SGLang's /metrics into ``{"num_running_reqs": 3.0, ...}`` (absent metrics are left out).

    Ranks of one instance report separately (``tp_rank``/``dp_rank`` labels):
    request and token counts add up, ratios take the worst rank.
    """
    parsed = parse_prometheus_text(text)
    filters = {"model_name": model_name} if model_name else {}
    load = {}
    for short, how in SGLANG_GAUGES.items():
        values = [s["value"] for s in select(parsed["samples"], "sglang:" + short, **filters) if not math.isnan(s["value"])]
        if values:
            load[short] = sum(values) if how == "sum" else max(values)
    for short in SGLANG_COUNTERS:
        values = [s["value"] for s in select(parsed["samples"], "sglang:" + short, **filters)]
        if values:
            load[short] = sum(values)
    return load


def fetch_metrics(url, api_key=None, timeout=5.0, getter=None):
    """GET ``<url>/metrics``; return ``(load_dict, error)``."""
    getter = getter or http_get
    headers = {"Authorization": "Bearer %s" % api_key} if api_key else {}
    status, body, error = getter(normalize_url(url) + "/metrics", headers, timeout)
    if error:
        return None, error
    if status != 200:
        hint = " (is the server started with --enable-metrics?)" if status == 404 else ""
        return None, "HTTP %d%s" % (status, hint)
    try:
        return sglang_load(body.decode("utf-8", "replace")), None
    except MetricsParseError as exc:
        return None, str(exc)
