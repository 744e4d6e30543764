"""GET /openapi.json (OpenAPI 3.1) built from the pydantic models that validate and shape both
APIs: the native one and OpenAI's under /v1. GET /docs shows it (docs.py).
"""

from flask import Blueprint, request
from pydantic.json_schema import models_json_schema

from .errors import ERROR_TYPES, ErrorResponse
from .native.protocol import (
    GenerateRequest,
    GenerateResponse,
    HealthResponse,
    InfoResponse,
    LegacyRequest,
    LegacyResponse,
    ReadyResponse,
    TokenEvent,
)
from .observe import REQUEST_ID
from .openai.protocol import (
    Completion,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    Model,
    ModelList,
    OpenAIErrorResponse,
    TokenizeRequest,
    TokenizeResponse,
    TokenizerInfo,
)
from .state import get_settings

bp = Blueprint("openapi", __name__)

REQUEST_MODELS = [GenerateRequest, LegacyRequest]
RESPONSE_MODELS = [GenerateResponse, LegacyResponse, HealthResponse, ReadyResponse, InfoResponse,
                   ErrorResponse, TokenEvent]
OPENAI_MODELS = [(CompletionRequest, "validation"), (Completion, "serialization"),
                 (Model, "serialization"), (ModelList, "serialization"),
                 (OpenAIErrorResponse, "serialization"), (TokenizeRequest, "validation"),
                 (TokenizeResponse, "serialization"), (DetokenizeRequest, "validation"),
                 (DetokenizeResponse, "serialization"), (TokenizerInfo, "serialization")]

ERRORS = {
    400: "The body is not valid JSON (`invalid_json`): malformed, not UTF-8, duplicate keys, "
    "NaN/Infinity, or nested too deeply.",
    413: "The body is larger than KOGPT2_MAX_BODY_BYTES (`payload_too_large`).",
    415: "The body was not sent as `Content-Type: application/json` (`unsupported_media_type`).",
    422: "The JSON does not fit the request schema, or the model or server limits "
    "(`validation_error`): the message names each field and what is wrong.",
    429: "Every generation slot is busy and the queue is full or did not move in time "
    "(`overloaded`). Retry after `Retry-After` seconds.",
    500: "A bug (`internal_error`); logged on the server under the request id, no details sent.",
    503: "The model is being prepared (`model_loading`: the message says the stage and how far "
    "it is) or can't be loaded (`model_unavailable`: the server's log says why, under the "
    "request id). Retry after `Retry-After` seconds: a failed load is tried again then.",
}
# /v1 answers errors in OpenAI's shape, with OpenAI's statuses (invalid requests are all 400).
OPENAI_ERRORS = {
    400: "Not JSON (`code: invalid_json`), not sent as JSON (`unsupported_media_type`), or "
    "invalid (`validation_error`): wrong types or bounds, unknown fields, a prompt that is empty, "
    "too long, or holds a token id outside the vocabulary, a batch over the server's cap, "
    "`logprobs` over 5, `max_tokens: 0` without `echo`, a `logit_bias` key that is not a token "
    "id, `suffix`, `best_of` other than n, max_tokens over the server's cap or, with the prompt, "
    "over the model's positions, or a field the serving engine does not implement (the message "
    "names the engine). `param` names the field.",
    404: "`model` is not the served model (`model_not_found`; see GET /v1/models).",
    413: ERRORS[413],
    429: ERRORS[429],
    500: ERRORS[500],
    503: ERRORS[503],
}
RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}


def component_schemas() -> dict:
    models = [(m, "validation") for m in REQUEST_MODELS]
    models += [(m, "serialization") for m in RESPONSE_MODELS]
    models += OPENAI_MODELS
    _, schema = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return schema["$defs"]


def ref(model) -> dict:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def common_headers() -> dict:
    return {
        "X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"},
        "X-Time-Ms": {"$ref": "#/components/headers/X-Time-Ms"},
    }


def ok(description: str, content: dict, **headers) -> dict:
    return {"description": description, "headers": {**common_headers(), **headers},
            "content": content}


def error(status: int, errors: dict = ERRORS, body=ErrorResponse) -> dict:
    headers = {**common_headers(), **(RETRY_AFTER if status in (429, 503) else {})}
    return {"description": errors[status], "headers": headers,
            "content": json_content(ref(body))}


def openai_error(status: int) -> dict:
    return error(status, OPENAI_ERRORS, OpenAIErrorResponse)


