"""OpenAI's face: its routes, and its errors in OpenAI's shape. Thin: each route calls its
endpoint's serving module.

    GET  /v1/models, /v1/models/<id>     serving_models
    POST /v1/completions                 serving_completions
    GET  /tokenizer_info, POST /tokenize, POST /detokenize   serving_tokenization (vLLM's)
"""

from flask import Blueprint, jsonify

from ..errors import APIError, render_under
from . import serving_completions, serving_models, serving_tokenization
from .protocol import OpenAIErrorResponse, openai_status

PREFIX = "/v1"
bp = Blueprint("openai", __name__, url_prefix=PREFIX)
tokenizer_bp = Blueprint("tokenizer", __name__)
TOKENIZER_PATHS = ["/tokenizer_info", "/tokenize", "/detokenize"]


def error_response(error: APIError):
    response = jsonify(OpenAIErrorResponse.from_error(error).model_dump())
    response.status_code = openai_status(error)
    response.headers.update(error.headers)
    return response


@bp.get("/models")
def models():
    return serving_models.list_models()


@bp.get("/models/<path:model_id>")
def model(model_id: str):
    return serving_models.retrieve_model(model_id)


@bp.post("/completions")
def completions():
    return serving_completions.create_completion()


@tokenizer_bp.get("/tokenizer_info")
def tokenizer_info():
    return serving_tokenization.tokenizer_info()


@tokenizer_bp.post("/tokenize")
def tokenize():
    return serving_tokenization.tokenize()


@tokenizer_bp.post("/detokenize")
def detokenize():
    return serving_tokenization.detokenize()


def init_app(app) -> None:
    for prefix in [f"{PREFIX}/", *TOKENIZER_PATHS]:
        render_under(app, prefix, error_response)
    app.register_blueprint(bp)
    app.register_blueprint(tokenizer_bp)
