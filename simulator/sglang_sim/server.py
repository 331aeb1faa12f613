"""The HTTP side: SGLang's routes, auth, health semantics, lifecycle, faults and the /_sim API."""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
import random
import signal
import sys
import time
import uuid
from array import array

from sglang_sim import __version__, api
from sglang_sim.args import FAULT_MODES
from sglang_sim.engine import Engine, Req, SamplingParams
from sglang_sim.httpd import (
    App,
    HTTPMethodNotAllowed,
    HTTPNotFound,
    HttpServer,
    Request,
    Response,
)
from sglang_sim.metrics import Metrics, render

log = logging.getLogger("sglang_sim")
access_log = logging.getLogger("sglang_sim.access")

# Paths that never need a key (SGLang: "to support k8s probes and Prometheus scraping"), per
# release: 0.5.6's middleware exempts /health and /metrics only (it has no /ready).
AUTH_EXEMPT = {"0.5.6": ("/health", "/metrics"), "0.5.23": ("/health", "/ready", "/metrics")}
# Health paths counted in /_sim/state, so a test can tell who probed how often.
HEALTH_PATHS = ("/health", "/health_generate", "/ready")
# Routes SGLang marks ADMIN_OPTIONAL: the admin key when one is set, else the API key.
ADMIN_PATHS = ("/flush_cache", "/abort_request", "/pause_generation", "/continue_generation",
               "/_sim/")

FLUSH_BODY = ("Cache flushed.\nPlease check backend logs for more details. (When there are "
              "running or waiting requests, the operation will not be performed.)\n")


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def json_response(obj, status: int = 200) -> Response:
    return Response(text=dumps(obj), status=status, content_type="application/json")


def openai_error(message: str, status: int = 400, etype: str = "BadRequestError") -> Response:
    return json_response({"object": "error", "message": message, "type": etype, "param": None,
                          "code": status}, status)


class Config:
    """Resolved server arguments: what SGLang fills in for the flags left on auto."""

    def __init__(self, args) -> None:
        self.__dict__.update(vars(args))
        self.model_config = self._read_model_config()
        if self.context_length is None:
            self.context_length = int(self.model_config.get("max_position_embeddings") or 8192)
        if self.served_model_name is None:
            self.served_model_name = self.model_path
        if self.tokenizer_path is None:
            self.tokenizer_path = self.model_path
        if self.random_seed is None:
            self.random_seed = 0
        if self.sim_seed is None:
            self.sim_seed = self.random_seed
        if self.mem_fraction_static is None:
            self.mem_fraction_static = 0.88
        if self.max_total_tokens is None:
            self.max_total_tokens = max(131072, self.context_length)
        if self.max_running_requests is None:
            self.max_running_requests = 256
        if self.chunked_prefill_size is None:
            self.chunked_prefill_size = 8192
        # One simulated scheduler serves all DP ranks, with their summed capacity.
        self.max_running_requests *= self.dp_size
        if self.log_level_http is None:
            self.log_level_http = self.log_level

    def _read_model_config(self) -> dict:
        path = os.path.join(self.model_path, "config.json")
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def visible_devices(self) -> tuple[str | None, list[str] | None]:
        """(the raw variable, the explicit device list or None when every GPU is visible)."""
        raw = os.environ.get("CUDA_VISIBLE_DEVICES")
        if raw is None:
            raw = os.environ.get("NVIDIA_VISIBLE_DEVICES")
        if raw is None or raw.strip().lower() in ("", "all"):
            return raw, None
        if raw.strip().lower() in ("none", "void"):
            return raw, []
        return raw, [d.strip() for d in raw.split(",") if d.strip()]

    def gpu_ids(self) -> list[str]:
        _, visible = self.visible_devices()
        count = self.tp_size * self.dp_size
        ordinals = [self.base_gpu_id + i * self.gpu_id_step for i in range(count)]
        if visible is None:
            return [str(o) for o in ordinals]
        return [visible[o] for o in ordinals if o < len(visible)]

    def server_args(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if not k.startswith("sim_")
               and k != "model_config"}
        # SGLang 0.5.2 printed the keys here; the simulator never echoes secrets.
        for key in ("api_key", "admin_api_key"):
            if out.get(key):
                out[key] = "<redacted>"
        return out


