"""What an operator graphs: GET /metrics in Prometheus' text format, and on AWS Lambda the same
figures as CloudWatch Embedded Metric Format lines (no agent: Lambda ships stdout).

Every figure comes from a request's access line (observe.py), written once per request when it
ends (a stream's when its body ends), and from the generator's state at scrape time. Labels are
the route's rule (`/v1/models/<path:model_id>`, never the path a caller sent) and the status:
no title, prompt or path reaches a metric.

Several gunicorn workers: each answers /metrics with its own figures unless
PROMETHEUS_MULTIPROC_DIR names an empty directory, where counters and histograms are then
summed across the workers (prometheus_client's multiprocess mode, gunicorn.conf.py marks dead
workers); the gauges read at scrape time (queue, rows, model state) are the answering worker's.
One worker is the default (gunicorn.conf.py).
"""

import json
import os
import sys
import time

from flask import Blueprint, Response, abort, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from .limits import get_limit
from .state import get_generator, get_settings

EXTENSION = "kogpt2.metrics"
NAMESPACE = "KoGPT2"  # CloudWatch's, for the Embedded Metric Format
MODEL_STATES = ("not_loaded", "loading", "ready", "failed")
# Seconds: time to the first token spans a queued request's wait; a token, a few ms to 0.1 s.
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30)
PER_TOKEN_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5)
REQUEST_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30)
LOAD_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

bp = Blueprint("metrics", __name__)


class Metrics:
    """One app's metrics, in a registry of its own (several apps may share a process: tests)."""

    def __init__(self, generator, limit):
        self.registry = CollectorRegistry(auto_describe=True)
        self.generator, self.limit = generator, limit
        self.requests = Counter("kogpt2_requests", "Requests answered, by route and status.",
                                ["route", "status"], registry=self.registry)
        self.stream_errors = Counter(
            "kogpt2_stream_errors", "Streams that failed after their answer began (status 200): "
            "the error was their last event.", ["route", "error_type"], registry=self.registry)
        self.request_seconds = Histogram(
            "kogpt2_request_duration_seconds", "Time from a request's arrival to its last byte.",
            ["route"], buckets=REQUEST_BUCKETS, registry=self.registry)
        self.queue_seconds = Histogram(
            "kogpt2_queue_seconds", "Time a generation waited for a slot and for the engine.",
            buckets=REQUEST_BUCKETS, registry=self.registry)
        self.first_token = Histogram(
            "kogpt2_time_to_first_token_seconds",
            "From a request's arrival to its first new token (the first sequence's).",
            buckets=FIRST_TOKEN_BUCKETS, registry=self.registry)
        self.per_token = Histogram(
            "kogpt2_time_per_output_token_seconds",
            "Mean time between a request's new tokens after the first (its first sequence).",
            buckets=PER_TOKEN_BUCKETS, registry=self.registry)
        self.generated = Counter("kogpt2_generated_tokens", "New tokens generated.",
                                 registry=self.registry)
        self.prompt_tokens = Counter("kogpt2_prompt_tokens", "Prompt tokens read.",
                                     registry=self.registry)
        self.load_seconds = Histogram(
            "kogpt2_model_load_seconds",
            "Loads of the model, by stage: download, prepare (an engine's copy), load.",
            ["stage"], buckets=LOAD_BUCKETS, registry=self.registry)
        self._loads_seen = 0
        self.registry.register(LiveState(self))

    def record(self, line: dict) -> None:
        """Count one finished request from its access line."""
        route = line.get("route") or "unmatched"
        self.requests.labels(route=route, status=str(line["status"])).inc()
        if line.get("error_status") is not None:
            self.stream_errors.labels(route=route, error_type=line["error_type"]).inc()
        self.request_seconds.labels(route=route).observe(line["time_ms"] / 1000)
        if line.get("queued_ms") is not None:
            self.queue_seconds.observe(line["queued_ms"] / 1000)
        if line.get("ttft_ms") is not None:
            self.first_token.observe(line["ttft_ms"] / 1000)
        if line.get("tpot_ms") is not None:
            self.per_token.observe(line["tpot_ms"] / 1000)
        if line.get("tokens"):
            self.generated.inc(line["tokens"])
        if line.get("prompt_tokens"):
            self.prompt_tokens.inc(line["prompt_tokens"])

    def observe_loads(self) -> None:
        """The generator's finished loads that these metrics haven't counted yet."""
        loads = self.generator.load_history()
        for load in loads[self._loads_seen:]:
            for stage, seconds in load.items():
                self.load_seconds.labels(stage=stage).observe(seconds)
        self._loads_seen = len(loads)

    def exposition(self) -> bytes:
        self.observe_loads()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(LiveState(self))
            return generate_latest(registry)
        return generate_latest(self.registry)


