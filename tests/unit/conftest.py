"""Shared fixtures for the unit tests.

Run from the collection tree, e.g.
``cd .build/collections/ansible_collections/inferops/sglang && python -m pytest -q tests/unit``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FAKEHUB_DIR = os.path.join(REPO, "tests", "fixtures", "fakehub")

# huggingface_hub reads these at import: keep its cache, token file and telemetry away from
# the machine's own (a token there must not make a "no token" test pass).
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="inferops-hf-home-")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_ENDPOINT", None)


# ---------------------------------------------------------------------------------------
# running a module's main() in-process


@pytest.fixture
def run_module(capsys):
    from ansible.module_utils.testing import patch_module_args  # pylint: disable=import-outside-toplevel

    def run(main, args, check_mode=False, diff=False):
        full = dict(args)
        full["_ansible_check_mode"] = check_mode
        full["_ansible_diff"] = diff
        with patch_module_args(full):
            with pytest.raises(SystemExit):
                main()
        out = capsys.readouterr().out
        return json.loads(out)

    return run


# ---------------------------------------------------------------------------------------
# the fake hub, as a real process


class FakeHub:
    def __init__(self, url, models, proc):
        self.url = url
        self.models = models
        self.proc = proc

    def _call(self, method, path, payload=None):
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return json.loads(response.read().decode())

    def stats(self):
        return self._call("GET", "/_fakehub/stats")

    def file_stats(self, source, repo, path):
        return self.stats()["files"].get("%s:%s:%s" % (source, repo, path),
                                         {"head": 0, "get": 0, "range_get": 0, "bytes_sent": 0, "cut": 0})

    def body_gets(self, source=None):
        """Number of GETs (full or ranged) of model files since the last reset."""
        return sum(v["get"] + v["range_get"] for k, v in self.stats()["files"].items()
                   if source is None or k.startswith(source + ":"))

    def fault(self, **fault):
        return self._call("POST", "/_fakehub/faults", fault)

    def reset(self):
        return self._call("POST", "/_fakehub/reset", {})

    def gated_token(self):
        with open(os.path.join(self.models, "inferops", "tiny-gated", "repo.json"), encoding="utf-8") as handle:
            return json.load(handle)["tokens"][0]


@pytest.fixture(scope="session")
def fakehub(tmp_path_factory):
    models = str(tmp_path_factory.mktemp("fakehub-models"))
    static = str(tmp_path_factory.mktemp("fakehub-static"))
    with open(os.path.join(static, "hello.txt"), "w", encoding="utf-8") as handle:
        handle.write("static file\n")
    subprocess.run([sys.executable, os.path.join(FAKEHUB_DIR, "make_models.py"), "--out", models],
                   check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, PYTHONPATH=FAKEHUB_DIR)
    proc = subprocess.Popen([sys.executable, "-m", "fakehub", "--host", "127.0.0.1", "--port", "0",
                             "--models", models, "--static", static],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("fakehub listening on "):
        proc.kill()
        raise RuntimeError("fakehub did not start: %r %s" % (line, proc.stderr.read()))
    hub = FakeHub(line.rsplit(" ", 1)[1], models, proc)
    yield hub
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


# ---------------------------------------------------------------------------------------
# a scripted HTTP server standing in for SGLang endpoints in probe tests


class ScriptedServer:
    """Answers each path with a configured (status, body, delay); counts requests."""

    def __init__(self):
        self.routes = {}
        self.hits = {}
        self.auth_headers = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # pylint: disable=arguments-differ
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                with server.lock:
                    server.hits[path] = server.hits.get(path, 0) + 1
                    server.auth_headers.append(self.headers.get("Authorization"))
                    route = server.routes.get(path, (404, b'{"detail":"Not Found"}', 0))
                if callable(route):
                    route = route(self)
                status, body, delay = route
                if delay:
                    time.sleep(delay)
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def route(self, path, status, body=b"", delay=0):
        with self.lock:
            self.routes[path] = (status, body, delay)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted_server():
    servers = []

    def make():
        server = ScriptedServer()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