class Fault:
    def __init__(self) -> None:
        self.mode = "none"
        self.slow_factor = 10.0
        self.error_rate = 0.5
        self.exit_code = 1

    def as_dict(self) -> dict:
        return {"mode": self.mode, "slow_factor": self.slow_factor,
                "error_rate": self.error_rate, "exit_code": self.exit_code}


class Server:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.metrics = Metrics(cfg.bucket_time_to_first_token, cfg.bucket_inter_token_latency,
                               cfg.bucket_e2e_request_latency)
        self.engine = Engine(cfg, self.metrics)
        self.status = "starting"  # starting | up | unhealthy
        self.draining = False
        self.fault = Fault()
        self.fault.slow_factor = cfg.sim_slow_factor
        self.fault.error_rate = cfg.sim_error_rate
        self.fault.exit_code = cfg.sim_exit_code
        self._fault_rng = random.Random(cfg.sim_seed)
        self._unhang = asyncio.Event()
        self._unhang.set()
        self.inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.exit_event = asyncio.Event()
        self.startup_time = time.time()
        self.created = int(self.startup_time)
        # Evidence for tests: who probed health how often, and whether the cache was flushed.
        self.health_checks = dict.fromkeys(HEALTH_PATHS, 0)
        self.flushes = 0
        self.health_timeout = float(os.environ.get("SGLANG_HEALTH_CHECK_TIMEOUT", "20"))
        self.health_generation = os.environ.get(
            "SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION", "true").lower() not in ("0", "false", "no")
        self.launch_command = " ".join(["python3", "-m", "sglang.launch_server",
                                        *_redact_argv(sys.argv[1:])])

    # ---- in-flight accounting (the drain waits on it) -----------------------------------
    def begin(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    # ---- faults -------------------------------------------------------------------------
    def set_fault(self, mode: str, slow_factor=None, error_rate=None, exit_code=None) -> None:
        f = self.fault
        if slow_factor is not None:
            f.slow_factor = float(slow_factor)
        if error_rate is not None:
            f.error_rate = float(error_rate)
        if exit_code is not None:
            f.exit_code = int(exit_code)
        f.mode = mode
        log.warning("Simulated fault set: %s", dumps(f.as_dict()))
        self.engine.slow_factor = f.slow_factor if mode == "slow" else 1.0
        # "stall" wedges the scheduler alone: the HTTP process keeps answering, as SGLang's
        # tokenizer process does when its scheduler deadlocks.
        self.engine.set_hung(mode in ("hang", "stall"))
        if mode == "hang":
            self._unhang.clear()
        else:
            self._unhang.set()
        if mode == "crash":
            crash(f.exit_code)

    def generation_fault(self) -> str | None:
        """'error' or 'reject' when the fault applies to this generation request."""
        mode = self.fault.mode
        if mode == "reject":
            return "reject"
        if mode == "error" and self._fault_rng.random() < self.fault.error_rate:
            return "error"
        return None

    # ---- the application ----------------------------------------------------------------
    def make_app(self) -> App:
        app = App(middlewares=[self.hang_mw, self.errors_mw, self.auth_mw])
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/health_generate", self.health)
        newer = self.cfg.sim_version != "0.5.6"
        if newer:
            r.add_get("/ready", self.ready)
        r.add_get("/ping", self.ping)
        for path in ("/model_info", "/get_model_info"):
            r.add_get(path, self.model_info)
        for path in ("/server_info", "/get_server_info"):
            r.add_get(path, self.server_info)
        r.add_get("/get_load", self.get_load)
        if newer:
            r.add_get("/v1/loads", self.v1_loads)
        r.add_get("/v1/models", self.models)
        r.add_get("/v1/models/{model:.+}", self.model_card)
        for method in ("GET", "POST"):
            r.add_route(method, "/flush_cache", self.flush_cache)
        r.add_post("/abort_request", self.abort_request)
        r.add_post("/pause_generation", self.pause_generation)
        r.add_post("/continue_generation", self.continue_generation)
        gen = api.GenerationApi(self)
        r.add_post("/generate", gen.generate)
        r.add_put("/generate", gen.generate)
        r.add_post("/v1/completions", gen.completions)
        r.add_post("/v1/chat/completions", gen.chat_completions)
        if self.cfg.enable_metrics:
            r.add_get("/metrics", self.prometheus)
        if self.cfg.sim_admin:
            r.add_get("/_sim/state", self.sim_state)
            r.add_post("/_sim/fault", self.sim_fault)
            r.add_post("/_sim/reset_stats", self.sim_reset_stats)
        return app

    async def hang_mw(self, request: Request, handler):
        # A wedged GPU: connections are accepted and nothing is ever answered. The /_sim/ API
        # stays reachable so a test can end the fault.
        if self.fault.mode == "hang" and not request.path.startswith("/_sim/"):
            await self._unhang.wait()
        return await handler(request)

    async def errors_mw(self, request: Request, handler):
        # FastAPI's bodies for routing errors.
        try:
            return await handler(request)
        except HTTPNotFound:
            return json_response({"detail": "Not Found"}, 404)
        except HTTPMethodNotAllowed:
            return json_response({"detail": "Method Not Allowed"}, 405)
        except BadJson as exc:
            return openai_error(str(exc), 400, "Bad Request")

    async def auth_mw(self, request: Request, handler):
        cfg = self.cfg
        path = request.path
        if (cfg.api_key or cfg.admin_api_key) and request.method != "OPTIONS" \
                and not path.startswith(AUTH_EXEMPT[cfg.sim_version]):
            if path.startswith(ADMIN_PATHS):
                expected = cfg.admin_api_key or cfg.api_key
            else:
                expected = cfg.api_key
            if expected and not _has_token(request, expected):
                return json_response({"error": "Unauthorized"}, 401)
        return await handler(request)

    # ---- health ---------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        self.health_checks[request.path] += 1
        if self.draining:
            log.info("Health check request received during shutdown. Returning 503.")
            return Response(status=503)
        if self.status == "starting":
            return Response(status=503)
        if request.path == "/health" and not self.health_generation:
            return Response(status=200)
        loop = asyncio.get_running_loop()
        tic = loop.time()
        probe = Req(f"HEALTH_CHECK_{uuid.uuid4().hex}", array("i", [0]),
                    SamplingParams({"max_new_tokens": 1, "temperature": 0.0}), None,
                    log_metrics=False)
        self.engine.submit(probe)
        poll = self.cfg.sim_health_poll_seconds
        while loop.time() < tic + self.health_timeout:
            await asyncio.sleep(poll)
            if self.engine.last_output_time > tic:
                if self.status == "unhealthy":
                    log.info("Health check passed again; server is healthy.")
                self.status = "up"
                return Response(status=200)
            if self.draining:
                return Response(status=503)
            if poll == 0:
                await asyncio.sleep(0.001)
        log.error("Health check failed. Server couldn't get a response from detokenizer for "
                  "last %s seconds.", int(self.health_timeout))
        self.status = "unhealthy"
        return Response(status=503)

    def _ready(self) -> bool:
        return self.status == "up" and not self.draining and not self.engine.paused

    async def ready(self, request: Request) -> Response:
        self.health_checks[request.path] += 1
        return Response(status=200 if self._ready() else 503)

    async def ping(self, request: Request) -> Response:
        ok = self.status == "up" and not self.draining
        return Response(status=200 if ok else 503)

    # ---- info -----------------------------------------------------------------------------
    async def model_info(self, request: Request) -> Response:
        if request.path == "/get_model_info":
            log.warning("Endpoint '/get_model_info' is deprecated and will be removed in a "
                        "future version. Please use '/model_info' instead.")
        mc = self.cfg.model_config
        archs = mc.get("architectures") or ["LlamaForCausalLM"]
        return json_response({
            "model_path": self.cfg.model_path,
            "served_model_name": self.cfg.served_model_name,
            "tokenizer_path": self.cfg.tokenizer_path,
            "is_generation": not self.cfg.is_embedding,
            "preferred_sampling_params": None,
            "weight_version": self.cfg.weight_version,
            "load_format": self.cfg.load_format,
            "reasoning_parser": self.cfg.reasoning_parser,
            "tool_call_parser": self.cfg.tool_call_parser,
            "disaggregation_mode": "null",
            "has_image_understanding": False,
            "has_audio_understanding": False,
            "model_type": mc.get("model_type", "llama"),
            "architectures": archs,
        })

    def _internal_state(self, rank: int) -> dict:
        cfg = self.cfg
        now = asyncio.get_running_loop().time()
        return {
            "dp_rank": rank,
            "last_gen_throughput": round(self.engine.gen_throughput(now) / cfg.dp_size, 3),
            "avg_spec_accept_length": None,
            "memory_usage": {"weight": 0.0, "kvcache": 0.0, "token_capacity":
                             cfg.max_total_tokens // cfg.dp_size, "graph": 0.0},
            "effective_max_running_requests_per_dp": cfg.max_running_requests // cfg.dp_size,
        }

    async def server_info(self, request: Request) -> Response:
        if request.path == "/get_server_info":
            log.warning("Endpoint '/get_server_info' is deprecated and will be removed in a "
                        "future version. Please use '/server_info' instead.")
        cfg = self.cfg
        _raw, visible = cfg.visible_devices()
        info = cfg.server_args()
        info.update({
            "max_total_num_tokens": cfg.max_total_tokens,
            "max_req_input_len": cfg.context_length - 1,
            "internal_states": [self._internal_state(r) for r in range(cfg.dp_size)],
            "version": self.cfg.sim_version,
            "startup_time": self.startup_time,
            "launch_command": self.launch_command,
            "sim": {
                "simulator": "sglang-sim",
                "simulator_version": __version__,
                "nvidia_visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "visible_devices": visible,
                "gpu_ids": cfg.gpu_ids(),
                "tp_size": cfg.tp_size,
                "dp_size": cfg.dp_size,
                "mem_fraction_static": cfg.mem_fraction_static,
                "status": self.status,
                "fault": self.fault.mode,
            },
        })
        return json_response(info)

    def _load(self) -> dict:
        e = self.engine
        return {"num_running_reqs": e.num_running, "num_waiting_reqs": e.num_waiting,
                "num_used_tokens": e.used_tokens()}

    async def get_load(self, request: Request) -> Response:
        load = self._load()
        return json_response([{"dp_rank": 0, "num_reqs": load["num_running_reqs"],
                               "num_waiting_reqs": load["num_waiting_reqs"],
                               "num_tokens": load["num_used_tokens"]}])

    async def v1_loads(self, request: Request) -> Response:
        cfg = self.cfg
        e = self.engine
        load = self._load()
        now = asyncio.get_running_loop().time()
        return json_response({
            "timestamp": time.time(), "version": self.cfg.sim_version, "accelerator": "cuda",
            "num_accelerators": cfg.tp_size * cfg.dp_size,
            "loads": [{
                "dp_rank": 0, **load, "num_total_tokens": cfg.max_total_tokens,
                "max_total_num_tokens": cfg.max_total_tokens,
                "max_running_requests": cfg.max_running_requests,
                "token_usage": round(load["num_used_tokens"] / cfg.max_total_tokens, 6),
                "gen_throughput": round(e.gen_throughput(now), 3),
                "cache_hit_rate": round(e.cache_hit_rate(), 6),
                "utilization": round(e.num_running / cfg.max_running_requests, 6),
            }],
        })

    async def models(self, request: Request) -> Response:
        return json_response({"object": "list", "data": [self._card()]})

    def _card(self) -> dict:
        name = self.cfg.served_model_name
        return {"id": name, "object": "model", "created": self.created, "owned_by": "sglang",
                "root": name, "parent": None, "max_model_len": self.cfg.context_length}

    async def model_card(self, request: Request) -> Response:
        model = request.match_info["model"]
        if model != self.cfg.served_model_name:
            return json_response({"error": {"message": f"The model '{model}' does not exist",
                                            "type": "invalid_request_error", "param": "model",
                                            "code": "model_not_found"}}, 404)
        return json_response(self._card())

    # ---- admin-level SGLang routes ----------------------------------------------------------
    async def flush_cache(self, request: Request) -> Response:
        ok = self.engine.flush_cache()
        if ok:
            self.flushes += 1
            log.info("Cache flushed successfully!")
        return Response(text=FLUSH_BODY, status=200 if ok else 400)

    async def abort_request(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return openai_error("request body must be a JSON object", 400, "Bad Request")
        self.engine.abort(body.get("rid"), bool(body.get("abort_all")))
        return Response(status=200)

    async def pause_generation(self, request: Request) -> Response:
        self.engine.set_paused(True)
        return json_response({"message": "Generation paused successfully.", "status": "ok"})

    async def continue_generation(self, request: Request) -> Response:
        self.engine.set_paused(False)
        return json_response({"message": "Generation continued successfully.", "status": "ok"})

    async def prometheus(self, request: Request) -> Response:
        cfg = self.cfg
        e = self.engine
        now = asyncio.get_running_loop().time()
        used = e.used_tokens()
        gauges = {
            "num_running_reqs": e.num_running, "num_used_tokens": used,
            "token_usage": used / cfg.max_total_tokens, "gen_throughput": e.gen_throughput(now),
            "num_queue_reqs": e.num_waiting, "num_grammar_queue_reqs": 0,
            "cache_hit_rate": e.cache_hit_rate(), "max_total_num_tokens": cfg.max_total_tokens,
            "num_retracted_reqs": 0, "num_paused_reqs": 0,
            "utilization": e.num_running / cfg.max_running_requests,
            "context_len": cfg.context_length,
        }
        text = render(self.metrics, gauges, cfg.served_model_name)
        return Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    # ---- the simulator's own API ----------------------------------------------------------
    async def sim_state(self, request: Request) -> Response:
        e = self.engine
        usage = os.times()
        return json_response({
            "status": self.status, "draining": self.draining, "paused": e.paused,
            "version": self.cfg.sim_version, "startup_time": self.startup_time,
            "health_checks": self.health_checks, "flushes": self.flushes,
            "fault": self.fault.as_dict(),
            "engine": {"running": e.num_running, "waiting": e.num_waiting,
                       "unfinished": e.unfinished, "used_tokens": e.used_tokens(),
                       "reserved_tokens": e.reserved_tokens, "prefix_cache_tokens": e.cache.size,
                       "steps": e.steps, "tokens_generated": e.tokens_out,
                       "requests_finished": e.requests_finished},
            "overhead": {"cpu_seconds": usage.user + usage.system,
                         "cpu_user_seconds": usage.user, "cpu_system_seconds": usage.system,
                         "step_lag": e.step_lag.percentiles(),
                         "send_lag": e.send_lag.percentiles()},
        })

    async def sim_reset_stats(self, request: Request) -> Response:
        self.engine.step_lag.reset()
        self.engine.send_lag.reset()
        return await self.sim_state(request)

    async def sim_fault(self, request: Request) -> Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            return json_response({"error": "request body must be a JSON object"}, 400)
        mode = body.get("mode")
        if mode not in FAULT_MODES:
            return json_response({"error": f"mode: must be one of {', '.join(FAULT_MODES)}"}, 400)
        checks = {"slow_factor": lambda v: v > 0, "error_rate": lambda v: 0 <= v <= 1,
                  "exit_code": lambda v: 0 <= v <= 255 and v == int(v),
                  "after_seconds": lambda v: v >= 0}
        for key, ok in checks.items():
            value = body.get(key)
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, (int, float)) or not ok(value)):
                return json_response({"error": f"{key}: invalid value {value!r}"}, 400)
        after = float(body.get("after_seconds") or 0)
        kwargs = {k: body.get(k) for k in ("slow_factor", "error_rate", "exit_code")}
        loop = asyncio.get_running_loop()
        if mode == "crash" or after > 0:
            # Answer first; a crash right away would cut this response.
            loop.call_later(max(after, 0.05), lambda: self.set_fault(mode, **kwargs))
            pending = dict(self.fault.as_dict(), mode=mode, after_seconds=after)
            return json_response({"fault": pending, "scheduled": True})
        self.set_fault(mode, **kwargs)
        return json_response({"fault": self.fault.as_dict(), "scheduled": False})


def _redact_argv(argv: list[str]) -> list[str]:
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("<redacted>")
            hide = False
        elif arg in ("--api-key", "--admin-api-key"):
            out.append(arg)
            hide = True
        elif arg.startswith(("--api-key=", "--admin-api-key=")):
            out.append(arg.split("=", 1)[0] + "=<redacted>")
        else:
            out.append(arg)
    return out


def _has_token(request: Request, expected: str) -> bool:
    header = request.headers.get("Authorization")
    if header:
        parts = header.split(" ", 1)
        if len(parts) == 2 and parts[0].lower() == "bearer" and hmac.compare_digest(
                parts[1].encode(), expected.encode()):
            return True
    x_key = request.headers.get("x-api-key")
    return bool(x_key and hmac.compare_digest(x_key.encode(), expected.encode()))


class BadJson(Exception):
    pass


async def read_json(request: Request):
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadJson(f"JSON decode error: {exc}") from None


def crash(code: int) -> None:
    log.error("Scheduler hit an exception: RuntimeError: CUDA error: an illegal memory access "
              "was encountered (simulated crash)")
    log.error("Received sigquit from a child process. It usually means the child failed.")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def setup_logging(cfg: Config) -> None:
    # Every request writes an access line; these record fields are never printed, and looking
    # up the caller's frame, thread and process for each line is most of a record's cost.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    fmt = logging.Formatter("[%(asctime)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(fmt)
    root = logging.getLogger("sglang_sim")
    root.handlers[:] = [handler]
    root.setLevel(cfg.log_level.upper())
    root.propagate = False
    ahandler = logging.StreamHandler(sys.stdout)
    ahandler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    access_log.handlers[:] = [ahandler]
    access_log.setLevel(cfg.log_level_http.upper())
    access_log.propagate = False


async def serve(cfg: Config) -> int:
    loop = asyncio.get_running_loop()
    server = Server(cfg)
    state = {"phase": "loading", "sigterms": 0}

    def hard_exit(signum: int) -> None:
        log.warning("Received %s; exiting at once.",
                    "SIGINT" if signum == signal.SIGINT else "a second SIGTERM")
        sys.stdout.flush()
        os._exit(128 + signum)

    def on_sigterm() -> None:
        state["sigterms"] += 1
        if state["sigterms"] > 1:
            hard_exit(signal.SIGTERM)
        log.info("SIGTERM received. signum=15 frame=None. Draining requests and shutting down...")
        if state["phase"] == "loading" or server.status == "unhealthy":
            # Nothing is being served (or the server is already dead to its clients).
            sys.stdout.flush()
            os._exit(0)
        server.draining = True
        server.exit_event.set()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, hard_exit, signal.SIGINT)

    model_dir = cfg.model_path
    if model_dir.startswith(("/", "./", "../")) and not os.path.isdir(model_dir):
        # SGLang takes a missing local path for a Hub repo id and fails on it.
        log.error("Scheduler hit an exception: OSError: %s is not a local folder and is not a "
                  "valid model identifier listed on 'https://huggingface.co/models'", model_dir)
        return 1
    log.info("server_args=%s", dumps(cfg.server_args()))
    log.info("Load weight begin. avail mem=79.10 GB")
    await asyncio.sleep(cfg.sim_load_seconds)
    if cfg.sim_load_error:
        log.error("Scheduler hit an exception: %s", cfg.sim_load_error)
        return 1
    raw, visible = cfg.visible_devices()
    needed = cfg.base_gpu_id + (cfg.tp_size * cfg.dp_size - 1) * cfg.gpu_id_step + 1
    if cfg.device == "cuda" and visible is not None and needed > len(visible):
        if not visible:
            log.error("Scheduler hit an exception: RuntimeError: No CUDA GPUs are available")
        else:
            log.error("Scheduler hit an exception: RuntimeError: CUDA error: invalid device "
                      "ordinal (need %d GPUs from base_gpu_id=%d, visible devices: %s)",
                      needed, cfg.base_gpu_id, raw)
        return 1
    log.info("Load weight end. type=%s, dtype=%s, avail mem=62.33 GB",
             (cfg.model_config.get("architectures") or ["LlamaForCausalLM"])[0], cfg.dtype)
    log.info("KV Cache is allocated. #tokens: %d", cfg.max_total_tokens)

    engine_task = asyncio.ensure_future(server.engine.run())
    app = server.make_app()
    http_server = HttpServer(app, access_log)
    try:
        await http_server.start(cfg.host, cfg.port, backlog=1024)
    except OSError as exc:
        log.error("[Errno %s] error while attempting to bind on address (%r, %d): %s",
                  exc.errno, cfg.host, cfg.port, exc.strerror)
        return 1
    state["phase"] = "serving"
    # Everything allocated so far lives as long as the process: keep the collector from
    # walking it again and again. Requests make few reference cycles but many short-lived
    # containers, and with hundreds of streams in flight each young-generation pass walks
    # all of them: collect less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    log.info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)", cfg.host, cfg.port)

    if cfg.sim_fault != "none":
        loop.call_later(cfg.sim_fault_after, server.set_fault, cfg.sim_fault)

    async def warm_up() -> None:
        if not cfg.skip_server_warmup:
            await asyncio.sleep(cfg.sim_warmup_seconds)
            from sglang_sim import tokenizer
            from sglang_sim.engine import Waker
            waker = Waker()
            req = Req(uuid.uuid4().hex, tokenizer.encode("The capital city of France is"),
                      SamplingParams({"temperature": 0, "max_new_tokens": 8}), waker)
            server.engine.submit(req)
            while not req.finished:
                await waker.wait()
        if server.status == "starting":
            server.status = "up"
        log.info("The server is fired up and ready to roll!")

    warm = asyncio.ensure_future(warm_up())
    await server.exit_event.wait()
    warm.cancel()

    # SIGTERM: /health is 503 from now on; everything in flight (and anything still arriving)
    # is served; the process exits when nothing is left.
    while server.inflight or server.engine.unfinished:
        try:
            await asyncio.wait_for(server._idle.wait(), 5.0)
            await asyncio.sleep(0)
        except TimeoutError:
            log.info("Gracefully exiting... Remaining number of requests %d",
                     server.inflight + server.engine.unfinished)
        if not server.inflight and server.engine.unfinished:
            await asyncio.sleep(0.01)
    log.info("Shutting down")
    await http_server.close(5.0)
    engine_task.cancel()
    return 0
