# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The control plane's shared state in Redis: keys, the lease and epoch Lua scripts, events.

One definition of every key and script, used by the HA agent (``_agent.py``) and the
``sglang_ha`` module. No Ansible imports; the client is ``_redis.RedisClient``.

The leader of an active-standby pool is a **lease**, not a heartbeat comparison: a key with a
server-side TTL, taken atomically with ``SET NX PX`` and renewed with compare-and-set, as
Patroni's leader key (research/ha.md sections 1.1 and 2.4). Every role or membership change
carries an **epoch** (a fencing token) from one counter; consumers drop anything older than
what they applied.

Redis replicates asynchronously, so a write acknowledged just before a Sentinel failover can be
lost (the lease, or an increment of the epoch). Two guards:

- a node acts on a lease only once a replica has it (``WAIT``), see ``confirm``;
- every script that hands out an epoch takes a floor, the highest epoch the caller has ever
  seen (kept in its state file), and never returns an epoch at or below it: a counter that a
  failover set back cannot hand out an epoch twice to anyone who saw it.
"""

from __future__ import annotations

import json
import time

from ansible_collections.inferops.sglang.plugins.module_utils._redis import RedisReplyError

PREFIX = "inferops:"
EPOCH_KEY = PREFIX + "epoch"
EVENTS_KEY = PREFIX + "events"
EVENTS_MAXLEN = 1000


def leader_key(pool):
    return "%spool:%s:leader" % (PREFIX, pool)


def last_leader_key(pool):
    """The lease's last value, kept without a TTL: after a Redis outage in which the lease
    expired, every agent reads the same answer to "who led last" (not its own memory, which
    may be one loop behind)."""
    return "%spool:%s:last_leader" % (PREFIX, pool)


def paused_key(pool):
    return "%spool:%s:paused" % (PREFIX, pool)


def instance_key(pool, node, instance):
    return "%sinstance:%s:%s:%s" % (PREFIX, pool, node, instance)


def drain_key(pool, node, instance):
    return "%sdrain:%s:%s:%s" % (PREFIX, pool, node, instance)


def lb_key(lb):
    return "%slb:%s" % (PREFIX, lb)


def request_key(pool):
    """Operator requests for a pool (switchover), read by its agents."""
    return "%spool:%s:request" % (PREFIX, pool)


# ---- scripts ----------------------------------------------------------------------------------
# Each script is atomic in Redis. "floor" is the highest epoch the caller has seen: an epoch at
# or below it is never handed out, even by a counter a failover set back.

# The next epoch. KEYS[1]=epoch counter; ARGV[1]=floor.
NEXT_EPOCH = """
local e = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1]) or 0
if e <= floor then
  e = floor + 1
  redis.call('SET', KEYS[1], e)
end
return e
"""

# Take a free lease. KEYS[1]=leader, KEYS[2]=epoch counter, KEYS[3]=last leader; ARGV[1]=node,
# ARGV[2]=ttl ms, ARGV[3]=floor. Returns {1, "node:epoch"} when taken, {0, current holder} when held.
TAKE = """
local held = redis.call('GET', KEYS[1])
if held then
  return {0, held}
end
local e = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3]) or 0
if e <= floor then
  e = floor + 1
  redis.call('SET', KEYS[2], e)
end
local value = ARGV[1] .. ':' .. e
redis.call('SET', KEYS[1], value, 'PX', tonumber(ARGV[2]))
redis.call('SET', KEYS[3], value)
return {1, value}
"""

# Renew only while still the holder. KEYS[1]=leader; ARGV[1]="node:epoch", ARGV[2]=ttl ms.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
return 0
"""

# Give the lease up only while still the holder, and record why in the same step: KEYS[1]=leader,
# KEYS[2]=events stream; ARGV[1]="node:epoch", ARGV[2]=the event (JSON, or empty for none),
# ARGV[3]=the stream's length. One script, so a Redis that loses its newest writes in a crash
# loses both or neither: the history never shows the next leader without this one letting go.
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', tonumber(ARGV[3]), '*', 'event', ARGV[2])
end
return 1
"""

# Hand the lease to another node in one step (a switchover): only from the expected holder
# (empty: only while free), with a new epoch. KEYS[1]=leader, KEYS[2]=epoch counter, KEYS[3]=last
# leader; ARGV[1]=expected "node:epoch", ARGV[2]=candidate, ARGV[3]=ttl ms, ARGV[4]=floor.
HANDOVER = """
local held = redis.call('GET', KEYS[1])
if (ARGV[1] == '' and held) or (ARGV[1] ~= '' and held ~= ARGV[1]) then
  return {0, held or ''}
end
local e = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[4]) or 0
if e <= floor then
  e = floor + 1
  redis.call('SET', KEYS[2], e)
