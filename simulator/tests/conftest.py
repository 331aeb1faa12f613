"""Starts the simulator as a real process on 127.0.0.1 and talks HTTP to it.

SGLANG_SIM_PYTHON picks the interpreter that runs the simulator (default: this one), so the
suite can also check the simulator under Debian's python3 (with or without python3-uvloop;
SGLANG_SIM_UVLOOP=0 keeps asyncio's own loop)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

SIM_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SIM_DIR))
PYTHON = os.environ.get("SGLANG_SIM_PYTHON", sys.executable)

# Small simulated times keep the suite fast; tests assert relations, never absolute timings.
FAST = ["--sim-load-seconds", "0", "--sim-warmup-seconds", "0", "--sim-health-poll-seconds",
        "0.02", "--sim-decode-ms", "2", "--sim-decode-ms-per-req", "0.01",
        "--sim-prefill-ms-per-token", "0.001"]
PROMPT = "The capital city of France is"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Sim:
    def __init__(self, args: list[str], env: dict | None, log_path: Path, model: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(SIM_DIR) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.pop("NVIDIA_VISIBLE_DEVICES", None)
        full_env.pop("CUDA_VISIBLE_DEVICES", None)
        full_env.update(env or {})
        self.cmd = [PYTHON, "-m", "sglang_sim.launch_server", "--model-path", model,
                    "--host", "127.0.0.1", "--port", str(self.port), *args]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=full_env)

    def wait_port(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"simulator exited {self.proc.returncode}:\n{self.log()}")
            if port_open(self.port):
                return
            time.sleep(0.02)
        raise AssertionError(f"port {self.port} never opened:\n{self.log()}")

    def wait_healthy(self, timeout: float = 20.0) -> Sim:
        self.wait_port(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.02)
        raise AssertionError(f"never healthy:\n{self.log()}")

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.log()}") from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    # ---- HTTP helpers -------------------------------------------------------------------
    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        return requests.get(self.url + path, **kw)

    def post(self, path: str, body=None, **kw) -> requests.Response:
        kw.setdefault("timeout", 30)
        if body is not None:
            kw["json"] = body
        return requests.post(self.url + path, **kw)

    def generate(self, body: dict, **kw) -> dict:
        r = self.post("/generate", body, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def stream(self, path: str, body: dict, **kw) -> tuple[requests.Response, bytes]:
        kw.setdefault("timeout", 30)
        r = requests.post(self.url + path, json=body, stream=True, **kw)
        raw = b"".join(r.iter_content(chunk_size=None))
        return r, raw

    def wait_running(self, timeout: float = 10.0) -> None:
        """Wait until the server reports a running request (one a test started in a thread)."""
        deadline = time.monotonic() + timeout
        while self.get("/v1/loads").json()["loads"][0]["num_running_reqs"] == 0:
            assert time.monotonic() < deadline, "no request started running"
            time.sleep(0.01)

    def metrics(self) -> dict[str, float]:
        """Unlabelled view of /metrics: series name (with labels) -> value."""
        text = self.get("/metrics").text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def sse_events(raw: bytes) -> list[str]:
    """The data payloads of an SSE body, checking the framing as it goes."""
    text = raw.decode()
    assert text.endswith("\n\n"), text[-50:]
    events = text[:-2].split("\n\n")
    payloads = []
    for ev in events:
        assert ev.startswith("data: "), ev
        payloads.append(ev[len("data: "):])
    return payloads


def sse_json(raw: bytes) -> list[dict]:
    payloads = sse_events(raw)
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


@pytest.fixture
def sim_factory(tmp_path):
    started: list[Sim] = []

    def start(*args: str, env: dict | None = None, model: str = "sim/tiny-model",
              healthy: bool = True) -> Sim:
        sim = Sim(list(args), env, tmp_path / f"sim-{len(started)}.log", model)
        started.append(sim)
        if healthy:
            sim.wait_healthy()
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def shared_sim(tmp_path_factory):
    """One ordinary simulator for the tests that do not change its state."""
    log = tmp_path_factory.mktemp("shared") / "sim.log"
    sim = Sim([*FAST, "--enable-metrics", "--served-model-name", "tiny-chat"], None, log,
              "sim/tiny-model")
    sim.wait_healthy()
    yield sim
    sim.stop()
