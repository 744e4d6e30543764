import contextlib
import logging
import threading
import time

import pytest
from answers import STAND_IN
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
    """A 2-layer KoGPT2 with the real tokenizer (or a trained one where ../shared is absent),
    in a folder named tiny-kogpt2: its public name (STAND_IN in tests/answers.py)."""
    return make_stand_in(tmp_path_factory.mktemp("stand-ins") / STAND_IN, tiny=True)


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
def fake_hub(monkeypatch, tmp_path):
    """A hub on 127.0.0.1 (tests/fake_hub.py) for huggingface_hub, in this process and in the
    ones a test starts (HF_ENDPOINT), with a hub cache of the test's own."""
    from fake_hub import FakeHub
    from huggingface_hub import constants

    hub = FakeHub()
    url = hub.start()
    hub.cache = tmp_path / "hf-cache"
    # huggingface_hub reads HF_ENDPOINT and HF_HUB_CACHE once, when it is imported.
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub.cache))
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub.cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield hub
    hub.stop()


@pytest.fixture
def slow_tokens(monkeypatch):
    """Each token any engine makes takes 10 ms more (the engines call Watch.step after each):
    a time budget of a few tens of ms then cuts a long generation on any machine, however
    fast. tests/browser/slow_tokens does the same for a server."""
    from kogpt2.model.seam import Watch

    step = Watch.step

    def slow_step(self, *args, **kwargs):
        time.sleep(0.01)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Watch, "step", slow_step)


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
    def start(*args, script_name="", log=None, env=None, wait_for_model=True, **settings):
        """`log` collects the server's stderr; `env` adds other environment variables. The
        worker loads the model as it starts: unless `wait_for_model` is off (or the setting
        load_on_start), this waits until that load is over (ready, or failed), so that no
        test's request or time budget pays for a load that takes what the machine allows."""
        environment = {"KOGPT2_MODEL": str(tiny_model_dir), "KOGPT2_ENGINE": "transformers",
                       **(env or {})}
        environment.update({f"KOGPT2_{key.upper()}": str(value) for key, value in settings.items()})
        with LocalServer(environment, *args, script_name=script_name,
                         log=log) as server:
            if wait_for_model and str(settings.get("load_on_start", "true")).lower() == "true":
                wait_until_loaded(server.base)
            yield server.base

    return start


def wait_until_loaded(base: str, limit_s: float = 600) -> str:
    """The model's state once its load at the server's start is over: ready or failed."""
    from live_server import call

    deadline = time.monotonic() + limit_s
    while (state := call(f"{base}/health")[1]["model_state"]) not in ("ready", "failed"):
        assert time.monotonic() < deadline, f"the model is still {state}"
        time.sleep(0.1)
    return state


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
