"""POST /v1/completions with "stream": true: OpenAI's chunks as server-sent events.

    data: {"id": "cmpl-…", "object": "text_completion", ..., "choices": [{"text": " 운동",
           "index": 0, "logprobs": null, "finish_reason": null}], "usage": null}   as text comes
    data: {... "choices": [{"text": "<the rest>", "index": 0, ..., "finish_reason": "stop"}]}
    data: {... "choices": [{"text": "<whole text>", "index": 1, ...}]}     other choices, if n > 1
    data: {... "choices": [], "usage": {...}}       with stream_options: {"include_usage": true}
    data: [DONE]

The first choice streams as it is made; text that could still turn out to be the start of a
stop text is held back until the next tokens settle it. The last chunk of each choice completes
it to exactly the non-streamed completion's text. The generation, its slot, refusals before the
stream and cancel on close are web/stream.py's, as for /generate; a failure after the first
chunk is a last event `{"error": {...}}` (the openai SDK raises it), with no [DONE].
"""

import time
import uuid

from flask import Response

from ..model import Prompt
from ..model.stops import sendable
from .openai_schemas import Completion, CompletionChoice, CompletionRequest, OpenAIErrorResponse
from .state import get_generator
from .stream import event, stream_response

DONE = b"data: [DONE]\n\n"


class CompletionEvents:
    """A streamed completion's chunks (web/stream.py's Events)."""

    def __init__(self, asked: CompletionRequest, prompt: Prompt):
        self.asked, self.prompt = asked, prompt
        self.id, self.created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        self.model = get_generator().public_name
        self.text = ""  # the first choice's text so far
        self.shown = ""  # what of it the chunks have sent

    def chunk(self, choices: list[CompletionChoice], usage=None) -> bytes:
        return event(Completion(id=self.id, created=self.created, model=self.model,
                                choices=choices, usage=usage).model_dump())

    def opening(self):
        if self.asked.echo:
            self.shown = self.prompt.text
            yield self.chunk([CompletionChoice(text=self.shown, index=0, finish_reason=None)])

    def token(self, token_id, text):
        self.text += text
        echoed = self.prompt.text if self.asked.echo else ""
        settled = echoed + sendable(self.text, self.asked.stops)
        if len(settled) > len(self.shown) and settled.startswith(self.shown):
            piece, self.shown = settled[len(self.shown):], settled
            yield self.chunk([CompletionChoice(text=piece, index=0, finish_reason=None)])

    def done(self, result):
        completion = Completion.from_result(self.asked, result)  # the non-streamed answer
        first, *others = completion.choices
        yield self.chunk([first.model_copy(update={"text": first.text[len(self.shown):]})])
        for choice in others:
            yield self.chunk([choice])
        if self.asked.stream_options is not None and self.asked.stream_options.include_usage:
            yield self.chunk([], completion.usage)
        yield DONE

    def failed(self, error):
        yield event(OpenAIErrorResponse.from_error(error).model_dump())


def stream_completion(asked: CompletionRequest, prompt: Prompt, until: float) -> Response:
    return stream_response(prompt, until, CompletionEvents(asked, prompt), asked.stops)
