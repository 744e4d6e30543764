"""The JSON API: POST /generate, GET /health, GET /info. Knows HTTP, not torch."""

import time

from flask import Blueprint, current_app, g, request

from ..model import MAX_PROMPT_CHARS, GenerationParams
from .errors import APIError
from .limits import get_limit
from .schemas import (
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    LegacyRequest,
    LegacyResponse,
)
from .state import get_generator, get_settings

bp = Blueprint("api", __name__)


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


def generate_text(text: str, params: GenerationParams):
    """Run one generation within the time budget, counted from the request's arrival.

    Waiting for a generation slot counts in the budget, so queued requests still answer
    within API Gateway's 29 s; a request that can't get a slot in time gets 429.
    """
    started = g.get("request_started") or time.monotonic()
    deadline = started + get_settings().time_budget_s
    g.prompt = text  # logged only with KOGPT2_LOG_PROMPTS
    with get_limit().slot(deadline):
        result = get_generator().generate(text, params, deadline=deadline)
    g.generated_tokens = result.generated_tokens
    return result


@bp.post("/generate")
def generate():
    body = json_body()
    if isinstance(body, dict) and "context" in body:
        legacy = LegacyRequest.model_validate(body)
        result = generate_text(legacy.context.main_title, GenerationParams())
        return LegacyResponse.from_result(result).model_dump()
    generate_request = GenerateRequest.model_validate(body)
    result = generate_text(generate_request.text, generate_request.params())
    return GenerateResponse.from_result(result).model_dump()


@bp.get("/health")
def health():
    return HealthResponse(status="ok", model_loaded=get_generator().loaded).model_dump()


@bp.get("/info")
def info():
    return service_info()


def service_info() -> dict:
    """The model, the server's limits and each parameter's JSON schema (bounds, defaults)."""
    generator, settings = get_generator(), get_settings()
    engine = generator.engine
    return {
        "model": generator.model,
        "loaded": generator.loaded,
        "engine": engine.name if engine else settings.engine,
        "compute_type": engine.compute_type if engine else None,
        "threads": settings.threads,
        "load_error": generator.last_load_error,
        "load_count": generator.load_count,
        "limits": {
            "max_prompt_chars": MAX_PROMPT_CHARS,
            "max_new_tokens": settings.max_new_tokens,
            "max_positions": engine.max_positions if engine else None,
            "time_budget_s": settings.time_budget_s,
            "max_body_bytes": settings.max_body_bytes,
        },
        "concurrency": get_limit().describe(),
        "parameters": GenerationParams.model_json_schema()["properties"],
    }
