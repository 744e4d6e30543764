import contextlib
import logging
import threading

import pytest
from make_stand_in import make_stand_in

from app import create_app


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Prepared models go to a cache of this run's own, for the app and for servers it starts."""
    path = tmp_path_factory.mktemp("kogpt2-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KOGPT2_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer KoGPT2 with the real tokenizer (or a trained one where ../shared is absent)."""
    return make_stand_in(tmp_path_factory.mktemp("tiny-kogpt2"), tiny=True)


@pytest.fixture(scope="session")
def full_size_model_dir(tmp_path_factory):
    """A full-size KoGPT2 stand-in (~500 MB, random weights): as slow as the real model."""
    from make_stand_in import DEFAULT_SOURCE

    if not (DEFAULT_SOURCE / "tokenizer.json").is_file():
        pytest.skip(f"the full-size stand-in needs KoGPT2's config and tokenizer in "
                    f"{DEFAULT_SOURCE}")
    return make_stand_in(tmp_path_factory.mktemp("full-size-kogpt2"))


@pytest.fixture(scope="session")
def tiny_ct2_dir(tiny_model_dir, tmp_path_factory):
    """The tiny stand-in converted by scripts/convert.py to CTranslate2 int8 (the default)."""
    from convert import convert

    return convert(
        str(tiny_model_dir), tmp_path_factory.mktemp("tiny-ct2") / "int8", engine="ctranslate2"
    )


@pytest.fixture(scope="session")
def tiny_ct2_float32_dir(tiny_model_dir, tmp_path_factory):
    """The tiny stand-in converted to CTranslate2 float32: its greedy text matches transformers."""
    from convert import convert

    out = tmp_path_factory.mktemp("tiny-ct2") / "float32"
    return convert(str(tiny_model_dir), out, engine="ctranslate2", weight_format="float32")


@pytest.fixture(scope="session")
def tiny_ov_dir(tiny_model_dir, tmp_path_factory):
    """The tiny stand-in prepared by scripts/convert.py for OpenVINO, int8 (the default)."""
    from convert import convert

    return convert(str(tiny_model_dir), tmp_path_factory.mktemp("tiny-ov") / "int8")


@pytest.fixture(scope="session")
def tiny_ov_float32_dir(tiny_model_dir, tmp_path_factory):
    """The tiny stand-in exported to OpenVINO float32: at f32 its greedy text is transformers'."""
    from convert import convert

    out = tmp_path_factory.mktemp("tiny-ov") / "float32"
    return convert(str(tiny_model_dir), out, engine="openvino", weight_format="float32")


@pytest.fixture
def make_app(tiny_model_dir):
    def factory(**settings):
        config = {
            "TESTING": True,
            "MODEL": str(tiny_model_dir),
            "ENGINE": "transformers",
            "THREADS": 1,
            "LOAD_RETRY_S": 0,
        }
        config.update({key.upper(): value for key, value in settings.items()})
        return create_app(config)

    return factory


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def unused_port():
    """A loopback port nothing listens on."""
    from local_server import free_port

    return free_port()


@pytest.fixture(scope="session")
def live_server(tiny_model_dir):
    """Factory: `with live_server(**settings) as base_url:` runs gunicorn on 127.0.0.1."""
    from local_server import LocalServer

    @contextlib.contextmanager
    def start(*args, script_name="", log=None, env=None, **settings):
        """`log` collects the server's stderr; `env` adds other environment variables."""
        environment = {"KOGPT2_MODEL": str(tiny_model_dir), "KOGPT2_ENGINE": "transformers",
                       **(env or {})}
        environment.update({f"KOGPT2_{key.upper()}": str(value) for key, value in settings.items()})
        with LocalServer(environment, *args, script_name=script_name,
                         log=log) as server:
            yield server.base

    return start


@pytest.fixture
def access_lines():
    """The lines the kogpt2.access logger writes (one JSON object per request)."""
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = logging.getLogger("kogpt2.access")
    handler = Collect()
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


@pytest.fixture
def hold_the_slot(monkeypatch):
    """`with hold_the_slot(app, ask) as answers:` a request made by `ask(client)` on a thread of
    its own holds the app's generation slot until the block ends; `answers` gets what `ask`
    returned once it did."""

    @contextlib.contextmanager
    def hold(app, ask):
        generator = app.extensions["kogpt2"]
        started, release = threading.Event(), threading.Event()
        real_run = generator.run

        def slow_run(*args, **kwargs):
            started.set()
            release.wait(10)
            return real_run(*args, **kwargs)

        monkeypatch.setattr(generator, "run", slow_run)
        answers = []
        busy = threading.Thread(target=lambda: answers.append(ask(app.test_client())))
        busy.start()
        try:
            assert started.wait(10), "the request never reached the generation"
            yield answers
        finally:
            release.set()
            busy.join()

    return hold
