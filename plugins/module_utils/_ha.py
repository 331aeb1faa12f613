# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""The HA decisions, as pure functions: state x observation -> new state, actions and a reason.

Read this file to know what the agent does and why; ``_agent.py`` only gathers observations,
carries out the actions and logs one line per decision (with its epoch). Patroni's ``ha.py``
is the model: named states, every branch returning the sentence that explains it.

Three decisions:

- ``decide_instance``: one local SGLang instance on a GPU node, from its probes.
  ``healthy`` (in rotation) -> ``failing`` (a probe failed, still in rotation) -> ``fenced``
  (fall count reached: out of rotation, container killed and started again, which turns every
  request stuck inside into a connection error Nginx re-sends) -> ``starting`` (restarted,
  waiting for ``rise`` good deep probes) -> ``healthy``. A crash-looping instance is restarted
  with a doubling back-off, never in a tight loop.
- ``decide_lease``: one active-standby pool on a GPU node. The leader renews its lease while
  one of its instances is in rotation, hands it over at once otherwise, and fences itself when
  it cannot renew before its deadline. A standby takes a free lease only with a healthy
  instance of its own. Nobody takes a lease back on their own (no automatic failback) unless
  the pool says ``failback: auto``, and then only through an ordinary switchover after the
  hold-down.
- ``render_pools``: what an LB agent renders: the inventory's servers (never one more), each
  ``primary``, ``backup``, ``down`` or ``draining`` from the instances' records and the leases,
  with the epoch that decided it.
