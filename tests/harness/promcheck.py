# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Questions to a running Prometheus, answered as JSON (molecule's verify step; the lab).

    promcheck.py targets   --url http://127.0.0.1:19090
    promcheck.py dashboard --url ... --dashboard roles/monitoring/files/inferops-fleet.json
    promcheck.py alerts    --url ...

``targets``: every scrape target by job, up or not (with the error of those down).
``dashboard``: every query of every panel of the Grafana dashboard, run through Prometheus's
HTTP API as Grafana would run it (its variables set to "all"); a panel query with no series is
listed under ``empty``.
``alerts``: the alerts Prometheus holds now, pending or firing, with their labels.
Only the Prometheus URL given is contacted.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
import urllib.request

# How Grafana fills its built-in variables; "$pool" is the dashboard's own (all pools).
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m", "$pool": ".*"}


def _get(url, path, params=None):
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    with urllib.request.urlopen(url.rstrip("/") + path + query, timeout=20) as answer:
        body = json.load(answer)
    if body.get("status") != "success":
        raise RuntimeError(f"{path}: {body.get('error')}")
    return body["data"]


def cmd_targets(args):
    jobs = {}
    for target in _get(args.url, "/api/v1/targets", {"state": "active"})["activeTargets"]:
        job = jobs.setdefault(target["labels"]["job"], {"up": 0, "down": []})
        if target["health"] == "up":
            job["up"] += 1
        else:
            job["down"].append({"instance": target["labels"].get("instance"), "node": target["labels"].get("node"),
                                "health": target["health"], "error": target.get("lastError", "")})
    print(json.dumps({"jobs": jobs, "all_up": bool(jobs) and not any(job["down"] for job in jobs.values())}))


def panel_queries(dashboard):
    """``(panel title, refId, expr)`` for every query of every panel, rows' panels included."""
    panels = list(dashboard.get("panels", []))
    for panel in list(panels):
        panels.extend(panel.get("panels", []))
    for panel in panels:
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel.get("title", ""), target.get("refId", ""), target["expr"]


def grafana_expr(expr):
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(variable, value)
    return expr


def cmd_dashboard(args):
    with open(args.dashboard, encoding="utf-8") as handle:
        dashboard = json.load(handle)
    results = []
    for title, ref, expr in panel_queries(dashboard):
        query = grafana_expr(expr)
        try:
            series = len(_get(args.url, "/api/v1/query", {"query": query})["result"])
            error = None
        except (RuntimeError, OSError) as exc:
            series, error = 0, str(exc)
        results.append({"panel": title, "ref": ref, "query": query, "series": series, "error": error})
    print(json.dumps({"queries": len(results), "empty": [r for r in results if not r["series"]],
                      "results": results}))


def cmd_alerts(args):
    alerts = _get(args.url, "/api/v1/alerts")["alerts"]
    print(json.dumps({"alerts": [{"name": a["labels"].get("alertname"), "state": a["state"], "labels": a["labels"],
                                  "active_at": a.get("activeAt")} for a in alerts]}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("targets", "dashboard", "alerts"):
        p = sub.add_parser(name)
        p.add_argument("--url", required=True, help="Prometheus, e.g. http://127.0.0.1:19090")
        if name == "dashboard":
            p.add_argument("--dashboard", required=True, help="the dashboard JSON")
    args = parser.parse_args()
    globals()["cmd_" + args.cmd](args)


if __name__ == "__main__":
    main()
