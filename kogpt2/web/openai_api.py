"""OpenAI's API: GET /v1/models, GET /v1/models/<id>, POST /v1/completions. Knows HTTP, not torch.

Clients written for OpenAI (the openai SDK, LangChain, LlamaIndex) call it with base_url
`.../v1`. A completion goes the way of POST /generate: validated and checked before it waits
for a generation slot, then the same slot, queue and time budget, log line and headers.
Errors are described once (errors.describe) and rendered here in OpenAI's shape and statuses.
"""

import re
import time

from flask import Blueprint, jsonify

from ..model import InvalidInput, Prompt
from .api import check, deadline, generate_text, json_body
from .errors import APIError, render_under
from .openai_schemas import (
    Completion,
    CompletionRequest,
    Model,
    ModelList,
    OpenAIErrorResponse,
    openai_status,
)
from .openai_stream import stream_completion
from .state import get_generator

PREFIX = "/v1"
bp = Blueprint("openai", __name__, url_prefix=PREFIX)
STARTED = int(time.time())
# The model layer names the native API's fields; OpenAI's names for them.
NAMES = {"text": "prompt", "max_new_tokens": "max_tokens"}


def error_response(error: APIError):
    response = jsonify(OpenAIErrorResponse.from_error(error).model_dump())
    response.status_code = openai_status(error)
    response.headers.update(error.headers)
    return response


def served_model() -> Model:
    name = get_generator().public_name
    return Model(id=name, created=STARTED, owned_by=name.partition("/")[0] if "/" in name
                 else "kogpt2")


def model_not_found() -> APIError:
    served = get_generator().public_name
    return APIError(404, "model_not_found",
                    f"No such model here: this server serves {served!r} (GET /v1/models).",
                    param="model")


@bp.get("/models")
def models():
    return ModelList(data=[served_model()]).model_dump()


@bp.get("/models/<path:model_id>")
def model(model_id: str):
    served = served_model()
    if model_id != served.id:
        raise model_not_found()
    return served.model_dump()


def check_prompt(asked: CompletionRequest) -> Prompt:
    """api.check, its refusals in OpenAI's field names."""
    try:
        return check(asked.text, asked.params())
    except InvalidInput as exc:
        message = re.sub(r"\b(text|max_new_tokens)\b", lambda m: NAMES[m[0]], str(exc))
        raise InvalidInput(message, NAMES.get(exc.field, exc.field)) from exc


@bp.post("/completions")
def completions():
    asked = CompletionRequest.model_validate(json_body())
    if asked.model != get_generator().public_name:
        raise model_not_found()
    prompt = check_prompt(asked)
    if asked.stream:
        return stream_completion(asked, prompt, deadline())
    result = generate_text(prompt, stop=asked.stops)
    return Completion.from_result(asked, result).model_dump()


def init_app(app) -> None:
    render_under(app, f"{PREFIX}/", error_response)
    app.register_blueprint(bp)
