"""A transformers model with the default settings: prepared once for the default engine, in the
background, with its progress told, then served from the cache on every later start."""

import time

from live_server import call
from local_server import LocalServer

from kogpt2.model import engines

TITLE = "근육이 커지기 위해서는"
BODY = {"text": TITLE, "max_new_tokens": 4}
DEFAULT = next(kind for kind in engines.PREFERRED if kind.installed())


def entries(cache):
    return [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]


def serve(model_dir, cache, log):
    # The default settings but for where the cache is (no KOGPT2_ENGINE), and the model loaded
    # by the first request rather than as the worker starts (tests/web/test_recovery.py has
    # that): what a request meets while the model is prepared.
    return LocalServer({"KOGPT2_MODEL": str(model_dir), "KOGPT2_CACHE_DIR": str(cache),
                        "KOGPT2_LOAD_ON_START": "false"}, log=log)


def generate_until_ready(base: str, limit_s: float = 240) -> list[tuple[int, dict, dict]]:
    answers, deadline = [], time.monotonic() + limit_s
    while not answers or answers[-1][0] != 200:
        assert time.monotonic() < deadline, answers[-3:]
        answers.append(call(f"{base}/generate", BODY))
        if answers[-1][0] != 200:
            time.sleep(0.2)
    return answers


def test_first_start_prepares_in_the_background_then_serves(tiny_model_dir, tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "first.log"
    with serve(tiny_model_dir, cache, log) as server:
        answers = generate_until_ready(server.base)
        status, body, headers = answers[0]
        assert (status, body["error_type"]) == (503, "model_loading")
        assert "being prepared" in body["error"] and "%" in body["error"]
        assert int(headers["Retry-After"]) >= 1
        assert all(a[0] == 503 and a[1]["error_type"] == "model_loading" for a in answers[:-1])
        _, ok, _ = answers[-1]
        assert ok["details"]["engine"] == DEFAULT.name
        _, info, _ = call(f"{server.base}/info")
        assert (info["state"], info["engine"], info["progress"]) == ("ready", DEFAULT.name, None)
    text = log.read_text()
    assert "preparing the model: " in text and "the model is ready" in text
    assert text.count("kogpt2.model.prepare: preparing ") == 1
    assert str(tiny_model_dir) not in str(answers)
    [entry] = entries(cache)

    # A second start loads the prepared copy at once: no 503, no preparation.
    written = (entry / "kogpt2-model.json").stat().st_mtime_ns
    second_log = tmp_path / "second.log"
    with serve(tiny_model_dir, cache, second_log) as server:
        status, body, _ = call(f"{server.base}/generate", BODY)
        assert status == 200 and body["details"]["engine"] == DEFAULT.name
    assert "preparing" not in second_log.read_text()
    assert entries(cache) == [entry]
    assert (entry / "kogpt2-model.json").stat().st_mtime_ns == written


def test_two_servers_starting_together_prepare_once(tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with serve(tiny_model_dir, cache, logs[0]) as a, serve(tiny_model_dir, cache, logs[1]) as b:
        for server in (a, b):
            assert call(f"{server.base}/generate", BODY)[0] == 503  # both start preparing
        for server in (a, b):
            generate_until_ready(server.base)
    texts = [log.read_text() for log in logs]
    # prepare.py logs this line when it starts writing an entry, and only then.
    assert sum(text.count("kogpt2.model.prepare: preparing ") for text in texts) == 1, texts
    assert len(entries(cache)) == 1
