#!/usr/bin/python
# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: sglang_probe
short_description: Probe SGLang servers (liveness, readiness, deep health, model info) and optionally wait until they pass
description:
  - Probes one or many SGLang HTTP servers and reports, per instance, whether the check passed, the HTTP status,
    the latency and the served model.
  - With O(wait=true) it polls until every instance passes or O(wait_timeout) runs out, then fails with one line per
    failing instance and its last status or error.
  - The probe semantics live in C(plugins/module_utils/_probe.py), shared with the HA agent.
author:
  - inferops engineers (@inferops)
version_added: 0.1.0
options:
  url:
    description:
      - Base URL of one instance, for example V(http://10.0.0.5:30001). V(host:port) means V(http://host:port).
    type: str
  urls:
    description:
      - Base URLs of several instances.
    type: list
    elements: str
  instances:
    description:
      - Instances as dictionaries, so that results carry a name.
    type: list
    elements: dict
    suboptions:
      url:
        description: Base URL of the instance.
        type: str
        required: true
      name:
        description: Name reported in results and failure messages (for example the container name).
        type: str
  check:
    description:
      - V(liveness) asks for model info (C(GET /model_info), falling back to C(/get_model_info) on 404). It generates
        nothing, so it is cheap, and it passes as soon as the HTTP server answers, also during warm-up.
      - V(ready) asks C(GET /ready) (SGLang 0.5.23 and later; a flag check), falling back to C(/health) on 404.
      - V(health) asks C(GET /health), which in SGLang 0.5.x runs a one-token generation (at least about 1 s, up to
        SGLang's own 20 s budget).
      - V(health_generate) asks C(GET /health_generate), always a real generation.
      - A check passes only on HTTP 200.
    type: str
    choices: [liveness, ready, health, health_generate]
    default: liveness
  api_key:
    description:
      - SGLang C(--api-key), sent as an C(Authorization) Bearer header. Needed for model info; health endpoints are
        exempt in SGLang.
    type: str
  timeout:
    description:
      - Seconds per HTTP request. Defaults to 5 for V(liveness) and V(ready), 30 for V(health) and V(health_generate)
        (above SGLang's 20 s health budget).
    type: float
  wait:
    description:
      - Poll until every instance passes the check.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to keep polling with O(wait=true).
    type: float
    default: 300
  interval:
    description:
      - Seconds between polling rounds with O(wait=true).
    type: float
    default: 2
  expect_model:
    description:
      - The served model name (C(served_model_name), or C(model_path) on servers that do not report one) each instance
        must report. A mismatch fails the check. For checks other than V(liveness) this adds a model info request.
    type: str
  fail_on_error:
    description:
      - Without O(wait), fail the task when an instance does not pass. With V(false), report and let the play decide
        (for example O(ignore:failed_when)).
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Probes are read-only requests, so they run in check mode too.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - Exactly one of O(url), O(urls) and O(instances) must be given.
  - The API key never appears in results or messages.
"""

EXAMPLES = r"""
- name: Is the instance up (cheap, no generation)?
  inferops.sglang.sglang_probe:
    url: http://127.0.0.1:30001
    api_key: "{{ sglang_api_key }}"

- name: Wait until every instance of the host is healthy, checking the model
  inferops.sglang.sglang_probe:
    instances:
      - name: sglang-chat-1
        url: http://10.0.0.5:30001
      - name: sglang-chat-2
        url: http://10.0.0.5:30002
    check: health
    expect_model: tiny-chat
    wait: true
    wait_timeout: 600
    interval: 5
  register: probe

- name: Readiness of a list of URLs, without failing the play
  inferops.sglang.sglang_probe:
    urls:
      - 10.0.0.5:30001
      - 10.0.0.6:30001
    check: ready
    fail_on_error: false
  register: ready
"""

RETURN = r"""
instances:
  description: One result per instance, in the order given.
  returned: always
  type: list
  elements: dict
  contains:
    url:
      description: Base URL probed.
      type: str
    name:
      description: Name given in O(instances), else the URL.
      type: str
    check:
      description: The check that ran.
      type: str
    ok:
      description: Whether the check passed.
      type: bool
    status:
      description: HTTP status of the last request, null when no HTTP answer arrived.
      type: int
    latency_ms:
      description: Time of the check request(s), including a fallback request, in milliseconds.
      type: float
    error:
      description: Why the check failed, null when it passed.
      type: str
    endpoint:
      description: Path that answered (shows whether a fallback was used).
      type: str
    served_model_name:
      description: Served model name from model info, when model info was requested.
      type: str
    model_path:
      description: Model path from model info, when model info was requested.
      type: str
    attempts:
      description: Polling rounds, with O(wait=true).
      type: int
  sample:
    - url: http://10.0.0.5:30001
      name: sglang-chat-1
      check: liveness
      ok: true
      status: 200
      latency_ms: 3.2
      error: null
      endpoint: /model_info
      served_model_name: tiny-chat
      model_path: /models/tiny-chat
all_ok:
  description: Whether every instance passed.
  returned: always
  type: bool
  sample: true
healthy_count:
  description: Number of instances that passed.
  returned: always
  type: int
  sample: 2
total:
  description: Number of instances probed.
  returned: always
  type: int
  sample: 2
elapsed:
  description: Seconds spent waiting, with O(wait=true).
  returned: when O(wait=true)
  type: float
  sample: 12.4
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.sglang.plugins.module_utils._probe import (
    ProbeError,
    failure_report,
    normalize_instances,
    probe_many,
    summarize,
    wait_until_ok,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str"),
            urls=dict(type="list", elements="str"),
            instances=dict(
                type="list",
                elements="dict",
                options=dict(url=dict(type="str", required=True), name=dict(type="str")),
            ),
            check=dict(type="str", default="liveness", choices=["liveness", "ready", "health", "health_generate"]),
            api_key=dict(type="str", no_log=True),
            timeout=dict(type="float"),
            wait=dict(type="bool", default=False),
            wait_timeout=dict(type="float", default=300),
            interval=dict(type="float", default=2),
            expect_model=dict(type="str"),
            fail_on_error=dict(type="bool", default=True),
        ),
        mutually_exclusive=[["url", "urls", "instances"]],
        required_one_of=[["url", "urls", "instances"]],
        supports_check_mode=True,
    )
    p = module.params
    for field in ("timeout", "wait_timeout", "interval"):
        if p[field] is not None and p[field] <= 0:
            module.fail_json(msg="%s must be a positive number of seconds, got %s" % (field, p[field]))
    try:
        urls = [p["url"]] if p["url"] else p["urls"]
        instances = normalize_instances(urls=urls, instances=p["instances"])
    except ProbeError as exc:
        field = "instances" if p["instances"] else ("urls" if p["urls"] else "url")
        module.fail_json(msg="%s: %s" % (field, exc))

    extra = {}
    if p["wait"]:
        results, _attempts, elapsed = wait_until_ok(
            instances, check=p["check"], api_key=p["api_key"], timeout=p["timeout"], expect_model=p["expect_model"],
            wait_timeout=p["wait_timeout"], interval=p["interval"])
        extra["elapsed"] = elapsed
    else:
        results = probe_many(instances, check=p["check"], api_key=p["api_key"], timeout=p["timeout"],
                             expect_model=p["expect_model"])
    summary = summarize(results)
    outcome = dict(changed=False, instances=results, **summary)
    outcome.update(extra)
    if not summary["all_ok"] and (p["wait"] or p["fail_on_error"]):
        prefix = ("%d of %d instances did not pass %s within %gs: " % (
            summary["total"] - summary["healthy_count"], summary["total"], p["check"], p["wait_timeout"])
            if p["wait"] else
            "%d of %d instances failed %s: " % (summary["total"] - summary["healthy_count"], summary["total"], p["check"]))
        module.fail_json(msg=prefix + failure_report(results), **outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
