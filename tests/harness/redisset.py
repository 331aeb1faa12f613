# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A Redis set as the redis role builds it, as private processes on 127.0.0.1: a master, a
replica and a Sentinel, with the role's ACL files (plugins/module_utils/_redis.py)."""

from __future__ import annotations

import time
from pathlib import Path

from ansible_collections.inferops.sglang.plugins.module_utils._redis import (
    ADMIN_USER,
    REPLICATION_USER,
    SENTINEL_USER,
    RedisClient,
    redis_acl,
    sentinel_acl,
)

from tests.harness.procs import redis_server

PASSWORDS = {"admin": "admin-password-0001", "replication": "replication-pw-0001", "sentinel": "sentinel-pw-00001",
             "client": "client-password-001", "agent": "agent-password-00001", "exporter": "exporter-password-01"}
MASTER_NAME = "inferops"


class RedisSet:
    def __init__(self, base: Path, sentinel: bool = True, down_after_ms: int = 1000) -> None:
        base = Path(base)
        acl = base / "redis.acl"
        base.mkdir(parents=True, exist_ok=True)
        acl.write_text(redis_acl(PASSWORDS))
        self.master, self.port = redis_server(base / "master", [f"aclfile {acl}"])
        self.replica, self.replica_port = redis_server(base / "replica", [
            f"aclfile {acl}", f"replicaof 127.0.0.1 {self.port}", f"masteruser {REPLICATION_USER}",
            f"masterauth {PASSWORDS['replication']}"])
        self.wait_replica()
        self.sentinel = None
        self.sentinel_port = None
        if sentinel:
            sacl = base / "sentinel.acl"
            sacl.write_text(sentinel_acl(PASSWORDS))
            self.sentinel, self.sentinel_port = redis_server(base / "sentinel", [
                f"aclfile {sacl}", f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.port} 1",
                f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
                f"sentinel failover-timeout {MASTER_NAME} 5000",
                f"sentinel auth-user {MASTER_NAME} {SENTINEL_USER}",
                f"sentinel auth-pass {MASTER_NAME} {PASSWORDS['sentinel']}",
                f"sentinel sentinel-user {SENTINEL_USER}", f"sentinel sentinel-pass {PASSWORDS['sentinel']}"],
                sentinel=True)

    def admin(self, port=None) -> RedisClient:
        return RedisClient("127.0.0.1", port or self.port, username=ADMIN_USER, password=PASSWORDS["admin"], timeout=2)

    def wait_replica(self, timeout: float = 10.0) -> None:
        client = self.admin(self.replica_port)
        deadline = time.monotonic() + timeout
        try:
            while client.execute("ROLE")[3] != "connected":
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not connect")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        for proc in (self.sentinel, self.replica, self.master):
            if proc is not None:
                proc.stop()
