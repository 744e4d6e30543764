"""The native JSON API: POST /generate, GET /health, GET /ready, GET /info. Knows HTTP, not
torch."""

from flask import Blueprint, g

from ...model import MAX_PROMPT_CHARS
from .. import service
from ..errors import LOADING_RETRY_S, InfoProgress, retry_after
from ..limits import get_limit
from ..state import get_generator, get_settings
from ..stream import stream_response
from .events import GenerateEvents
from .protocol import (
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    LegacyRequest,
    LegacyResponse,
    ReadyResponse,
)

bp = Blueprint("api", __name__)


@bp.post("/generate")
def generate():
    body = service.json_body()
    if isinstance(body, dict) and "context" in body:
        legacy = service.validate(LegacyRequest, body)
        prompt = service.check(legacy.context.main_title, service.params())
        return LegacyResponse.from_result(service.generate_one(prompt)).model_dump()
    asked = service.validate(GenerateRequest, body)
    prompt = service.check(asked.text, service.params(**asked.knobs()))
    if asked.stream:
        return stream_response([prompt], service.deadline(), GenerateEvents(g.get("request_id")))
    return GenerateResponse.from_result(service.generate_one(prompt)).model_dump()


@bp.get("/health")
def health():
    """Liveness: 200 whenever the process answers, the model ready or not (an orchestrator
    restarts a process that fails it, and a restart can't fix a missing model); the model's
    state is for people. Never loads, never waits."""
    generator = get_generator()
    answer = HealthResponse(status="ok", model_state=generator.state,
                            model_loaded=generator.loaded)
    return answer.model_dump()


@bp.get("/ready")
def ready():
    """Readiness: 200 once the model is loaded and its engine serves, else 503 (an
    orchestrator sends no traffic meanwhile). Never loads or waits: under gunicorn each worker
    starts loading as it starts (KOGPT2_LOAD_ON_START), and retries a failed load by itself; an
    engine whose scheduler failed is `failed` until a request runs a step again."""
    generator = get_generator()
    ready = generator.state == "ready"
    answer = ReadyResponse(ready=ready, model_state=generator.state,
                           progress=InfoProgress.of(generator.progress))
    if ready:
        return answer.model_dump()
    wait = generator.retry_in_s if generator.state == "failed" else LOADING_RETRY_S
    return answer.model_dump(), 503, retry_after(wait or LOADING_RETRY_S)


@bp.get("/info")
def info():
    return service_info()


def service_info() -> dict:
    """The model, the server's limits, its generation defaults and each parameter's bounds."""
    generator, settings = get_generator(), get_settings()
    engine, progress = generator.engine, generator.progress
    return {
        "model": generator.public_name,
        "revision": generator.public_revision,
        "state": generator.state,
        "progress": InfoProgress.of(progress).model_dump() if progress else None,
        "loaded": generator.loaded,
        "engine": engine.name if engine else settings.engine,
        "compute_type": engine.compute_type if engine else None,
        "threads": generator.threads,
        "load_count": generator.load_count,
        "limits": {
            "max_prompt_chars": MAX_PROMPT_CHARS,
            "max_new_tokens": settings.max_new_tokens,
            "max_positions": generator.max_positions,
            "time_budget_s": settings.time_budget_s,
            "max_body_bytes": settings.max_body_bytes,
            "max_batch_prompts": settings.max_batch_prompts,
        },
        "concurrency": get_limit().describe(),
        "batch": generator.batch_stats(),
        "generation_defaults": service.generation_defaults(),
        "licences": service.licences(),
        "parameters": GenerateRequest.parameters_schema(),
    }
