"""Streamed answers: a generation on a thread of its own, its text sent as server-sent events.

Two faces stream (POST /generate with "stream": true, POST /v1/completions with "stream":
true); they differ only in the events they write (`Events`). What they share is here:

- Everything that can be refused is refused before the answer starts, with the usual status:
  the checks (before this module), the generation slot (429), the model's load (503), and a
  failure before the first token. A later failure is the stream's last event.
- The generation runs on its own thread, which holds the slot and releases it when the
  generation ends, however it ends; the server's thread writes the events. When the client
  goes away, writing fails, the server closes the body, and `close()` cancels the generation,
  which stops within a token.
- The request's log line is written when the stream ends, with the tokens sent and how it
  ended (observe.py hands it over): a stream that failed after it began keeps its status 200
  and adds `error_type` and `error_status`, so metrics count it as an error.
- A stream that failed after it began also says so in the request's WSGI environ
  (`FAILED_KEY`: its error type), for a server that can tell its own client more than the last
  event does: the image's Lambda runtime (lambda_runtime.py) ends the answer with Lambda's
  error trailers then.
"""

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from flask import Response, current_app, g, request

from ..model import GenerationResult, Prompt, TokenLogprob
from .errors import APIError, describe
from .limits import get_limit
from .observe import TokenClock, write_access_line
from .state import get_generator

log = logging.getLogger(__name__)

# Past the deadline the engine stops within one token; this covers one slow step (a long
# title's first) before the server's thread stops waiting for a generation that is stuck.
STUCK_AFTER_S = 10.0
FAILED_KEY = "kogpt2.stream.failed"


def event(value: dict) -> bytes:
    return f"data: {json.dumps(value, ensure_ascii=False)}\n\n".encode()


class Events(Protocol):
    """How one face writes a stream: what it sends first, per token, at the end, on failure."""

    def opening(self) -> Iterable[bytes]: ...

    def token(self, token_id: int, text: str, chosen: TokenLogprob | None) -> Iterable[bytes]:
        ...

    def done(self, results: list[GenerationResult]) -> Iterable[bytes]: ...

    def failed(self, error: APIError) -> Iterable[bytes]: ...

    def generated_tokens(self, results: list[GenerationResult]) -> int:
        """The new tokens the answer counts (its usage, its details): the log line's."""
        ...


