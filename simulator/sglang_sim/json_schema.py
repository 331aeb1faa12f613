"""Structured output: `sampling_params.json_schema` (and OpenAI `response_format`).

SGLang compiles the schema into a grammar (xgrammar, its default backend) that masks the
model's logits at every step, so the answer is one JSON document valid against the schema,
followed by EOS, which terminates the grammar. The simulator has no logits: compile() checks
the schema the way the grammar backend does, and Schema.generate() writes one document valid
against it, choosing every free value (strings, numbers, optional properties, array lengths,
enum members, anyOf branches) with the request's PRNG. The engine then emits that text piece by
piece, as it emits ordinary filler.

Supported: type (one or a list), object (properties, required, additionalProperties,
min/maxProperties), string (minLength/maxLength, the formats xgrammar knows), integer and
number (minimum, maximum, exclusive bounds, integral multipleOf), boolean, null, array (items,
prefixItems, minItems/maxItems, uniqueItems best effort), enum and const anywhere, anyOf/oneOf
(one branch is picked), allOf (merged), $ref to "#", "#/$defs/..." or "#/definitions/...".
As xgrammar in strict mode (SGLang's default), members beyond properties/prefixItems appear
only when additionalProperties/items allow them, except in a bare {"type": "object"} or
{"type": "array"}, which take any. Not honoured: pattern (a string is written without regard
to it), oneOf exclusivity, non-integral multipleOf.
"""

from __future__ import annotations

import json
import math
import uuid

from sglang_sim import tokenizer

# SGLang's key for "any JSON" (xgrammar's builtin JSON grammar).
ANY_JSON = "$$ANY$$"
TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
# Below this nesting depth optional properties are left out and arrays kept short, so a
# recursive schema ends; past HARD_DEPTH the generator gives up on the branch (null).
SOFT_DEPTH = 6
HARD_DEPTH = 48

# What SGLang 0.5.23 refuses before compiling (json_schema_validation.py,
# validate_xgrammar_json_schema): keywords xgrammar 0.2 would silently ignore.
XGRAMMAR_UNSUPPORTED = frozenset({
    "contains", "dependentRequired", "dependentSchemas", "else", "if", "maxContains",
    "minContains", "multipleOf", "not", "then", "uniqueItems"})
XGRAMMAR_FORMATS = frozenset({
    "date", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "json-pointer",
    "relative-json-pointer", "time", "uri", "uri-reference", "uri-template", "uuid"})
_ONE_SUBSCHEMA = ("additionalItems", "additionalProperties", "contains", "contentSchema", "else",
                  "if", "items", "not", "propertyNames", "then", "unevaluatedItems",
                  "unevaluatedProperties")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("$defs", "definitions", "dependentSchemas", "patternProperties",
                   "properties")

_WORDS = tokenizer.WORDS
# Keywords xgrammar leaves out of a schema's identity: {"type": "object", "title": ".."} is
# still its basic (any) object.
_ANNOTATIONS = frozenset({"title", "default", "description", "examples", "deprecated",
                          "readOnly", "writeOnly", "$comment", "$schema"})


class SchemaError(ValueError):
    """The grammar backend cannot compile the schema."""


class Schema:
    """A parsed schema. `unsupported`: why SGLang 0.5.23 refuses it (a keyword xgrammar would
    ignore; older releases compile it and the keyword has no effect); `error`: why xgrammar
    cannot compile it."""

    __slots__ = ("any_json", "error", "root", "unsupported")

    def __init__(self, root, unsupported: str | None = None, error: str | None = None,
                 any_json: bool = False) -> None:
        self.root = root
        self.unsupported = unsupported
        self.error = error
        self.any_json = any_json

    def generate(self, rng) -> str:
        """One JSON document valid against the schema, with json.dumps' separators (xgrammar's
        defaults too): `{"a": 1, "b": [true, null]}`."""
        gen = _Gen(rng, self.root)
        try:
            value = gen.free_object(0) if self.any_json else gen.value(self.root, 0)
        except RecursionError:  # pragma: no cover - HARD_DEPTH keeps well below the limit
            value = None
        return json.dumps(value, ensure_ascii=False)


_cache: dict[str, Schema | SchemaError] = {}
_CACHE_LIMIT = 1024


