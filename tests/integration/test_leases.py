"""The lease and epoch Lua scripts on a real redis-server (master and replica), as the agents'
user (issue 10, Must show 3): take, renew, a lost renew, an expired lease taken by the standby,
a handover, and epochs that are never handed out twice, even by a counter set back."""

from __future__ import annotations

import time

import pytest
from ansible_collections.inferops.sglang.plugins.module_utils._leases import (
    EPOCH_KEY,
    EVENTS_KEY,
    Leases,
    event,
    last_leader_key,
    leader_key,
    parse_holder,
    read_events,
)
from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    AGENT_USER,
    RedisClient,
)

from tests.harness.redisset import PASSWORDS, RedisSet


@pytest.fixture(scope="module")
def redis_pair(tmp_path_factory):
    redis = RedisSet(tmp_path_factory.mktemp("leases"), sentinel=False)
    yield redis.port, redis.replica_port
    redis.stop()


@pytest.fixture
def leases(redis_pair):
    client = RedisClient("127.0.0.1", redis_pair[0], username=AGENT_USER, password=PASSWORDS["agent"], timeout=2)
    client.execute("DEL", leader_key("chat"), last_leader_key("chat"), EPOCH_KEY)
    yield Leases(client)
    client.close()


def test_take_is_atomic_and_carries_a_new_epoch(leases):
    taken, holder, epoch = leases.take("chat", "gpu1", 5000, floor=0)
    assert (taken, holder, epoch) == (True, "gpu1", 1)
    again = leases.take("chat", "gpu2", 5000, floor=0)
    assert again == (False, "gpu1", 1)
    assert leases.holder("chat")[:2] == ("gpu1", 1)
    # A replica has it: the agent may act on it.
    assert leases.confirm(replicas=1, timeout_ms=2000)


def test_renew_only_by_the_holder_and_a_lost_renew(leases):
    epoch = leases.take("chat", "gpu1", 5000, floor=0)[2]
    assert leases.renew("chat", "gpu1", epoch, 5000)
    assert not leases.renew("chat", "gpu2", epoch, 5000)        # not the holder
    assert not leases.renew("chat", "gpu1", epoch - 1, 5000)    # an older epoch of the same node
    # The lease expired (a partitioned leader that could not renew in time) and the standby took it.
    leases.client.execute("PEXPIRE", leader_key("chat"), 1)
    time.sleep(0.05)
    taken, holder, new_epoch = leases.take("chat", "gpu2", 5000, floor=epoch)
    assert taken and holder == "gpu2" and new_epoch > epoch
    # The old leader's renewal is refused: it has lost the lease and must fence itself.
    assert not leases.renew("chat", "gpu1", epoch, 5000)
    assert leases.holder("chat")[0] == "gpu2"


def test_release_is_compare_and_delete(leases):
    epoch = leases.take("chat", "gpu1", 5000, floor=0)[2]
    assert not leases.release("chat", "gpu2", epoch)
    assert leases.release("chat", "gpu1", epoch)
    assert leases.holder("chat")[0] is None


def test_release_writes_its_event_in_the_same_step_and_only_when_it_releases(leases):
    leases.client.execute("DEL", EVENTS_KEY)
    epoch = leases.take("chat", "gpu1", 5000, floor=0)[2]
    stranger = event("HANDOVER", epoch, "not mine", node="gpu2", pool="chat")
    assert not leases.release("chat", "gpu2", epoch, event=stranger)
    assert read_events(leases.client) == []
    mine = event("HANDOVER", epoch, "my instance is out of rotation", node="gpu1", pool="chat")
    assert leases.release("chat", "gpu1", epoch, event=mine)
    recorded = read_events(leases.client)
    assert [dict(e, id=None) for e in recorded] == [dict(mine, id=None)]
    # Inside one script: the replica gets the release and its event together.
    assert leases.confirm(replicas=1, timeout_ms=2000)


def test_handover_moves_the_lease_with_a_new_epoch_only_from_the_expected_holder(leases):
    epoch = leases.take("chat", "gpu1", 5000, floor=0)[2]
    assert leases.handover("chat", f"gpu9:{epoch}", "gpu2", 5000, floor=epoch)[0] is False
    done, holder, new_epoch = leases.handover("chat", f"gpu1:{epoch}", "gpu2", 5000, floor=epoch)
    assert done and holder == "gpu2" and new_epoch == epoch + 1


def test_an_epoch_is_never_handed_out_twice_even_when_the_counter_went_back(leases):
    first = [leases.next_epoch(floor=0) for dummy in range(3)]
    assert first == [1, 2, 3]
    # A Sentinel failover lost the last increments: the counter is back at 1.
    leases.client.execute("SET", EPOCH_KEY, 1)
    # Whoever saw epoch 3 passes it as the floor: the next epoch is above it, never 2 or 3 again.
    assert leases.next_epoch(floor=3) == 4
    taken, epoch = leases.take("chat", "gpu1", 5000, floor=4)[0::2]
    assert taken and epoch == 5
    # The counter itself was moved past the floor, so a caller that saw nothing continues above.
    assert leases.next_epoch(floor=0) == 6


def test_the_agents_user_cannot_touch_the_lease_of_another_prefix(redis_pair):
    client = RedisClient("127.0.0.1", redis_pair[0], username=AGENT_USER, password=PASSWORDS["agent"], timeout=2)
    with pytest.raises(Exception, match="NOPERM"):
        client.execute("EVAL", "return redis.call('SET', KEYS[1], 1)", 1, "elsewhere:leader")
    client.close()


def test_the_last_leader_outlives_its_expired_lease(leases):
    """After an outage in which the lease expired, every agent reads the same last leader."""
    epoch = leases.take("chat", "gpu1", 5000, floor=0)[2]
    moved = leases.handover("chat", f"gpu1:{epoch}", "gpu2", 5000, floor=epoch)
    assert moved[:2] == (True, "gpu2")
    new_epoch = moved[2]
    leases.client.execute("PEXPIRE", leader_key("chat"), 1)
    time.sleep(0.05)
    assert leases.holder("chat")[0] is None
    assert parse_holder(leases.client.execute("GET", last_leader_key("chat"))) == ("gpu2", new_epoch)
    assert leases.client.execute("PTTL", last_leader_key("chat")) == -1
    # A release leaves it too: the lease was given up, the record of who led is not.
    assert leases.release("chat", "gpu2", new_epoch) is False  # expired already: nothing to release
    assert parse_holder(leases.client.execute("GET", last_leader_key("chat")))[0] == "gpu2"