class GenerationStream:
    """The body of a streamed answer. Owns the generation slot from `start` on: its thread
    releases it when the generation ends, however it ends; `close` cancels and waits for it."""

    def __init__(self, prompts: list[Prompt], until: float, events: Events,
                 stop: Sequence[str] = ()):
        self.prompts, self.until, self.events, self.stop = prompts, until, events, stop
        # The body is written after the request, and the generation runs on another thread.
        self.app, self.generator = current_app._get_current_object(), get_generator()
        self.request_id = g.get("request_id")
        self.environ = request.environ
        self._items: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._stuck_at = until + STUCK_AFTER_S
        self._first = None
        self._access_line: dict | None = None
        self._started = time.monotonic()
        self.clock = TokenClock(g.get("request_started") or self._started)
        self._ended = threading.Lock()  # whoever takes it writes the log line, once
        self.tokens = 0
        self.results: list[GenerationResult] | None = None
        self.error: APIError | None = None

    def start(self) -> None:
        """Take a slot and make sure the model is loaded (429, 503: before the answer starts),
        then start generating; answer once the first token (or the end) is there."""
        with contextlib.ExitStack() as held:
            asked = time.monotonic()
            held.enter_context(get_limit().slot(self.until))
            g.queued_ms = round((time.monotonic() - asked) * 1000)
            g.prompt_tokens = sum(len(prompt.ids) for prompt in self.prompts)
            self.generator.load()
            release = held.pop_all().close  # from here on, the thread releases the slot
        # A generation stops within a token of its deadline; one that started after it (a slow
        # load used the budget up) still gets its first step.
        self._stuck_at = max(self.until, time.monotonic()) + STUCK_AFTER_S
        try:
            self._thread = threading.Thread(target=self._generate, args=(release,),
                                            name="kogpt2-stream", daemon=True)
            self._thread.start()
        except BaseException:  # no thread to release the slot
            release()
            raise
        try:
            self._first = self._next()
            if self._first[0] == "error":  # before the first token: the usual error answer
                raise self._first[1]
        except BaseException:
            self.close()
            raise

    def _generate(self, release) -> None:
        generator = self.generator
        pieces = generator.text_stream(self.prompts[0])

        def on_token(token_id: int, chosen: TokenLogprob | None = None) -> None:
            self.clock.hear(token_id)
            text = pieces.push(token_id)
            if text is not None:
                self._items.put(("token", token_id, text, chosen))

        try:
            item = ("done", generator.run(self.prompts, deadline=self.until,
                                          cancel=self._cancel, on_token=on_token,
                                          stop=self.stop))
        except Exception as exc:  # told to the client as the last event
            item = ("error", exc)
        finally:
            release()  # before the last event goes out: a client that reads it finds it free
        self._items.put(item)

    def _next(self):
        wait = max(0.0, self._stuck_at - time.monotonic())
        try:
            return self._items.get(timeout=wait)
        except queue.Empty:
            self._cancel.set()
            return "error", TimeoutError("the generation did not stop at its deadline")

    def __iter__(self):
        try:
            yield from self.events.opening()
            item, self._first = self._first or self._next(), None
            while item[0] == "token":
                self.tokens += 1
                yield from self.events.token(*item[1:])
                item = self._next()
            if item[0] == "done":
                self.results = item[1]
                yield from self.events.done(item[1])
            else:
                yield from self.events.failed(self._describe(item[1]))
        except Exception as exc:  # writing an event failed (a bug): the last event says so
            self._stop_generating()
            yield from self.events.failed(self._describe(exc))
        self._end(cancelled=False)

    def _describe(self, exc: Exception) -> APIError:
        with self.app.app_context():
            self.error = describe(exc)
        self.environ[FAILED_KEY] = self.error.error_type
        if self.error.error_type == "internal_error":
            log.error("generation failed mid-stream (request %s)", self.request_id,
                      exc_info=exc)
        return self.error

    def log_at_end(self, line: dict, started: float) -> None:
        """observe.finish_response hands over the request's log line; it is written when the
        body ends, with the tokens sent and how it ended."""
        self._access_line, self._started = line, started

    def close(self) -> None:
        """The server is done with the body: at its end, or because the client went away."""
        self._stop_generating()
        self._end(cancelled=True)

    def _stop_generating(self) -> None:
        """Cancel the generation and wait for it to stop (it frees its slot then)."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, self._stuck_at - time.monotonic()))

    def _end(self, *, cancelled: bool) -> None:
        if not self._ended.acquire(blocking=False):
            return
        if cancelled:  # how the generation ended, if it stopped in time, for the log line
            with contextlib.suppress(queue.Empty):
                while True:
                    item = self._items.get_nowait()
                    if item[0] == "done":
                        self.results = item[1]
                    elif item[0] == "error":
                        self._describe(item[1])
        line = self._access_line
        if line is None:  # not served through the app (nothing to log)
            return
        line["time_ms"] = round((time.monotonic() - self._started) * 1000)
        line.update(self.clock.figures())
        results = self.results
        line["tokens"] = self.events.generated_tokens(results) if results else self.tokens
        line["tokens_sent"] = self.tokens
        if results:
            line["finish_reason"] = results[0].finish_reason
            line["queued_ms"] = (line.get("queued_ms") or 0) + max(r.queued_ms for r in results)
        if cancelled:
            line["cancelled"] = True
        if self.error is not None:  # the answer had begun with 200: its last event says so
            line["error_type"] = self.error.error_type
            line["error_status"] = self.error.status  # what it would have been answered with
            if self.error.detail:
                line["error_detail"] = self.error.detail
        write_access_line(line, self.app)


def stream_response(prompts: list[Prompt], until: float, events: Events,
                    stop: Sequence[str] = ()) -> Response:
    stream = GenerationStream(prompts, until, events, stop)
    stream.start()
    response = Response(stream, mimetype="text/event-stream")
    # Proxies and browsers must pass each event on as it comes (X-Accel-Buffering: nginx).
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    g.stream = stream  # its log line is written when the body ends (observe.py)
    return response