"""

from __future__ import annotations

# ---- instance states --------------------------------------------------------------------------
HEALTHY = "healthy"
FAILING = "failing"
FENCED = "fenced"
STARTING = "starting"
INSTANCE_STATES = (HEALTHY, FAILING, FENCED, STARTING)
IN_ROTATION = (HEALTHY, FAILING)

# ---- lease roles -------------------------------------------------------------------------------
LEADER = "leader"
STANDBY = "standby"
SELF_FENCED = "fenced"

ACTIVE_ACTIVE = "active_active"
ACTIVE_STANDBY = "active_standby"
MODES = (ACTIVE_ACTIVE, ACTIVE_STANDBY)


def new_track(state=HEALTHY, now=0.0):
    """What the agent remembers about an instance. A newly seen instance starts ``healthy``:
    site.yml waited for it to be healthy, and taking every instance out of rotation while a
    freshly started agent counts rises would be an outage of its own making."""
    return {"state": state, "epoch": 0, "fails": 0, "rises": 0, "since": now, "restarts": 0, "backoff": 0.0,
            "next_restart_at": 0.0, "reason": "first seen"}


def decide_instance(track, obs, cfg, now):
    """One loop for one instance.

    ``obs``: ``running`` (the container runs), ``cheap`` / ``deep`` (True, False, or None when
    not probed this loop), ``error`` (why a probe failed), ``restart_pending`` (a restart this
    decision asked for has not happened yet: another instance on the same GPU goes first),
    ``hands_off`` (an operator drained it and owns its container now, a rolling update for
    example: it is still probed and fenced, never restarted, and rises once it answers).
    ``cfg``: ``fall``, ``rise``, ``start_timeout``, ``backoff_min``, ``backoff_max``.
    Returns ``(new_track, actions, reason)``; actions from ``("restart",)``. ``reason`` is
    None when nothing worth a log line happened.
    """
    t = dict(track)
    state = t["state"]
    failed = obs.get("cheap") is False or obs.get("deep") is False
    succeeded = obs.get("cheap") is not False and obs.get("deep") is True
    error = obs.get("error") or "probe failed"
    hands_off = bool(obs.get("hands_off"))
    restart = [] if hands_off else ["restart"]

    if not obs.get("running"):
        if state != FENCED:
            return _fence(t, now, cfg, "container not running", not hands_off), restart, "container not running"
        if hands_off:
            return t, [], None
        if now >= t["next_restart_at"]:
            return _restarted(t, now, cfg), ["restart"], "still not running; restarting (attempt %d)" % (t["restarts"] + 1)
        return t, [], None

    if state in IN_ROTATION:
        if failed:
            t["fails"] += 1
            if t["fails"] >= cfg["fall"]:
                reason = "%d probes failed in a row (last: %s)" % (t["fails"], error)
                return _fence(t, now, cfg, reason, not hands_off), restart, reason
            t["state"] = FAILING
            t["reason"] = "probe failed %d/%d: %s" % (t["fails"], cfg["fall"], error)
            return t, [], t["reason"]
        if state == FAILING and obs.get("cheap") is True and obs.get("deep") is not False:
            t.update(state=HEALTHY, fails=0, reason="probes pass again")
            return t, [], t["reason"]
        t["fails"] = 0
        return t, [], None

    if state == FENCED:
        if obs.get("restart_pending") and not hands_off:
            return t, [], None
        # Killed and started again by the last decision (or by the operator who owns it now);
        # now it has to rise.
        t.update(state=STARTING, since=now, rises=0, reason="%s; waiting for %d good deep probes" % (
            "running again (drained: the operator's)" if hands_off else "restarted", cfg["rise"]))
        return t, [], t["reason"]

    # STARTING
    if succeeded:
        t["rises"] += 1
        if t["rises"] >= cfg["rise"]:
            t.update(state=HEALTHY, fails=0, backoff=0.0, reason="%d good deep probes: back in rotation" % t["rises"])
            return t, [], t["reason"]
        return t, [], None
    if failed:
        t["rises"] = 0
    if not hands_off and now - t["since"] > cfg["start_timeout"] and now >= t["next_restart_at"]:
        reason = "not healthy %ds after its start (last: %s)" % (cfg["start_timeout"], error)
        return _fence(t, now, cfg, reason), ["restart"], reason
    return t, [], None


def _fence(t, now, cfg, reason, restart=True):
    t.update(state=FENCED, fails=0, rises=0, since=now, reason=reason)
    return _restarted(t, now, cfg) if restart else t


def _restarted(t, now, cfg):
    t["restarts"] += 1
    t["backoff"] = min(cfg["backoff_max"], max(cfg["backoff_min"], t["backoff"] * 2 or cfg["backoff_min"]))
    t["next_restart_at"] = now + t["backoff"]
    return t


def in_rotation(state):
    return state in IN_ROTATION


# ---- leases ----------------------------------------------------------------------------------
def decide_lease(view, cfg, now):
    """One loop for one active-standby pool on one GPU node.

    ``view``: ``node``; ``role`` (what this node was: leader, standby, fenced); ``redis_ok``;
    ``holder`` (node holding the lease, None when free); ``healthy`` (one of this node's
    instances of the pool is in rotation); ``paused``; ``deadline`` (when a leader that cannot
    renew must stop claiming primary); ``failback`` (this node is the pool's preferred leader,
    ``failback: auto`` is set, and its instances have been healthy for the hold-down);
    ``defer_to`` (Redis came back a moment ago and this node was not the last leader: the lease
    expired during the outage, not because its leader failed, so the last leader gets it back
    first; without this a Redis failover longer than the TTL would move the role).
    ``cfg``: nothing yet (timings are applied by the caller through ``deadline``).
    Returns ``(role, action, reason)``; action one of ``renew``, ``take``, ``release``,
    ``switchover``, ``none``.
    """
    node = view["node"]
    was = view.get("role", STANDBY)
    if not view["redis_ok"]:
        if was == LEADER and now < view.get("deadline", 0):
            return LEADER, "none", "Redis unreachable; still leading until the lease deadline"
        if was == LEADER:
            return SELF_FENCED, "none", "Redis unreachable past the lease deadline: fencing myself (no longer primary)"
        return was if was != LEADER else STANDBY, "none", "Redis unreachable: frozen, no role change"

    holder = view.get("holder")
    if holder == node:
        if view.get("paused"):
            return LEADER, "renew", "I hold the lease; pool paused, keeping it whatever my health"
        if view["healthy"]:
            return LEADER, "renew", "I hold the lease and have an instance in rotation"
        return STANDBY, "release", "none of my instances is in rotation: handing the lease over"

    if holder is not None:
        if view.get("failback") and not view.get("paused"):
            return STANDBY, "switchover", "failback: auto, my instances healthy for the hold-down: asking %s to hand over" % holder
        if was == LEADER:
            return STANDBY, "none", "the lease is %s's now: standing by" % holder
        return STANDBY, "none", None

    if view.get("paused"):
        return STANDBY, "none", "the lease is free but the pool is paused: no automatic failover"
    if view.get("defer_to"):
        return STANDBY, "none", "the lease is free after a Redis outage: %s, the last leader, takes it back first" % (
            view["defer_to"])
    if view["healthy"]:
        return LEADER, "take", "the lease is free and I have an instance in rotation"
    return STANDBY, "none", "the lease is free but none of my instances is in rotation"


# ---- what an LB renders -------------------------------------------------------------------------
def render_pools(pools, records, holders, drained=(), last_states=None, last_leaders=None):
    """The servers of every pool with their states, and the epoch that decided them.

    ``pools``: from the inventory, each ``name``, ``mode`` and ``servers`` (each ``address``,
    ``node``, ``instance``), plus any nginx pool keys (passed through).
    ``records``: ``{(pool, node, instance): {"state", "epoch"}}`` as the GPU agents published.
    ``holders``: ``{pool: (node, epoch)}`` for active-standby pools with a lease.
    ``drained``: ``(pool, node, instance)`` an operator is draining.
    ``last_states``: ``{(pool, node, instance): in_rotation bool}`` as last rendered: a server
    whose record is missing (its agent stopped, its node cut off) keeps that, and Nginx's own
    per-request failover covers it meanwhile.
    ``last_leaders``: ``{pool: node}`` as last rendered. While an active-standby pool's lease is
    free (between a leader's loss and the next one's take, or while Redis is away) the last
    leader stays primary: two nodes are never rendered primary together.
    Returns ``(pools, epoch, rotation, leaders)``; ``rotation`` and ``leaders`` are the new
    ``last_states`` and ``last_leaders``.
    """
    last_states = last_states or {}
    last_leaders = last_leaders or {}
    leaders = {}
    drained = set(drained)
    epoch = 0
    rotation = {}
    rendered = []
    for pool in pools:
        name = pool["name"]
        leader, lease_epoch = holders.get(name, (None, 0)) if pool.get("mode") == ACTIVE_STANDBY else (None, 0)
        if pool.get("mode") == ACTIVE_STANDBY:
            leader = leader or last_leaders.get(name)
            if leader:
                leaders[name] = leader
        epoch = max(epoch, lease_epoch)
        servers = []
        for server in pool["servers"]:
            if not server.get("node") or not server.get("instance"):
                # Not an instance of a GPU node the agents know: rendered as the inventory says.
                servers.append({k: v for k, v in server.items() if k not in ("node", "instance")})
                continue
            key = (name, server["node"], server["instance"])
            record = records.get(key)
            if record is not None:
                epoch = max(epoch, int(record.get("epoch", 0)))
                serving = in_rotation(record.get("state"))
            else:
                serving = last_states.get(key, True)
            rotation[key] = serving
            if key in drained:
                state = "draining"
            elif not serving:
                state = "down"
            elif leader is not None and server["node"] != leader:
                state = "backup"
            else:
                state = "primary"
            servers.append(dict({k: v for k, v in server.items() if k not in ("node", "instance")}, state=state))
        entry = {k: v for k, v in pool.items() if k not in ("mode", "servers", "failback", "failback_hold_down")}
        entry["servers"] = servers
        rendered.append(entry)
    return rendered, epoch, rotation, leaders
