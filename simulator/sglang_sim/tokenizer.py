"""A deterministic toy tokenizer and "model".

Text is split into word pieces (a word with its leading white space, or one punctuation
character); special tokens like <|im_start|> are single tokens. Ids come from a fixed output
vocabulary when the piece is in it, otherwise from a stable hash, so the same text always gives
the same ids in every process (Python's hash() is salted per process, so it is not used).
Text prompts get a BOS token first, as Llama-style tokenizers do.
"""

from __future__ import annotations

import hashlib
import re
from array import array

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL_TOKENS = {
    "<unk>": PAD_ID,
    "<s>": BOS_ID,
    "</s>": EOS_ID,
    "<|im_start|>": 3,
    "<|im_end|>": 4,
    "<|endoftext|>": 5,
}
VOCAB_SIZE = 32000
_FIRST_WORD_ID = 16
_FIRST_HASHED_ID = 1024

# The words the toy model writes. Leading spaces are part of the token, as in BPE vocabularies.
_WORDS = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "they", "you", "were", "her", "she", "there", "all", "one", "their", "we", "can", "has", "been", "more", "would", "will", "when", "who", "so", "if", "no", "out", "up", "into", "them", "some", "time", "than", "its", "only", "other", "new", "about", "two", "may", "first", "then", "model", "server", "token", "cache", "request", "answer", "system", "value", "result", "data", "node", "queue", "batch", "prefix", "Paris", "France", "capital", "city", "river", "north", "south", "light", "water", "stone", "green", "quiet", "simple", "small", "large", "early", "late", "fast", "slow", "good", "great", "long", "short", "high", "low", "open", "close", "ready", "steady", "bright", "because", "while", "where", "after", "before", "under", "over", "between", "through", "during", "without", "again", "often", "always", "never", "perhaps", "also", "still", "even", "just", "well", "very", "much", "many", "most", "each", "every", "any", "both"]
WORDS: tuple[str, ...] = tuple(_WORDS)
OUTPUT_VOCAB: tuple[str, ...] = tuple(" " + w for w in _WORDS) + (".", ",", "\n")
_ID_OF_PIECE = {piece: _FIRST_WORD_ID + i for i, piece in enumerate(OUTPUT_VOCAB)}
_PIECE_OF_ID = {i: piece for piece, i in _ID_OF_PIECE.items()}
for _text, _tid in SPECIAL_TOKENS.items():
    _PIECE_OF_ID[_tid] = _text
OUTPUT_IDS: tuple[int, ...] = tuple(_ID_OF_PIECE[p] for p in OUTPUT_VOCAB)

_PIECE_RE = re.compile(r"<\|[a-z_]+\|>|</?s>|<unk>|\s*\w+|\s*[^\w\s]|\s+")
# Every piece seen so far -> id; the fixed vocabulary and the special tokens are always in it.
_FIXED = {**_ID_OF_PIECE, **SPECIAL_TOKENS}
_cache: dict[str, int] = dict(_FIXED)
_CACHE_LIMIT = 200_000


def _hashed_id(piece: str) -> int:
    digest = hashlib.blake2b(piece.encode("utf-8"), digest_size=4).digest()
    tid = _FIRST_HASHED_ID + int.from_bytes(digest, "little") % (VOCAB_SIZE - _FIRST_HASHED_ID)
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
        _cache.update(_FIXED)
    _cache[piece] = tid
    return tid


def encode(text: str, add_bos: bool = True) -> array:
    cache = _cache
    pieces = _PIECE_RE.findall(text)
    ids = array("i", [BOS_ID]) if add_bos else array("i")
    ids.extend([cache[p] if p in cache else _hashed_id(p) for p in pieces])
    return ids


def split(text: str) -> tuple[list[str], array]:
    """The pieces of text (which join back to it) and their ids, without BOS: what a forced
    output (structured output) emits, one piece per token."""
    pieces = _PIECE_RE.findall(text)
    cache = _cache
    return pieces, array("i", [cache[p] if p in cache else _hashed_id(p) for p in pieces])


_SPECIAL_IDS = frozenset(SPECIAL_TOKENS.values())


def decode_piece(tid: int, skip_special: bool = True) -> str:
    piece = _PIECE_OF_ID.get(tid)
    if piece is None:
        # Prompt ids outside the output vocabulary cannot be turned back into their text.
        return "" if skip_special else f"<{tid}>"
    if skip_special and tid in _SPECIAL_IDS:
        return ""
    return piece


def decode(ids, skip_special: bool = True) -> str:
    return "".join(decode_piece(t, skip_special) for t in ids)


def is_special(tid: int) -> bool:
    return tid < _FIRST_WORD_ID


def chat_prompt(messages: list[dict]) -> str:
    """A ChatML-style template (what Qwen-family chat templates produce)."""
    parts = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(f"<|im_start|>{msg.get('role', 'user')}\n{content or ''}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


def seed_of(*parts) -> int:
    """A 64-bit seed from request parts; stable across processes and runs."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        if isinstance(p, array):
            h.update(p.tobytes())
        else:
            h.update(repr(p).encode("utf-8"))
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "little")
