"""Small helpers shared by the benchmark scripts in this directory."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values by the nearest-rank method; NaN when empty."""
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))] if data else float("nan")