def compile_schema(text: str, refuse_unsupported: bool = True) -> Schema:
    """The compiled schema of a json_schema string, or SchemaError with the backend's reason
    (in 0.5.23's order: JSON syntax, then keywords it refuses, then xgrammar's own checks;
    refuse_unsupported=False skips the middle one, as 0.5.6 does). Parsing is cached by text,
    as SGLang's grammar backend caches compiled grammars."""
    hit = _cache.get(text)
    if hit is None:
        try:
            hit = _compile(text)
        except SchemaError as exc:
            hit = exc
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[text] = hit
    if isinstance(hit, SchemaError):
        raise hit
    if refuse_unsupported and hit.unsupported is not None:
        raise SchemaError(hit.unsupported)
    if hit.error is not None:
        raise SchemaError(hit.error)
    return hit


def _compile(text: str) -> Schema:
    if text == ANY_JSON:
        return Schema(True, any_json=True)
    try:
        root = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        # SGLang 0.5.23 parses the string with json.loads first: this is its exact text.
        raise SchemaError(str(exc)) from None
    except RecursionError:
        raise SchemaError("maximum recursion depth exceeded while decoding a JSON "
                          "array from a unicode string") from None
    error = None
    try:
        _Checker(root).check(root)
        unsupported = _unsupported(root)
    except SchemaError as exc:
        error, unsupported = str(exc), None
    except RecursionError:
        error, unsupported = "Schema is nested too deeply", None
    return Schema(root, unsupported, error)


def _no_constant(name: str):
    # Python's json reads NaN and Infinity; the grammar compiler's JSON parser does not.
    raise SchemaError(f"Failed to parse JSON: {name} is not a JSON value")


# ---- the checks ---------------------------------------------------------------------------
def _iter_subschemas(schema, pointer: str = "#"):
    """Every (sub)schema object with its JSON pointer."""
    if not isinstance(schema, dict):
        return
    yield schema, pointer
    for key in _ONE_SUBSCHEMA:
        child = schema.get(key)
        if isinstance(child, (bool, dict)):
            yield from _iter_subschemas(child, f"{pointer}/{key}")
        elif key == "items" and isinstance(child, list):
            for i, item in enumerate(child):
                yield from _iter_subschemas(item, f"{pointer}/items/{i}")
    for key in _SUBSCHEMA_LISTS:
        children = schema.get(key)
        if isinstance(children, list):
            for i, child in enumerate(children):
                yield from _iter_subschemas(child, f"{pointer}/{key}/{i}")
    for key in _SUBSCHEMA_MAPS:
        children = schema.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                esc = name.replace("~", "~0").replace("/", "~1")
                yield from _iter_subschemas(child, f"{pointer}/{key}/{esc}")


def _describes_string(schema: dict) -> bool:
    t = schema.get("type")
    return t is None or t == "string" or (isinstance(t, list) and "string" in t)


