"""Bodies, errors and SSE details of the native and OpenAI-compatible endpoints."""

from __future__ import annotations

import itertools
import re
import threading
import time

import pytest
from conftest import FAST, PROMPT, sse_events, sse_json

META_KEYS = {"id", "finish_reason", "prompt_tokens", "weight_version", "num_retractions",
             "reasoning_tokens", "completion_tokens", "cached_tokens", "e2e_latency",
             "response_sent_to_client_ts"}


def greedy(n: int, **extra) -> dict:
    return {"temperature": 0, "max_new_tokens": n, **extra}


# ---- /generate ------------------------------------------------------------------------------
def test_generate_non_stream_shape(shared_sim):
    out = shared_sim.generate({"text": PROMPT, "sampling_params": greedy(8)})
    assert set(out) == {"text", "output_ids", "meta_info"}
    meta = out["meta_info"]
    assert set(meta) == META_KEYS
    assert meta["finish_reason"] == {"type": "length", "length": 8}
    assert meta["prompt_tokens"] == 7  # BOS + 6 words, as a Llama tokenizer counts it
    assert meta["completion_tokens"] == len(out["output_ids"]) == 8
    assert meta["weight_version"] == "default"
    assert re.fullmatch(r"[0-9a-f]{32}", meta["id"])
    assert meta["e2e_latency"] > 0
    assert out["text"].strip()


def test_generate_rid_input_ids_and_unknown_top_level_keys(shared_sim):
    out = shared_sim.generate({"input_ids": [1, 5000, 6000, 7000], "rid": "my-rid-1",
                               "sampling_params": greedy(3), "no_such_field": {"x": 1},
                               "return_logprob": False})
    assert out["meta_info"]["id"] == "my-rid-1"
    assert out["meta_info"]["prompt_tokens"] == 4


def test_generate_batch_returns_a_list(shared_sim):
    outs = shared_sim.generate({"text": ["one prompt", "another prompt here"],
                                "sampling_params": greedy(2)})
    assert isinstance(outs, list) and len(outs) == 2
    assert [o["meta_info"]["prompt_tokens"] for o in outs] == [3, 4]
    outs = shared_sim.generate({"input_ids": [[1, 2000], [1, 3000, 4000]],
                                "sampling_params": [greedy(1), greedy(2)]})
    assert [o["meta_info"]["completion_tokens"] for o in outs] == [1, 2]


