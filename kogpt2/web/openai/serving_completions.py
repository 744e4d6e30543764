"""POST /v1/completions: a batch of prompts, checked, generated together, answered in OpenAI's
shape (or streamed: completion_stream.py).

A completion goes the way of POST /generate: every prompt of the batch is validated and checked
before anything waits for a generation slot, then one slot, queue and time budget, log line and
headers. Errors are described once (errors.describe) and rendered in OpenAI's shape.
"""

import re

from flask import Response

from ...model import GenerationResult, InvalidInput, Prompt
from ...model.stops import sendable
from ...model.tokens import Vocabulary
from .. import service
from ..errors import APIError
from ..state import get_generator, get_settings
from ..stream import event, stream_response
from .protocol import (
    FINISH_REASONS,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionUsage,
    OpenAIErrorResponse,
    completion_id,
    now,
)
from .serving_models import check_model

# The model layer names the native API's fields; OpenAI's names for them.
NAMES = {"text": "prompt", "max_new_tokens": "max_tokens", "min_new_tokens": "min_tokens",
         "prompt_logprobs": "echo"}  # scoring the prompt: echo with logprobs


def create_completion():
    asked = service.validate(CompletionRequest, service.json_body())
    check_model(asked.model)
    prompts = check_prompts(asked)
    if asked.stream:
        return stream_completion(asked, prompts, service.deadline())
    results = service.generate(prompts, stop=asked.stops)
    completion = build_completion(get_generator().vocabulary(), asked, prompts, results)
    service.count_generated(completion.usage.completion_tokens)
    return completion.model_dump()


def check_prompts(asked: CompletionRequest) -> list[Prompt]:
    """Every prompt of the batch, checked before anything queues; refusals in OpenAI's names."""
    batch = asked.prompts
    cap = get_settings().max_batch_prompts
    if len(batch) > cap:
        raise APIError(422, "validation_error",
                       f"Invalid request: prompt holds {len(batch)} prompts; this server takes at "
                       f"most {cap} in one request", param="prompt")
    generation = service.params(**asked.knobs(service.generation_defaults()))
    try:
        return [service.check(prompt, generation) for prompt in batch]
    except InvalidInput as exc:
        message = re.sub(r"\b(" + "|".join(NAMES) + r")\b", lambda m: NAMES[m[0]], str(exc))
        raise InvalidInput(message, NAMES.get(exc.field, exc.field)) from exc


def build_completion(vocabulary: Vocabulary, asked: CompletionRequest, prompts: list[Prompt],
                     results: list[GenerationResult]) -> Completion:
    """The answer to `asked`; `vocabulary` tells the tokens' texts (an argument, as a stream
    builds it outside the app's context)."""
    choices = [choice for at, (prompt, result) in enumerate(zip(prompts, results, strict=True))
               for choice in prompt_choices(vocabulary, asked, at, prompt, result)]
    return Completion(id=completion_id(), created=now(), model=results[0].model,
                      choices=choices, usage=usage(asked, prompts, results))


def sequences(asked: CompletionRequest, result: GenerationResult):
    """One sequence per choice: with greedy decoding one generation serves all n."""
    if len(result.sequences) == 1 and asked.choices_per_prompt > 1:
        return result.sequences * asked.choices_per_prompt
    return result.sequences


def prompt_choices(vocabulary: Vocabulary, asked: CompletionRequest, position: int,
                   prompt: Prompt, result: GenerationResult) -> list[CompletionChoice]:
    """The choices of the batch's `position`-th prompt: index = position × n + choice."""
    choices = []
    for number, sequence in enumerate(sequences(asked, result)):
        continuation = sequence.text[len(prompt.text):]
        if asked.include_stop_str_in_output and sequence.stop_text:
            continuation += sequence.stop_text
        text = prompt.text + continuation if asked.echo else continuation
        logprobs = None
        if asked.logprobs is not None:
            logprobs = choice_logprobs(vocabulary, asked, prompt, result, sequence, continuation)
        index = position * asked.choices_per_prompt + number
        choices.append(CompletionChoice(text=text, index=index, logprobs=logprobs,
                                        finish_reason=FINISH_REASONS[sequence.finish_reason]))
    return choices


