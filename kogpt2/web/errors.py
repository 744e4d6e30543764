"""Every error leaves the service as JSON of one shape: {"error": ..., "error_type": ...}."""

import logging
import math

from flask import jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from ..model import InvalidInput, ModelLoadError
from .state import get_settings

log = logging.getLogger(__name__)

HTTP_ERROR_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "overloaded",
}
MODEL_HINT = (
    "Set KOGPT2_MODEL to a local model directory (a downloaded or converted KoGPT2, "
    "or a stand-in made by scripts/make_stand_in.py) if the hub can't be reached."
)


class APIError(Exception):
    def __init__(self, status: int, error_type: str, message: str, headers=None):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message
        self.headers = headers or {}


def error_response(status: int, error_type: str, message: str, headers=None):
    response = jsonify(error=message, error_type=error_type)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def describe_validation_error(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "Invalid request: " + "; ".join(problems)


def handle_api_error(exc: APIError):
    return error_response(exc.status, exc.error_type, exc.message, exc.headers)


def handle_http_error(exc: HTTPException):
    if exc.code is None or exc.code >= 500:
        return handle_unexpected(exc)
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    error_type = HTTP_ERROR_TYPES.get(exc.code, "http_error")
    return error_response(exc.code, error_type, exc.description or exc.name, headers)


def handle_validation_error(exc: ValidationError):
    return error_response(422, "validation_error", describe_validation_error(exc))


def handle_invalid_input(exc: InvalidInput):
    return error_response(422, "validation_error", f"Invalid request: {exc}")


def handle_model_load_error(exc: ModelLoadError):
    retry_after = max(1, math.ceil(get_settings().load_retry_s))
    message = f"The model is not available: {exc}. {MODEL_HINT}"
    return error_response(503, "model_unavailable", message, {"Retry-After": str(retry_after)})


def handle_unexpected(exc: Exception):
    log.exception("unhandled error", exc_info=exc)
    return error_response(
        500, "internal_error", "The server failed to answer this request; it has been logged."
    )


def init_app(app) -> None:
    app.register_error_handler(APIError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(ValidationError, handle_validation_error)
    app.register_error_handler(InvalidInput, handle_invalid_input)
    app.register_error_handler(ModelLoadError, handle_model_load_error)
    app.register_error_handler(Exception, handle_unexpected)
