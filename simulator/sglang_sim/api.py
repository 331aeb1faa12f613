"""/generate, /v1/completions and /v1/chat/completions: request parsing, validation, and the
response and SSE shapes of SGLang 0.5.x."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from array import array

try:  # the C escaper json.dumps(..., ensure_ascii=False) uses for strings
    from _json import encode_basestring as encode_str
except ImportError:  # pragma: no cover - CPython always has _json
    from json.encoder import encode_basestring as encode_str

from sglang_sim import json_schema, tokenizer
from sglang_sim.engine import Req, SamplingParams, Waker
from sglang_sim.httpd import Request, Response, StreamResponse

QUEUE_FULL = "The request queue is full."
NO_GRAMMAR_BACKEND = ("Grammar-based generation (json_schema, regex, ebnf, structural_tag) is not "
                      "supported when the server is launched with --grammar-backend none")
RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _token_id(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**31


class ApiError(Exception):
    """An error answered before any byte of the response is sent."""

    def __init__(self, status: int, body) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def native_error(message: str) -> ApiError:
    return ApiError(400, {"error": {"message": message}})


def openai_error(message: str, status: int = 400, etype: str = "BadRequestError") -> ApiError:
    return ApiError(status, {"object": "error", "message": message, "type": etype,
                             "param": None, "code": status})


def validation_error(message: str) -> ApiError:
    # SGLang's handler for FastAPI validation errors: 400, not 422.
    return openai_error(message, 400, "Bad Request")


class DirectStream:
    """Stands in for a streaming request's Waker: the engine calls wake() after every token,
    and this writes the chunk to the client right there, inside the scheduler's step (the
    first one with the response headers). Waking the handler task for every token of every
    stream cost more than everything else the simulator does per token; here a token costs
    one formatted chunk and one socket write.

    The handler is woken only when the request finishes or the client has gone. A client
    that does not read (more than WRITE_BUFFER_LIMIT bytes waiting) gets no new chunks until
    it catches up; the final chunk then carries everything it missed."""

    WRITE_BUFFER_LIMIT = 1 << 16
    __slots__ = ("chunk_of", "error", "handler", "interval", "lag_add", "now", "req", "resp",
                 "sent")

    def __init__(self, req: Req, handler: Waker, resp: StreamResponse, chunk_of,
                 interval: int, lag_add, now) -> None:
        self.req = req
        self.handler = handler
        self.resp = resp
        self.chunk_of = chunk_of
        self.interval = interval
        self.sent = 0
        self.lag_add = lag_add
        self.now = now
        self.error: Exception | None = None

    def wake(self) -> None:
        req = self.req
        resp = self.resp
        if req.finished or self.error is not None or not resp.writable:
            self.handler.wake()
            return
        n = len(req.output_ids)
        if n - self.sent < self.interval or resp.write_buffer_size() > self.WRITE_BUFFER_LIMIT:
            return
        try:
            data = self.chunk_of(req, False, self.sent)
            self.sent = n
            if data is not None:
                resp.write_nowait(data.encode())
                self.lag_add(self.now() - req.last_model_t)
        except Exception as exc:  # noqa: BLE001 - the handler re-raises it
            # This runs inside the scheduler's step: one stream's error must not stop it.
            self.error = exc
            self.handler.wake()


class GenerationApi:
    def __init__(self, server) -> None:
        self.server = server
        self.cfg = server.cfg
        self.engine = server.engine
        self._weight_version = encode_str(self.cfg.weight_version)

    # ---- shared plumbing ------------------------------------------------------------------
    async def _body(self, request: Request, openai: bool) -> dict:
        if openai:
            ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                raise validation_error(
                    "Unsupported Media Type: Only 'application/json' is allowed")
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise validation_error(f"JSON decode error: {exc}") from None
        if not isinstance(body, dict):
            raise validation_error("Input should be a valid dictionary or object")
        return body

    def _check_length(self, ids: array, params: SamplingParams) -> array:
        """SGLang's context-length rules (ValueError messages of _validate_one_request)."""
        ctx = self.cfg.context_length
        if len(ids) >= ctx:
            if not self.cfg.allow_auto_truncate:
                raise ValueError(f"The input ({len(ids)} tokens) is longer than the model's "
                                 f"context length ({ctx} tokens).")
            ids = ids[: ctx - 1]
        if params.max_new_tokens + len(ids) > ctx:
            if not self.cfg.allow_auto_truncate:
                raise ValueError(
                    f"Requested token count exceeds the model's maximum context length of {ctx} "
                    f"tokens. You requested a total of {params.max_new_tokens + len(ids)} tokens: "
                    f"{len(ids)} tokens from the input messages and {params.max_new_tokens} "
                    f"tokens for the completion. Please reduce the number of tokens in the input "
                    f"messages or the completion to fit within the limit.")
            params.max_new_tokens = ctx - len(ids)
        return ids

    def _submit(self, reqs: list[Req], fault: str | None) -> bool:
        """Queue every request; False if one was refused (queue full or the reject fault)."""
        if fault == "reject":
            for req in reqs:
                req.arrival_wall = time.time()
                self.engine.refuse(req)
            return False
        ok = True
        for req in reqs:
            error = req.params.grammar_error
            if error is not None:
                # SGLang's scheduler aborts the request (set_finish_with_abort): a stream gets
                # one chunk with this finish reason.
                req.arrival_wall = time.time()
                self.engine.refuse(req, {"type": "abort", "message": error, "status_code": 400,
                                         "err_type": "BadRequestError"})
                continue
            ok = self.engine.submit(req) and ok
        return ok

    def _grammar(self, params: SamplingParams, memo: dict) -> None:
        """Compile params.json_schema into params.schema, or set params.grammar_error to the
        message SGLang's scheduler aborts the request with. memo: text -> (schema, error) for
        the prompts of one HTTP request."""
        if self.cfg.grammar_backend == "none" or self.cfg.skip_tokenizer_init:
            # No grammar backend: every constrained request is aborted.
            params.grammar_error = NO_GRAMMAR_BACKEND
            return
        text = params.json_schema
        if text is None:
            return
        if text not in memo:
            old = self.cfg.sim_version == "0.5.6"
            schema = error = None
            try:
                # 0.5.23 refuses keywords xgrammar would ignore; 0.5.6 compiles them.
                schema = json_schema.compile_schema(text, refuse_unsupported=not old)
            except json_schema.SchemaError as exc:
                if not old:
                    error = f"Failed to compile json grammar: {exc}"
                else:
                    key = ("json", text)
                    bad = self.engine.bad_grammars
                    if text in bad:
                        error = f"Invalid grammar request with cache hit: {key=}"
                    else:
                        if len(bad) >= 1024:
                            bad.clear()
                        bad.add(text)
                        error = f"Invalid grammar request: req.grammar_key={key!r}"
            memo[text] = (schema, error)
        params.schema, params.grammar_error = memo[text]

    async def _wait_all(self, reqs: list[Req], waker: Waker) -> None:
        while not all(r.finished for r in reqs):
            await waker.wait()

    async def _send(self, request: Request, body, status: int = 200) -> Response:
        return await self._send_text(request, dumps(body), status)

    async def _send_text(self, request: Request, text: str, status: int = 200):
        # Written here, not by the server after the handler returns, so a drain that waits for
        # handlers waits for the last byte too.
        resp = Response(text=text, status=status, content_type="application/json")
        await resp.prepare(request)
        await resp.write_eof()
        return resp

    async def _guarded(self, request: Request, coro) -> StreamResponse:
        self.server.begin()
        try:
            try:
                return await coro
            except ApiError as exc:
                return await self._send(request, exc.body, exc.status)
        finally:
            self.server.end()

    def _abort_unfinished(self, reqs: list[Req]) -> None:
        for req in reqs:
            if not req.finished:
                self.engine.abort(req.rid, message="Client disconnected")

    def _native_json(self, req: Req, text_json: str, ids_json: str, now_wall: float) -> str:
        """The JSON of one /generate result or chunk, formatted directly: this is the hot path
        of streaming, and json.dumps of the equivalent dict costs several times more.
        text_json is the text already as a JSON string, ids_json the ids without brackets."""
        fr = dumps(req.finish_reason) if req.finished else "null"
        return (f'{{"text":{text_json},"output_ids":[{ids_json}],'
                f'"meta_info":{{"id":{encode_str(req.rid)},"finish_reason":{fr},'
                f'"prompt_tokens":{len(req.prompt_ids)},"weight_version":{self._weight_version},'
                f'"num_retractions":0,"reasoning_tokens":0,'
                f'"completion_tokens":{len(req.output_ids)},"cached_tokens":{req.cached_tokens},'
                f'"e2e_latency":{now_wall - req.arrival_wall!r},'
                f'"response_sent_to_client_ts":{now_wall!r}}}}}')

    def _fault_response(self, fault: str | None):
        if fault == "error":
            # An unhandled exception in a FastAPI handler.
            return Response(status=500, text="Internal Server Error")
        return None

    async def _stream(self, request: Request, reqs: list[Req], waker: Waker,
                      chunk_of, tail=None) -> StreamResponse:
        """Send chunk_of(req, final, n_sent) at most every stream_interval tokens per request,
        then the tail events and `data: [DONE]`.

        One request goes to _stream_one. Several (a batch, n > 1) share this handler, which
        wakes once per step: chunks that are ready together go out in one write, and the last
        chunk, [DONE] and the end of the body share the final write."""
        resp = StreamResponse(status=200, headers=SSE_HEADERS)
        await resp.prepare(request)
        if len(reqs) == 1:
            return await self._stream_one(resp, reqs[0], waker, chunk_of, tail)
        write = resp.write
        now = asyncio.get_running_loop().time
        lag_add = self.engine.send_lag.add
        default_interval = self.cfg.stream_interval
        pending = list(range(len(reqs)))
        sent = [0] * len(reqs)
        out: list[str] = []
        out_reqs: list[Req] = []
        try:
            while True:
                still = []
                for i in pending:
                    req = reqs[i]
                    n = len(req.output_ids)
                    fin = req.finished
                    if fin or n - sent[i] >= (req.params.stream_interval or default_interval):
                        data = chunk_of(req, fin, sent[i])
                        sent[i] = n
                        if data is not None:
                            out.append(data)
                            if n:
                                out_reqs.append(req)
                    if not fin:
                        still.append(i)
                pending = still
                if not pending:
                    break
                if out:
                    await write("".join(out).encode())
                    t = now()
                    for req in out_reqs:
                        lag_add(t - req.last_model_t)
                    out.clear()
                    out_reqs.clear()
                else:
                    await waker.wait()
            await self._end_stream(resp, out, tail, out_reqs)
        except (ConnectionError, asyncio.CancelledError):
            # The client went away: SGLang aborts the request (create_abort_task).
            self._abort_unfinished(reqs)
            raise
        return resp

    async def _stream_one(self, resp: StreamResponse, req: Req, waker: Waker, chunk_of,
                          tail) -> StreamResponse:
        """The stream of a single request, the common case: the engine writes each chunk
        itself (see DirectStream), and this handler only wakes when the request ends or the
        client goes away, to write the last chunk, the tail events and [DONE]."""
        direct = DirectStream(req, waker, resp, chunk_of,
                              req.params.stream_interval or self.cfg.stream_interval,
                              self.engine.send_lag.add, asyncio.get_running_loop().time)
        req.waker = direct
        try:
            direct.wake()  # tokens made before the stream was set up, if any
            while not req.finished:
                await waker.wait()
                if direct.error is not None:
                    raise direct.error
                if not resp.writable:
                    raise ConnectionResetError("client disconnected")
            await self._end_stream(resp, [chunk_of(req, True, direct.sent) or ""], tail,
                                   [req] if req.output_ids else [])
        except (ConnectionError, asyncio.CancelledError):
            # The client went away: SGLang aborts the request (create_abort_task).
            req.waker = waker
            self._abort_unfinished([req])
            raise
        return resp

    async def _end_stream(self, resp: StreamResponse, out: list[str], tail,
                          sent_reqs: list[Req]) -> None:
        """The final write of every stream: the chunks still pending in out, the tail events
        and `data: [DONE]` go out with the end of the body; the send lag is recorded for the
        requests whose tokens were in it."""
        if tail is not None:
            out.extend(tail())
        out.append("data: [DONE]\n\n")
        await resp.write_eof("".join(out).encode())
        t = asyncio.get_running_loop().time()
        for req in sent_reqs:
            self.engine.send_lag.add(t - req.last_model_t)

    # ---- /generate ------------------------------------------------------------------------
    async def generate(self, request: Request) -> StreamResponse:
        return await self._guarded(request, self._generate(request))

    async def _generate(self, request: Request) -> StreamResponse:
        body = await self._body(request, openai=False)
        text, input_ids = body.get("text"), body.get("input_ids")
        if text is None and input_ids is None and body.get("input_embeds") is None:
            raise native_error("Either text, input_ids or input_embeds should be provided.")
        if body.get("input_embeds") is not None and text is None and input_ids is None:
            raise native_error("input_embeds is not supported by the simulator.")
        batch = isinstance(text, list) or (isinstance(input_ids, list) and input_ids
                                           and isinstance(input_ids[0], list))
        if text is not None:
            prompts = text if isinstance(text, list) else [text]
            if not all(isinstance(t, str) for t in prompts):
                raise validation_error("text: Input should be a valid string")
            prompt_ids = [tokenizer.encode(t) for t in prompts]
        else:
            lists = input_ids if batch else [input_ids]
            try:
                prompt_ids = [array("i", [int(x) for x in ids]) for ids in lists]
            except (TypeError, ValueError, OverflowError):
                raise validation_error("input_ids: Input should be a list of integers") from None
        if not prompt_ids or any(len(ids) == 0 for ids in prompt_ids):
            raise native_error("The input is empty.")
        raw_sp = body.get("sampling_params") or {}
        sp_list = raw_sp if isinstance(raw_sp, list) else [raw_sp] * len(prompt_ids)
        if len(sp_list) != len(prompt_ids):
            raise native_error("The number of sampling_params must match the number of prompts.")
        rid = body.get("rid")
        rids = rid if isinstance(rid, list) else None
        stream = bool(body.get("stream"))
        waker = Waker()
        reqs: list[Req] = []
        grammars: dict = {}
        try:
            for i, ids in enumerate(prompt_ids):
                try:
                    params = SamplingParams(sp_list[i])
                except ValueError as exc:
                    # 0.5.23's request contract: the error is a plain string.
                    raise ApiError(400, {"error": str(exc)}) from None
                if params.constrained:
                    self._grammar(params, grammars)
                    if params.grammar_error is not None and not stream:
                        # The tokenizer manager raises the scheduler's 400 abort.
                        raise native_error(params.grammar_error)
                ids = self._check_length(ids, params)
                for k in range(params.n):
                    if rids:
                        r = str(rids[i])
                    elif rid is not None and not batch and params.n == 1:
                        r = str(rid)
                    else:
                        r = uuid.uuid4().hex
                    reqs.append(Req(r, ids, params, waker, index=len(reqs)))
        except ValueError as exc:
            raise native_error(str(exc)) from None
        fault = self.server.generation_fault()
        if (resp := self._fault_response(fault)) is not None:
            return resp
        accepted = self._submit(reqs, fault)
        multi = len(reqs) > 1
        if not stream:
            if not accepted:
                self._abort_unfinished(reqs)
                raise openai_error(QUEUE_FULL, 503, "503")
            try:
                await self._wait_all(reqs, waker)
            except asyncio.CancelledError:
                self._abort_unfinished(reqs)
                raise
            now = time.time()
            outs = [self._native_json(r, encode_str(r.text), ",".join(map(str, r.output_ids)),
                                      now)
                    for r in reqs]
            text = "[" + ",".join(outs) + "]" if (batch or multi) else outs[0]
            return await self._send_text(request, text)
        chunk_of = self.native_chunker(reqs, with_index=multi or batch)
        return await self._stream(request, reqs, waker, chunk_of)

    def native_chunker(self, reqs: list[Req], with_index: bool):
        """chunk_of(req, final, n_sent) for /generate streams.

        Runs once per token per stream. A cumulative chunk repeats all the text and ids so
        far, so their JSON is kept per request and extended by the new tokens instead of
        being rebuilt; only a final chunk, whose text may have lost a matched stop string,
        is built afresh."""
        incremental = self.cfg.incremental_streaming_output
        # id(req) -> [characters of req.text covered, their JSON body, the ids' JSON]
        sofar: dict[int, list] = {}

        def chunk_of(req: Req, final: bool, n_sent: int) -> str:
            out_ids = req.output_ids
            new = len(out_ids) - n_sent
            new_ids = str(out_ids[-1]) if new == 1 else ",".join(map(str, out_ids[n_sent:]))
            state = sofar.get(id(req))
            if state is None:
                state = sofar[id(req)] = [0, "", ""]
            covered, body, ids = state
            text = req.text
            if incremental:
                text_json = encode_str(text[covered:])
                state[0] = len(text)
                ids = new_ids
            else:
                if final or len(text) < covered:
                    text_json = encode_str(text)
                else:
                    body += encode_str(text[covered:])[1:-1]
                    text_json = f'"{body}"'
                    state[0], state[1] = len(text), body
                ids = ids + "," + new_ids if ids and new_ids else ids or new_ids
                state[2] = ids
            out = self._native_json(req, text_json, ids, time.time())
            if with_index:
                out = f'{out[:-1]},"index":{reqs.index(req)}}}'
            return f"data: {out}\n\n"

        return chunk_of

    # ---- OpenAI ---------------------------------------------------------------------------
    def _openai_params(self, body: dict, max_tokens, chat: bool) -> dict:
        sp = {"max_new_tokens": max_tokens}
        # SGLang's extensions: regex and ebnf on both routes, json_schema on completions only.
        for key in ("regex", "ebnf") if chat else ("json_schema", "regex", "ebnf"):
            value = body.get(key)
            if value is not None:
                if not isinstance(value, str):
                    raise validation_error(f"{key}: Input should be a valid string")
                sp[key] = value
        schema = self._response_format(body, chat)
        if schema is not None:
            sp["json_schema"] = schema
        for src, dst in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
                         ("min_p", "min_p"), ("n", "n"), ("stop", "stop"),
                         ("stop_token_ids", "stop_token_ids"), ("ignore_eos", "ignore_eos"),
                         ("min_tokens", "min_new_tokens"), ("seed", "sampling_seed"),
                         ("skip_special_tokens", "skip_special_tokens"),
                         ("no_stop_trim", "no_stop_trim"),
                         ("frequency_penalty", "frequency_penalty"),
                         ("presence_penalty", "presence_penalty"),
                         ("repetition_penalty", "repetition_penalty")):
            if body.get(src) is not None:
                sp[dst] = body[src]
        return sp

    @staticmethod
    def _response_format(body: dict, chat: bool) -> str | None:
        """The json_schema sampling parameter response_format asks for (protocol.py's
        to_sampling_params / serving_completions' _build_sampling_params): the schema as
        json.dumps writes it, '{"type": "object"}' for json_object, nothing for text.
        structural_tag is accepted and has no effect."""
        rf = body.get("response_format")
        if rf is None:
            return None
        model = "ChatCompletionRequest" if chat else "CompletionRequest"

        def invalid(loc: str, msg: str) -> ApiError:
            return validation_error(f"1 validation error for {model}\n{loc}\n  {msg}")

        if not isinstance(rf, dict):
            raise invalid("response_format", "Input should be a valid dictionary or object")
        kind = rf.get("type")
        if kind == "structural_tag":
            return None
        if kind not in RESPONSE_FORMAT_TYPES:
            raise invalid("response_format.type",
                          "Input should be 'text', 'json_object' or 'json_schema'")
        if kind == "text":
            return None
        if kind == "json_object":
            return '{"type": "object"}'
        spec = rf.get("json_schema")
        if chat and not spec and rf.get("schema"):
            # The chat request's set_json_schema validator: a bare "schema" next to "type".
            bare = rf["schema"]
            spec = {"name": bare.get("title", "Schema") if isinstance(bare, dict) else "Schema",
                    "schema": bare}
        schema = None
        if spec is not None:
            if not isinstance(spec, dict):
                raise invalid("response_format.json_schema",
                              "Input should be a valid dictionary or object")
            if not isinstance(spec.get("name"), str):
                raise invalid("response_format.json_schema.name", "Field required"
                              if spec.get("name") is None else "Input should be a valid string")
            schema = spec.get("schema")
            if schema is not None and not isinstance(schema, dict):
                raise invalid("response_format.json_schema.schema",
                              "Input should be a valid dictionary")
        if schema is None:
            # Chat: _validate_request's message; completions: a ValueError while converting.
            raise openai_error("schema_ is required for json_schema response format request.",
                               400, "BadRequestError" if chat else "BadRequest")
        return json.dumps(schema)

    def _usage(self, reqs: list[Req]) -> dict:
        prompt = sum(len(r.prompt_ids) for r in {id(r.prompt_ids): r for r in reqs}.values())
        completion = sum(len(r.output_ids) for r in reqs)
        cached = sum(r.cached_tokens for r in reqs)
        return {"prompt_tokens": prompt, "total_tokens": prompt + completion,
                "completion_tokens": completion,
                "prompt_tokens_details": {"cached_tokens": cached}
                if self.cfg.enable_cache_report else None,
                "reasoning_tokens": 0}

    @staticmethod
    def _finish_fields(req: Req) -> tuple[str | None, object]:
        fr = req.finish_reason if req.finished else None
        if not fr:
            return None, None
        return fr["type"], fr.get("matched")

    def _openai_reqs(self, prompt_ids: list[array], sp: dict, waker: Waker) -> list[Req]:
        # No max_tokens: SGLang lets the answer run to the end of the context.
        unlimited = sp.get("max_new_tokens") is None
        grammars: dict = {}
        try:
            reqs = []
            for ids in prompt_ids:
                params = SamplingParams(dict(sp))
                if params.constrained:
                    self._grammar(params, grammars)
                if unlimited:
                    params.max_new_tokens = max(self.cfg.context_length - len(ids), 0)
                ids = self._check_length(ids, params)
                for _ in range(params.n):
                    reqs.append(Req(uuid.uuid4().hex, ids, params, waker, index=len(reqs)))
            return reqs
        except ValueError as exc:
            raise openai_error(str(exc)) from None

    async def completions(self, request: Request) -> StreamResponse:
        return await self._guarded(request, self._completions(request))

    async def _completions(self, request: Request) -> StreamResponse:
        body = await self._body(request, openai=True)
        prompt = body.get("prompt")
        if prompt is None:
            raise validation_error("1 validation error for CompletionRequest\nprompt\n  "
                                   "Field required")
        if isinstance(prompt, str):
            prompt_ids = [tokenizer.encode(prompt)]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompt_ids = [tokenizer.encode(p) for p in prompt]
        elif isinstance(prompt, list) and prompt and all(_token_id(p) for p in prompt):
            prompt_ids = [array("i", prompt)]
        elif isinstance(prompt, list) and prompt and all(
                isinstance(p, list) and p and all(_token_id(x) for x in p) for p in prompt):
            prompt_ids = [array("i", p) for p in prompt]
        else:
            raise validation_error("prompt: Input should be a string, a list of strings or "
                                   "a list of token ids")
        reqs, waker, model, cid, created, early = await self._openai_start(
            body, prompt_ids, body.get("max_tokens", 16), "cmpl")
        if early is not None:
            return early
        if not body.get("stream"):
            return await self._openai_answer(request, reqs, cid, created, model,
                                             "text_completion", lambda req: {"text": req.text})
        tail = self._usage_tail(body, reqs, cid, created, model, "text_completion")
        if (early := await self._grammar_error_stream(request, reqs, tail)) is not None:
            return early
        text_sent: dict[int, int] = {}

        def chunk_of(req: Req, final: bool, n_sent: int):
            start = text_sent.get(req.index, 0)
            delta = req.text[start:]
            text_sent[req.index] = len(req.text)
            reason, matched = self._finish_fields(req)
            if not delta and not final:
                return None
            return "data: " + dumps({
                "id": cid, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": req.index, "text": delta, "logprobs": None,
                             "finish_reason": reason, "matched_stop": matched}],
                "usage": None}) + "\n\n"

        return await self._stream(request, reqs, waker, chunk_of, tail)

    async def _openai_start(self, body: dict, prompt_ids: list, max_tokens, id_prefix: str):
        """What both OpenAI routes do before they answer: make one request per prompt and
        queue them; for a non-streaming call also wait until they finish. Returns
        (reqs, waker, model, response id, created, early), where early is a response to send
        as it is (an injected error) or None. A full queue is SGLang's 503 for a non-streaming
        call; a stream gets the abort chunk instead."""
        waker = Waker()
        chat = id_prefix == "chatcmpl"
        reqs = self._openai_reqs(prompt_ids, self._openai_params(body, max_tokens, chat), waker)
        error = reqs[0].params.grammar_error if reqs else None
        if error is not None and not body.get("stream"):
            # The scheduler's 400 abort, raised as a ValueError by the tokenizer manager.
            raise openai_error(error)
        model = body.get("model") or "default"
        cid = f"{id_prefix}-{uuid.uuid4().hex}"
        created = int(time.time())
        fault = self.server.generation_fault()
        if (resp := self._fault_response(fault)) is not None:
            return reqs, waker, model, cid, created, resp
        accepted = self._submit(reqs, fault)
        if not body.get("stream"):
            if not accepted:
                self._abort_unfinished(reqs)
                raise openai_error(QUEUE_FULL, 503, "503")
            await self._wait_all(reqs, waker)
        return reqs, waker, model, cid, created, None

    async def _grammar_error_stream(self, request: Request, reqs: list[Req], tail):
        """A stream whose schema did not compile. 0.5.23's OpenAI streams turn an abort with
        a status code into an error event (create_streaming_error_response) in place of any
        choice chunk; 0.5.6's send the abort as finish_reason "abort" (returns None: the
        ordinary stream does that)."""
        error = reqs[0].params.grammar_error if reqs else None
        if error is None or self.cfg.sim_version == "0.5.6":
            return None
        resp = StreamResponse(status=200, headers=SSE_HEADERS)
        await resp.prepare(request)
        event = json.dumps({"error": {"object": "error", "message": error,
                                      "type": "BAD_REQUEST", "param": None, "code": 400}})
        await self._end_stream(resp, [f"data: {event}\n\n"], tail, [])
        return resp

    async def _openai_answer(self, request: Request, reqs: list[Req], cid: str, created: int,
                             model: str, obj: str, content_of) -> Response:
        """The non-streamed answer of both OpenAI routes: one choice per request, whose
        content fields come from content_of(req)."""
        choices = []
        for req in reqs:
            reason, matched = self._finish_fields(req)
            choices.append({"index": req.index, **content_of(req), "logprobs": None,
                            "finish_reason": reason, "matched_stop": matched})
        return await self._send(request, {
            "id": cid, "object": obj, "created": created, "model": model, "choices": choices,
            "usage": self._usage(reqs), "metadata": {"weight_version": self.cfg.weight_version}})

    def _usage_tail(self, body: dict, reqs: list[Req], cid: str, created: int, model: str,
                    obj: str):
        opts = body.get("stream_options") or {}
        include = opts.get("include_usage") if isinstance(opts, dict) else None
        if include is None:
            include = self.cfg.stream_response_default_include_usage
        if not include:
            return None

        def tail():
            yield "data: " + dumps({"id": cid, "object": obj, "created": created,
                                    "model": model, "choices": [],
                                    "usage": self._usage(reqs)}) + "\n\n"
        return tail

    async def chat_completions(self, request: Request) -> StreamResponse:
        return await self._guarded(request, self._chat(request))

    async def _chat(self, request: Request) -> StreamResponse:
        body = await self._body(request, openai=True)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) for m in messages):
            raise validation_error("1 validation error for ChatCompletionRequest\nmessages\n  "
                                   "Field required (a non-empty list of message objects)")
        prompt_ids = [tokenizer.encode(tokenizer.chat_prompt(messages))]
        reqs, waker, model, cid, created, early = await self._openai_start(
            body, prompt_ids, body.get("max_completion_tokens", body.get("max_tokens")), "chatcmpl")
        if early is not None:
            return early
        if not body.get("stream"):
            return await self._openai_answer(
                request, reqs, cid, created, model, "chat.completion",
                lambda req: {"message": {"role": "assistant", "content": req.text,
                                         "reasoning_content": None, "tool_calls": None}})
        tail = self._usage_tail(body, reqs, cid, created, model, "chat.completion.chunk")
        if (early := await self._grammar_error_stream(request, reqs, tail)) is not None:
            return early
        text_sent: dict[int, int] = {}

        def chunk(req: Req, delta: dict, reason=None, matched=None) -> str:
            return "data: " + dumps({
                "id": cid, "object": "chat.completion.chunk", "created": created,
                "model": model,
                "choices": [{"index": req.index, "delta": delta, "logprobs": None,
                             "finish_reason": reason, "matched_stop": matched}],
                "usage": None}) + "\n\n"

        def chunk_of(req: Req, final: bool, n_sent: int):
            parts = []
            if req.index not in text_sent:
                # The first chunk of each choice carries the role.
                parts.append(chunk(req, {"role": "assistant", "content": ""}))
                text_sent[req.index] = 0
            start = text_sent[req.index]
            delta = req.text[start:]
            text_sent[req.index] = len(req.text)
            reason, matched = self._finish_fields(req)
            if delta or final:
                parts.append(chunk(req, {"role": None, "content": delta or None,
                                         "reasoning_content": None, "tool_calls": None},
                                   reason, matched))
            return "".join(parts) or None

        return await self._stream(request, reqs, waker, chunk_of, tail)
