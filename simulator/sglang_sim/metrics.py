"""Prometheus text exposition (format 0.0.4) in SGLang's metric names, types and buckets,
written by hand: the image has no prometheus_client, and the output below is what
prometheus_client's generate_latest prints for SGLang's collectors."""

from __future__ import annotations

from bisect import bisect_left

# Bucket defaults from SGLang's metrics collector.
BUCKETS_TTFT = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
BUCKETS_E2E = BUCKETS_TTFT + [600, 1200, 1800, 2400]
BUCKETS_ITL = [0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040,
               0.060, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.0, 2.0, 4.0, 6.0, 8.0]
BUCKETS_QUEUE = [0.0, 0.1, 0.2, 0.5, 1, 2, 3, 4, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100,
                 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1200, 1400, 1600, 1800, 2000,
                 2500, 3000]


def fmt(value: float) -> str:
    """prometheus_client's floatToGoString for the values we produce."""
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


def labelstr(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = [float(b) for b in bounds]
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += times
        self.sum += value * times
        self.count += times

    def series(self, name: str, labels: dict[str, str]) -> list[str]:
        """The start of each line this histogram renders to, up to its value."""
        out = [f"{name}_bucket{labelstr({**labels, 'le': fmt(bound)})} "
               for bound in self.bounds + [float("inf")]]
        ls = labelstr(labels)
        return out + [f"{name}_sum{ls} ", f"{name}_count{ls} "]

    def values(self) -> list[float]:
        """The values of those lines: cumulative bucket counts, then the sum and the count."""
        out, acc = [], 0
        for n in self.counts:
            acc += n
            out.append(acc)
        return out + [self.sum, self.count]


class Metrics:
    """Counters and histograms fed by the engine as it serves; gauges are read at scrape time."""

    def __init__(self, bucket_ttft=None, bucket_itl=None, bucket_e2e=None) -> None:
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.cached_tokens = 0
        self.num_requests = 0
        self.num_aborted = 0
        self.ttft = Histogram(bucket_ttft or BUCKETS_TTFT)
        self.itl = Histogram(bucket_itl or BUCKETS_ITL)
        self.e2e = Histogram(bucket_e2e or BUCKETS_E2E)
        self.tpot = Histogram(bucket_itl or BUCKETS_ITL)
        self.queue_time = Histogram(BUCKETS_QUEUE)
        self.layout: tuple[str, list[str]] | None = None  # see render()


GAUGES = (
    ("num_running_reqs", "The number of running requests."),
    ("num_used_tokens", "The number of used tokens."),
    ("token_usage", "The token usage."),
    ("gen_throughput", "The generation throughput (token/s)."),
    ("num_queue_reqs", "The number of requests in the waiting queue."),
    ("num_grammar_queue_reqs", "The number of requests in the grammar waiting queue."),
    ("cache_hit_rate", "The prefix cache hit rate."),
    ("max_total_num_tokens", "Maximum total number of tokens in the KV cache pool."),
    ("num_retracted_reqs", "The number of retracted requests."),
    ("num_paused_reqs", "The number of paused requests by async weight sync."),
    ("utilization", "The utilization."),
    ("context_len", "The context length of the model."),
)
COUNTERS = (
    ("prompt_tokens_total", "Number of prefill tokens processed.", "prompt_tokens"),
    ("generation_tokens_total", "Number of generation tokens processed.", "generation_tokens"),
    ("cached_tokens_total", "Number of cached prompt tokens.", "cached_tokens"),
    ("num_requests_total", "Number of requests processed.", "num_requests"),
    ("num_aborted_requests_total", "Number of requests aborted.", "num_aborted"),
)
HISTOGRAMS = (
    ("time_to_first_token_seconds", "Histogram of time to first token in seconds.", "ttft"),
    ("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", "itl"),
    ("e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", "e2e"),
    ("request_time_per_output_token_seconds",
     "Histogram of request time per output token in seconds.", "tpot"),
)


def _layout(metrics: Metrics, model_name: str) -> list[str]:
    """The text of every line up to its value (HELP and TYPE lines included), in order. It
    never changes for a process, so it is built once; a scrape only formats the values."""
    # Scheduler series carry the rank labels of SGLang 0.5.x; tokenizer series only the model.
    sched = {"engine_type": "unified", "model_name": model_name, "moe_ep_rank": "0",
             "pp_rank": "0", "tp_rank": "0"}
    tok = {"model_name": model_name}

    def header(name: str, doc: str, kind: str) -> str:
        return f"# HELP sglang:{name} {doc}\n# TYPE sglang:{name} {kind}\n"

    out: list[str] = []
    for name, doc in GAUGES:
        out.append(f"{header(name, doc, 'gauge')}sglang:{name}{labelstr(sched)} ")
    for name, doc, _ in COUNTERS:
        out.append(f"{header(name, doc, 'counter')}sglang:{name}{labelstr(tok)} ")
    histograms = [(name, doc, getattr(metrics, attr), tok) for name, doc, attr in HISTOGRAMS]
    histograms.append(("queue_time_seconds", "Histogram of queueing time in seconds.",
                       metrics.queue_time, sched))
    for name, doc, hist, labels in histograms:
        lines = hist.series(f"sglang:{name}", labels)
        lines[0] = header(name, doc, "histogram") + lines[0]
        out.extend(lines)
    return out


def render(metrics: Metrics, gauges: dict[str, float], model_name: str) -> str:
    if metrics.layout is None or metrics.layout[0] != model_name:
        metrics.layout = (model_name, _layout(metrics, model_name))
    values: list[float] = [gauges[name] for name, _ in GAUGES]
    values += [getattr(metrics, attr) for _, _, attr in COUNTERS]
    for _, _, attr in HISTOGRAMS:
        values += getattr(metrics, attr).values()
    values += metrics.queue_time.values()
    return "".join([f"{line}{fmt(value)}\n" for line, value in zip(metrics.layout[1], values)])
