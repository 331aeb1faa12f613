# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""What clients got from a load balancer, counted from nginx's JSON access log.

OSS nginx exports no per-status counters (``stub_status`` has connections and a request total
only), and an aborted stream is a 200 to SGLang's own counters, so the error rate clients see is
read where it is written: the ``inferops_json`` access log of the ``nginx_lb`` role. The LB's HA
agent follows the file each loop (``AccessLogCounter.poll``) and exports the counts on
``/metrics``. No Ansible imports.
"""

from __future__ import annotations

import json
import os

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
# Read at most this much per poll: a flood cannot stall the agent's loop; the rest waits.
MAX_BYTES_PER_POLL = 4 * 1024 * 1024


class AccessLogCounter:
    """Counts of responses by pool and status class, and of requests nginx sent to more than
    one upstream server (a retry after a failed try). Follows rotation (a new inode, or a file
    shorter than what was read) and starts at the end of the file it first finds, so a
    restarted agent does not count old lines twice."""

    def __init__(self, path, pools=()):
        self.path = path
        self.inode = None
        self.offset = 0
        self.partial = b""
        # Every known pool's series exist from the start, at 0: a ratio such as the 5xx share is
        # then 0, not "no data", while nothing failed, and rate() sees the first error.
        self.responses = {(pool, klass): 0 for pool in pools for klass in STATUS_CLASSES}  # (pool, class) -> count
        self.retried = dict.fromkeys(pools, 0)  # pool -> requests that went to more than one upstream server
        self.lines = 0
        self.unparsed = 0

    def poll(self):
        try:
            stat = os.stat(self.path)
        except OSError:
            return 0
        if self.inode is None:
            self.inode, self.offset = stat.st_ino, stat.st_size
            return 0
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            self.inode, self.offset, self.partial = stat.st_ino, 0, b""
        if stat.st_size == self.offset:
            return 0
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(MAX_BYTES_PER_POLL)
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            self.count(line)
        return len(lines)

    def count(self, line):
        if not line.strip():
            return
        try:
            record = json.loads(line)
            status = int(record["status"])
        except (ValueError, KeyError, TypeError):
            self.unparsed += 1
            return
        self.lines += 1
        pool = record.get("pool") or "none"
        key = (pool, "%dxx" % (status // 100))
        self.responses[key] = self.responses.get(key, 0) + 1
        if "," in str(record.get("upstream_addr") or ""):
            self.retried[pool] = self.retried.get(pool, 0) + 1

    def metrics(self, node):
        out = ["# TYPE inferops_lb_responses_total counter"]
        for (pool, klass), count in sorted(self.responses.items()):
            out.append('inferops_lb_responses_total{node="%s",pool="%s",code="%s"} %d' % (node, pool, klass, count))
        out.append("# TYPE inferops_lb_upstream_retries_total counter")
        for pool, count in sorted(self.retried.items()):
            out.append('inferops_lb_upstream_retries_total{node="%s",pool="%s"} %d' % (node, pool, count))
        out.append("# TYPE inferops_lb_log_lines_unparsed_total counter")
        out.append('inferops_lb_log_lines_unparsed_total{node="%s"} %d' % (node, self.unparsed))
        return out
