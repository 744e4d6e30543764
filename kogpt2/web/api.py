"""The JSON API: POST /generate, GET /health, GET /info. Knows HTTP, not torch."""

import time

from flask import Blueprint, current_app, g, request

from ..model import MAX_PROMPT_CHARS, GenerationParams, GenerationResult, Prompt
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
from .stream import GenerateEvents, stream_response

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


def check(text: str, params: GenerationParams) -> Prompt:
    """Everything that needs no model, and the token limits, before a slot is taken."""
    g.prompt = text  # logged only with KOGPT2_LOG_PROMPTS
    return get_generator().check(text, params)


def deadline() -> float:
    """The request's time budget ends here, counted from its arrival."""
    started = g.get("request_started") or time.monotonic()
    return started + get_settings().time_budget_s


def generate_text(prompt: Prompt, **options) -> GenerationResult:
    """Run one checked generation within the time budget (`options`: Generator.run's).

    Waiting for a generation slot counts in the budget, so queued requests still answer
    within API Gateway's 29 s; a request that can't get a slot in time gets 429.
    """
    until = deadline()
    with get_limit().slot(until):
        result = get_generator().run(prompt, deadline=until, **options)
    g.generated_tokens = result.generated_tokens
    return result


@bp.post("/generate")
def generate():
    body = json_body()
    if isinstance(body, dict) and "context" in body:
        legacy = LegacyRequest.model_validate(body)
        result = generate_text(check(legacy.context.main_title, GenerationParams()))
        return LegacyResponse.from_result(result).model_dump()
    generate_request = GenerateRequest.model_validate(body)
    prompt = check(generate_request.text, generate_request.params())
    if generate_request.stream:
        return stream_response(prompt, deadline(), GenerateEvents(g.get("request_id")))
    result = generate_text(prompt)
    return GenerateResponse.from_result(result).model_dump()


@bp.get("/health")
def health():
    """Liveness and the model's state; never loads the model."""
    generator = get_generator()
    state = generator.state
    status = {"ready": "ok", "failed": "failed"}.get(state, "starting")
    answer = HealthResponse(status=status, model_state=state, model_loaded=generator.loaded)
    return answer.model_dump(), 503 if state == "failed" else 200


@bp.get("/info")
def info():
    return service_info()


def service_info() -> dict:
    """The model, the server's limits and each parameter's JSON schema (bounds, defaults)."""
    generator, settings = get_generator(), get_settings()
    engine, progress = generator.engine, generator.progress
    return {
        "model": generator.public_name,
        "revision": generator.public_revision,
        "state": generator.state,
        "progress": {"stage": progress.stage, "percent": progress.percent} if progress else None,
        "loaded": generator.loaded,
        "engine": engine.name if engine else settings.engine,
        "compute_type": engine.compute_type if engine else None,
        "threads": settings.threads,
        "load_count": generator.load_count,
        "limits": {
            "max_prompt_chars": MAX_PROMPT_CHARS,
            "max_new_tokens": settings.max_new_tokens,
            "max_positions": generator.max_positions,
            "time_budget_s": settings.time_budget_s,
            "max_body_bytes": settings.max_body_bytes,
        },
        "concurrency": get_limit().describe(),
        "parameters": GenerationParams.model_json_schema()["properties"],
    }