def _unsupported(root) -> str | None:
    """The reason SGLang 0.5.23 gives for a keyword xgrammar would ignore, or None."""
    for sub, pointer in _iter_subschemas(root):
        bad = sorted(XGRAMMAR_UNSUPPORTED.intersection(sub))
        reason = None
        if bad:
            reason = f"keyword(s) {', '.join(bad)} would be ignored"
        elif _describes_string(sub):
            fmt = sub.get("format")
            if "format" in sub and (not isinstance(fmt, str) or fmt not in XGRAMMAR_FORMATS):
                reason = f"string format {fmt!r} is not implemented"
            else:
                groups = [g for g, keys in (("format", ("format",)), ("pattern", ("pattern",)),
                                            ("minLength/maxLength", ("minLength", "maxLength")))
                          if any(k in sub for k in keys)]
                if len(groups) > 1:
                    reason = f"constraints {', '.join(groups)} cannot be enforced together"
        if reason:
            return f"JSON Schema at {pointer} is not supported by xgrammar: {reason}"
    return None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Checker:
    """What xgrammar's schema parser refuses (its messages, without the log prefix): the
    parts of the schema the generator would otherwise trip on."""

    def __init__(self, root) -> None:
        self.root = root
        self.seen: set[int] = set()

    def fail(self, message: str):
        raise SchemaError(message)

    def check(self, s) -> None:
        if s is True:
            return
        if s is False:
            self.fail("Schema 'false' cannot accept any value")
        if not isinstance(s, dict):
            self.fail("Schema should be an object or bool, but got "
                      + json.dumps(s, separators=(",", ":")))
        if id(s) in self.seen:
            return
        self.seen.add(id(s))
        if "$ref" in s:
            self.check(resolve(self.root, s["$ref"]))
            return
        if "const" in s:
            return
        if "enum" in s:
            if not isinstance(s["enum"], list):
                self.fail("enum must be an array")
            if not s["enum"]:
                self.fail("enum array must not be empty")
            return
        for key in ("anyOf", "oneOf", "allOf"):
            if key in s:
                branches = s[key]
                if not isinstance(branches, list):
                    self.fail(f"{key} must be an array")
                for b in branches:
                    self.check(_merge(_without(s, key), _deref(self.root, b)))
                return
        t = s.get("type")
        if t is None or t == []:
            types = [_infer_type(s)]
        elif isinstance(t, list):
            if not all(isinstance(x, str) for x in t):
                self.fail("type must be a string or an array of strings")
            types = t
        elif isinstance(t, str):
            types = [t]
        else:
            self.fail("Type should be a string")
        for t in types:
            if t not in TYPES and t != "any" or t == "any" and s.get("type"):
                self.fail(f'Unsupported type "{t}"')
            check = getattr(self, "check_" + t, None)
            if check is not None:
                check(s)

    def check_integer(self, s) -> None:
        self.check_number(s)
        lo, hi = _int_bounds(s)
        if lo is not None and hi is not None and lo > hi:
            self.fail("Invalid range: minimum greater than maximum")

    def check_number(self, s) -> None:
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
            v = s.get(key)
            if key in s and not _is_num(v) and not (key.startswith("exclusive")
                                                     and isinstance(v, bool)):
                self.fail("Value must be a number")
        if "multipleOf" in s and s["multipleOf"] <= 0:
            self.fail("multipleOf must be greater than 0")
        lo, lo_x, hi, hi_x = _num_bounds(s)
        if lo is not None and hi is not None and (lo > hi or lo == hi and (lo_x or hi_x)):
            self.fail("Invalid range: empty range")

    def check_string(self, s) -> None:
        for key in ("minLength", "maxLength"):
            if key in s and not _is_int(s[key]):
                self.fail(f"{key} must be an integer")
        lo, hi = s.get("minLength", 0), s.get("maxLength")
        if hi is not None and lo > hi:
            self.fail(f"minLength {lo} is greater than maxLength {hi}")

    def check_array(self, s) -> None:
        prefix = s.get("prefixItems", [])
        if not isinstance(prefix, list):
            self.fail("prefixItems must be an array")
        items = s.get("items", True)
        if not isinstance(items, (bool, dict)):
            self.fail("items must be a boolean or an object")
        for key in ("minItems", "maxItems"):
            if key in s and (not _is_int(s[key]) or s[key] < 0):
                self.fail(f"{key} must be a non-negative integer")
        lo, hi = s.get("minItems", 0), s.get("maxItems")
        if hi is not None and lo > hi:
            self.fail(f"minItems is greater than maxItems: {lo} > {hi}")
        if hi is not None and hi < len(prefix):
            self.fail(f"maxItems is less than the number of prefixItems: {hi} < {len(prefix)}")
        more = _more_items(s)
        if more is None and lo > len(prefix):
            self.fail("minItems is greater than the number of prefixItems, but additional "
                      f"items are not allowed: {lo} > {len(prefix)}")
        for p in prefix:
            self.check(p)
        if isinstance(more, dict):
            self.check(more)

    def check_object(self, s) -> None:
        props = s.get("properties", {})
        if not isinstance(props, dict):
            self.fail("properties must be an object")
        required = s.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            self.fail("required must be an array")
        for key in ("minProperties", "maxProperties"):
            if key in s and not _is_int(s[key]):
                self.fail(f"{key} must be an integer")
        lo, hi = s.get("minProperties", 0), s.get("maxProperties")
        if hi is not None and lo > hi:
            self.fail(f"minProperties is greater than maxProperties: {lo} > {hi}")
        if hi is not None and hi < len(set(required)):
            self.fail("maxProperties is less than the number of required properties: "
                      f"{hi} < {len(set(required))}")
        extra = _more_properties(s)
        if extra is None and lo > len(props):
            self.fail("minProperties is greater than the number of properties, but additional "
                      f"properties aren't allowed: {lo} > {len(props)}")
        for sub in props.values():
            self.check(sub)
        if isinstance(extra, dict):
            self.check(extra)


