"""What every face (the native API, OpenAI's, the page) does with a request around a generation.

Checks run in order of cost, before anything waits: the body's JSON, its schema, the server's
caps, then the prompt's tokens (the tokenizer only). Only then does a request wait for a
generation slot, and the wait counts in its time budget. Routes stay thin: they validate with
their own protocol's models and call these.
"""

import time
from typing import TypeVar

from flask import current_app, g, request
from pydantic import BaseModel, ValidationError

from ..model import GenerationParams, GenerationResult, Prompt
from ..model.licence import model_licences
from .errors import APIError, describe_validation_error
from .limits import get_limit
from .observe import TokenClock
from .state import get_generator, get_settings

M = TypeVar("M", bound=BaseModel)


def json_body():
    if not request.is_json:
        raise APIError(
            415, "unsupported_media_type",
            "Send the body as JSON with the header Content-Type: application/json.",
        )
    body = request.get_data(cache=True)
    try:
        return current_app.json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise APIError(400, "invalid_json", f"The body is not valid JSON: {exc}") from exc


def validate(model: type[M], data) -> M:
    """The caller's `data` as `model`; a mismatch is the caller's 422, naming the field. Any
    other ValidationError (the server building a model wrongly) stays a bug: 500."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = exc.errors(include_url=False)[0]["loc"]
        raise APIError(422, "validation_error", describe_validation_error(exc),
                       param=str(where[0]) if where else None) from exc


def licences() -> list[dict]:
    """Whose model this is, on what terms (model/licence.py): every face states it."""
    return [licence.as_dict() for licence in model_licences(get_settings().model_licence)]


def generation_defaults() -> dict:
    """The server's generation settings for this model: what a request leaves out."""
    return get_settings().generation_defaults()


def params(**asked) -> GenerationParams:
    """GenerationParams from what the caller set (None: not set), the server's defaults for
    the rest."""
    chosen = {name: value for name, value in asked.items() if value is not None}
    return validate(GenerationParams, {**generation_defaults(), **chosen})


def check(prompt: str | list[int], generation: GenerationParams) -> Prompt:
    """Everything that needs no model, and the token limits, before a slot is taken."""
    if isinstance(prompt, str):
        g.prompt = prompt  # logged only with KOGPT2_LOG_PROMPTS
    return get_generator().check(prompt, generation)


def deadline() -> float:
    """The request's time budget ends here, counted from its arrival."""
    started = g.get("request_started") or time.monotonic()
    return started + get_settings().time_budget_s


def generate(prompts: list[Prompt], **options) -> list[GenerationResult]:
    """Run checked prompts together within the time budget (`options`: Generator.run's).

    Waiting for a generation slot counts in the budget, so queued requests still answer
    within API Gateway's 29 s; a request that can't get a slot in time gets 429.
    """
    until = deadline()
    asked = time.monotonic()
    g.prompt_tokens = sum(len(prompt.ids) for prompt in prompts)
    g.clock = TokenClock(g.get("request_started") or asked)
    with get_limit().slot(until):
        g.queued_ms = round((time.monotonic() - asked) * 1000)
        results = get_generator().run(prompts, deadline=until, on_token=g.clock.hear,
                                      **options)
    g.queued_ms += max(result.queued_ms for result in results)
    count_generated(sum(result.generated_tokens for result in results))
    return results


def count_generated(tokens: int) -> None:
    """The new tokens this request generated, as its answer counts them (a face may count a
    sequence more than once): its X-Generated-Tokens, log line and metrics say this."""
    g.generated_tokens = tokens


def generate_one(prompt: Prompt, **options) -> GenerationResult:
    return generate([prompt], **options)[0]
