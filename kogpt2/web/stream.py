"""POST /generate with "stream": true: server-sent events, one per new token, then the answer.

    data: {"token": {"id": 1234, "text": " 운동"}}      one per new token (</s> is not text)
    data: {"generated_text": ..., "generations": ..., "details": ...}   the non-streamed answer
    data: {"error": ..., "error_type": ..., "request_id": ...}        instead, if it failed

Everything that can be refused is refused before the answer starts, with the usual JSON error
and status: the checks, the generation slot (429), the model's load (503), and a failure before
the first token. The generation runs on a thread of its own that feeds a queue; the server's
thread writes the events. When the client goes away, writing fails, the server closes the
body, and `close()` cancels the generation, which stops within a token.
"""

import contextlib
import json
import logging
import queue
import threading
import time

from flask import Response, current_app, g

from ..model import GenerationResult, Prompt
from .errors import describe
from .limits import get_limit
from .observe import write_access_line
from .schemas import GenerateResponse, StreamError, Token, TokenEvent
from .state import get_generator

log = logging.getLogger(__name__)

# Past the deadline the engine stops within one token; this covers one slow step (a long
# title's first) before the server's thread stops waiting for a generation that is stuck.
STUCK_AFTER_S = 10.0


def event(value: dict) -> bytes:
    return f"data: {json.dumps(value, ensure_ascii=False)}\n\n".encode()


class TokenStream:
    """The body of a streamed answer. Owns the generation slot from `start` on: its thread
    releases it when the generation ends, however it ends; `close` cancels and waits for it."""

    def __init__(self, prompt: Prompt, until: float):
        self.prompt, self.until = prompt, until
        self.app = current_app._get_current_object()  # the body is written after the request
        self.request_id = g.get("request_id")
        self._items: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._first = None
        self._access_line: dict | None = None
        self._started = time.monotonic()
        self._ended = threading.Lock()  # whoever takes it writes the log line, once
        self.tokens = 0
        self.result: GenerationResult | None = None
        self.error = None

    def start(self, release) -> None:
        try:
            self._start(release)
        except BaseException:  # no thread to release the slot
            release()
            raise

    def _start(self, release) -> None:
        generator = get_generator()
        pieces = generator.text_stream(self.prompt)

        def on_token(token_id: int) -> None:
            text = pieces.push(token_id)
            if text is not None:
                self._items.put(("token", Token(id=token_id, text=text)))

        def generate() -> None:
            try:
                item = ("done", generator.run(self.prompt, deadline=self.until,
                                              cancel=self._cancel, on_token=on_token))
            except Exception as exc:  # told to the client as the last event
                item = ("error", exc)
            finally:
                release()  # before the last event goes out: a client that reads it finds it free
            self._items.put(item)

        self._thread = threading.Thread(target=generate, name="kogpt2-stream", daemon=True)
        self._thread.start()

    def first(self):
        """Wait for the first item. A failure before the first token is raised here, so the
        caller answers it with its status instead of a stream."""
        self._first = self._next()
        if self._first[0] == "error":
            raise self._first[1]

    def _next(self):
        wait = max(0.0, self.until + STUCK_AFTER_S - time.monotonic())
        try:
            return self._items.get(timeout=wait)
        except queue.Empty:
            self._cancel.set()
            return "error", TimeoutError("the generation did not stop at its deadline")

    def __iter__(self):
        item, self._first = self._first or self._next(), None
        while item[0] == "token":
            self.tokens += 1
            yield event(TokenEvent(token=item[1]).model_dump())
            item = self._next()
        if item[0] == "done":
            self.result = item[1]
            yield event(GenerateResponse.from_result(item[1]).model_dump())
        else:
            yield event(self._error_event(item[1]))
        self._end(cancelled=False)

    def _error_event(self, exc: Exception) -> dict:
        with self.app.app_context():
            self.error = describe(exc)
        if self.error.error_type == "internal_error":
            log.error("generation failed mid-stream (request %s)", self.request_id,
                      exc_info=exc)
        return StreamError(error=self.error.message, error_type=self.error.error_type,
                           request_id=self.request_id).model_dump()

    def log_at_end(self, line: dict, started: float) -> None:
        """observe.finish_response hands over the request's log line; it is written when the
        body ends, with the tokens sent and how it ended."""
        self._access_line, self._started = line, started

    def close(self) -> None:
        """The server is done with the body: at its end, or because the client went away."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, self.until + STUCK_AFTER_S - time.monotonic()))
        self._end(cancelled=True)

    def _end(self, *, cancelled: bool) -> None:
        if not self._ended.acquire(blocking=False):
            return
        if cancelled:  # how the generation ended, if it stopped in time, for the log line
            with contextlib.suppress(queue.Empty):
                while True:
                    kind, value = self._items.get_nowait()
                    if kind == "done":
                        self.result = value
                    elif kind == "error":
                        self._error_event(value)
        line = self._access_line
        if line is None:  # not served through the app (nothing to log)
            return
        line["time_ms"] = round((time.monotonic() - self._started) * 1000)
        line["tokens"] = self.result.generated_tokens if self.result else self.tokens
        line["tokens_sent"] = self.tokens
        if self.result is not None:
            line["finish_reason"] = self.result.finish_reason
        if cancelled:
            line["cancelled"] = True
        if self.error is not None:
            line["error_type"] = self.error.error_type
            if self.error.detail:
                line["error_detail"] = self.error.detail
        write_access_line(line)


def stream_response(prompt: Prompt, until: float) -> Response:
    """Take a slot, make sure the model is loaded, start generating, and answer once the first
    token (or the end) is there."""
    stream = TokenStream(prompt, until)
    with contextlib.ExitStack() as held:
        held.enter_context(get_limit().slot(until))
        get_generator().load()  # 503 while the model is prepared, before the stream starts
        stream.start(held.pop_all().close)  # the stream's thread releases the slot now
    try:
        stream.first()
    except BaseException:
        stream.close()
        raise
    response = Response(stream, mimetype="text/event-stream")
    # Proxies and browsers must pass each event on as it comes (X-Accel-Buffering: nginx).
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    g.stream = stream  # its log line is written when the body ends (observe.py)
    return response