def _basic(s: dict) -> bool:
    """{"type": "object"} or {"type": "array"} and nothing else but annotations: xgrammar's
    basic object or array, which takes any members."""
    return all(k == "type" or k in _ANNOTATIONS for k in s)


def _more_properties(s: dict):
    """The schema of properties beyond `properties`, or None when there may be none: xgrammar
    compiles in strict mode, where a missing additionalProperties means false (except in its
    basic object)."""
    for key in ("additionalProperties", "unevaluatedProperties"):
        if key in s:
            extra = s[key]
            return extra if extra is True or isinstance(extra, dict) else None
    return True if _basic(s) else None


def _more_items(s: dict):
    """The schema of items after `prefixItems`, or None (strict mode, as for properties)."""
    for key in ("items", "unevaluatedItems"):
        if key in s:
            more = s[key]
            return more if more is True or isinstance(more, dict) else None
    return True if _basic(s) else None


def resolve(root, ref):
    """The schema a $ref points to: "#" or a local JSON pointer. Other URIs, which SGLang
    does not fetch either, stand for any value."""
    if not isinstance(ref, str):
        raise SchemaError("$ref must be a string")
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return True
    node = root
    for part in ref[2:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise SchemaError(f"Cannot find field {part} in {ref}")
        node = node[part]
    return node


def _deref(root, s):
    for _ in range(64):
        if not (isinstance(s, dict) and "$ref" in s):
            return s
        s = resolve(root, s["$ref"])
    raise SchemaError("$ref chain is circular")


def _without(s: dict, key: str) -> dict:
    return {k: v for k, v in s.items() if k != key}


def _merge(base: dict, extra) -> dict | bool:
    """base with the keywords of extra (a branch of anyOf/oneOf/allOf) added: properties are
    united, required lists joined, other keywords taken from extra."""
    if extra is True or extra == {}:
        return base or True
    if not isinstance(extra, dict):
        return extra
    if not base:
        return extra
    out = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        elif key == "required" and isinstance(out.get(key), list) and isinstance(value, list):
            out[key] = out[key] + [r for r in value if r not in out[key]]
        else:
            out[key] = value
    return out


def _infer_type(s: dict) -> str:
    if any(k in s for k in ("properties", "additionalProperties", "unevaluatedProperties",
                            "required", "minProperties", "maxProperties")):
        return "object"
    if any(k in s for k in ("items", "prefixItems", "unevaluatedItems", "minItems",
                            "maxItems")):
        return "array"
    if any(k in s for k in ("minLength", "maxLength", "pattern", "format")):
        return "string"
    if any(k in s for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                            "multipleOf")):
        return "number"
    return "any"


def _int_bounds(s: dict) -> tuple[int | None, int | None]:
    lo, lo_x, hi, hi_x = _num_bounds(s)
    ilo = None if lo is None else (math.floor(lo) + 1 if lo_x else math.ceil(lo))
    ihi = None if hi is None else (math.ceil(hi) - 1 if hi_x else math.floor(hi))
    return ilo, ihi


def _num_bounds(s: dict):
    """(low, low exclusive, high, high exclusive); draft 4's boolean exclusive bounds too."""
    lo, hi = s.get("minimum"), s.get("maximum")
    lo_x = hi_x = False
    ex = s.get("exclusiveMinimum")
    if isinstance(ex, bool):
        lo_x = ex and lo is not None
    elif _is_num(ex) and (lo is None or ex >= lo):
        lo, lo_x = ex, True
    ex = s.get("exclusiveMaximum")
    if isinstance(ex, bool):
        hi_x = ex and hi is not None
    elif _is_num(ex) and (hi is None or ex <= hi):
        hi, hi_x = ex, True
    return lo, lo_x, hi, hi_x


# ---- the generator ---------------------------------------------------------------------------
_SIMPLE = ("string", "integer", "number", "boolean", "null")


