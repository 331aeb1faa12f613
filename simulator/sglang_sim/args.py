"""The command line of `python -m sglang.launch_server` (the flags a deployment passes), plus the
simulator's own `--sim-*` knobs. Flags SGLang accepts but the simulator has no use for are
accepted and reported in /server_info, so a launch command written for SGLang runs unchanged."""

from __future__ import annotations

import argparse

from sglang_sim import SGLANG_VERSION

FAULT_MODES = ("none", "hang", "stall", "crash", "slow", "error", "reject")
# The SGLang releases whose HTTP surface the simulator can present (see README, "Versions").
SGLANG_VERSIONS = ("0.5.6", "0.5.23")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


def _buckets(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sglang_sim.launch_server",
        description="SGLang server simulator: the launch_server command line and HTTP API, "
                    "on the CPU, with simulated timing.")
    g = p.add_argument_group("model and tokenizer")
    g.add_argument("--model-path", "--model", dest="model_path", required=True,
                   help="model directory or Hugging Face repo id (config.json is read if present)")
    g.add_argument("--tokenizer-path")
    g.add_argument("--tokenizer-mode", default="auto")
    g.add_argument("--tokenizer-worker-num", type=_positive_int, default=1)
    g.add_argument("--skip-tokenizer-init", action="store_true")
    g.add_argument("--load-format", default="auto")
    g.add_argument("--trust-remote-code", action="store_true")
    g.add_argument("--dtype", default="auto")
    g.add_argument("--kv-cache-dtype", default="auto")
    g.add_argument("--quantization")
    g.add_argument("--context-length", type=_positive_int)
    g.add_argument("--device", default="cuda")
    g.add_argument("--served-model-name")
    g.add_argument("--chat-template")
    g.add_argument("--completion-template")
    g.add_argument("--is-embedding", action="store_true")
    g.add_argument("--revision")
    g.add_argument("--download-dir")
    g.add_argument("--weight-version", default="default")
    g.add_argument("--reasoning-parser")
    g.add_argument("--tool-call-parser")

    g = p.add_argument_group("HTTP server")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=_port, default=30000)
    g.add_argument("--nccl-port", type=_port)
    g.add_argument("--api-key")
    g.add_argument("--admin-api-key")
    g.add_argument("--file-storage-path", default="sglang_storage")
    g.add_argument("--enable-cache-report", action="store_true")
    g.add_argument("--stream-interval", type=_positive_int, default=1)
    g.add_argument("--incremental-streaming-output", action="store_true")
    g.add_argument("--stream-response-default-include-usage", action="store_true")
    g.add_argument("--allow-auto-truncate", action="store_true")
    g.add_argument("--skip-server-warmup", action="store_true")
    g.add_argument("--warmups")
    g.add_argument("--watchdog-timeout", type=float, default=300.0)
    g.add_argument("--soft-watchdog-timeout", type=float)

    g = p.add_argument_group("memory and scheduling")
    g.add_argument("--mem-fraction-static", type=float)
    g.add_argument("--max-running-requests", type=_positive_int)
    g.add_argument("--max-queued-requests", type=int)
    g.add_argument("--max-total-tokens", type=_positive_int)
    g.add_argument("--chunked-prefill-size", type=int)
    g.add_argument("--max-prefill-tokens", type=_positive_int, default=16384)
    g.add_argument("--schedule-policy", default="fcfs")
    g.add_argument("--schedule-conservativeness", type=float, default=1.0)
    g.add_argument("--enable-priority-scheduling", action="store_true")
    g.add_argument("--enable-mixed-chunk", action="store_true")
    g.add_argument("--page-size", type=_positive_int, default=1)
    g.add_argument("--disable-radix-cache", action="store_true")
    g.add_argument("--cuda-graph-max-bs", type=int)
    g.add_argument("--disable-cuda-graph", action="store_true")
    g.add_argument("--disable-overlap-schedule", action="store_true")
    g.add_argument("--enable-torch-compile", action="store_true")
    g.add_argument("--attention-backend")
    g.add_argument("--sampling-backend")
    g.add_argument("--grammar-backend")

    g = p.add_argument_group("parallelism and devices")
    g.add_argument("--tp-size", "--tensor-parallel-size", dest="tp_size", type=_positive_int,
                   default=1)
    g.add_argument("--dp-size", "--data-parallel-size", dest="dp_size", type=_positive_int,
                   default=1)
    g.add_argument("--pp-size", "--pipeline-parallel-size", dest="pp_size",
                   type=_positive_int, default=1)
    g.add_argument("--ep-size", "--expert-parallel-size", dest="ep_size", type=_positive_int,
                   default=1)
    g.add_argument("--base-gpu-id", type=int, default=0)
    g.add_argument("--gpu-id-step", type=_positive_int, default=1)
    g.add_argument("--enable-dp-attention", action="store_true")
    g.add_argument("--dist-init-addr")
    g.add_argument("--nnodes", type=_positive_int, default=1)
    g.add_argument("--node-rank", type=int, default=0)
    g.add_argument("--disable-custom-all-reduce", action="store_true")
    g.add_argument("--enable-p2p-check", action="store_true")
    g.add_argument("--random-seed", type=int)

    g = p.add_argument_group("logging and metrics")
    levels = ("debug", "info", "warning", "error", "critical")
    g.add_argument("--log-level", default="info", choices=levels)
    g.add_argument("--log-level-http", choices=levels)
    g.add_argument("--log-requests", action="store_true")
    g.add_argument("--log-requests-level", type=int, default=2)
    g.add_argument("--show-time-cost", action="store_true")
    g.add_argument("--enable-metrics", action="store_true")
    g.add_argument("--enable-metrics-for-all-schedulers", action="store_true")
    g.add_argument("--bucket-time-to-first-token", type=_buckets)
    g.add_argument("--bucket-inter-token-latency", type=_buckets)
    g.add_argument("--bucket-e2e-request-latency", type=_buckets)
    g.add_argument("--collect-tokens-histogram", action="store_true")
    g.add_argument("--lora-paths", nargs="*")
    g.add_argument("--max-loras-per-batch", type=_positive_int, default=8)
    g.add_argument("--speculative-algorithm")

    s = p.add_argument_group("simulation (sglang_sim only)")
    s.add_argument("--sim-load-seconds", type=_non_negative_float, default=2.0,
                   help="seconds spent 'loading weights' with the port closed (default 2)")
    s.add_argument("--sim-warmup-seconds", type=_non_negative_float, default=0.5,
                   help="seconds with the port open and /health 503 before the warm-up "
                        "request (default 0.5)")
    s.add_argument("--sim-load-error", metavar="MESSAGE",
                   help="fail at the end of loading with this error (exit 1, port never opens)")
    s.add_argument("--sim-prefill-ms-per-token", type=_non_negative_float, default=0.05,
                   help="prefill time per uncached prompt token, ms (default 0.05)")
    s.add_argument("--sim-decode-ms", type=_non_negative_float, default=20.0,
                   help="time of one forward step with one running request, ms (default 20)")
    s.add_argument("--sim-decode-ms-per-req", type=_non_negative_float, default=0.1,
                   help="extra decode step time per additional running request, ms "
                        "(default 0.1)")
    s.add_argument("--sim-prefix-cache-tokens", type=int, default=200_000,
                   help="prefix cache capacity in tokens; 0 disables it (default 200000)")
    s.add_argument("--sim-min-output-tokens", type=int, default=16,
                   help="shortest natural answer before EOS (default 16)")
    s.add_argument("--sim-max-output-tokens", type=int, default=256,
                   help="longest natural answer before EOS; 0: never stop on EOS (default 256)")
    s.add_argument("--sim-seed", type=int,
                   help="seed of the generated text (default: --random-seed, else 0)")
    s.add_argument("--sim-health-poll-seconds", type=_non_negative_float, default=1.0,
                   help="the health check's poll interval, so its minimum latency "
                        "(SGLang: 1 s; default 1)")
    s.add_argument("--sim-fault", choices=FAULT_MODES, default="none",
                   help="a fault to inject from the start (see README)")
    s.add_argument("--sim-fault-after", type=_non_negative_float, default=0.0,
                   help="seconds after the port opens before --sim-fault takes effect")
    s.add_argument("--sim-slow-factor", type=float, default=10.0,
                   help="step time multiplier of the 'slow' fault (default 10)")
    s.add_argument("--sim-error-rate", type=_fraction, default=0.5,
                   help="fraction of generation requests answered 500 by the 'error' fault")
    s.add_argument("--sim-exit-code", type=int, default=1,
                   help="exit status of the 'crash' fault (default 1)")
    s.add_argument("--sim-admin", action="store_true",
                   help="serve the run-time fault and state API under /_sim/")
    s.add_argument("--sim-version", choices=SGLANG_VERSIONS, default=SGLANG_VERSION,
                   help="the SGLang release whose routes, auth exemptions and flags to present "
                        "(default 0.5.23; 0.5.6 has no /ready, /v1/loads or --admin-api-key)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Cross-field checks: argparse's error() exits 2 like any bad flag.
    if args.mem_fraction_static is not None and not 0.0 < args.mem_fraction_static < 1.0:
        parser.error("argument --mem-fraction-static: must be between 0 and 1 (exclusive)")
    if args.max_queued_requests is not None and args.max_queued_requests < 0:
        parser.error("argument --max-queued-requests: must be >= 0")
    if args.base_gpu_id < 0:
        parser.error("argument --base-gpu-id: must be >= 0")
    if args.sim_slow_factor <= 0:
        parser.error("argument --sim-slow-factor: must be > 0")
    if args.sim_prefix_cache_tokens < 0:
        parser.error("argument --sim-prefix-cache-tokens: must be >= 0")
    if args.sim_min_output_tokens < 0 or args.sim_max_output_tokens < 0:
        parser.error("argument --sim-min-output-tokens/--sim-max-output-tokens: must be >= 0")
    if args.sim_max_output_tokens and args.sim_min_output_tokens > args.sim_max_output_tokens:
        parser.error("argument --sim-min-output-tokens: must be <= --sim-max-output-tokens")
    if args.sim_version == "0.5.6" and args.admin_api_key is not None:
        # 0.5.6 has no such flag; argparse would list the value too, which is a secret.
        parser.error("unrecognized arguments: --admin-api-key")
    if args.tokenizer_worker_num > 1 and args.api_key:
        # SGLang asserts this at start.
        parser.error("argument --api-key: not supported with --tokenizer-worker-num > 1")
    return args