class LiveState:
    """Gauges read when scraped: the queue, the engine's rows, the model's state."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        limit, generator = self.metrics.limit, self.metrics.generator
        yield GaugeMetricFamily("kogpt2_requests_running",
                                "Requests holding a generation slot.", value=limit.running)
        yield GaugeMetricFamily("kogpt2_requests_waiting",
                                "Requests waiting for a generation slot.", value=limit.waiting)
        stats = generator.batch_stats()
        yield GaugeMetricFamily("kogpt2_rows_running", "Sequences the engine is generating.",
                                value=stats["rows_running"])
        yield GaugeMetricFamily("kogpt2_rows_waiting", "Sequences waiting to join the engine.",
                                value=stats["rows_waiting"])
        yield GaugeMetricFamily("kogpt2_rows_max", "Sequences the engine runs at once.",
                                value=stats["max_rows"])
        state = GaugeMetricFamily("kogpt2_model_state", "1 for the model's current state.",
                                  labels=["state"])
        for name in MODEL_STATES:
            state.add_metric([name], 1 if generator.state == name else 0)
        yield state


def emf_line(line: dict) -> dict:
    """A request's figures in CloudWatch's Embedded Metric Format: one JSON object that
    CloudWatch Logs turns into metrics, dimensioned by route."""
    figures = {
        "Requests": (1, "Count"),
        "ServerErrors": (1 if failed_status(line) >= 500 else 0, "Count"),
        "Latency": (line["time_ms"], "Milliseconds"),
        "QueueTime": (line.get("queued_ms"), "Milliseconds"),
        "TimeToFirstToken": (line.get("ttft_ms"), "Milliseconds"),
        "TimePerOutputToken": (line.get("tpot_ms"), "Milliseconds"),
        "GeneratedTokens": (line.get("tokens"), "Count"),
    }
    figures = {name: pair for name, pair in figures.items() if pair[0] is not None}
    return {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Route"]],
                "Metrics": [{"Name": name, "Unit": unit} for name, (_, unit) in figures.items()],
            }],
        },
        "Route": line.get("route") or "unmatched",
        "Status": line["status"],
        **{name: value for name, (value, _) in figures.items()},
    }


def failed_status(line: dict) -> int:
    """A request's status, or for a stream that failed after it began (status 200), the
    status its error would have had."""
    return line.get("error_status") or line["status"]


def record(app, line: dict) -> None:
    """Count a finished request (observe.write_access_line calls this with each line)."""
    metrics = app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.record(line)
    if app.config["KOGPT2_SETTINGS"].emf:
        sys.stdout.write(json.dumps(emf_line(line)) + "\n")
        sys.stdout.flush()


@bp.get("/metrics")
def metrics():
    if not get_settings().metrics:
        abort(404)
    exposition = current_app.extensions[EXTENSION].exposition()
    return Response(exposition, content_type=CONTENT_TYPE_LATEST)


def init_app(app) -> None:
    with app.app_context():
        app.extensions[EXTENSION] = Metrics(get_generator(), get_limit())
    app.register_blueprint(bp)
