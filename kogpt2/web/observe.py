"""What every response carries and every request leaves behind: ids, timings, a JSON log line.

- `X-Request-ID`: the caller's, if it is short and plain, else a new one; in the log line too.
- `X-Time-Ms` on every response; `X-Generated-Tokens` on answers that generated text.
- Security headers: no MIME sniffing, no referrer, no framing.
- One JSON line per request on the `kogpt2.access` logger; the prompt only with KOGPT2_LOG_PROMPTS.
  A streamed answer's line is written when its body ends (web/stream.py), with what was sent.
"""

import json
import logging
import re
import sys
import time
import uuid

from flask import current_app, g, request

from . import metrics
from .state import get_settings

access_log = logging.getLogger("kogpt2.access")

REQUEST_ID_HEADER = "X-Request-ID"
# Safe to echo into headers and logs: no spaces, quotes, newlines or anything to inject.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
EXPOSED_HEADERS = [REQUEST_ID_HEADER, "X-Time-Ms", "X-Generated-Tokens", "Retry-After"]
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# JSON needs no sources at all. HTML pages bring their own policy (the page's, /docs').
NON_HTML_CSP = "default-src 'none'; frame-ancestors 'none'"


def request_id() -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def start_request() -> None:
    g.request_started = time.monotonic()
    g.request_id = request_id()


def finish_response(response):
    started = g.get("request_started", time.monotonic())
    time_ms = round((time.monotonic() - started) * 1000)
    response.headers[REQUEST_ID_HEADER] = g.get("request_id") or request_id()
    response.headers["X-Time-Ms"] = str(time_ms)
    tokens = g.get("generated_tokens")
    if tokens is not None and response.status_code == 200:
        response.headers["X-Generated-Tokens"] = str(tokens)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype != "text/html":
        response.headers.setdefault("Content-Security-Policy", NON_HTML_CSP)
    line = access_line(response, time_ms, tokens)
    stream = g.get("stream")
    if stream is not None and response.is_streamed:
        stream.log_at_end(line, started)  # this runs before the body is sent
    else:
        write_access_line(line, current_app._get_current_object())
    return response


def access_line(response, time_ms: int, tokens: int | None) -> dict:
    rule = request.url_rule
    line = {
        "request_id": response.headers[REQUEST_ID_HEADER],
        "method": request.method,
        "route": rule.rule if rule else None,  # the route, never the raw (caller-chosen) path
        "status": response.status_code,
        "tokens": tokens,
        "time_ms": time_ms,
        "queued_ms": g.get("queued_ms"),  # waiting for a slot, then for the engine
        "prompt_tokens": g.get("prompt_tokens"),
        **(g.clock.figures() if "clock" in g else {}),
    }
    error = g.get("error")
    if error is not None:
        line["error_type"] = error.error_type
        if error.detail:  # for the operator: may name paths, never the prompt
            line["error_detail"] = error.detail
    if get_settings().log_prompts and g.get("prompt") is not None:
        line["prompt"] = g.prompt
    return line


def write_access_line(line: dict, app) -> None:
    """The request's one log line; its figures go to the app's metrics too."""
    access_log.info(json.dumps(line, ensure_ascii=False))
    metrics.record(app, line)


class TokenClock:
    """When a generation's tokens came (its first sequence's): the time to the first token
    from the request's arrival, and the mean time per token after it."""

    def __init__(self, started: float):
        self.started, self.first, self.last, self.count = started, None, None, 0

    def hear(self, token_id: int, chosen=None) -> None:
        self.last = time.monotonic()
        self.first = self.first or self.last
        self.count += 1

    def figures(self) -> dict:
        if self.first is None:
            return {}
        figures = {"ttft_ms": round((self.first - self.started) * 1000)}
        if self.count > 1:
            figures["tpot_ms"] = round((self.last - self.first) * 1000 / (self.count - 1), 2)
        return figures


def setup_access_log() -> None:
    """Bare JSON lines on stderr, so log tools parse them without a prefix to strip."""
    if access_log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def init_app(app) -> None:
    setup_access_log()
    app.before_request(start_request)
    app.after_request(finish_response)