def choice_logprobs(vocabulary: Vocabulary, asked: CompletionRequest, prompt: Prompt,
                    result: GenerationResult, sequence, continuation: str) -> CompletionLogprobs:
    """OpenAI's logprobs of a choice: with echo the prompt's tokens first (the first has no
    log-probability; special tokens written out, as the echoed text has them), then the
    generated tokens whose text the choice holds."""
    tokens: list[str] = []
    values: list[float | None] = []
    tops: list[dict[str, float] | None] = []
    if asked.echo:
        pieces = vocabulary.token_pieces([], prompt.ids, special=True)
        for at, (piece, scored) in enumerate(zip(pieces, result.prompt_logprobs, strict=True)):
            tokens.append(piece)
            values.append(None if scored is None else scored.logprob)
            tops.append(None if scored is None else
                        top_texts(vocabulary, prompt.ids[:at], piece, scored, special=True))
    pieces = fit(vocabulary.token_pieces(prompt.ids, sequence.token_ids), continuation)
    chosen = sequence.logprobs or []
    if sequence.stop_text is None and len(chosen) > len(sequence.token_ids):
        pieces.append("")  # the end of text (or a stop id) that ended it: no text, a score
    for at, (piece, scored) in enumerate(zip(pieces, chosen, strict=False)):
        tokens.append(piece)
        values.append(scored.logprob)
        tops.append(top_texts(vocabulary, prompt.ids + sequence.token_ids[:at], piece, scored))
    offsets, position = [], 0
    for piece in tokens:
        offsets.append(position)
        position += len(piece)
    return CompletionLogprobs(tokens=tokens, token_logprobs=values, top_logprobs=tops,
                              text_offset=offsets)


def fit(pieces: list[str], text: str) -> list[str]:
    """The tokens' texts cut to `text` (a stop text may end inside a token, and the tokens
    after it are not the choice's), or carried on to it (a kept stop text). A token with no
    text (a special one) at the end is still the choice's: it keeps its entry."""
    kept, length = [], 0
    for piece in pieces:
        if length >= len(text) and piece:
            break
        piece = piece[: len(text) - length]
        kept.append(piece)
        length += len(piece)
    return kept


def top_texts(vocabulary: Vocabulary, before: list[int], chosen_text: str, scored, *,
              special: bool = False) -> dict[str, float]:
    """The likeliest tokens at a position, by the text each would add there, and the chosen
    token (OpenAI lists it too). Tokens that add the same text (every special token adds ""
    to a generated text) are one entry, the likeliest's."""
    top: dict[str, float] = {}
    for token, value in scored.top:
        text = vocabulary.continuation(before, [token], special=special)
        top[text] = max(value, top.get(text, value))
    top.setdefault(chosen_text, scored.logprob)
    return top


def completion_tokens(asked: CompletionRequest, results: list[GenerationResult]) -> int:
    """Every choice's tokens: a greedy generation that serves n choices counts n times."""
    return sum(sequence.generated_tokens for result in results
               for sequence in sequences(asked, result))


def usage(asked: CompletionRequest, prompts: list[Prompt],
          results: list[GenerationResult]) -> CompletionUsage:
    prompt_tokens = sum(len(prompt.ids) for prompt in prompts)
    generated = completion_tokens(asked, results)
    return CompletionUsage(prompt_tokens=prompt_tokens, completion_tokens=generated,
                           total_tokens=prompt_tokens + generated)


# --- streamed: "stream": true -----------------------------------------------------------------
#
# POST /v1/completions with "stream": true: OpenAI's chunks as server-sent events.
#
#     data: {"id": "cmpl-…", "object": "text_completion", ..., "choices": [{"text": " 운동",
#            "index": 0, "logprobs": null, "finish_reason": null}], "usage": null}   as text comes
#     data: {... "choices": [{"text": "<the rest>", "index": 0, ..., "finish_reason": "stop"}]}
#     data: {... "choices": [{"text": "<whole text>", "index": 1, ...}]}     other choices, if any
#     data: {... "choices": [], "usage": {...}}       with stream_options: {"include_usage": true}
#     data: [DONE]
#
# The first choice (the first prompt's first) streams as it is made; text that could still turn
# out to be the start of a stop text is held back until the next tokens settle it. Its last
# chunk completes it to exactly the non-streamed completion's text, and every other choice comes
# whole after it, so the chunks of each index join to the non-streamed choice. With `logprobs`,
# each chunk carries the entries of the tokens whose text it holds (with `echo` too, or on an
# engine that scores its tokens only at the end, CTranslate2, the first choice comes whole: the
# scores exist only once the generation ends). With
# `stream_options.continuous_usage_stats` every chunk carries the usage so far.
#
# The generation, its slot, refusals before the stream and cancel on close are web/stream.py's,
# as for /generate; a failure after the first chunk is a last event `{"error": {...}}` (the
# openai SDK raises it), with no [DONE].

DONE = b"data: [DONE]\n\n"


