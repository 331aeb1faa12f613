# Copyright (c) inferops engineers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Run the nginx_lb role's configuration as a private nginx process on 127.0.0.1.

The configuration is rendered by the role's own validation and templates
(tests/harness/render-lb.yml) into a scratch directory, so the LB integration tests and the LB
benchmark exercise what the collection deploys. nginx runs in the foreground in its own process
group and is killed with it; nothing here touches /etc/nginx or a system service.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests" / "harness" / "render-lb.yml"


class RenderError(RuntimeError):
    """The role refused the variables (its message names them) or the render failed."""


def _playbook_bin() -> str:
    candidate = Path(sys.executable).with_name("ansible-playbook")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ansible-playbook")
    if not found:
        raise RuntimeError("ansible-playbook not found (run `make deps`, then use .venv/bin/python)")
    return found


def render(workdir: Path, variables: dict) -> Path:
    """Render the role's files for ``variables`` (nginx_lb_* settings) into ``workdir``.

    Paths (conf dir, logs, pid, cache) default into ``workdir``; returns nginx.conf's path.
    Raises RenderError with the end of Ansible's output when the role refuses the input.
    """
    if not (ROOT / ".build/collections/ansible_collections/inferops/sglang").exists():
        raise RuntimeError("the collection is not linked under .build/collections (run `make deps` once)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    full = {
        "inferops_bench_dir": str(workdir),
        "nginx_lb_conf_dir": str(workdir / "conf"),
        "nginx_lb_listen_address": "127.0.0.1",
        "nginx_lb_access_log": str(workdir / "access.log"),
        "nginx_lb_pid_file": str(workdir / "nginx.pid"),
        "nginx_lb_error_log": str(workdir / "error.log"),
        "nginx_lb_health_cache_dir": str(workdir / "health-cache"),
        "nginx_lb_main_conf": str(workdir / "nginx.conf"),
        "nginx_lb_test_command": ["/usr/sbin/nginx", "-t", "-c", str(workdir / "nginx.conf")],
    }
    if os.geteuid() == 0:
        # Workers write the health cache; as root they may stay root for a scratch run.
        full["nginx_lb_group"] = "root"
    full.update(variables)
    vars_file = workdir / "vars.json"
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(full, out)
    collections = os.pathsep.join(
        [str(ROOT / ".build" / "collections"), str(ROOT / ".cache" / "collections")]
        + [p for p in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(os.pathsep) if p])
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_LOCALHOST_WARNING="0")
    done = subprocess.run([_playbook_bin(), "-i", "localhost,", str(PLAYBOOK), "-e", f"@{vars_file}"],
                          check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RenderError("rendering the nginx_lb configuration failed:\n"
                          + "\n".join(done.stdout.splitlines()[-25:]) + done.stderr[-2000:])
    return workdir / "nginx.conf"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class PrivateNginx:
    """nginx -g 'daemon off;' on a rendered configuration, in its own process group."""

    def __init__(self, conf: Path, nginx: str = "/usr/sbin/nginx") -> None:
        self.conf = Path(conf)
        self.nginx = nginx
        self.proc: subprocess.Popen | None = None

    def check(self) -> subprocess.CompletedProcess:
        # No -p: the prefix stays Debian's, so modules-enabled/*.conf (relative module paths)
        # still load; every path the rendered configuration uses is absolute.
        return subprocess.run([self.nginx, "-t", "-c", str(self.conf)],
                              capture_output=True, text=True, check=False, timeout=30)

    def start(self, wait_port: int, timeout: float = 15.0) -> PrivateNginx:
        checked = self.check()
        if checked.returncode != 0:
            raise RuntimeError("nginx -t refused the rendered configuration:\n" + checked.stderr)
        self.proc = subprocess.Popen([self.nginx, "-c", str(self.conf), "-g", "daemon off;"],
                                     start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not _port_open(wait_port):
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + self.proc.stderr.read().decode(errors="replace"))
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen on {wait_port}")
            time.sleep(0.05)
        return self

    def reload(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGHUP)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
