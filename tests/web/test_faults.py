"""Faults: a broken model directory, a generation that fails half-way, a slow generation."""

import shutil
import time
from pathlib import Path

import pytest
from answers import assert_error

TITLE = "근육이 커지기 위해서는"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def scramble(path: Path) -> None:
    path.write_bytes(bytes((i * 7919) % 256 for i in range(path.stat().st_size)))


BREAKAGES = {
    "directory_missing": lambda model: shutil.rmtree(model),
    "config_missing": lambda model: (model / "config.json").unlink(),
    "weights_missing": lambda model: (model / "model.safetensors").unlink(),
    "weights_truncated": lambda model: truncate(model / "model.safetensors"),
    "weights_corrupt": lambda model: scramble(model / "model.safetensors"),
    "config_corrupt": lambda model: (model / "config.json").write_text('{"n_layer": '),
    "tokenizer_corrupt": lambda model: scramble(model / "tokenizer.json"),
}


@pytest.mark.parametrize("break_model", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_a_broken_model_is_a_clear_503_until_fixed_without_restart(
    make_app, tiny_model_dir, tmp_path, break_model
):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    break_model(model)
    client = make_app(model=str(model)).test_client()
    for _ in range(2):  # stays a 503, and the server keeps answering
        response = client.post("/generate", json={"text": TITLE, "max_new_tokens": 2})
        assert_error(response, 503, "model_unavailable")
        assert int(response.headers["Retry-After"]) >= 1
        health = client.get("/ready")
        assert (health.status_code, health.get_json()["model_state"]) == (503, "failed")
        # No part of the path reaches a caller: not the answer, /info or the page.
        for answer in (response, client.get("/info"), client.get("/"), health):
            text = answer.get_data(as_text=True)
            assert str(tmp_path) not in text and "model.safetensors" not in text
    shutil.rmtree(model, ignore_errors=True)
    shutil.copytree(tiny_model_dir, model)
    response = client.post("/generate", json={"text": TITLE, "max_new_tokens": 2})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert client.get("/info").get_json()["load_count"] == 1


def loaded_engine(app):
    client = app.test_client()
    assert client.post("/generate", json={"text": TITLE, "max_new_tokens": 1}).status_code == 200
    return app.extensions["kogpt2"].engine


def test_a_generation_failing_half_way_is_a_json_500_and_the_next_one_works(
    make_app, monkeypatch
):
    app = make_app(max_concurrency=1, queue_size=0)
    model = loaded_engine(app).model
    real_forward, steps = model.forward, []

    def forward_that_fails_at_step_3(*args, **kwargs):
        steps.append(1)
        if len(steps) == 3:
            raise RuntimeError("CPU fault in /srv/kogpt2/secret.py at step 3")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward_that_fails_at_step_3)
    client = app.test_client()
    response = client.post("/generate", json={"text": TITLE, "max_new_tokens": 10})
    assert response.status_code == 500 and len(steps) == 3
    text = response.get_data(as_text=True)
    assert response.get_json()["error_type"] == "internal_error"
    assert "secret" not in text and "Traceback" not in text and 'File "' not in text
    # The slot came back (one slot, no queue: a leak would make this a 429).
    after = client.post("/generate", json={"text": TITLE, "max_new_tokens": 10})
    assert after.status_code == 200 and len(steps) > 3


def test_a_slow_generation_is_cut_at_the_budget(make_app, monkeypatch):
    app = make_app(time_budget_s=0.5)
    model = loaded_engine(app).model
    real_forward = model.forward

    def slow_forward(*args, **kwargs):
        time.sleep(0.05)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", slow_forward)
    body = {"text": TITLE, "max_new_tokens": 200, "repetition_penalty": 1.0}
    response = app.test_client().post("/generate", json=body)
    assert response.status_code == 200
    details = response.get_json()["details"]
    assert details["finish_reason"] == "time"
    assert 0 < details["generated_tokens"] < 200
    assert response.headers["X-Generated-Tokens"] == str(details["generated_tokens"])
