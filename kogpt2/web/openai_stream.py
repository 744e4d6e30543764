"""POST /v1/completions with "stream": true: OpenAI's chunks as server-sent events.

    data: {"id": "cmpl-…", "object": "text_completion", ..., "choices": [{"text": " 운동",
           "index": 0, "logprobs": null, "finish_reason": null}], "usage": null}   as text comes
    data: {... "choices": [{"text": "<the rest>", "index": 0, ..., "finish_reason": "stop"}]}
    data: {... "choices": [{"text": "<whole text>", "index": 1, ...}]}     other choices, if n > 1
    data: {... "choices": [], "usage": {...}}       with stream_options: {"include_usage": true}
    data: [DONE]

The first choice streams as it is made; text that could still turn out to be the start of a
stop text, or that ends in a broken character, is held back until the next tokens settle it.
The last chunk of each choice completes it to exactly the non-streamed completion's text.
Everything that can be refused is refused before the stream starts, with the usual status:
the checks, the slot (429), the model's load (503), a failure before the first chunk. A later
failure is a last event `{"error": {...}}` (the openai SDK raises it), with no [DONE].

The generation runs on a thread of its own that holds the generation slot and feeds a queue;
the server's thread writes the events. When the client goes away the server closes the body,
and `close()` cancels the generation, which stops within a token.

Issue 11 brings the same machinery for /generate (web/stream.py); once it is on main, this
module keeps only what is OpenAI's (the chunks, the stop texts) on top of it.
"""

import contextlib
import json
import logging
import queue
import threading
import time
import uuid

from flask import Response, current_app, g

from ..model import Prompt
from ..model.stops import sendable
from .errors import describe
from .limits import get_limit
from .openai_schemas import Completion, CompletionChoice, CompletionRequest, OpenAIErrorResponse
from .state import get_generator

log = logging.getLogger(__name__)

# What a decoder writes for bytes that are not yet a whole character (a Hangul syllable is 3
# bytes in UTF-8, and a token may end inside one).
REPLACEMENT = "\ufffd"
# Past the deadline the engine stops within a token; this covers one slow step.
STUCK_AFTER_S = 10.0
DONE = b"data: [DONE]\n\n"


def event(value: dict) -> bytes:
    return f"data: {json.dumps(value, ensure_ascii=False)}\n\n".encode()


class CompletionStream:
    """The body of a streamed completion. From `start` on, its thread holds the generation
    slot and releases it when the generation ends, however it ends."""

    def __init__(self, asked: CompletionRequest, prompt: Prompt, until: float):
        self.asked, self.prompt, self.until = asked, prompt, until
        self.app = current_app._get_current_object()  # the body is written after the request
        self.request_id = g.get("request_id")
        self.id, self.created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        self.generator = get_generator()
        self._items: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._first = None
        self._ids: list[int] = []
        self._sent = ""  # the first choice's text sent so far

    def start(self) -> None:
        with contextlib.ExitStack() as held:
            held.enter_context(get_limit().slot(self.until))
            self.generator.load()  # 503 while the model is prepared, before the stream starts
            release = held.pop_all().close
        try:
            self._thread = threading.Thread(target=self._generate, args=(release,),
                                            name="kogpt2-completion-stream", daemon=True)
            self._thread.start()
        except BaseException:  # no thread to release the slot
            release()
            raise

    def _generate(self, release) -> None:
        try:
            item = ("done", self.generator.run(
                self.prompt, deadline=self.until, cancel=self._cancel, on_token=self._hear,
                stop=self.asked.stops,
            ))
        except Exception as exc:  # told to the client as the last event
            item = ("error", exc)
        finally:
            release()
        self._items.put(item)

    def _hear(self, token_id: int) -> None:
        """The first sequence's new token: queue the text that is now settled."""
        self._ids.append(token_id)
        text = self.generator.continuation(self.prompt.ids, self._ids)
        if text.endswith(REPLACEMENT):
            return
        settled = sendable(text, self.asked.stops)
        if len(settled) > len(self._sent) and settled.startswith(self._sent):
            self._items.put(("text", settled[len(self._sent):]))
            self._sent = settled

    def first(self) -> None:
        """Wait for the first item; a failure before any text is raised, for its status."""
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

    def chunk(self, choices: list[CompletionChoice], usage=None) -> bytes:
        return event(Completion(id=self.id, created=self.created, model=self.generator.public_name,
                                choices=choices, usage=usage).model_dump())

    def __iter__(self):
        item, self._first = self._first or self._next(), None
        shown = self.prompt.text if self.asked.echo else ""
        if shown:
            yield self.chunk([CompletionChoice(text=shown, index=0, finish_reason=None)])
        while item[0] == "text":
            yield self.chunk([CompletionChoice(text=item[1], index=0, finish_reason=None)])
            shown += item[1]
            item = self._next()
        if item[0] == "error":
            yield self._error_event(item[1])
            return
        completion = Completion.from_result(self.asked, item[1])  # the non-streamed answer
        first, *others = completion.choices
        yield self.chunk([first.model_copy(update={"text": first.text[len(shown):]})])
        for choice in others:
            yield self.chunk([choice])
        if self.asked.stream_options is not None and self.asked.stream_options.include_usage:
            yield self.chunk([], completion.usage)
        yield DONE

    def _error_event(self, exc: Exception) -> bytes:
        with self.app.app_context():
            error = describe(exc)
        if error.error_type == "internal_error":
            log.error("completion failed mid-stream (request %s)", self.request_id, exc_info=exc)
        return event(OpenAIErrorResponse.from_error(error).model_dump())

    def close(self) -> None:
        """The server is done with the body: at its end, or because the client went away."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, self.until + STUCK_AFTER_S - time.monotonic()))


def stream_completion(asked: CompletionRequest, prompt: Prompt, until: float) -> Response:
    """Take a slot, load the model, start generating; answer once the first text (or the end)
    is there."""
    stream = CompletionStream(asked, prompt, until)
    stream.start()
    try:
        stream.first()
    except BaseException:
        stream.close()
        raise
    response = Response(stream, mimetype="text/event-stream")
    # Proxies and browsers must pass each event on as it comes (X-Accel-Buffering: nginx).
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