end
local value = ARGV[2] .. ':' .. e
redis.call('SET', KEYS[1], value, 'PX', tonumber(ARGV[3]))
redis.call('SET', KEYS[3], value)
return {1, value}
"""


def json_object(text):
    """A JSON object stored in a key (a drain marker, an operator's request); None when the key
    is empty or holds something else."""
    try:
        value = json.loads(text) if text else None
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def parse_holder(value):
    """``"gpu1:7"`` -> ``("gpu1", 7)``; None -> ``(None, 0)``."""
    if not value:
        return None, 0
    node, dummy, epoch = str(value).rpartition(":")
    try:
        return node, int(epoch)
    except ValueError:
        return None, 0


class Leases:
    """The scripts and keys over one RedisClient (the master's)."""

    def __init__(self, client):
        self.client = client

    def _eval(self, script, keys, args):
        return self.client.execute("EVAL", script, len(keys), *keys, *args)

    def next_epoch(self, floor):
        return int(self._eval(NEXT_EPOCH, [EPOCH_KEY], [int(floor)]))

    def take(self, pool, node, ttl_ms, floor):
        """``(taken, holder, epoch)``: True and our own value, or False and who holds it."""
        ok, value = self._eval(TAKE, [leader_key(pool), EPOCH_KEY, last_leader_key(pool)], [node, int(ttl_ms), int(floor)])
        holder, epoch = parse_holder(value)
        return bool(ok), holder, epoch

    def renew(self, pool, node, epoch, ttl_ms):
        return bool(self._eval(RENEW, [leader_key(pool)], ["%s:%d" % (node, epoch), int(ttl_ms)]))

    def release(self, pool, node, epoch, event=None):
        """Whether the lease was ours and is now free; ``event`` (a record) is appended to the
        events in the same atomic step, only when it was."""
        return bool(self._eval(RELEASE, [leader_key(pool), EVENTS_KEY],
                               ["%s:%d" % (node, epoch), json.dumps(event) if event else "", EVENTS_MAXLEN]))

    def handover(self, pool, expected, candidate, ttl_ms, floor):
        """``(done, holder, epoch)``: the lease moved to ``candidate`` (new epoch), or who holds it."""
        ok, value = self._eval(HANDOVER, [leader_key(pool), EPOCH_KEY, last_leader_key(pool)],
                               [expected or "", candidate, int(ttl_ms), int(floor)])
        holder, epoch = parse_holder(value)
        return bool(ok), holder, epoch

    def confirm(self, replicas=1, timeout_ms=500):
        """``WAIT``: whether at least ``replicas`` replicas have every write of this connection."""
        if replicas <= 0:
            return True
        usual = self.client.timeout
        self.client.set_timeout(usual + timeout_ms / 1000.0)
        try:
            return int(self.client.execute("WAIT", int(replicas), int(timeout_ms))) >= replicas
        finally:
            self.client.set_timeout(usual)

    def holder(self, pool):
        """``(node, epoch, pttl_ms)`` of the lease; node None when free."""
        value, pttl = self.client.pipeline([["GET", leader_key(pool)], ["PTTL", leader_key(pool)]])
        if isinstance(value, RedisReplyError):
            raise value
        node, epoch = parse_holder(value)
        return node, epoch, pttl if isinstance(pttl, int) else -2


def event(kind, epoch, reason, now=None, **fields):
    """One event record: what happened, its epoch, why, and the pool/node/instance it is about.
    ``epoch`` is None for a change made while Redis was unreachable (it is numbered later)."""
    record = {"time": round(now if now is not None else time.time(), 3), "type": kind,
              "epoch": int(epoch) if epoch is not None else None, "reason": reason}
    record.update({key: value for key, value in fields.items() if value is not None})
    return record


def human_event(record):
    """``[2026-05-29 14:22:18] FAILOVER_INITIATED pool=chat from=gpu1 to=gpu2 epoch=7 reason=...``"""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record["time"]))
    parts = ["[%s] %s" % (stamp, record["type"])]
    for key in ("pool", "node", "instance", "from", "to", "state"):
        if key in record:
            parts.append("%s=%s" % (key, record[key]))
    parts.append("epoch=%s" % (record["epoch"] if record["epoch"] is not None else "none (Redis unreachable)"))
    parts.append("reason=%s" % record["reason"])
    return " ".join(parts)


def publish_event(client, record):
    """Append the event to the capped stream (XADD MAXLEN ~)."""
    return client.execute("XADD", EVENTS_KEY, "MAXLEN", "~", EVENTS_MAXLEN, "*", "event", json.dumps(record))


def read_events(client, count=20):
    """The newest ``count`` events, oldest first."""
    entries = client.execute("XREVRANGE", EVENTS_KEY, "+", "-", "COUNT", int(count)) or []
    events = []
    for entry_id, fields in reversed(entries):
        data = dict(zip(fields[0::2], fields[1::2]))
        try:
            record = json.loads(data.get("event", "{}"))
        except ValueError:
            continue
        record["id"] = entry_id
        events.append(record)
    return events
