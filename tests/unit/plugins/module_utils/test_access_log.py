"""Counting what clients got from nginx's JSON access log, across rotation (issue 12)."""

from __future__ import annotations

import json
import os

from ansible_collections.inferops.sglang.plugins.module_utils._access_log import AccessLogCounter
from ansible_collections.inferops.sglang.plugins.module_utils._address import address_is_local


def line(status, pool="chat", upstream="10.0.0.1:30001"):
    return json.dumps({"status": status, "pool": pool, "upstream_addr": upstream}) + "\n"


def test_counts_new_lines_by_pool_and_class_and_follows_rotation(tmp_path):
    log = tmp_path / "access.log"
    log.write_text(line(200) * 5)
    counter = AccessLogCounter(str(log))
    assert counter.poll() == 0  # starts at the end: old lines are not counted again after a restart
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(line(200) + line(502, upstream="10.0.0.1:30001, 10.0.0.2:30001") + line(200, pool="sb"))
        handle.write('{"status": 4')  # half a line: counted once it is complete
    assert counter.poll() == 3
    assert counter.responses == {("chat", "2xx"): 1, ("chat", "5xx"): 1, ("sb", "2xx"): 1}
    assert counter.retried == {"chat": 1}
    with open(log, "a", encoding="utf-8") as handle:
        handle.write('29, "pool": "chat"}\n')
    counter.poll()
    assert counter.responses[("chat", "4xx")] == 1
    os.rename(log, tmp_path / "access.log.1")
    log.write_text(line(503) + "not json\n")
    counter.poll()
    assert counter.responses[("chat", "5xx")] == 2 and counter.unparsed == 1
    text = "\n".join(counter.metrics("lb-1"))
    assert 'inferops_lb_responses_total{node="lb-1",pool="chat",code="5xx"} 2' in text


def test_a_missing_log_counts_nothing(tmp_path):
    counter = AccessLogCounter(str(tmp_path / "none.log"))
    assert counter.poll() == 0 and counter.responses == {}


def test_only_local_addresses_are_held():
    assert address_is_local("127.0.0.1")
    assert not address_is_local("192.0.2.77")  # TEST-NET-1: never configured here


def test_known_pools_start_at_zero_so_an_error_share_is_zero_not_missing(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("")
    counter = AccessLogCounter(str(log), ["chat", "sb"])
    text = "\n".join(counter.metrics("lb-1"))
    for pool in ("chat", "sb"):
        for klass in ("2xx", "3xx", "4xx", "5xx"):
            assert 'inferops_lb_responses_total{node="lb-1",pool="%s",code="%s"} 0' % (pool, klass) in text
    counter.poll()
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(line(200))
    counter.poll()
    assert counter.responses[("chat", "2xx")] == 1 and counter.responses[("chat", "5xx")] == 0
