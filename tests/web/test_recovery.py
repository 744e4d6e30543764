"""gunicorn heals by itself: a model directory that appears later, a damaged prepared copy and
a preparation killed half-way all end in a served model, with no request needed to start it."""

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from live_server import call
from local_server import LocalServer

from kogpt2.model import engines, prepare
from kogpt2.model.source import local_source

ROOT = Path(__file__).resolve().parents[2]
BODY = {"text": "근육이 커지기 위해서는", "max_new_tokens": 4}
DEFAULT = next(kind for kind in engines.PREFERRED if kind.installed())
needs_openvino = pytest.mark.skipif(DEFAULT is not engines.OPENVINO, reason="needs openvino")


def wait_for(check, limit_s=240, every_s=0.1):
    deadline = time.monotonic() + limit_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(every_s)


def model_state(base):
    return call(f"{base}/health")[1]["model_state"]


def entries(cache):
    return sorted(p.name for p in cache.iterdir() if p.is_dir())


def test_a_model_directory_that_appears_later_is_served_with_no_request(
        tiny_model_dir, tmp_path):
    model, log = tmp_path / "model", tmp_path / "server.log"
    env = {"KOGPT2_MODEL": str(model), "KOGPT2_ENGINE": "transformers", "KOGPT2_THREADS": "1",
           "KOGPT2_LOAD_RETRY_S": "0.5", "KOGPT2_LOAD_RETRY_MAX_S": "2"}
    with LocalServer(env, log=log) as server:
        wait_for(lambda: model_state(server.base) == "failed")
        status, body, headers = call(f"{server.base}/ready")
        assert (status, body["ready"]) == (503, False) and int(headers["Retry-After"]) >= 1
        shutil.copytree(tiny_model_dir, model)
        wait_for(lambda: model_state(server.base) == "ready")  # only /health was asked
        assert call(f"{server.base}/ready")[0] == 200
        status, answer, _ = call(f"{server.base}/generate", BODY)
        assert status == 200 and answer["details"]["model"] == "model"
    text = log.read_text()
    assert "could not be loaded (attempt 1)" in text and "tried again by itself" in text
    assert text.count("the model is ready") == 1
    # Nothing but the probes was asked before it was ready.
    ready_at = text.index("the model is ready")
    assert '"route": "/generate"' not in text[:ready_at]


@needs_openvino
def test_a_truncated_prepared_copy_is_prepared_again_and_served(
        tiny_model_dir, tiny_ov_dir, tmp_path):
    cache, log = tmp_path / "cache", tmp_path / "server.log"
    name = prepare.entry_name(local_source(str(tiny_model_dir)), engines.OPENVINO, "int8")
    weights = shutil.copytree(tiny_ov_dir, cache / name) / "openvino_model.bin"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])  # what a bad disk leaves
    env = {"KOGPT2_MODEL": str(tiny_model_dir), "KOGPT2_CACHE_DIR": str(cache),
           "KOGPT2_THREADS": "1"}
    with LocalServer(env, log=log) as server:
        wait_for(lambda: call(f"{server.base}/ready")[0] == 200)
        status, answer, _ = call(f"{server.base}/generate", BODY)
        assert status == 200 and answer["details"]["engine"] == "openvino"
    assert weights.stat().st_size == size  # prepared again, whole
    assert entries(cache) == [name, name + ".broken"]
    text = log.read_text()
    assert f"the prepared copy {cache / name} failed to load" in text
    assert "openvino_model.bin is " in text and f"moved to {cache / name}.broken" in text
    assert text.count("kogpt2.model.prepare: preparing ") == 1


@needs_openvino
def test_a_preparation_killed_with_sigkill_is_done_again_after_a_restart(
        tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    env = {"KOGPT2_MODEL": str(tiny_model_dir), "KOGPT2_CACHE_DIR": str(cache),
           "KOGPT2_THREADS": "1"}
    slow = {**env, "PYTHONPATH": f"{ROOT / 'tests/browser/slow_prepare'}:{ROOT}",
            "SLOW_PREPARE_S": "120"}
    with LocalServer(slow, log=tmp_path / "first.log") as server:
        def converting():
            progress = call(f"{server.base}/info")[1]["progress"]
            return progress and progress["step"] == "converting" and progress["percent"] > 0
        wait_for(converting)  # no request: the worker started preparing as it started
        [work] = [p for p in cache.iterdir() if p.is_dir()]
        assert work.name.startswith(".")  # a work directory, not an entry
        for pid in server.worker_pids() + [server.process.pid]:
            os.kill(pid, signal.SIGKILL)  # as a killed container dies
        server.process.wait()
    assert entries(cache) == [work.name]

    second = tmp_path / "second.log"
    with LocalServer(env, log=second) as server:
        wait_for(lambda: call(f"{server.base}/ready")[0] == 200)
        status, answer, _ = call(f"{server.base}/generate", BODY)
        assert status == 200 and answer["details"]["engine"] == "openvino"
    [entry] = entries(cache)
    assert not entry.startswith(".") and prepare.read_marker(cache / entry) is not None
    assert second.read_text().count("kogpt2.model.prepare: preparing ") == 1