def stream_event() -> dict:
    """Each server-sent event: a `data:` line of JSON (OpenAPI 3.1 describes one event)."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"anyOf": [ref(TokenEvent), ref(GenerateResponse),
                                        ref(ErrorResponse)]},
        }},
    }


def generate_operation() -> dict:
    return {
        "operationId": "generate",
        "summary": "Continue a Korean title with KoGPT2",
        "description": (
            "Send `{\"text\": \"제목\", ...parameters}`; the answer has the text, each sequence "
            "and details. The original Lambda handler's `{\"context\": {\"main_title\": "
            "\"제목\"}}` is answered in its own shape `{\"answer\": {\"gen_text\": [...]}}`. "
            "A generation stops at the time budget with `finish_reason: \"time\"`. "
            "With `\"stream\": true` the answer is `text/event-stream`: one event "
            "`data: {\"token\": {\"id\": N, \"text\": \"...\"}}` per new token (the texts "
            "join to the continuation of the title; `</s>` is not a token event), then one "
            "last event holding the GenerateResponse object, or "
            "`{\"error\", \"error_type\", \"request_id\"}` if the generation failed after "
            "its first token. Every refusal (400–503) comes before the stream starts, as JSON. "
            "A stream carries one sequence: `num_return_sequences` > 1 with `stream` is 422. "
            "Behind a buffering proxy (API Gateway REST through Zappa) the events arrive "
            "all at once at the end."
        ),
        "requestBody": {
            "required": True,
            "content": json_content({"anyOf": [ref(m) for m in REQUEST_MODELS]}),
        },
        "responses": {
            "200": ok(
                "The generated text; with `\"stream\": true`, server-sent events.",
                {
                    **json_content({"anyOf": [ref(GenerateResponse), ref(LegacyResponse)]}),
                    "text/event-stream": {"schema": stream_event()},
                },
                **{"X-Generated-Tokens": {"$ref": "#/components/headers/X-Generated-Tokens"}},
            ),
            **{str(status): error(status) for status in ERRORS},
        },
    }


def get_operation(operation_id: str, summary: str, model) -> dict:
    return {
        "operationId": operation_id,
        "summary": summary,
        "responses": {
            "200": ok(summary, json_content(ref(model))),
            "500": error(500),
        },
    }


def completions_operation() -> dict:
    return {
        "operationId": "createCompletion",
        "tags": ["OpenAI-compatible"],
        "summary": "OpenAI's Completions API: continue a prompt",
        "description": (
            "For clients written for OpenAI (base URL `.../v1`). `prompt` is a string, a "
            "list of strings, token ids, or lists of token ids: a batch whose prompts generate "
            "together; choice `index` is prompt position × n + choice. `temperature: 0` decodes "
            "greedily; knobs left out take the server's generation settings (GET /info). "
            "`logprobs` (0–5) scores each token; with `echo` the prompt's tokens come first, "
            "and `max_tokens: 0` scores the prompt without generating. vLLM's extra fields "
            "(`top_k`, `repetition_penalty`, `min_tokens`, `ignore_eos`, `stop_token_ids`, "
            "`include_stop_str_in_output`, `stream_options.continuous_usage_stats`) are taken. "
            "A completion cut by the time budget ends with `finish_reason: \"length\"` and "
            "fewer tokens than `max_tokens`."
        ),
        "requestBody": {"required": True, "content": json_content(ref(CompletionRequest))},
        "responses": {
            "200": {
                "description": "The completion; with `stream: true`, OpenAI's chunks (each a "
                "Completion with `usage: null`) as server-sent events, then `data: [DONE]`.",
                "headers": common_headers(),
                "content": {
                    **json_content(ref(Completion)),
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            },
            **{str(status): openai_error(status) for status in OPENAI_ERRORS},
        },
    }


def tokenizer_operations() -> dict:
    """vLLM's tokenizer endpoints, at the service root."""
    def post(operation_id, summary, request, response):
        return {"post": {
            "operationId": operation_id, "tags": ["Tokenizer (vLLM)"], "summary": summary,
            "requestBody": {"required": True, "content": json_content(ref(request))},
            "responses": {"200": ok(summary, json_content(ref(response))),
                          **{str(status): openai_error(status)
                             for status in (400, 404, 413, 500, 503)}},
        }}

    info = get_operation("tokenizerInfo", "The tokenizer's special tokens and length",
                         TokenizerInfo)
    info["tags"] = ["Tokenizer (vLLM)"]
    info["responses"].update({"500": openai_error(500), "503": openai_error(503)})
    return {
        "/tokenizer_info": {"get": info},
        "/tokenize": post("tokenize", "Text to the model's token ids", TokenizeRequest,
                          TokenizeResponse),
        "/detokenize": post("detokenize", "Token ids to text", DetokenizeRequest,
                            DetokenizeResponse),
    }


