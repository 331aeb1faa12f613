"""Structured output: sampling_params.json_schema and OpenAI response_format."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from conftest import FAST, PROMPT, sse_events, sse_json
from sglang_sim import json_schema

try:  # a second opinion when it is installed; the small validator below always runs
    import jsonschema
except ImportError:  # pragma: no cover
    jsonschema = None

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "email": {"type": "string", "format": "email"},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "active": {"type": "boolean"},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10},
                 "minItems": 1, "maxItems": 4},
        "address": {"type": "object",
                    "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city"], "additionalProperties": False},
        "manager": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/ref"}]},
        "version": {"const": 2},
        "note": {"type": ["string", "null"]},
    },
    "required": ["name", "age", "email", "score", "active", "role", "tags", "address",
                 "manager", "version"],
    "additionalProperties": False,
    "$defs": {"ref": {"type": "object", "properties": {"id": {"type": "integer"}},
                      "required": ["id"], "additionalProperties": False}},
}
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _validate(value, schema, root, path="$"):
    """A small JSON Schema validator for the keywords these tests use."""
    if schema is True or schema == {}:
        return
    assert isinstance(schema, dict), path
    if "$ref" in schema:
        node = root
        for part in schema["$ref"][2:].split("/") if schema["$ref"] != "#" else []:
            node = node[part]
        _validate(value, node, root, path)
        return
    if "const" in schema:
        assert value == schema["const"], path
    if "enum" in schema:
        assert value in schema["enum"], path
    for key in ("anyOf", "oneOf"):
        if key in schema:
            ok = 0
            for branch in schema[key]:
                try:
                    _validate(value, branch, root, path)
                    ok += 1
                except AssertionError:
                    pass
            assert ok >= 1 if key == "anyOf" else ok == 1, f"{path}: {key}"
    for branch in schema.get("allOf", []):
        _validate(value, branch, root, path)
    t = schema.get("type")
    if t is not None:
        types = t if isinstance(t, list) else [t]
        assert any(_is_type(value, x) for x in types), f"{path}: {value!r} is not {t}"
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            assert name in value, f"{path}: {name} missing"
        for name, v in value.items():
            if name in props:
                _validate(v, props[name], root, f"{path}.{name}")
            elif schema.get("additionalProperties") is False:
                raise AssertionError(f"{path}: unexpected {name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                _validate(v, schema["additionalProperties"], root, f"{path}.{name}")
        assert schema.get("minProperties", 0) <= len(value) <= schema.get("maxProperties", 1e9)
    if isinstance(value, list):
        assert schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", 1e9), path
        prefix = schema.get("prefixItems", [])
        for i, v in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            _validate(v, sub, root, f"{path}[{i}]")
    if isinstance(value, str):
        assert schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 1e9), path
    if _is_type(value, "number"):
        assert value >= schema.get("minimum", -1e18) and value <= schema.get("maximum", 1e18)
        assert value > schema.get("exclusiveMinimum", -1e18), path
        assert value < schema.get("exclusiveMaximum", 1e18), path
        if "multipleOf" in schema:
            assert value % schema["multipleOf"] == 0, path


def _is_type(value, t: str) -> bool:
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[t])


def check(text: str, schema: dict):
    """text parses as JSON valid against schema; the value."""
    value = json.loads(text)
    _validate(value, schema, schema)
    if jsonschema is not None:
        jsonschema.validate(value, schema)
    return value


def native(schema: dict, **sp) -> dict:
    return {"max_new_tokens": 256, "temperature": 0, "json_schema": json.dumps(schema), **sp}


def chat_body(schema: dict, **extra) -> dict:
    return {"messages": [{"role": "user", "content": "Describe a user as JSON."}],
            "temperature": 0, "max_tokens": 256,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "person", "schema": schema}}, **extra}


# ---- the generator -----------------------------------------------------------------------
GENERATOR_SCHEMAS = [
    PERSON,
    {"type": "object"},
    True,
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
    {"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 5},
     "minItems": 3, "maxItems": 3},
    {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
               {"properties": {"b": {"type": "string"}}, "required": ["b"]}]},
    {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "object",
                                                   "properties": {"n": {"type": "null"}},
                                                   "required": ["n"]}]},
    {"$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["value", "children"], "additionalProperties": False}},
     "$ref": "#/$defs/node"},
    {"definitions": {"s": {"type": "string", "enum": ["x", "y"]}},
     "type": "object", "properties": {"s": {"$ref": "#/definitions/s"}}, "required": ["s"]},
    {"type": "object", "additionalProperties": {"type": "boolean"}, "minProperties": 2,
     "maxProperties": 3},
    {"type": "object", "additionalProperties": {"type": "integer"}, "required": ["id"]},
    {"type": "number", "minimum": 2.5, "exclusiveMaximum": 2.75},
    {"type": "string", "minLength": 30, "maxLength": 31},
]


@pytest.mark.parametrize("schema", GENERATOR_SCHEMAS)
def test_generated_documents_are_valid(schema):
    compiled = json_schema.compile_schema(json.dumps(schema))
    texts = set()
    for seed in range(100):
        text = compiled.generate(random.Random(seed))
        check(text, schema if isinstance(schema, dict) else {})
        texts.add(text)
    assert len(texts) > 1  # the PRNG chooses the values


# ---- /generate ---------------------------------------------------------------------------
def test_generate_answers_are_documents_valid_against_the_schema(shared_sim):
    # A readiness check's hundred constrained requests, as one batch of different prompts.
    prompts = [f"Request {i}: describe a user." for i in range(100)]
    outs = shared_sim.generate({"text": prompts, "sampling_params": native(PERSON)})
    assert len(outs) == 100
    values = []
    for out in outs:
        values.append(check(out["text"], PERSON))
        meta = out["meta_info"]
        # The grammar terminates with EOS: finish "stop", matched the EOS id, as SGLang.
        assert meta["finish_reason"] == {"type": "stop", "matched": 2}
        assert out["output_ids"][-1] == 2
        assert meta["completion_tokens"] == len(out["output_ids"]) > 10
    assert len({json.dumps(v) for v in values}) > 50


def test_generate_stream_carries_the_document_token_by_token(shared_sim):
    body = {"text": PROMPT, "sampling_params": native(PERSON), "stream": True}
    r, raw = shared_sim.stream("/generate", body)
    assert r.status_code == 200
    chunks = sse_json(raw)
    assert len(chunks) >= 2  # a slow reader gets several tokens in one (cumulative) chunk
    for prev, c in itertools.pairwise(chunks):
        assert c["text"].startswith(prev["text"])
    last = chunks[-1]
    check(last["text"], PERSON)
    assert last["meta_info"]["finish_reason"] == {"type": "stop", "matched": 2}
    plain = shared_sim.generate({"text": PROMPT, "sampling_params": native(PERSON)})
    assert plain["text"] == last["text"] and plain["output_ids"] == last["output_ids"]


def test_determinism_and_seed(shared_sim, sim_factory):
    body = {"text": PROMPT, "sampling_params": native(PERSON)}
    a = shared_sim.generate(body)
    b = shared_sim.generate(body)
    assert a["text"] == b["text"] and a["output_ids"] == b["output_ids"]
    # Another prompt, another document; sampled requests follow sampling_seed.
    assert shared_sim.generate({**body, "text": PROMPT + " now"})["text"] != a["text"]
    sampled = {"text": PROMPT, "sampling_params": native(PERSON, temperature=0.7,
                                                         sampling_seed=5)}
    s1, s2 = shared_sim.generate(sampled), shared_sim.generate(sampled)
    assert s1["text"] == s2["text"]
    other = {**sampled, "sampling_params": native(PERSON, temperature=0.7, sampling_seed=6)}
    assert shared_sim.generate(other)["text"] != s1["text"]
    # Another process with the same --sim-seed writes the same; another seed does not.
    assert sim_factory(*FAST).generate(body)["text"] == a["text"]
    reseeded = sim_factory(*FAST, "--sim-seed", "7").generate(body)
    check(reseeded["text"], PERSON)
    assert reseeded["text"] != a["text"]


def test_max_new_tokens_truncates_and_ignore_eos_does_not_extend(shared_sim):
    full = shared_sim.generate({"text": PROMPT, "sampling_params": native(PERSON)})
    n = full["meta_info"]["completion_tokens"]  # the document's pieces + EOS
    short = shared_sim.generate({"text": PROMPT, "sampling_params": native(PERSON,
                                                                           max_new_tokens=6)})
    assert short["meta_info"]["finish_reason"] == {"type": "length", "length": 6}
    assert full["text"].startswith(short["text"]) and short["text"] != full["text"]
    with pytest.raises(ValueError):
        json.loads(short["text"])
    # The whole document but no room for EOS: complete, yet finish "length".
    exact = shared_sim.generate({"text": PROMPT,
                                 "sampling_params": native(PERSON, max_new_tokens=n - 1)})
    assert exact["text"] == full["text"]
    assert exact["meta_info"]["finish_reason"] == {"type": "length", "length": n - 1}
    # Room for exactly the EOS: "stop" (0.5.23 checks EOS before max_new_tokens).
    fits = shared_sim.generate({"text": PROMPT,
                                "sampling_params": native(PERSON, max_new_tokens=n)})
    assert fits["meta_info"]["finish_reason"] == {"type": "stop", "matched": 2}
    assert fits["output_ids"] == full["output_ids"]
    # ignore_eos does not go on past a terminated grammar.
    more = shared_sim.generate({"text": PROMPT,
                                "sampling_params": native(PERSON, ignore_eos=True)})
    assert more["text"] == full["text"]
    assert more["meta_info"]["finish_reason"] == {"type": "stop", "matched": 2}
    # Without a schema the same request is ordinary filler.
    plain = shared_sim.generate({"text": PROMPT, "sampling_params": {"temperature": 0,
                                                                      "max_new_tokens": 8}})
    assert not plain["text"].lstrip().startswith("{")


def test_generate_schema_errors(shared_sim):
    def post(sp, stream=False):
        return shared_sim.post("/generate", {"text": "x", "sampling_params": sp,
                                             "stream": stream})

    r = post({"json_schema": "{bad"})
    assert r.status_code == 400
    assert r.json() == {"error": {"message": "Failed to compile json grammar: Expecting "
                                             "property name enclosed in double quotes: line 1 "
                                             "column 2 (char 1)"}}
    r = post({"json_schema": json.dumps({"type": "strng"})})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == 'Failed to compile json grammar: Unsupported type ' \
                                           '"strng"'
    # 0.5.23 refuses what xgrammar would silently ignore.
    r = post({"json_schema": json.dumps({"type": "integer", "multipleOf": 3})})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        "Failed to compile json grammar: JSON Schema at # is not supported by xgrammar: "
        "keyword(s) multipleOf would be ignored")
    # The request contract: json_schema is a string holding the schema.
    r = post({"json_schema": {"type": "object"}})
    assert r.status_code == 400
    assert r.json() == {"error": "invalid type: map, expected a string"}
    r = post({"json_schema": "{}", "regex": "a+"})
    assert r.status_code == 400 and "Only one of" in r.json()["error"]
    # An empty json_schema is no constraint, as SGLang normalizes it.
    assert shared_sim.generate({"text": "x", "sampling_params": {"json_schema": "",
                                                                 "max_new_tokens": 2}})
    # A stream gets the scheduler's abort as its one chunk.
    r = post({"json_schema": "{bad"}, stream=True)
    assert r.status_code == 200
    (chunk,) = sse_json(r.content)
    fr = chunk["meta_info"]["finish_reason"]
    assert fr["type"] == "abort" and fr["status_code"] == 400
    assert fr["message"].startswith("Failed to compile json grammar: Expecting property")
    assert chunk["output_ids"] == [] and chunk["text"] == ""


# ---- OpenAI ----------------------------------------------------------------------------------
def test_chat_response_format_json_schema(shared_sim):
    r = shared_sim.post("/v1/chat/completions", chat_body(PERSON))
    assert r.status_code == 200, r.text
    out = r.json()
    choice = out["choices"][0]
    check(choice["message"]["content"], PERSON)
    assert choice["finish_reason"] == "stop" and choice["matched_stop"] == 2
    # Streamed: the deltas join into the same document, the usage counts the same tokens.
    _, raw = shared_sim.stream("/v1/chat/completions", chat_body(
        PERSON, stream=True, stream_options={"include_usage": True}))
    chunks = sse_json(raw)
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert sum(1 for d in deltas if d) > 10  # token by token
    assert "".join(deltas) == choice["message"]["content"]
    finals = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [(f["finish_reason"], f["matched_stop"]) for f in finals] == [("stop", 2)]
    assert chunks[-1]["usage"]["completion_tokens"] == out["usage"]["completion_tokens"]
    # The bare-"schema" form the chat route accepts too.
    bare = chat_body(PERSON)
    bare["response_format"] = {"type": "json_schema", "schema": PERSON}
    assert shared_sim.post("/v1/chat/completions", bare).json()["choices"][0]["message"][
        "content"] == choice["message"]["content"]
    # Truncated by max_tokens: finish_reason "length", and the text does not parse.
    short = shared_sim.post("/v1/chat/completions", chat_body(PERSON, max_tokens=7)).json()
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 7
    with pytest.raises(ValueError):
        json.loads(short["choices"][0]["message"]["content"])


def test_completions_json_object_and_text(shared_sim):
    body = {"prompt": PROMPT, "max_tokens": 128, "temperature": 0,
            "response_format": {"type": "json_object"}}
    out = shared_sim.post("/v1/completions", body).json()
    assert isinstance(check(out["choices"][0]["text"], {"type": "object"}), dict)
    assert out["choices"][0]["finish_reason"] == "stop"
    # json_object is the schema {"type": "object"}, exactly as SGLang sets it.
    same = shared_sim.generate({"text": PROMPT, "sampling_params": {
        "temperature": 0, "max_new_tokens": 128, "json_schema": '{"type": "object"}'}})
    assert same["text"] == out["choices"][0]["text"]
    # completions also take SGLang's json_schema field; response_format wins over it.
    direct = shared_sim.post("/v1/completions", {**body, "response_format": None,
                                                 "json_schema": json.dumps(PERSON)}).json()
    check(direct["choices"][0]["text"], PERSON)
    text = shared_sim.post("/v1/completions", {**body, "max_tokens": 8,
                                               "response_format": {"type": "text"}}).json()
    assert text["choices"][0]["finish_reason"] == "length"
    _, raw = shared_sim.stream("/v1/completions", {**body, "stream": True})
    streamed = "".join(c["choices"][0]["text"] for c in sse_json(raw))
    assert streamed == out["choices"][0]["text"]


def test_openai_response_format_errors(shared_sim):
    def chat(rf, **extra):
        return shared_sim.post("/v1/chat/completions", {
            "messages": [{"role": "user", "content": "x"}], "response_format": rf, **extra})

    r = chat({"type": "xml"})
    assert r.status_code == 400 and r.json()["type"] == "Bad Request"
    assert "response_format" in r.json()["message"]
    r = chat({"type": "json_schema", "json_schema": {"schema": PERSON}})
    assert r.status_code == 400 and r.json()["type"] == "Bad Request"
    r = chat({"type": "json_schema"})
    assert r.status_code == 400
    assert r.json() == {"object": "error", "type": "BadRequestError", "param": None,
                        "code": 400, "message": "schema_ is required for json_schema "
                                                "response format request."}
    r = shared_sim.post("/v1/completions", {"prompt": "x",
                                            "response_format": {"type": "json_schema"}})
    assert r.status_code == 400 and r.json()["type"] == "BadRequest"
    bad = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "strng"}}}
    r = chat(bad)
    assert r.status_code == 400
    assert r.json()["type"] == "BadRequestError" and r.json()["code"] == 400
    assert r.json()["message"] == 'Failed to compile json grammar: Unsupported type "strng"'
    # A stream: 0.5.23 sends the abort as an error event, then [DONE].
    r, raw = shared_sim.stream("/v1/chat/completions", {
        "messages": [{"role": "user", "content": "x"}], "response_format": bad, "stream": True})
    assert r.status_code == 200
    events = sse_events(raw)
    assert events[-1] == "[DONE]" and len(events) == 2
    error = json.loads(events[0])["error"]
    assert error["code"] == 400 and error["type"] == "BAD_REQUEST"
    assert error["message"].startswith("Failed to compile json grammar")
    r, raw = shared_sim.stream("/v1/completions", {"prompt": "x", "response_format": bad,
                                                   "stream": True})
    assert json.loads(sse_events(raw)[0])["error"]["code"] == 400


def test_schema_errors_of_056(sim_factory):
    sim = sim_factory(*FAST, "--sim-version", "0.5.6")
    body = {"text": "x", "sampling_params": {"json_schema": "{bad"}}
    r = sim.post("/generate", body)
    assert r.status_code == 400
    assert r.json() == {"error": {"message": "Invalid grammar request: "
                                             "req.grammar_key=('json', '{bad')"}}
    # The grammar cache remembers the failure until /flush_cache.
    r = sim.post("/generate", body)
    assert r.json()["error"]["message"] == ("Invalid grammar request with cache hit: "
                                            "key=('json', '{bad')")
    assert sim.post("/flush_cache").status_code == 200
    assert sim.post("/generate", body).json()["error"]["message"].startswith(
        "Invalid grammar request: ")
    # 0.5.6 compiles keywords xgrammar ignores (no 400).
    ok = sim.generate({"text": "x", "sampling_params": native({"type": "integer",
                                                               "multipleOf": 3})})
    assert int(ok["text"]) % 3 == 0
    # Its OpenAI streams end with finish_reason "abort" rather than an error event.
    _, raw = sim.stream("/v1/chat/completions", {
        "messages": [{"role": "user", "content": "x"}], "stream": True,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "p", "schema": {"type": "strng"}}}})
    chunks = sse_json(raw)
    assert chunks[-1]["choices"][0]["finish_reason"] == "abort"


def test_no_grammar_backend(sim_factory):
    sim = sim_factory(*FAST, "--grammar-backend", "none")
    message = ("Grammar-based generation (json_schema, regex, ebnf, structural_tag) is not "
               "supported when the server is launched with --grammar-backend none")
    for sp in ({"json_schema": json.dumps(PERSON)}, {"regex": "[a-z]+"}):
        r = sim.post("/generate", {"text": "x", "sampling_params": sp})
        assert r.status_code == 400 and r.json() == {"error": {"message": message}}
    r = sim.post("/v1/chat/completions", chat_body(PERSON))
    assert r.status_code == 400 and r.json()["message"] == message
    assert sim.generate({"text": "x", "sampling_params": {"max_new_tokens": 2}})
