"""Alias package, only inside the inferops/sglang-sim image: `python3 -m sglang.launch_server`
runs the simulator, so a container definition written for lmsysorg/sglang runs it unchanged."""
