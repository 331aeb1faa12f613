#!/usr/bin/env python3
"""Writes roles/monitoring/files/inferops-fleet.json, the Grafana dashboard of the fleet.

The dashboard is generated so every panel's query is written once, here, and the test that runs
each of them through Prometheus reads the same file. Run it after changing a panel:
    .venv/bin/python scripts/make-dashboard.py
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "roles" / "monitoring" / "files" / "inferops-fleet.json"
DS = {"type": "prometheus", "uid": "${datasource}"}

# (title, type, [(refId, expr, legend)], unit, width, height, extra fieldConfig/options)
PANELS = [
    ("Active-standby pools: who leads", "state-timeline",
     [("A", 'max by (pool, node) (inferops_agent_is_leader{pool=~"$pool"})', "{{pool}} on {{node}}")],
     "none", 24, 6, {"mappings": [{"type": "value", "options": {
         "0": {"text": "standby", "color": "blue"}, "1": {"text": "leader", "color": "green"}}}]}),
    ("Pools with a leader", "stat",
     [("A", 'min by (pool) (inferops_lb_pool_has_leader{pool=~"$pool"})', "{{pool}}")],
     "none", 6, 4, {"mappings": [{"type": "value", "options": {
         "0": {"text": "NO LEADER", "color": "red"}, "1": {"text": "leader", "color": "green"}}}]}),
    ("Instances in rotation", "state-timeline",
     [("A", 'max by (node, sglang_instance) (inferops_agent_instance_in_rotation{pool=~"$pool"})',
       "{{sglang_instance}} on {{node}}")],
     "none", 18, 8, {"mappings": [{"type": "value", "options": {
         "0": {"text": "out", "color": "red"}, "1": {"text": "in", "color": "green"}}}]}),
    ("Requests per second at the load balancers, by answer", "timeseries",
     [("A", 'sum by (pool, code) (rate(inferops_lb_responses_total{pool=~"$pool"}[$__rate_interval]))',
       "{{pool}} {{code}}")], "reqps", 12, 8, {}),
    ("Share of 5xx answers to clients", "timeseries",
     [("A", ('sum by (pool) (rate(inferops_lb_responses_total{pool=~"$pool",code="5xx"}[$__rate_interval]))'
            ' / sum by (pool) (rate(inferops_lb_responses_total{pool=~"$pool"}[$__rate_interval]))'), "{{pool}}")],
     "percentunit", 12, 8, {}),
    ("Time to first token", "timeseries",
     [("A", ('histogram_quantile(0.5, sum by (le, pool) (rate(sglang:time_to_first_token_seconds_bucket{pool=~"$pool"}'
            '[$__rate_interval])))'), "p50 {{pool}}"),
      ("B", ('histogram_quantile(0.99, sum by (le, pool) (rate(sglang:time_to_first_token_seconds_bucket{pool=~"$pool"}'
            '[$__rate_interval])))'), "p99 {{pool}}")], "s", 12, 8, {}),
    ("End-to-end latency", "timeseries",
     [("A", ('histogram_quantile(0.5, sum by (le, pool) (rate(sglang:e2e_request_latency_seconds_bucket{pool=~"$pool"}'
            '[$__rate_interval])))'), "p50 {{pool}}"),
      ("B", ('histogram_quantile(0.99, sum by (le, pool) (rate(sglang:e2e_request_latency_seconds_bucket{pool=~"$pool"}'
            '[$__rate_interval])))'), "p99 {{pool}}")], "s", 12, 8, {}),
    ("Requests running and queued per instance", "timeseries",
     [("A", 'sum by (node, sglang_instance) (sglang:num_running_reqs{pool=~"$pool"})', "running {{sglang_instance}} {{node}}"),
      ("B", 'sum by (node, sglang_instance) (sglang:num_queue_reqs{pool=~"$pool"})', "queued {{sglang_instance}} {{node}}")],
     "none", 12, 8, {}),
    ("Generated tokens per second", "timeseries",
     [("A", 'sum by (pool) (rate(sglang:generation_tokens_total{pool=~"$pool"}[$__rate_interval]))', "{{pool}}")],
     "none", 12, 8, {}),
    ("KV cache usage", "timeseries",
     [("A", 'max by (node, sglang_instance) (sglang:token_usage{pool=~"$pool"})', "{{sglang_instance}} {{node}}")],
     "percentunit", 12, 8, {}),
    ("Prefix cache hit rate", "timeseries",
     [("A", 'avg by (pool) (sglang:cache_hit_rate{pool=~"$pool"})', "{{pool}}")], "percentunit", 12, 8, {}),
    ("Agent probe latency", "timeseries",
     [("A", 'max by (node, sglang_instance, kind) (inferops_agent_probe_seconds{pool=~"$pool"})',
       "{{kind}} {{sglang_instance}} {{node}}")], "s", 12, 8, {}),
    ("Load balancers: applied epoch, and who holds the VIP", "timeseries",
     [("A", "max by (node) (inferops_agent_lb_applied_epoch)", "applied epoch {{node}}"),
      ("B", "max by (node) (inferops_lb_vip_held)", "VIP on {{node}}")], "none", 12, 8, {}),
]

ANNOTATIONS = [
    {"name": "Role changes", "enable": True, "iconColor": "orange", "datasource": DS,
     "expr": 'changes(max by (pool) (inferops_agent_lease_epoch{pool=~"$pool"})[1m:15s]) > 0',
     "titleFormat": "leader of {{pool}} changed", "step": "15s"},
    {"name": "Instances fenced or back", "enable": True, "iconColor": "red", "datasource": DS,
     "expr": 'changes(max by (node, sglang_instance) (inferops_agent_instance_in_rotation{pool=~"$pool"})[1m:15s]) > 0',
     "titleFormat": "{{sglang_instance}} on {{node}} in or out of rotation", "step": "15s"},
]


def build():
    panels = []
    x = y = 0
    row_height = 0
    for number, (title, kind, targets, unit, width, height, extra) in enumerate(PANELS, start=1):
        if x + width > 24:
            x, y = 0, y + row_height
            row_height = 0
        defaults = {"unit": unit}
        if extra.get("mappings"):
            defaults["mappings"] = extra["mappings"]
        panels.append({
            "id": number, "type": kind, "title": title, "datasource": DS,
            "gridPos": {"x": x, "y": y, "w": width, "h": height},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {},
            "targets": [{"refId": ref, "datasource": DS, "expr": expr, "legendFormat": legend, "range": True}
                        for ref, expr, legend in targets],
        })
        x += width
        row_height = max(row_height, height)
    annotations = [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                    "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                    "type": "dashboard"}] + ANNOTATIONS
    return {
        "uid": "inferops-fleet", "title": "inferops: SGLang fleet", "tags": ["inferops", "sglang"],
        "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": False, "graphTooltip": 1,
        "refresh": "10s", "time": {"from": "now-1h", "to": "now"}, "fiscalYearStartMonth": 0, "liveNow": False,
        "weekStart": "", "links": [],
        "annotations": {"list": annotations},
        # No "current" (Grafana's schema wants text and value in one; without it Grafana picks the
        # default Prometheus and "All") and no "definition" (not in the schema; display only).
        # tests/monitoring/dashboard_schema.py checks the result against Grafana's Dashboard type.
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus",
             "hide": 0, "refresh": 1, "options": [], "includeAll": False, "multi": False},
            {"name": "pool", "type": "query", "label": "pool", "datasource": DS,
             "query": {"query": "label_values(inferops_agent_instance_in_rotation, pool)", "refId": "pool"},
             "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*", "hide": 0, "options": [],
             "sort": 1},
        ]},
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2) + "\n")
    print(OUT)
