# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Real peers as private processes on 127.0.0.1 for the integration tests: redis-server,
redis-sentinel and the SGLang simulator. Each runs in its own process group and is killed with
it; nothing here touches a system service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0, what: str = "process") -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {port}")
        time.sleep(0.05)


class Proc:
    """A child in its own process group, with its output in a log file."""

    def __init__(self, argv: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> None:
        self.argv = argv
        self.log = Path(log)
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ, **(env or {})), cwd=cwd)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._out.close()

    def text(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")


def redis_server(workdir: Path, conf_lines: list[str], sentinel: bool = False) -> tuple[Proc, int]:
    """redis-server (or redis-sentinel) on a free port with ``conf_lines`` added to its config."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / ("sentinel.conf" if sentinel else "redis.conf")
    conf.write_text("\n".join([f"port {port}", "bind 127.0.0.1", f"dir {workdir}", "save \"\"",
                               "appendonly no", *conf_lines]) + "\n")
    conf.chmod(0o600)
    binary = "/usr/bin/redis-sentinel" if sentinel else "/usr/bin/redis-server"
    proc = Proc([binary, str(conf)], workdir / ("sentinel.log" if sentinel else "redis.log"))
    wait_port(port, proc.proc, what=binary)
    return proc, port


def simulator(port: int, log: Path, *args: str) -> Proc:
    """The SGLang simulator (this checkout's) on 127.0.0.1:``port``, fast start."""
    env = {"PYTHONPATH": str(ROOT / "simulator")}
    proc = Proc([sys.executable, "-m", "sglang_sim.launch_server", "--model-path", "sim/tiny", "--host", "127.0.0.1",
                 "--port", str(port), "--sim-load-seconds", "0", "--sim-warmup-seconds", "0",
                 "--sim-health-poll-seconds", "0.05", *args], log, env=env)
    wait_port(port, proc.proc, what="simulator")
    return proc
