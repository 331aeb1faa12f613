from __future__ import annotations

import os

import yaml

from ansible_collections.inferops.sglang.plugins.filter.monitoring_rules import monitoring_rules
from ansible_collections.inferops.sglang.plugins.module_utils._monitoring import rules_with_for

RULES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "monitoring", "files", "inferops.rules.yml")


def read_rules():
    with open(RULES, encoding="utf-8") as handle:
        return handle.read()


def alerts(text):
    return {rule["alert"]: rule.get("for") for group in yaml.safe_load(text)["groups"]
            for rule in group["rules"] if "alert" in rule}


def test_no_overrides_gives_the_file_byte_for_byte():
    text = read_rules()
    assert rules_with_for(text, {}) == {"text": text, "errors": []}


def test_only_the_named_alerts_change():
    text = read_rules()
    result = rules_with_for(text, {"SGLangEngineHung": "15s", "SGLangInstanceDown": "1m30s"})
    assert result["errors"] == []
    before, after = alerts(text), alerts(result["text"])
    assert after["SGLangEngineHung"] == "15s" and after["SGLangInstanceDown"] == "1m30s"
    assert {name: value for name, value in after.items() if name not in ("SGLangEngineHung", "SGLangInstanceDown")} == {
        name: value for name, value in before.items() if name not in ("SGLangEngineHung", "SGLangInstanceDown")}
    # Comments and layout kept: only two lines differ.
    changed = [pair for pair in zip(text.splitlines(), result["text"].splitlines()) if pair[0] != pair[1]]
    assert len(changed) == 2 and len(text.splitlines()) == len(result["text"].splitlines())


def test_errors_name_the_field_and_the_alert():
    text = read_rules()
    result = rules_with_for(text, {"NoSuchAlert": "1m", "PoolLeaderFlapping": "1m", "SGLangEngineHung": "1 minute",
                                   "RedisDown": 60})
    assert result["text"] == text
    errors = result["errors"]
    assert any(e.startswith("monitoring_alert_for.NoSuchAlert: no such alert") and "SGLangEngineHung" in e for e in errors)
    assert any(e.startswith("monitoring_alert_for.PoolLeaderFlapping: this alert has no for:") for e in errors)
    assert any(e.startswith("monitoring_alert_for.SGLangEngineHung: '1 minute' is not a Prometheus duration") for e in errors)
    assert any(e.startswith("monitoring_alert_for.RedisDown: 60 is not a Prometheus duration") for e in errors)
    assert len(errors) == 4


def test_not_a_mapping():
    assert rules_with_for("groups: []\n", ["SGLangEngineHung"])["errors"] == [
        "monitoring_alert_for: a mapping of alert name to duration, not ['SGLangEngineHung']"]


def test_a_record_rule_does_not_take_the_next_for():
    text = ("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x\n      - record: r\n        expr: y\n"
            "      - alert: B\n        expr: z\n        for: 5m\n")
    assert rules_with_for(text, {"A": "1m"})["errors"] == ["monitoring_alert_for.A: this alert has no for: (it fires as soon as its expression holds)"]
    assert alerts(rules_with_for(text, {"B": "1m"})["text"]) == {"A": None, "B": "1m"}


def test_the_filter_names_the_field_it_is_given():
    assert monitoring_rules("groups: []\n", {"X": "1m"}, field="lab_alert_for")["errors"][0].startswith("lab_alert_for.X: ")