def models_operations() -> dict:
    retrieve = get_operation("retrieveModel", "The served model", Model)
    retrieve["parameters"] = [{
        "name": "model", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "The model's id; its slash may be sent as %2F.",
        "example": "skt/kogpt2-base-v2",
    }]
    retrieve["responses"]["404"] = openai_error(404)
    operations = {
        "/v1/models": {"get": get_operation("listModels", "The served model, as a list",
                                            ModelList)},
        "/v1/models/{model}": {"get": retrieve},
    }
    for methods in operations.values():
        methods["get"]["tags"] = ["OpenAI-compatible"]
        methods["get"]["responses"]["500"] = openai_error(500)
    return operations


def ready_operation() -> dict:
    operation = get_operation("ready", "Readiness: 200 once the model is loaded, else 503",
                              ReadyResponse)
    operation["responses"]["503"] = {
        "description": "The model is not loaded yet (`loading`, with its progress, or "
        "`not_loaded`) or its last load failed (`failed`: it is tried again by itself). Ask "
        "again after `Retry-After` seconds.",
        "headers": {**common_headers(), **RETRY_AFTER},
        "content": json_content(ref(ReadyResponse)),
    }
    return operation


def document(settings) -> dict:
    """The API's OpenAPI 3.1 document for an app with these settings."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "KoGPT2 text generation",
            "version": "1",
            "description": (
                "Type a title (제목), get Korean text written by KoGPT2 (skt/kogpt2-base-v2). "
                "Every error is JSON `{\"error\", \"error_type\", \"request_id\"}`; "
                "error types: "
                + ", ".join(ERROR_TYPES)
                + f". The server caps max_new_tokens at {settings.max_new_tokens} and "
                f"stops a generation after {settings.time_budget_s:g} s. Under /v1, OpenAI's "
                "Completions API: errors in OpenAI's shape `{\"error\": {\"message\", "
                "\"type\", \"param\", \"code\"}}`."
            ),
        },
        "paths": {
            "/generate": {"post": generate_operation()},
            "/health": {"get": get_operation(
                "health", "Liveness: 200 while the process answers, whatever the model's state",
                HealthResponse)},
            "/ready": {"get": ready_operation()},
            "/info": {"get": get_operation(
                "info", "Model, engine, limits and each parameter's bounds", InfoResponse)},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": ok("OpenAPI 3.1", json_content({"type": "object"}))},
            }},
            **models_operations(),
            "/v1/completions": {"post": completions_operation()},
            **tokenizer_operations(),
            "/metrics": {"get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "description": "Requests by route and status, queue and rows, time to the "
                "first token and per token, tokens, model loads and state, in Prometheus' "
                "text format. 404 where KOGPT2_METRICS is off (the production stage).",
                "responses": {
                    "200": ok("Prometheus' text exposition format",
                              {"text/plain": {"schema": {"type": "string"}}}),
                    "404": error(404, {404: "KOGPT2_METRICS is off (`not_found`)."}),
                },
            }},
        },
        "components": {
            "schemas": component_schemas(),
            "headers": {
                "X-Request-ID": {
                    "description": "The caller's X-Request-ID if it matches the pattern, "
                    "else a new id. The server's log line carries it too.",
                    "required": True,
                    "schema": {"type": "string", "pattern": f"^{REQUEST_ID.pattern}$"},
                },
                "X-Time-Ms": {"description": "Time the server spent on the request.",
                              "required": True, "schema": {"type": "string",
                                                           "pattern": "^[0-9]+$"}},
                "X-Generated-Tokens": {"description": "New tokens generated (longest sequence); "
                                       "not on a stream, whose headers go out before its end.",
                                       "required": False, "schema": {"type": "string",
                                                                     "pattern": "^[0-9]+$"}},
                "Retry-After": {"description": "Seconds to wait before trying again.",
                                "required": True, "schema": {"type": "string",
                                                             "pattern": "^[0-9]+$"}},
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    # Relative to wherever the app is mounted (Zappa: /dev, /production), so a generated
    # client calls /dev/generate, not /generate at the host's root.
    return {**document(get_settings()), "servers": [{"url": request.script_root or "/"}]}
