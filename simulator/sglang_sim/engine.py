"""The simulated scheduler: one asyncio task that runs "forward steps" like SGLang's scheduler.

Load model (README.md, "Load model"):
- A request waits in a FIFO queue until a slot among --max-running-requests is free and its
  tokens fit in the KV pool (--max-total-tokens).
- A prefill step takes waiting requests (up to --chunked-prefill-size uncached tokens; a longer
  prompt is split over several steps) and lasts decode_ms + prefill_ms_per_token * uncached
  tokens. It produces each finished prefill's first token. As in SGLang without
  --enable-mixed-chunk, running requests do not decode during a prefill step.
- Otherwise a decode step gives every running request one token and lasts
  decode_ms + decode_ms_per_req * (running - 1).
- Steps follow each other back to back on a modelled clock; the process sleeps in between, so
  an idle simulator uses no CPU.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from array import array
from collections import deque

from sglang_sim import tokenizer
from sglang_sim.metrics import Metrics
from sglang_sim.radix_cache import RadixCache

log = logging.getLogger("sglang_sim.engine")

SAMPLING_DEFAULTS = {
    "max_new_tokens": 128,
    "min_new_tokens": 0,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
    "min_p": 0.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "repetition_penalty": 1.0,
    "n": 1,
    "stop": None,
    "stop_token_ids": None,
    "stop_regex": None,
    "ignore_eos": False,
    "skip_special_tokens": True,
    "spaces_between_special_tokens": True,
    "no_stop_trim": False,
    "json_schema": None,
    "regex": None,
    "ebnf": None,
    "structural_tag": None,
    "stream_interval": None,
    "logit_bias": None,
    "sampling_seed": None,
    "custom_params": None,
}


class SamplingParams:
    __slots__ = (
        "_key",
        "constrained",
        "grammar_error",
        "ignore_eos",
        "json_schema",
        "max_new_tokens",
        "min_new_tokens",
        "min_p",
        "n",
        "no_stop_trim",
        "sampling_seed",
        "schema",
        "skip_special_tokens",
        "stop",
        "stop_token_ids",
        "stream_interval",
        "temperature",
        "top_k",
        "top_p",
    )

    def __init__(self, raw: dict | None) -> None:
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ValueError("sampling_params must be an object")  # noqa: TRY004 - a 400
        unknown = sorted(set(raw) - set(SAMPLING_DEFAULTS))
        if unknown:
            raise ValueError(f"Unknown sampling parameter(s): {', '.join(unknown)}")
        p = {**SAMPLING_DEFAULTS, **{k: v for k, v in raw.items() if v is not None}}
        try:
            self.max_new_tokens = int(p["max_new_tokens"])
            self.min_new_tokens = int(p["min_new_tokens"])
            self.temperature = float(p["temperature"])
            self.top_p = float(p["top_p"])
            self.top_k = int(p["top_k"])
            self.min_p = float(p["min_p"])
            self.n = int(p["n"])
            self.sampling_seed = None if p["sampling_seed"] is None else int(p["sampling_seed"])
            self.stream_interval = None if p["stream_interval"] is None else int(p["stream_interval"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Invalid sampling parameter type: {exc}") from None
        # The checks and messages of SGLang's SamplingParams.verify().
        if self.temperature < 0.0:
            raise ValueError(f"temperature must be non-negative, got {self.temperature}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}.")
        if self.top_k < 1 and self.top_k != -1:
            raise ValueError(f"top_k must be -1 (disable) or at least 1, got {self.top_k}.")
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be at least 0, got {self.max_new_tokens}.")
        if not 0 <= self.min_new_tokens <= max(self.max_new_tokens, 0):
            raise ValueError(
                f"min_new_tokens must be in [0, max_new_tokens({self.max_new_tokens})], "
                f"got {self.min_new_tokens}.")
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}.")
        stop = p["stop"] or []
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(x, str) for x in stop):
            raise ValueError("stop must be a string or a list of strings")
        self.stop = [x for x in stop if x]
        ids = p["stop_token_ids"] or []
        if not isinstance(ids, list) or not all(isinstance(x, int) for x in ids):
            raise ValueError("stop_token_ids must be a list of integers")
        self.stop_token_ids = frozenset(ids)
        self.ignore_eos = bool(p["ignore_eos"])
        self.skip_special_tokens = bool(p["skip_special_tokens"])
        self.no_stop_trim = bool(p["no_stop_trim"])
        # Structured output. The grammars are strings (0.5.23's request contract says so, in
        # serde's words); an empty json_schema means none, as SGLang normalizes it. The API
        # layer compiles json_schema into `schema` (or sets `grammar_error`); regex, ebnf and
        # structural_tag are accepted and have no effect. constrained: any of them is set.
        self.json_schema = None
        self.constrained = False
        if (p["json_schema"] is not None or p["regex"] is not None or p["ebnf"] is not None
                or p["structural_tag"] is not None):
            for name in ("json_schema", "regex", "ebnf"):
                value = p[name]
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"invalid type: {_unexpected(value)}, expected a string")
            self.json_schema = p["json_schema"] or None
            n = sum(x is not None for x in (self.json_schema, p["regex"], p["ebnf"],
                                            p["structural_tag"]))
            if n > 1:
                raise ValueError(
                    "Only one of json_schema, regex, ebnf, or structural_tag can be set.")
            self.constrained = n == 1
        self.schema = None
        self.grammar_error: str | None = None
        # What the output depends on besides the prompt (max_new_tokens is left out so a
        # shorter request yields a prefix of a longer one).
        self._key = (self.temperature, self.top_p, self.top_k, self.min_p, self.sampling_seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


def _unexpected(v) -> str:
    """serde's description of an unexpected JSON value, as 0.5.23's contract errors say it."""
    if isinstance(v, bool):
        return f"boolean `{'true' if v else 'false'}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, float):
        return f"floating point `{v}`"
    return "sequence" if isinstance(v, list) else "map" if isinstance(v, dict) else "value"


class Waker:
    """Wakes the one handler task that serves one or more requests."""

    __slots__ = ("fut", "loop")

    def __init__(self) -> None:
        self.fut: asyncio.Future | None = None
        self.loop = asyncio.get_running_loop()

    def wake(self) -> None:
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def wait(self) -> None:
        self.fut = self.loop.create_future()
        try:
            await self.fut
        finally:
            self.fut = None


class Req:
    __slots__ = (
        "admit_time",
        "arrival",
        "arrival_wall",
        "cached_tokens",
        "eos_at",
        "finish_reason",
        "finished",
        "first_token_time",
        "forced",
        "in_queue",
        "index",
        "last_model_t",
        "last_token_time",
        "log_metrics",
        "output_ids",
        "params",
        "prefill_left",
        "prompt_ids",
        "reserved",
        "rid",
        "rng",
        "text",
        "waker",
    )

    def __init__(self, rid: str, prompt_ids: array, params: SamplingParams, waker: Waker | None,
                 index: int = 0, log_metrics: bool = True) -> None:
        self.rid = rid
        self.prompt_ids = prompt_ids
        self.params = params
        self.waker = waker
        self.index = index
        self.log_metrics = log_metrics
        self.rng: random.Random | None = None
        self.arrival = 0.0
        self.arrival_wall = 0.0
        self.admit_time = 0.0
        self.first_token_time = 0.0
        self.last_token_time = 0.0
        self.last_model_t = 0.0
        self.output_ids: list[int] = []
        self.text = ""
        self.finished = False
        self.finish_reason: dict | None = None
        self.cached_tokens = 0
        self.prefill_left = -1
        self.reserved = 0
        self.eos_at = 0
        self.in_queue = False
        # Structured output: the pieces of the document and their ids (see _emit_forced).
        self.forced: tuple[list[str], array] | None = None


class Engine:
    def __init__(self, cfg, metrics: Metrics) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.max_running = cfg.max_running_requests
        self.max_queued = cfg.max_queued_requests
        self.max_total_tokens = cfg.max_total_tokens
        self.chunk = cfg.chunked_prefill_size if cfg.chunked_prefill_size > 0 else 1 << 60
        self.mixed = cfg.enable_mixed_chunk
        self.prefill_ms = cfg.sim_prefill_ms_per_token
        self.decode_ms = cfg.sim_decode_ms
        self.decode_ms_per_req = cfg.sim_decode_ms_per_req
        self.slow_factor = 1.0
        self.seed = cfg.sim_seed
        self.eos_min = cfg.sim_min_output_tokens
        self.eos_max = cfg.sim_max_output_tokens
        self.cache = RadixCache(0 if cfg.disable_radix_cache else cfg.sim_prefix_cache_tokens)
        self.waiting: deque[Req] = deque()
        self.prefilling: list[Req] = []  # admitted, prompt partly processed (chunked prefill)
        self.running: list[Req] = []
        self.reserved_tokens = 0
        self.unfinished = 0
        self.paused = False
        self.hung = False
        self._work = asyncio.Event()
        self._resume = asyncio.Event()
        self._resume.set()
        self.last_output_time = 0.0
        # Recent (time, tokens) per step, for gen_throughput.
        self._tok_window: deque[tuple[float, int]] = deque()
        # Recent prefills (cached, total), for cache_hit_rate.
        self._hit_window: deque[tuple[int, int]] = deque(maxlen=256)
        self._hit_sums = [0, 0]
        # Self-measurement (GET /_sim/state): how late steps and chunk sends are vs the model.
        self.steps = 0
        self.tokens_out = 0
        self.step_lag = LagRing()
        self.send_lag = LagRing()
        self.requests_finished = 0
        # Schemas that failed to compile: 0.5.6's grammar cache remembers them until a flush.
        self.bad_grammars: set[str] = set()

    # ---- submission ---------------------------------------------------------------------
    def submit(self, req: Req) -> bool:
        """Queue a request; False when the waiting queue is full (the caller reports it)."""
        loop_time = asyncio.get_running_loop().time()
        req.arrival = loop_time
        req.arrival_wall = time.time()
        if self.max_queued is not None and len(self.waiting) >= self.max_queued:
            self.refuse(req)
            return False
        p = req.params
        if p.greedy:
            seed = tokenizer.seed_of(self.seed, "greedy", req.prompt_ids)
        else:
            seed = tokenizer.seed_of(self.seed, p._key, req.index, req.prompt_ids)
        req.rng = random.Random(seed)
        if self.eos_max > 0:
            req.eos_at = req.rng.randint(self.eos_min, self.eos_max)
        if p.schema is not None:
            req.forced = tokenizer.split(p.schema.generate(req.rng))
        req.reserved = min(len(req.prompt_ids) + p.max_new_tokens, self.max_total_tokens)
        req.in_queue = True
        self.waiting.append(req)
        self.unfinished += 1
        self._work.set()
        return True

    def refuse(self, req: Req, reason: dict | None = None) -> None:
        """End a request that never entered the queue, as SGLang's _abort_on_queued_limit
        (or with another abort reason, such as a schema that does not compile)."""
        now = asyncio.get_running_loop().time()
        req.arrival = req.arrival or now
        self._finish(req, reason or {"type": "abort", "message": "The request queue is full.",
                                     "status_code": 503, "err_type": "ServiceUnavailable"},
                     now, counted=False)
        if req.log_metrics:
            self.metrics.num_aborted += 1

    def abort(self, rid: str | None = None, all_reqs: bool = False,
              message: str = "Abort in waiting queue") -> int:
        now = asyncio.get_running_loop().time()
        n = 0
        for req in list(self.waiting) + self.prefilling + self.running:
            if req.finished:
                continue
            if all_reqs or req.rid == rid:
                if req.in_queue:
                    self.waiting.remove(req)
                    req.in_queue = False
                self._finish(req, {"type": "abort", "message": message,
                                   "status_code": 499 if not all_reqs else 503,
                                   "err_type": None}, now)
                if req.log_metrics:
                    self.metrics.num_aborted += 1
                n += 1
        return n

    # ---- state read by the HTTP layer -------------------------------------------------------
    @property
    def num_running(self) -> int:
        return len(self.running) + len(self.prefilling)

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    def used_tokens(self) -> int:
        return sum(len(r.prompt_ids) + len(r.output_ids) for r in self.running) + sum(
            len(r.prompt_ids) - max(r.prefill_left, 0) for r in self.prefilling)

    def gen_throughput(self, now: float) -> float:
        win = self._tok_window
        while win and win[0][0] < now - 5.0:
            win.popleft()
        if not win:
            return 0.0
        return sum(n for _, n in win) / max(now - win[0][0], 1e-3) if len(win) > 1 else 0.0

    def cache_hit_rate(self) -> float:
        cached, total = self._hit_sums
        return cached / total if total else 0.0

    def flush_cache(self) -> bool:
        if self.waiting or self.running or self.prefilling:
            return False
        self.cache.reset()
        self.bad_grammars.clear()
        return True

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._sync_resume()

    def set_hung(self, hung: bool) -> None:
        self.hung = hung
        self._sync_resume()

    def _sync_resume(self) -> None:
        if self.paused or self.hung:
            self._resume.clear()
        else:
            self._resume.set()

    # ---- the scheduler loop ---------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        t_end = loop.time()
        while True:
            if not self.waiting and not self.running and not self.prefilling:
                self._work.clear()
                await self._work.wait()
                t_end = loop.time()
            if not self._resume.is_set():
                await self._resume.wait()
                t_end = loop.time()
            now = loop.time()
            # Steps follow the modelled clock back to back; after a long stall (the loop was
            # busy or suspended) the clock restarts from now instead of bursting to catch up.
            start = t_end if now - t_end < 0.05 else now
            done_prefill, prefill_tokens = self._schedule_prefill(now)
            decode = self.running if (self.mixed or not (done_prefill or self.prefilling or
                                                         prefill_tokens)) else []
            dur = 0.0
            if prefill_tokens or done_prefill:
                dur += self.decode_ms + self.prefill_ms * prefill_tokens
            if decode:
                dur += self.decode_ms + self.decode_ms_per_req * (len(decode) - 1)
            dur = dur * self.slow_factor / 1000.0
            t_end = start + dur
            delay = t_end - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            wake = loop.time()
            self.step_lag.add(wake - t_end)
            if not self._resume.is_set():
                # Hung or paused mid-step: the step completes when released.
                await self._resume.wait()
                wake = loop.time()
                t_end = wake
            self.steps += 1
            produced = 0
            if decode:
                for req in decode:
                    if not req.finished:
                        self._emit(req, wake, t_end)
                        produced += 1
                self.running = [r for r in self.running if not r.finished]
            for req in done_prefill:
                if req.finished:  # aborted while its prefill ran
                    continue
                self.cache.insert(req.prompt_ids)
                if req.params.max_new_tokens == 0:
                    self._finish(req, {"type": "length", "length": 0}, wake)
                    continue
                self.running.append(req)
                self._emit(req, wake, t_end)
                produced += 1
            if produced:
                self.last_output_time = wake
                self.tokens_out += produced
                win = self._tok_window
                win.append((wake, produced))
                while win[0][0] < wake - 5.0:
                    win.popleft()
            self.running = [r for r in self.running if not r.finished]

    def _schedule_prefill(self, now: float) -> tuple[list[Req], int]:
        """Pick the prefill work of the next step: (requests whose prefill completes, tokens)."""
        budget = self.chunk
        tokens = 0
        done: list[Req] = []
        # A chunked prefill in progress continues first.
        for req in list(self.prefilling):
            if budget <= 0:
                break
            take = min(req.prefill_left, budget)
            req.prefill_left -= take
            budget -= take
            tokens += take
            if req.prefill_left == 0:
                self.prefilling.remove(req)
                done.append(req)
        while self.waiting and budget > 0:
            if len(self.running) + len(self.prefilling) + len(done) >= self.max_running:
                break
            req = self.waiting[0]
            if self.reserved_tokens + req.reserved > self.max_total_tokens:
                break
            self.waiting.popleft()
            req.in_queue = False
            self.reserved_tokens += req.reserved
            req.admit_time = now
            n = len(req.prompt_ids)
            # SGLang always computes at least the last prompt token to get its logits.
            req.cached_tokens = min(self.cache.match(req.prompt_ids), max(n - 1, 0))
            req.prefill_left = n - req.cached_tokens
            if req.log_metrics:
                self.metrics.queue_time.observe(now - req.arrival)
                self._hit_window_add(req.cached_tokens, n)
            take = min(req.prefill_left, budget)
            req.prefill_left -= take
            budget -= take
            tokens += take
            if req.prefill_left == 0:
                done.append(req)
            else:
                self.prefilling.append(req)
        return done, tokens

    def _hit_window_add(self, cached: int, total: int) -> None:
        win = self._hit_window
        if len(win) == win.maxlen:
            old_c, old_t = win[0]
            self._hit_sums[0] -= old_c
            self._hit_sums[1] -= old_t
        win.append((cached, total))
        self._hit_sums[0] += cached
        self._hit_sums[1] += total

    def _emit(self, req: Req, now: float, model_t: float) -> None:
        if req.forced is not None:
            self._emit_forced(req, now, model_t)
            return
        p = req.params
        out = req.output_ids
        n_out = len(out)
        if self.eos_max > 0 and n_out >= req.eos_at and not p.ignore_eos and n_out >= p.min_new_tokens:
            tid = tokenizer.EOS_ID
        else:
            tid = tokenizer.OUTPUT_IDS[int(req.rng.random() * len(tokenizer.OUTPUT_IDS))]
        out.append(tid)
        n_out += 1
        self._count_token(req, n_out, now, model_t)
        reason = None
        can_stop = n_out > p.min_new_tokens
        if tid == tokenizer.EOS_ID and not p.ignore_eos or tid in p.stop_token_ids and can_stop:
            reason = {"type": "stop", "matched": tid}
        else:
            reason = self._append_text(req, tokenizer.decode_piece(tid, p.skip_special_tokens), can_stop)
        if reason is None and n_out >= p.max_new_tokens:
            reason = {"type": "length", "length": p.max_new_tokens}
        self._settle(req, reason, now)

    def _count_token(self, req: Req, n_out: int, now: float, model_t: float) -> None:
        """The metrics of one generated token (the n_out-th): TTFT for the first, ITL after."""
        req.last_model_t = model_t
        if req.log_metrics:
            m = self.metrics
            m.generation_tokens += 1
            if n_out == 1:
                req.first_token_time = now
                m.ttft.observe(now - req.arrival)
            else:
                m.itl.observe(now - req.last_token_time)
        req.last_token_time = now

    @staticmethod
    def _append_text(req: Req, piece: str, can_stop: bool) -> dict | None:
        """Add a decoded piece to the text; the finish reason when it completes a stop string
        (trimmed unless no_stop_trim)."""
        p = req.params
        before = len(req.text)
        req.text += piece
        if p.stop and can_stop:
            for s in p.stop:
                idx = req.text.find(s, max(0, before - len(s) + 1))
                if idx >= 0:
                    if not p.no_stop_trim:
                        req.text = req.text[:idx]
                    return {"type": "stop", "matched": s}
        return None

    def _settle(self, req: Req, reason: dict | None, now: float) -> None:
        if reason is not None:
            self._finish(req, reason, now)
        elif req.waker is not None:
            req.waker.wake()

    def _emit_forced(self, req: Req, now: float, model_t: float) -> None:
        """The next token of a structured output: the next piece of the document, then EOS,
        which terminates the grammar. The finish checks in 0.5.23's order (update_finish_state):
        stop strings, EOS and stop tokens, max_new_tokens, the terminated grammar. So the EOS
        ends the request with "stop" even when it is the last token max_new_tokens allows, and
        with ignore_eos too (the terminated grammar, unless that EOS hit the length);
        min_new_tokens does not extend a finished document."""
        p = req.params
        pieces, ids = req.forced
        out = req.output_ids
        k = len(out)
        if k < len(ids):
            tid, piece = ids[k], pieces[k]
        else:
            tid, piece = tokenizer.EOS_ID, None
        out.append(tid)
        n_out = k + 1
        self._count_token(req, n_out, now, model_t)
        reason = None
        can_stop = n_out > p.min_new_tokens
        if piece is None:
            if p.ignore_eos and n_out >= p.max_new_tokens:
                reason = {"type": "length", "length": p.max_new_tokens}
            else:
                reason = {"type": "stop", "matched": tid}
        elif tid in p.stop_token_ids and can_stop:
            reason = {"type": "stop", "matched": tid}
        else:
            reason = self._append_text(req, piece, can_stop)
            if reason is None and n_out >= p.max_new_tokens:
                reason = {"type": "length", "length": p.max_new_tokens}
        self._settle(req, reason, now)

    def _finish(self, req: Req, reason: dict, now: float, counted: bool = True) -> None:
        if req.finished:
            return
        req.finished = True
        req.finish_reason = reason
        if req.prefill_left >= 0:
            self.reserved_tokens -= req.reserved
            if req in self.prefilling:
                self.prefilling.remove(req)
            if req.output_ids:
                self.cache.insert(req.prompt_ids + array("i", req.output_ids))
        if counted:
            self.unfinished -= 1
            self.requests_finished += 1
        if req.log_metrics and reason.get("type") != "abort":
            m = self.metrics
            m.num_requests += 1
            m.prompt_tokens += len(req.prompt_ids)
            m.cached_tokens += req.cached_tokens
            e2e = now - req.arrival
            m.e2e.observe(e2e)
            n = len(req.output_ids)
            if n > 1:
                m.tpot.observe((now - req.first_token_time) / (n - 1))
        if req.waker is not None:
            req.waker.wake()


class LagRing:
    """The last 8192 lag samples (seconds), for percentiles on demand."""

    __slots__ = ("buf", "full", "pos")

    def __init__(self, size: int = 8192) -> None:
        self.buf = array("d", bytes(8 * size))
        self.pos = 0
        self.full = False

    def add(self, value: float) -> None:
        self.buf[self.pos] = value
        self.pos += 1
        if self.pos == len(self.buf):
            self.pos = 0
            self.full = True

    def reset(self) -> None:
        self.pos = 0
        self.full = False

    def percentiles(self) -> dict:
        data = sorted(self.buf if self.full else self.buf[: self.pos])
        if not data:
            return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}

        def pick(q: float) -> float:
            return round(data[min(len(data) - 1, int(q * len(data)))] * 1000, 3)

        return {"count": len(data), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
                "max_ms": round(data[-1] * 1000, 3)}
