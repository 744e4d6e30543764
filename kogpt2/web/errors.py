"""One description of every error, rendered by both faces: JSON for the API, a message on the
page. What a caller reads says what they can do; what went wrong inside (paths, library
messages, tracebacks) goes only to the log line of the request, under its id.
"""

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

from flask import current_app, g, jsonify, request
from pydantic import BaseModel, Field, ValidationError, model_serializer
from werkzeug.exceptions import HTTPException

from ..model import InvalidInput, ModelLoadError, ModelLoading
from ..model.seam import STEPS
from .state import get_generator, get_settings

log = logging.getLogger(__name__)

HTTP_ERROR_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "overloaded",
}
ERROR_TYPES = sorted({
    *HTTP_ERROR_TYPES.values(), "invalid_json", "validation_error", "internal_error",
    "model_loading", "model_unavailable",
})
MAX_PROBLEMS = 5  # a body of thousands of unknown keys gets a short answer
LOADING_RETRY_S = 5
RENDERERS = "kogpt2.error_renderers"


class InfoProgress(BaseModel):
    """How far the model's preparation is (GET /info, /ready, and a model_loading error)."""

    stage: str = Field(description="What the model's preparation is doing, in words.")
    percent: int = Field(ge=0, le=100)
    step: Literal[STEPS] = Field(description="The stage's stable key, for clients that say it "
                                 "in their own words.")

    @classmethod
    def of(cls, progress) -> "InfoProgress | None":
        if progress is None:
            return None
        return cls(stage=progress.stage, percent=progress.percent, step=progress.step)


class ErrorResponse(BaseModel):
    """Every error of the native API: the body of a 4xx/5xx answer, and a stream's last event
    when the generation failed after its first token."""

    error: str = Field(description="What went wrong and what the caller can do.")
    error_type: str
    request_id: str | None = Field(
        description="This request's id (X-Request-ID): the server's log line for it says more."
    )
    progress: InfoProgress | None = Field(
        None, description="Only with `model_loading`: how far the model's preparation is."
    )

    @model_serializer(mode="wrap")
    def _progress_only_when_loading(self, serialize):
        body = serialize(self)
        if body.get("progress") is None:
            body.pop("progress", None)
        return body


@dataclass
class APIError(Exception):
    """An error as callers see it; `param` names the request field at fault, if one is;
    `detail` is for the log only."""

    status: int
    error_type: str
    message: str
    headers: dict = field(default_factory=dict)
    detail: str | None = None
    param: str | None = None
    progress: object = None  # the model's Progress, with model_loading

    def __post_init__(self):
        super().__init__(self.message)


def describe_validation_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    problems = []
    for error in errors[:MAX_PROBLEMS]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    if len(errors) > MAX_PROBLEMS:
        problems.append(f"and {len(errors) - MAX_PROBLEMS} more")
    return "Invalid request: " + "; ".join(problems)


def retry_after(seconds: float) -> dict:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def describe(exc: Exception) -> APIError:
    """What callers are told about `exc`."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, HTTPException) and exc.code is not None and exc.code < 500:
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        error_type = HTTP_ERROR_TYPES.get(exc.code, "http_error")
        return APIError(exc.code, error_type, exc.description or exc.name, headers)
    if isinstance(exc, InvalidInput):
        return APIError(422, "validation_error", f"Invalid request: {exc}", param=exc.field)
    if isinstance(exc, ModelLoading):
        progress = exc.progress
        return APIError(
            503, "model_loading",
            f"The model is being prepared: {progress.stage}, {progress.percent}% done. "
            f"Try again in a few seconds.",
            retry_after(LOADING_RETRY_S),
            progress=progress,
        )
    if isinstance(exc, ModelLoadError):
        return APIError(
            503, "model_unavailable",
            "The model is not available right now. Try again later; if it persists, tell "
            "the operator this request's id (X-Request-ID).",
            retry_after(get_generator().retry_in_s or get_settings().load_retry_s),
            detail=str(exc),
        )
    return APIError(
        500, "internal_error",
        "The server failed to answer this request. If it persists, tell the operator this "
        "request's id (X-Request-ID).",
    )


def resolve(exc: Exception) -> APIError:
    """Describe `exc` for the caller, and keep it (and a bug's traceback) for the log."""
    error = describe(exc)
    if error.error_type == "internal_error":
        log.exception("unhandled error (request %s)", g.get("request_id"), exc_info=exc)
    g.error = error  # this request's log line (kogpt2.access) names it
    return error


def error_response(error: APIError):
    body = ErrorResponse(error=error.message, error_type=error.error_type,
                         request_id=g.get("request_id"), progress=InfoProgress.of(error.progress))
    response = jsonify(body.model_dump())
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def handle(exc: Exception):
    error = resolve(exc)
    for prefix, render in current_app.extensions[RENDERERS].items():
        if request.path.startswith(prefix):
            return render(error)
    return error_response(error)


def render_under(app, prefix: str, render) -> None:
    """Errors of requests under `prefix` (routes or not) are answered by `render(error)`: an
    API that speaks another API's shape describes its errors here, and renders them itself."""
    app.extensions[RENDERERS][prefix] = render


def init_app(app) -> None:
    app.extensions[RENDERERS] = {}
    app.register_error_handler(Exception, handle)
