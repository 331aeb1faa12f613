"""A prefix cache over token ids: a radix tree with least-recently-used leaf eviction, the same
structure as SGLang's RadixCache, minus the GPU memory it stands for."""

from __future__ import annotations

import heapq
import itertools
from array import array


class _Node:
    __slots__ = ("children", "key", "last_access", "parent")

    def __init__(self, parent: _Node | None, key: array, last_access: int) -> None:
        self.children: dict[int, _Node] = {}
        self.parent = parent
        self.key = key
        self.last_access = last_access


def _common_len(a: array, b: array) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] matches, a[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class RadixCache:
    def __init__(self, capacity_tokens: int) -> None:
        self.capacity = max(0, capacity_tokens)
        self._clock = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        self.root = _Node(None, array("i"), 0)
        self.size = 0

    def match(self, ids: array) -> int:
        """How many leading tokens of ids are cached (and mark them used)."""
        if not self.capacity:
            return 0
        now = next(self._clock)
        node, i, n = self.root, 0, len(ids)
        while i < n:
            child = node.children.get(ids[i])
            if child is None:
                break
            child.last_access = now
            j = _common_len(child.key, ids[i : i + len(child.key)])
            i += j
            if j < len(child.key):
                break
            node = child
        return i

    def insert(self, ids: array) -> None:
        if not self.capacity or not ids:
            return
        now = next(self._clock)
        node, i, n = self.root, 0, len(ids)
        while i < n:
            child = node.children.get(ids[i])
            if child is None:
                node.children[ids[i]] = _Node(node, ids[i:], now)
                self.size += n - i
                break
            child.last_access = now
            key = child.key
            j = _common_len(key, ids[i : i + len(key)])
            if j < len(key):
                mid = _Node(node, key[:j], now)
                node.children[ids[i]] = mid
                child.key = key[j:]
                child.parent = mid
                mid.children[child.key[0]] = child
                child = mid
            node = child
            i += j
        if self.size > self.capacity:
            # Evict down to 90% so the full leaf scan below stays rare.
            self._evict(self.capacity * 9 // 10)

    def _evict(self, target: int) -> None:
        heap = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(node.children.values())
            elif node is not self.root:
                heap.append((node.last_access, id(node), node))
        heapq.heapify(heap)
        while self.size > target and heap:
            _, _, leaf = heapq.heappop(heap)
            parent = leaf.parent
            del parent.children[leaf.key[0]]
            self.size -= len(leaf.key)
            if parent is not self.root and not parent.children:
                heapq.heappush(heap, (parent.last_access, id(parent), parent))
