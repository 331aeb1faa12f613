"""The ACL files the redis role installs, loaded by a real redis-server and redis-sentinel: each
user can do what its job needs and nothing else (issue 9, Must show 5)."""

from __future__ import annotations

import pytest
from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    ADMIN_USER,
    AGENT_USER,
    EXPORTER_USER,
    REPLICATION_USER,
    SENTINEL_CLIENT_USER,
    SENTINEL_USER,
    RedisClient,
    RedisReplyError,
    discover_master,
)

from tests.harness.redisset import MASTER_NAME, PASSWORDS, RedisSet


@pytest.fixture(scope="module")
def redis_set(tmp_path_factory):
    redis = RedisSet(tmp_path_factory.mktemp("redis"))
    yield {"port": redis.port, "replica_port": redis.replica_port, "sentinel_port": redis.sentinel_port}
    redis.stop()


def client(port, user, password_key):
    return RedisClient("127.0.0.1", port, username=user, password=PASSWORDS[password_key], timeout=2)


def denied(c, *args):
    with pytest.raises(RedisReplyError) as err:
        c.execute(*args)
    return err.value.code


def test_default_user_is_off(redis_set):
    plain = RedisClient("127.0.0.1", redis_set["port"], timeout=2)
    assert denied(plain, "GET", "x") == "NOAUTH"
    with pytest.raises(RedisReplyError) as err:
        RedisClient("127.0.0.1", redis_set["port"], password=PASSWORDS["admin"], timeout=2).execute("PING")
    assert "WRONGPASS" in str(err.value) and PASSWORDS["admin"] not in str(err.value)


def test_agent_reaches_only_its_prefix_and_no_admin_command(redis_set):
    with client(redis_set["port"], AGENT_USER, "agent") as agent:
        assert agent.execute("SET", "inferops:test", "1") == "OK"
        assert agent.execute("EVAL", "return redis.call('INCR', KEYS[1])", 1, "inferops:n") >= 1
        assert agent.execute("XADD", "inferops:events", "MAXLEN", "~", "100", "*", "k", "v")
        for command in (("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "dir"), ("CONFIG", "SET", "maxmemory", "1"),
                        ("KEYS", "*"), ("SHUTDOWN",), ("REPLICAOF", "NO", "ONE"), ("ACL", "LIST"), ("MONITOR",),
                        ("SCRIPT", "FLUSH"), ("CLIENT", "KILL", "TYPE", "normal")):
            assert denied(agent, *command) == "NOPERM", command
        assert denied(agent, "SET", "other:key", "1") == "NOPERM"
        assert denied(agent, "GET", "inferops") == "NOPERM"
        # Inside a script the same rules hold: keys are checked as the script is called, commands as it runs.
        assert denied(agent, "EVAL", "return redis.call('SET', KEYS[1], 1)", 1, "other:key") == "NOPERM"
        with pytest.raises(RedisReplyError, match="can't run this command"):
            agent.execute("EVAL", "return redis.call('FLUSHALL')", 0)
        assert denied(agent, "PUBLISH", "other", "x") == "NOPERM"
        assert agent.execute("PUBLISH", "inferops:events", "x") >= 0


def test_replication_user_only_syncs(redis_set):
    with client(redis_set["port"], REPLICATION_USER, "replication") as repl:
        assert repl.execute("PING") == "PONG"
        assert denied(repl, "GET", "inferops:test") == "NOPERM"
        assert denied(repl, "CONFIG", "GET", "dir") == "NOPERM"
    # The replica synced as that user (RedisSet waited for "connected"; a wrong user stays in handshake).
    with client(redis_set["replica_port"], ADMIN_USER, "admin") as admin:
        info = admin.execute("ROLE")
        assert info[0] == "slave" and info[3] == "connected"


def test_sentinel_client_may_only_ask_for_the_master(redis_set):
    with client(redis_set["sentinel_port"], SENTINEL_CLIENT_USER, "client") as sentinel:
        assert sentinel.execute("SENTINEL", "get-master-addr-by-name", MASTER_NAME) == ["127.0.0.1", str(redis_set["port"])]
        for command in (("SENTINEL", "FAILOVER", MASTER_NAME), ("SENTINEL", "REMOVE", MASTER_NAME),
                        ("SENTINEL", "SET", MASTER_NAME, "quorum", "2"), ("SENTINEL", "MASTERS"),
                        ("SENTINEL", "RESET", "*"), ("SENTINEL", "CONFIG", "GET", "*"), ("SHUTDOWN",)):
            assert denied(sentinel, *command) == "NOPERM", command
    with client(redis_set["sentinel_port"], SENTINEL_USER, "sentinel") as peer:
        assert peer.execute("SENTINEL", "MASTER", MASTER_NAME)[1] == MASTER_NAME


def test_exporter_reads_statistics_and_nothing_else(redis_set):
    with client(redis_set["port"], EXPORTER_USER, "exporter") as exporter:
        assert "redis_version" in exporter.execute("INFO", "server")
        assert exporter.execute("CONFIG", "GET", "maxmemory")[0] == "maxmemory"
        assert isinstance(exporter.execute("SLOWLOG", "GET", "10"), list)
        for command in (("GET", "inferops:test"), ("SET", "x", "1"), ("KEYS", "*"), ("CONFIG", "SET", "maxmemory", "1"),
                        ("FLUSHALL",), ("ACL", "LIST"), ("SHUTDOWN",)):
            assert denied(exporter, *command) == "NOPERM", command
    with client(redis_set["sentinel_port"], EXPORTER_USER, "exporter") as exporter:
        assert exporter.execute("SENTINEL", "MASTERS")[0][1] == MASTER_NAME
        assert "sentinel_masters:1" in exporter.execute("INFO", "sentinel")
        for command in (("SENTINEL", "FAILOVER", MASTER_NAME), ("SENTINEL", "SET", MASTER_NAME, "quorum", "1"),
                        ("SENTINEL", "CONFIG", "GET", "*")):
            assert denied(exporter, *command) == "NOPERM", command


def test_discovery_follows_the_client_protocol(redis_set):
    host, port = discover_master([("127.0.0.1", redis_set["sentinel_port"])], MASTER_NAME,
                                 sentinel_username=SENTINEL_CLIENT_USER, sentinel_password=PASSWORDS["client"],
                                 username=AGENT_USER, password=PASSWORDS["agent"])
    assert (host, port) == ("127.0.0.1", redis_set["port"])