class CompletionEvents:
    """A streamed completion's chunks (web/stream.py's Events)."""

    def __init__(self, asked: CompletionRequest, prompts: list[Prompt]):
        self.asked, self.prompts = asked, prompts
        self.prompt = prompts[0]
        self.id, self.created = completion_id(), now()
        generator = get_generator()  # the body is written outside the app's context
        self.vocabulary, self.model = generator.vocabulary(), generator.public_name
        self.live = not (asked.echo and asked.logprobs is not None)
        self.text = ""  # the first choice's generated text so far
        self.shown = ""  # what of the first choice the chunks have sent
        self.ids: list[int] = []  # the first choice's tokens so far
        self.pending: list[tuple[str, float, dict]] = []  # logprobs not yet sent with their text
        self.entries_sent = 0
        self.prompt_tokens = sum(len(prompt.ids) for prompt in prompts)
        self.generated = 0

    def chunk(self, choices: list[CompletionChoice], usage=None) -> bytes:
        if usage is None and self.continuous_usage:
            usage = CompletionUsage(prompt_tokens=self.prompt_tokens,
                                    completion_tokens=self.generated,
                                    total_tokens=self.prompt_tokens + self.generated)
        return event(Completion(id=self.id, created=self.created, model=self.model,
                                choices=choices, usage=usage).model_dump())

    @property
    def continuous_usage(self) -> bool:
        """vLLM's: usage on every chunk, only when the final usage is asked for too."""
        options = self.asked.stream_options
        return bool(options and options.include_usage and options.continuous_usage_stats)

    def opening(self):
        if self.asked.echo and self.live:
            self.shown = self.prompt.text
            yield self.chunk([CompletionChoice(text=self.shown, index=0, finish_reason=None)])

    def token(self, token_id, text, chosen):
        self.generated += 1
        if not self.live:
            return
        if self.asked.logprobs is not None and chosen is None:
            # The engine scores its tokens only at the end (CTranslate2): the choice comes
            # whole then, its chunks and their entries together.
            self.live = False
            return
        before = self.prompt.ids + self.ids
        self.ids.append(token_id)
        if self.asked.logprobs is not None:
            self.pending.append((text, chosen.logprob,
                                 top_texts(self.vocabulary, before, text, chosen)))
        self.text += text
        echoed = self.prompt.text if self.asked.echo else ""
        settled = echoed + sendable(self.text, self.asked.stops)
        if not settled.startswith(self.shown):
            return
        end, entries = len(settled), []
        if self.asked.logprobs is not None:  # a chunk holds whole tokens, with their entries
            end = len(self.shown)
            while self.pending and end + len(self.pending[0][0]) <= len(settled):
                entries.append(self.pending.pop(0))
                end += len(entries[-1][0])
        if end <= len(self.shown) and not entries:
            return
        piece, start = settled[len(self.shown):end], len(self.shown)
        self.shown = settled[:end]
        logprobs = self.entries(entries, start)
        yield self.chunk([CompletionChoice(text=piece, index=0, logprobs=logprobs,
                                           finish_reason=None)])

    def entries(self, entries: list[tuple[str, float, dict]], start: int):
        if not entries:
            return None
        offsets = []
        for text, _, _ in entries:
            offsets.append(start)
            start += len(text)
        self.entries_sent += len(entries)
        return CompletionLogprobs(tokens=[e[0] for e in entries],
                                  token_logprobs=[e[1] for e in entries],
                                  top_logprobs=[e[2] for e in entries], text_offset=offsets)

    def done(self, results):
        completion = build_completion(self.vocabulary, self.asked, self.prompts, results)
        self.generated = completion.usage.completion_tokens
        first, *others = completion.choices
        rest = first.model_copy(update={"text": first.text[len(self.shown):]})
        if first.logprobs is not None:
            logprobs = first.logprobs
            rest.logprobs = CompletionLogprobs(
                tokens=logprobs.tokens[self.entries_sent:],
                token_logprobs=logprobs.token_logprobs[self.entries_sent:],
                top_logprobs=logprobs.top_logprobs[self.entries_sent:],
                text_offset=logprobs.text_offset[self.entries_sent:],
            )
        yield self.chunk([rest])
        for choice in others:
            yield self.chunk([choice])
        options = self.asked.stream_options
        if options is not None and options.include_usage:
            yield self.chunk([], completion.usage)
        yield DONE

    def failed(self, error):
        yield event(OpenAIErrorResponse.from_error(error).model_dump())

    def generated_tokens(self, results):
        return completion_tokens(self.asked, results)


def stream_completion(asked: CompletionRequest, prompts: list[Prompt], until: float) -> Response:
    return stream_response(prompts, until, CompletionEvents(asked, prompts), asked.stops)
