"""`python -m sglang_sim.launch_server`: the simulator's `python -m sglang.launch_server`."""

from __future__ import annotations

import asyncio
import os
import sys

from sglang_sim.args import parse_args
from sglang_sim.server import Config, serve, setup_logging


def _use_uvloop() -> None:
    # uvloop (Debian's python3-uvloop in the image) roughly halves the per-chunk cost of
    # streaming; SGLANG_SIM_UVLOOP=0 keeps the standard loop.
    if os.environ.get("SGLANG_SIM_UVLOOP", "1") == "0":
        return
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = Config(args)
    setup_logging(cfg)
    _use_uvloop()
    sys.exit(asyncio.run(serve(cfg)))


if __name__ == "__main__":
    main()