class _Gen:
    __slots__ = ("rng", "root")

    def __init__(self, rng, root) -> None:
        self.rng = rng
        self.root = root

    def value(self, s, depth: int):
        if depth > HARD_DEPTH:
            return None
        if s is True or s == {}:
            return self.any(depth)
        if not isinstance(s, dict):
            return None
        if "$ref" in s:
            return self.value(resolve(self.root, s["$ref"]), depth + 1)
        if "const" in s:
            return s["const"]
        if "enum" in s:
            return self.rng.choice(s["enum"])
        if "anyOf" in s or "oneOf" in s:
            key = "anyOf" if "anyOf" in s else "oneOf"
            branch = self.pick_branch(s[key], depth)
            return self.value(_merge(_without(s, key), branch), depth + 1)
        if "allOf" in s:
            merged = _without(s, "allOf")
            for b in s["allOf"]:
                merged = _merge(merged, _deref(self.root, b))
            return self.value(merged, depth + 1)
        t = s.get("type")
        if isinstance(t, list) and t:
            t = self.pick_type(t, depth)
        elif not t:
            t = _infer_type(s)
        return getattr(self, "gen_" + t)(s, depth)

    def pick_branch(self, branches: list, depth: int):
        if not branches:
            return True
        resolved = [_deref(self.root, b) for b in branches]
        if depth >= SOFT_DEPTH:
            # Deep in a recursive schema: take a branch that cannot recurse, if there is one.
            leaves = [b for b, raw in zip(resolved, branches, strict=True)
                      if not (isinstance(raw, dict) and "$ref" in raw)
                      and _leafy(b)]
            if leaves:
                return leaves[0]
        return self.rng.choice(resolved)

    def pick_type(self, types: list, depth: int) -> str:
        if depth >= SOFT_DEPTH:
            simple = [t for t in types if t in _SIMPLE]
            if simple:
                return simple[0]
        return self.rng.choice(types)

    def any(self, depth: int):
        kinds = _SIMPLE if depth >= 2 else (*_SIMPLE, "object", "array")
        kind = self.rng.choice(kinds)
        if kind == "object":
            return self.free_object(depth)
        if kind == "array":
            return [self.any(depth + 1) for _ in range(self.rng.randint(1, 3))]
        return getattr(self, "gen_" + kind)({}, depth)

    def free_object(self, depth: int) -> dict:
        out: dict = {}
        self.fill(out, self.rng.randint(1, 3), True, depth)
        return out

    def fill(self, out: dict, n: int, schema, depth: int) -> None:
        """Add made-up properties (values valid against schema) until out has n."""
        tries = 0
        while len(out) < n and tries < 4 * n + 8:
            tries += 1
            key = self.rng.choice(_WORDS).lower()
            if key in out:
                key = f"{key}_{len(out)}"
            if key not in out:
                out[key] = self.value(schema, depth + 1) if schema is not True \
                    else self.any(depth + 1)

    # ---- one method per type ----
    def gen_any(self, s, depth: int):
        return self.any(depth)

    def gen_null(self, s, depth: int):
        return None

    def gen_boolean(self, s, depth: int):
        return self.rng.random() < 0.5

    def gen_integer(self, s, depth: int):
        lo, hi = _default_range(*_int_bounds(s))
        if lo > hi:
            return lo
        step = s.get("multipleOf")
        if _is_num(step) and step > 0 and float(step).is_integer():
            step = int(step)
            kmin, kmax = -(-lo // step), hi // step
            if kmin <= kmax:
                return self.rng.randint(kmin, kmax) * step
        return self.rng.randint(lo, hi)

    def gen_number(self, s, depth: int):
        step = s.get("multipleOf")
        if _is_num(step) and step > 0 and float(step).is_integer():
            return self.gen_integer(s, depth)
        lo, lo_x, hi, hi_x = _num_bounds(s)
        lo, hi = _default_range(lo, hi)
        x = round(self.rng.uniform(lo, hi), 2)
        if x < lo or x > hi or (lo_x and x <= lo) or (hi_x and x >= hi):
            x = (lo + hi) / 2
        return x

    def gen_string(self, s, depth: int):
        fmt = s.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            return _FORMATS[fmt](self.rng)
        lo = s.get("minLength", 0)
        hi = s.get("maxLength")
        words = [self.rng.choice(_WORDS) for _ in range(self.rng.randint(1, 4))]
        text = " ".join(words)
        while len(text) < lo:
            text += " " + self.rng.choice(_WORDS)
        if hi is not None and len(text) > hi:
            text = text[:hi]
            if text.endswith(" ") and len(text) > lo:
                text = text[:-1]
        return text

    def gen_array(self, s, depth: int):
        prefix = s.get("prefixItems") or []
        items = _more_items(s)
        lo = s.get("minItems", 0)
        hi = s.get("maxItems")
        n_prefix = len(prefix) if hi is None else min(len(prefix), hi)
        n = n_prefix
        if items is not None:
            base = max(lo, n_prefix)
            top = base if depth >= SOFT_DEPTH else base + 2
            if hi is not None:
                top = min(top, hi)
            n = self.rng.randint(min(base, top), top) if base <= top else base
            if n == 0 and depth < SOFT_DEPTH and (hi is None or hi > 0):
                n = 1
        out = [self.value(p, depth + 1) for p in prefix[:n_prefix]]
        unique = s.get("uniqueItems") is True
        seen = {json.dumps(v, sort_keys=True) for v in out} if unique else None
        while len(out) < n:
            for _ in range(8 if unique else 1):
                v = self.value(items, depth + 1) if items is not True else self.any(depth + 1)
                if not unique:
                    break
                key = json.dumps(v, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    break
            out.append(v)
        return out

    def gen_object(self, s, depth: int):
        props = s.get("properties") or {}
        required = s.get("required") or []
        extra = _more_properties(s)
        lo = s.get("minProperties", 0)
        hi = s.get("maxProperties")
        if not props and extra is not None:
            # {"type": "object"} (what response_format json_object asks for): any object;
            # with an additionalProperties schema, a map of such values.
            out = {name: self.value(extra, depth + 1) for name in required}
            n = max(lo, len(out), self.rng.randint(1, 3) if depth < SOFT_DEPTH else 0)
            self.fill(out, n if hi is None else min(n, hi), extra, depth)
            return out
        out: dict = {}
        room = (hi if hi is not None else 1 << 30) - len(set(required))
        for name, sub in props.items():
            if name in required:
                out[name] = self.value(sub, depth + 1)
            elif room > 0 and depth < SOFT_DEPTH and self.rng.random() < 0.5:
                out[name] = self.value(sub, depth + 1)
                room -= 1
        for name in required:
            if name not in out:
                out[name] = self.value(True if extra is None else extra, depth + 1)
        if len(out) < lo:
            # Optional declared properties first, then made-up ones if allowed.
            for name, sub in props.items():
                if len(out) >= lo:
                    break
                if name not in out:
                    out[name] = self.value(sub, depth + 1)
            if len(out) < lo and extra is not None:
                self.fill(out, lo, extra, depth)
        return out


def _leafy(s) -> bool:
    if not isinstance(s, dict):
        return True
    t = s.get("type")
    if t is None:
        t = "any" if any(k in s for k in ("anyOf", "oneOf", "allOf")) else _infer_type(s)
    return t in _SIMPLE or "const" in s or "enum" in s


def _default_range(lo, hi):
    if lo is None and hi is None:
        return 0, 100
    if lo is None:
        return hi - 100, hi
    if hi is None:
        return lo, lo + 100
    return lo, hi


def _word(rng) -> str:
    return rng.choice(_WORDS).lower()


def _date(rng) -> str:
    return f"{rng.randint(2000, 2030):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _time(rng) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"


_FORMATS = {
    "date": _date,
    "time": _time,
    "date-time": lambda rng: f"{_date(rng)}T{_time(rng)}",
    "duration": lambda rng: f"P{rng.randint(1, 30)}D",
    "email": lambda rng: f"{_word(rng)}@{_word(rng)}.example.com",
    "hostname": lambda rng: f"{_word(rng)}.example.com",
    "ipv4": lambda rng: ".".join(str(rng.randint(1, 254)) for _ in range(4)),
    "ipv6": lambda rng: "2001:db8::" + ":".join(f"{rng.randint(0, 0xffff):x}"
                                                 for _ in range(2)),
    "uuid": lambda rng: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    "uri": lambda rng: f"https://{_word(rng)}.example.com/{_word(rng)}",
    "uri-reference": lambda rng: f"/{_word(rng)}/{_word(rng)}",
    "uri-template": lambda rng: f"https://{_word(rng)}.example.com/{{{_word(rng)}}}",
    "json-pointer": lambda rng: f"/{_word(rng)}/{rng.randint(0, 9)}",
    "relative-json-pointer": lambda rng: f"0/{_word(rng)}",
}
