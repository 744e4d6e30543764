"""KoGPT2 text generation: `flask --app app run`, `gunicorn app:app`, Zappa's `app.app`."""

import logging
import time

from flask import Flask

from kogpt2 import web
from kogpt2.config import Settings


def create_app(config=None) -> Flask:
    """Build the app. Settings: defaults, then KOGPT2_* environment variables, then `config`."""
    settings, flask_config = Settings.from_mapping(config)
    app = Flask(__name__)
    app.config.from_mapping(flask_config)
    web.init_app(app, settings)
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app()


def warm_up(event=None, context=None) -> dict:
    """Load the model now. Zappa's scheduled `events` call this so users never wait for the load."""
    generator = app.extensions["kogpt2"]
    started = time.monotonic()
    engine = generator.load(wait=True)
    return {
        "model": generator.public_name,
        "engine": engine.name,
        "loaded": generator.loaded,
        "load_ms": round((time.monotonic() - started) * 1000),
    }


def start_loading() -> None:
    """Load the model in the background now, trying a failed load again by itself, unless
    KOGPT2_LOAD_ON_START is off. gunicorn.conf.py calls this as each worker starts."""
    if app.config["KOGPT2_SETTINGS"].load_on_start:
        app.extensions["kogpt2"].start()
