"""Web layer: routes, errors and CORS. Knows HTTP and the model layer's API, not torch."""

from flask_cors import CORS

from ..config import Settings
from . import docs, errors, limits, log_privacy, metrics, observe, openapi, pages
from .json import StrictJSONProvider
from .native import routes as native_api
from .openai import api_server as openai_api
from .state import attach, get_generator, get_settings

API_ROUTES = [r"/generate", r"/health", r"/ready", r"/info", r"/openapi.json", r"/v1/.*",
              *openai_api.TOKENIZER_PATHS]


def init_app(app, settings: Settings) -> None:
    attach(app, settings)
    app.json = StrictJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    errors.init_app(app)
    limits.init_app(app, settings)
    metrics.init_app(app)
    observe.init_app(app)
    log_privacy.init_app(settings.log_prompts)
    CORS(
        app,
        resources=API_ROUTES,
        origins=settings.cors_origins,
        supports_credentials=settings.cors_credentials,
        send_wildcard="*" in settings.cors_origins,
        max_age=600,
        expose_headers=observe.EXPOSED_HEADERS,
    )
    app.register_blueprint(native_api.bp)
    openai_api.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(docs.bp)


__all__ = ["init_app", "get_generator", "get_settings"]