def test_generate_errors(shared_sim):
    r = shared_sim.post("/generate", {"sampling_params": greedy(2)})
    assert r.status_code == 400
    assert r.json() == {"error": {"message":
                                  "Either text, input_ids or input_embeds should be provided."}}
    r = shared_sim.post("/generate", data=b"{not json", headers={"Content-Type":
                                                                "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert body["object"] == "error" and body["code"] == 400 and body["type"] == "Bad Request"
    # Unknown keys inside sampling_params are refused, with a plain-string error.
    r = shared_sim.post("/generate", {"text": "x", "sampling_params": {"temprature": 0}})
    assert r.status_code == 400
    assert isinstance(r.json()["error"], str) and "temprature" in r.json()["error"]
    r = shared_sim.post("/generate", {"text": "x", "sampling_params": {"temperature": -1}})
    assert r.status_code == 400
    assert "temperature" in r.json()["error"]
    r = shared_sim.post("/generate", {"text": "x", "sampling_params": {"top_p": 0}})
    assert r.status_code == 400
    r = shared_sim.post("/generate", {"text": "x", "sampling_params": {"stop": [1, 2]}})
    assert r.status_code == 400 and "stop" in r.json()["error"]
    r = shared_sim.post("/generate", {"input_ids": [1, 2**40], "sampling_params": greedy(1)})
    assert r.status_code == 400 and "input_ids" in r.json()["message"]
    r = shared_sim.post("/v1/completions", {"prompt": [1, -5], "max_tokens": 1})
    assert r.status_code == 400
    assert shared_sim.get("/generate").status_code == 405
    assert shared_sim.get("/generate").json() == {"detail": "Method Not Allowed"}
    r = shared_sim.get("/no/such/path")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


def test_generate_accepts_put(shared_sim):
    r = shared_sim.url + "/generate"
    import requests
    resp = requests.put(r, json={"text": "x", "sampling_params": greedy(1)}, timeout=30)
    assert resp.status_code == 200
    assert resp.json()["meta_info"]["completion_tokens"] == 1


def test_generate_stream_is_cumulative_and_ends_with_done(shared_sim):
    r, raw = shared_sim.stream("/generate", {"text": PROMPT, "stream": True,
                                             "sampling_params": greedy(6)})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    chunks = sse_json(raw)
    # One chunk per token; a reader slower than the steps gets the tokens so far in one
    # chunk, as SGLang's tokenizer manager keeps only the latest cumulative output.
    assert 2 <= len(chunks) <= 6
    for prev, c in itertools.pairwise(chunks):
        assert set(c["meta_info"]) == META_KEYS
        assert c["meta_info"]["completion_tokens"] > prev["meta_info"]["completion_tokens"]
        assert len(c["output_ids"]) == c["meta_info"]["completion_tokens"]
        assert c["text"].startswith(prev["text"])
        assert c["output_ids"][: len(prev["output_ids"])] == prev["output_ids"]
    assert chunks[-1]["meta_info"]["completion_tokens"] == 6
    assert all(c["meta_info"]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["meta_info"]["finish_reason"] == {"type": "length", "length": 6}
    # The stream and the plain answer agree.
    plain = shared_sim.generate({"text": PROMPT, "sampling_params": greedy(6)})
    assert plain["text"] == chunks[-1]["text"]
    assert plain["output_ids"] == chunks[-1]["output_ids"]


def test_stream_interval_per_request(shared_sim):
    _, raw = shared_sim.stream("/generate", {"text": "x", "stream": True,
                                             "sampling_params": greedy(10, stream_interval=4)})
    counts = [c["meta_info"]["completion_tokens"] for c in sse_json(raw)]
    # A chunk once 4 more tokens are out (normally 4, 8), then the final one.
    assert counts[-1] == 10 and len(counts) <= 3
    assert counts[0] >= 4
    assert all(b - a >= 4 for a, b in itertools.pairwise(counts[:-1]))


def test_first_chunk_arrives_before_the_last(shared_sim):
    import requests
    r = requests.post(shared_sim.url + "/generate", stream=True, timeout=30, json={
        "text": "slow", "stream": True, "sampling_params": greedy(150, ignore_eos=True)})
    arrivals = []
    for line in r.iter_lines():
        if line.startswith(b"data: {"):
            arrivals.append(time.monotonic())
    assert len(arrivals) > 10
    assert arrivals[0] < arrivals[-1]


def test_stop_strings_and_stop_token_ids(shared_sim):
    base = shared_sim.generate({"text": "stop test", "sampling_params": greedy(12)})
    words = base["text"].split()
    stop_word = words[5]
    cut = base["text"].index(" " + stop_word)
    out = shared_sim.generate({"text": "stop test",
                               "sampling_params": greedy(12, stop=[" " + stop_word])})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": " " + stop_word}
    assert out["text"] == base["text"][:cut]
    kept = shared_sim.generate({"text": "stop test", "sampling_params": greedy(
        12, stop=" " + stop_word, no_stop_trim=True)})
    assert kept["text"].endswith(" " + stop_word)
    stop_id = base["output_ids"][3]
    out = shared_sim.generate({"text": "stop test",
                               "sampling_params": greedy(12, stop_token_ids=[stop_id])})
    assert out["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop_id}
    assert out["output_ids"] == base["output_ids"][: base["output_ids"].index(stop_id) + 1]


def test_streamed_text_matches_the_answer_through_newlines_and_a_trimmed_stop(shared_sim):
    # Streamed chunks extend the text's JSON token by token; the output vocabulary has "\n"
    # (escaped in JSON), and a matched stop string shortens the text at the end.
    prompt = "a long streamed answer"
    base = shared_sim.generate({"text": prompt, "sampling_params": greedy(60, ignore_eos=True)})
    assert "\n" in base["text"]  # this prompt's answer has one: the test is about escaping
    _, raw = shared_sim.stream("/generate", {"text": prompt, "stream": True,
                                             "sampling_params": greedy(60, ignore_eos=True)})
    chunks = sse_json(raw)
    assert all(base["text"].startswith(c["text"]) for c in chunks)
    assert chunks[-1]["text"] == base["text"]
    assert chunks[-1]["output_ids"] == base["output_ids"]
    stop = " " + base["text"].split()[20]
    cut = base["text"].index(stop)
    plain = shared_sim.generate({"text": prompt, "sampling_params": greedy(60, stop=stop)})
    _, raw = shared_sim.stream("/generate", {"text": prompt, "stream": True,
                                             "sampling_params": greedy(60, stop=stop)})
    chunks = sse_json(raw)
    assert plain["text"] == base["text"][:cut] == chunks[-1]["text"]
    assert chunks[-1]["meta_info"]["finish_reason"] == {"type": "stop", "matched": stop}
    assert all(base["text"].startswith(c["text"]) for c in chunks)


def test_natural_eos_and_ignore_eos(shared_sim):
    out = shared_sim.generate({"text": "tell me a story", "sampling_params": greedy(1000)})
    fr = out["meta_info"]["finish_reason"]
    assert fr == {"type": "stop", "matched": 2}
    # --sim-min/max-output-tokens default 16..256, plus the EOS token itself.
    assert 17 <= out["meta_info"]["completion_tokens"] <= 257
    assert out["output_ids"][-1] == 2
    n = out["meta_info"]["completion_tokens"]
    longer = shared_sim.generate({"text": "tell me a story",
                                  "sampling_params": greedy(n + 5, ignore_eos=True)})
    assert longer["meta_info"]["finish_reason"] == {"type": "length", "length": n + 5}


def test_max_new_tokens_zero(shared_sim):
    out = shared_sim.generate({"text": "x", "sampling_params": greedy(0)})
    assert out["output_ids"] == [] and out["text"] == ""
    assert out["meta_info"]["finish_reason"] == {"type": "length", "length": 0}


def test_determinism(shared_sim, sim_factory):
    a = shared_sim.generate({"text": PROMPT, "sampling_params": greedy(20)})
    b = shared_sim.generate({"text": PROMPT, "sampling_params": greedy(20)})
    assert a["output_ids"] == b["output_ids"]
    # Greedy: a shorter answer is a prefix of a longer one.
    c = shared_sim.generate({"text": PROMPT, "sampling_params": greedy(5)})
    assert a["output_ids"][:5] == c["output_ids"]
    other = shared_sim.generate({"text": PROMPT + " not", "sampling_params": greedy(20)})
    assert other["output_ids"] != a["output_ids"]
    sampled = {"temperature": 0.8, "max_new_tokens": 20, "sampling_seed": 11}
    s1 = shared_sim.generate({"text": PROMPT, "sampling_params": sampled})
    s2 = shared_sim.generate({"text": PROMPT, "sampling_params": sampled})
    assert s1["output_ids"] == s2["output_ids"]
    s3 = shared_sim.generate({"text": PROMPT, "sampling_params": {**sampled, "sampling_seed": 12}})
    assert s3["output_ids"] != s1["output_ids"]
    # Another process with the same seed says the same; another seed does not.
    same = sim_factory(*FAST)
    assert same.generate({"text": PROMPT, "sampling_params": greedy(20)})["output_ids"] == \
        a["output_ids"]
    seeded = sim_factory(*FAST, "--sim-seed", "99")
    assert seeded.generate({"text": PROMPT, "sampling_params": greedy(20)})["output_ids"] != \
        a["output_ids"]


def test_context_length_limits(sim_factory):
    sim = sim_factory(*FAST, "--context-length", "32")
    r = sim.post("/generate", {"text": "a b c d e f g h", "sampling_params": greedy(30)})
    assert r.status_code == 400
    assert "maximum context length of 32 tokens" in r.json()["error"]["message"]
    r = sim.post("/generate", {"input_ids": list(range(100, 140)), "sampling_params": greedy(1)})
    assert r.status_code == 400
    assert "longer than the model's context length" in r.json()["error"]["message"]
    r = sim.post("/v1/completions", {"prompt": "a b c d e f g h", "max_tokens": 30})
    assert r.status_code == 400
    assert r.json()["type"] == "BadRequestError"
    trunc = sim_factory(*FAST, "--context-length", "32", "--allow-auto-truncate")
    out = trunc.generate({"text": "a b c d e f g h", "sampling_params": greedy(30)})
    assert out["meta_info"]["prompt_tokens"] + out["meta_info"]["completion_tokens"] <= 32


def test_abort_request_ends_the_stream(sim_factory):
    args = list(FAST)
    args[args.index("--sim-decode-ms") + 1] = "10"
    sim = sim_factory(*args, "--enable-metrics")
    result = {}

    def run():
        result["r"], result["raw"] = sim.stream("/generate", {
            "text": "abort me", "rid": "victim", "stream": True,
            "sampling_params": greedy(500, ignore_eos=True)})

    t = threading.Thread(target=run)
    t.start()
    sim.wait_running()
    assert sim.post("/abort_request", {"rid": "victim"}).status_code == 200
    t.join(10)
    chunks = sse_json(result["raw"])
    assert chunks[-1]["meta_info"]["finish_reason"]["type"] == "abort"
    assert chunks[-1]["meta_info"]["completion_tokens"] < 500
    m = sim.metrics()
    assert m['sglang:num_aborted_requests_total{model_name="sim/tiny-model"}'] == 1


# ---- OpenAI-compatible ----------------------------------------------------------------------
def test_completions(shared_sim):
    r = shared_sim.post("/v1/completions", {"model": "whatever", "prompt": PROMPT,
                                            "max_tokens": 5, "temperature": 0})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["model"] == "whatever"  # echoed, not checked
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and choice["index"] == 0
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12,
                             "prompt_tokens_details": None, "reasoning_tokens": 0}
    native = shared_sim.generate({"text": PROMPT, "sampling_params": greedy(5)})
    assert choice["text"] == native["text"]
    # Default max_tokens is 16, as in OpenAI's API.
    body = shared_sim.post("/v1/completions", {"prompt": "x", "ignore_eos": True}).json()
    assert body["usage"]["completion_tokens"] == 16
    assert body["model"] == "default"
    two = shared_sim.post("/v1/completions", {"prompt": ["a", "b"], "max_tokens": 2}).json()
    assert [c["index"] for c in two["choices"]] == [0, 1]


def test_openai_errors(shared_sim):
    r = shared_sim.post("/v1/completions", {"max_tokens": 2})
    assert r.status_code == 400
    assert r.json()["object"] == "error" and r.json()["code"] == 400
    r = shared_sim.post("/v1/chat/completions", data=b'{"messages": []}',
                        headers={"Content-Type": "text/plain"})
    assert r.status_code == 400
    assert "application/json" in r.json()["message"]
    r = shared_sim.post("/v1/chat/completions", {"messages": []})
    assert r.status_code == 400
    r = shared_sim.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                 "temperature": -2})
    assert r.status_code == 400 and r.json()["type"] == "BadRequestError"


def test_chat_completion(shared_sim):
    body = {"model": "tiny-chat", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Hello there"}],
            "max_tokens": 6, "temperature": 0}
    out = shared_sim.post("/v1/chat/completions", body).json()
    assert out["object"] == "chat.completion" and out["id"].startswith("chatcmpl-")
    msg = out["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["content"]
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 6
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + 6
    # No max_tokens: the answer ends on its own (EOS), finish_reason "stop".
    free = shared_sim.post("/v1/chat/completions", {**body, "max_tokens": None}).json()
    assert free["choices"][0]["finish_reason"] == "stop"
    assert free["choices"][0]["matched_stop"] == 2


def test_chat_stream(shared_sim):
    body = {"messages": [{"role": "user", "content": "Stream please"}], "max_tokens": 5,
            "temperature": 0, "stream": True}
    r, raw = shared_sim.stream("/v1/chat/completions", body)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    chunks = sse_json(raw)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    plain = shared_sim.post("/v1/chat/completions", {**body, "stream": False}).json()
    assert streamed == plain["choices"][0]["message"]["content"]
    # Usage only on request, in an extra chunk with no choices.
    _, raw = shared_sim.stream("/v1/chat/completions",
                               {**body, "stream_options": {"include_usage": True}})
    chunks = sse_json(raw)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert all(c.get("usage") is None for c in chunks[:-1])


def test_completions_stream(shared_sim):
    r, raw = shared_sim.stream("/v1/completions", {"prompt": PROMPT, "max_tokens": 4,
                                                   "temperature": 0, "stream": True})
    assert r.status_code == 200
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = sse_json(raw)
    assert "".join(c["choices"][0]["text"] for c in chunks) == shared_sim.generate(
        {"text": PROMPT, "sampling_params": greedy(4)})["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


# ---- info endpoints -------------------------------------------------------------------------
def test_models(shared_sim):
    body = shared_sim.get("/v1/models").json()
    assert body["object"] == "list"
    card = body["data"][0]
    assert card["id"] == "tiny-chat" and card["root"] == "tiny-chat"
    assert card["owned_by"] == "sglang" and card["object"] == "model"
    assert card["max_model_len"] == 8192
    assert shared_sim.get("/v1/models/tiny-chat").json()["id"] == "tiny-chat"
    r = shared_sim.get("/v1/models/gpt-x")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("path", ["/model_info", "/get_model_info"])
def test_model_info(shared_sim, path):
    info = shared_sim.get(path).json()
    assert info["model_path"] == "sim/tiny-model"
    assert info["is_generation"] is True
    assert info["weight_version"] == "default"
    for key in ("tokenizer_path", "preferred_sampling_params", "served_model_name"):
        assert key in info


@pytest.mark.parametrize("path", ["/server_info", "/get_server_info"])
def test_server_info(shared_sim, path):
    info = shared_sim.get(path).json()
    assert info["model_path"] == "sim/tiny-model"
    assert info["port"] == shared_sim.port and info["host"] == "127.0.0.1"
    assert info["served_model_name"] == "tiny-chat"
    assert info["max_total_num_tokens"] > 0
    assert isinstance(info["internal_states"], list) and len(info["internal_states"]) == 1
    assert "last_gen_throughput" in info["internal_states"][0]
    assert info["version"].startswith("0.5.")
    assert info["sim"]["gpu_ids"] == ["0"]


def test_loads(shared_sim):
    load = shared_sim.get("/get_load").json()
    assert set(load[0]) == {"dp_rank", "num_reqs", "num_waiting_reqs", "num_tokens"}
    loads = shared_sim.get("/v1/loads").json()
    assert {"timestamp", "version", "loads"} <= set(loads)
    for key in ("num_running_reqs", "num_waiting_reqs", "max_running_requests", "token_usage",
                "cache_hit_rate", "gen_throughput"):
        assert key in loads["loads"][0]


def test_pause_and_continue(sim_factory):
    sim = sim_factory(*FAST)
    assert sim.post("/pause_generation", {}).json()["status"] == "ok"
    assert sim.get("/ready").status_code == 503
    assert sim.get("/ping").status_code == 200
    sim.post("/continue_generation", {})
    assert sim.get("/ready").status_code == 200


# ---- prefix cache ---------------------------------------------------------------------------
def test_prefix_cache_reports_cached_tokens_and_speeds_prefill(sim_factory):
    args = list(FAST)
    args[args.index("--sim-prefill-ms-per-token") + 1] = "1.0"
    sim = sim_factory(*args, "--enable-cache-report", "--enable-metrics")
    doc = " ".join(f"w{i}" for i in range(400))
    first = sim.generate({"text": doc + " question one", "sampling_params": greedy(1)})
    second = sim.generate({"text": doc + " question two", "sampling_params": greedy(1)})
    assert first["meta_info"]["cached_tokens"] <= 1  # only the BOS of the warm-up prompt
    assert second["meta_info"]["cached_tokens"] >= 401
    # 400 uncached tokens at 1 ms each against a handful.
    assert second["meta_info"]["e2e_latency"] < first["meta_info"]["e2e_latency"]
    usage = sim.post("/v1/completions", {"prompt": doc + " question three",
                                         "max_tokens": 1}).json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] >= 401
    m = sim.metrics()
    assert m['sglang:cache_hit_rate{engine_type="unified",model_name="sim/tiny-model",'
             'moe_ep_rank="0",pp_rank="0",tp_rank="0"}'] > 0.5
    assert sim.get("/flush_cache").text.startswith("Cache flushed.")
    again = sim.generate({"text": doc + " question two", "sampling_params": greedy(1)})
    assert again["meta_info"]["cached_tokens"] == 0


def test_disable_radix_cache(sim_factory):
    sim = sim_factory(*FAST, "--disable-radix-cache")
    for _ in range(2):
        out = sim.generate({"text": PROMPT, "sampling_params": greedy(1)})
        assert out["meta_info"]["cached_tokens"] == 0


def test_flush_cache_refused_while_busy(sim_factory):
    args = list(FAST)
    args[args.index("--sim-decode-ms") + 1] = "10"
    sim = sim_factory(*args)
    t = threading.Thread(target=lambda: sim.generate(
        {"text": "busy", "sampling_params": greedy(100, ignore_eos=True)}))
    t.start()
    sim.wait_running()
    r = sim.post("/flush_cache")
    assert r.status_code == 400
    assert r.text.startswith("Cache flushed.")  # SGLang's body either way
    t.join(20)
    assert sim.post("/flush_cache").status_code == 200


def test_incremental_streaming_output(sim_factory):
    sim = sim_factory(*FAST, "--incremental-streaming-output")
    full = sim.generate({"text": PROMPT, "sampling_params": greedy(8)})
    _, raw = sim.stream("/generate", {"text": PROMPT, "stream": True,
                                      "sampling_params": greedy(8)})
    chunks = sse_json(raw)
    assert len(chunks) >= 2
    # Deltas: pieced together they make the whole answer.
    assert "".join(c["text"] for c in chunks) == full["text"]
    assert [t for c in chunks for t in c["output_ids"]] == full["output_ids"]
    assert chunks[-1]["meta_info"]["completion_tokens"] == 8


def test_batch_stream_and_parallel_sampling(shared_sim):
    _, raw = shared_sim.stream("/generate", {"text": ["a", "b c"], "stream": True,
                                             "sampling_params": greedy(3)})
    chunks = sse_json(raw)
    finals = {c["index"]: c for c in chunks if c["meta_info"]["finish_reason"]}
    assert set(finals) == {0, 1}
    assert [finals[i]["meta_info"]["prompt_tokens"] for i in (0, 1)] == [2, 3]
    outs = shared_sim.generate({"text": "pick one", "sampling_params": {
        "n": 3, "temperature": 1.0, "max_new_tokens": 6, "sampling_seed": 5}})
    assert len(outs) == 3
    assert len({tuple(o["output_ids"]) for o in outs}) > 1  # the samples differ
    chat = shared_sim.post("/v1/chat/completions", {
        "messages": [{"role": "user", "content": "x"}], "n": 2, "max_tokens": 3}).json()
    assert [c["index"] for c in chat["choices"]] == [0, 1]
    assert chat["usage"]["completion_tokens"] == 6
