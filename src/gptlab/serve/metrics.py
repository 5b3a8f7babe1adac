"""The server's metrics, written in Prometheus' text exposition format by hand.

The format is small enough to write directly (https://prometheus.io/docs/instrumenting/exposition_formats/):
each metric has `# HELP` and `# TYPE` lines, then one `name{label="value"} number` line per
series. A counter only goes up; a gauge is a value now; a histogram counts observations at or
below each bucket's upper bound `le` (cumulative), with `+Inf`, `_sum` and `_count`, so
Prometheus can estimate quantiles (`histogram_quantile(0.99, ...)`).

Every update and every rendering happens on the server's event loop, so nothing here locks.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

# Seconds: time to first token and whole requests span milliseconds to minutes; the time per
# output token spans a fraction of a millisecond (a GPU) to a fraction of a second (a CPU).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def _number(value: float) -> str:
    """A sample value: integers exactly (`:g` would round 1234567 to 1.23457e+06)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    quoted = ",".join(f'{key}="{value}"' for key, value in labels)
    return "{" + quoted + "}"


class Counter:
    """A number that only goes up, per set of labels."""

    kind = "counter"

    def __init__(self, name: str, help: str):
        self.name, self.help = name, help
        self.values: dict[tuple, float] = defaultdict(float)

    def inc(self, amount: float = 1, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] += amount

    def samples(self) -> list[str]:
        return [f"{self.name}{_labels(key)} {_number(value)}" for key, value in self.values.items()]


class Gauge:
    """A value read when the metrics are scraped (the queue depth, the running sequences)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], float]):
        self.name, self.help, self.read = name, help, read

    def samples(self) -> list[str]:
        return [f"{self.name} {_number(self.read())}"]


class Histogram:
    """Counts of observations at or below each bucket bound, their sum and their count."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: tuple[float, ...]):
        self.name, self.help, self.buckets = name, help, buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def samples(self) -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip((*self.buckets, "+Inf"), self.counts):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{bound}"}} {cumulative}')
        return [*lines, f"{self.name}_sum {_number(self.sum)}", f"{self.name}_count {self.count}"]


class ServerMetrics:
    """Everything `GET /metrics` reports; `queue_depth` and `running` are read at scrape time."""

    def __init__(self, queue_depth: Callable[[], float], running: Callable[[], float]):
        self.requests = Counter(
            "gptlab_requests_total", "HTTP requests answered, by endpoint and status code."
        )
        self.prompt_tokens = Counter("gptlab_prompt_tokens_total", "Prompt tokens processed.")
        self.generated_tokens = Counter(
            "gptlab_generated_tokens_total", "Tokens generated (EOS included)."
        )
        self.finished = Counter(
            "gptlab_sequences_finished_total",
            "Sequences ended, by reason: stop, length, cancelled (the client left) or error.",
        )
        self.queue_depth = Gauge(
            "gptlab_queue_depth",
            "Sequences waiting for a row, or for their beam search.",
            queue_depth,
        )
        self.running = Gauge(
            "gptlab_running_sequences",
            "Sequences being decoded: in the running batch, or in a beam search.",
            running,
        )
        self.time_to_first_token = Histogram(
            "gptlab_time_to_first_token_seconds",
            "From a request's arrival to its first generated token.",
            LATENCY_BUCKETS,
        )
        self.time_per_token = Histogram(
            "gptlab_time_per_output_token_seconds",
            "A request's mean time between generated tokens, after the first.",
            TOKEN_BUCKETS,
        )
        self.request_latency = Histogram(
            "gptlab_request_duration_seconds",
            "From a request's arrival to its last token.",
            LATENCY_BUCKETS,
        )
        for counter in (self.prompt_tokens, self.generated_tokens):
            counter.inc(0)  # a series from the start, so rates are defined from the first scrape

    def render(self) -> str:
        lines = []
        for metric in (
            self.requests,
            self.prompt_tokens,
            self.generated_tokens,
            self.finished,
            self.queue_depth,
            self.running,
            self.time_to_first_token,
            self.time_per_token,
            self.request_latency,
        ):
            lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]
            lines += metric.samples()
        return "\n".join(lines) + "\n"
