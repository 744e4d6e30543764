"""Streamed completions in process: refusals before the stream, cancel, a failure mid-stream."""

import json

from answers import STAND_IN, assert_openai_error

MODEL = STAND_IN  # the stand-in's folder
TITLE = "근육이 커지기 위해서는"
STREAM = {"model": MODEL, "prompt": TITLE, "stream": True}


def events(response) -> list:
    lines = response.get_data(as_text=True).split("\n\n")
    return [line.removeprefix("data: ") for line in lines if line]


def test_a_stream_is_server_sent_events_ending_in_done(client):
    response = client.post("/v1/completions", json={**STREAM, "max_tokens": 8, "seed": 2})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    *chunks, done = events(response)
    assert done == "[DONE]"
    chunks = [json.loads(chunk) for chunk in chunks]
    assert all(chunk["object"] == "text_completion" for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert not any("\ufffd" in chunk["choices"][0]["text"] for chunk in chunks)


def test_refusals_come_before_the_stream_with_their_status(make_app, tmp_path, monkeypatch):
    client = make_app().test_client()
    response = client.post("/v1/completions", json={**STREAM, "prompt": ""})
    assert_openai_error(response, 400, "validation_error", "prompt")
    response = client.post("/v1/completions", json={**STREAM, "max_tokens": 300})
    assert_openai_error(response, 400, "validation_error", "max_tokens")
    missing = make_app(model=str(tmp_path / "no-model")).test_client()
    response = missing.post("/v1/completions", json={**STREAM, "model": "no-model"})
    assert_openai_error(response, 503, "model_unavailable")
    assert str(tmp_path) not in response.get_data(as_text=True)


def test_a_busy_slot_is_429_before_the_stream(make_app, hold_the_slot):
    app = make_app(max_concurrency=1, queue_size=0)
    client = app.test_client()
    one = {**STREAM, "max_tokens": 1}
    warm = client.post("/v1/completions", json=one)  # loads the model
    # Read to its end: its slot is free by the last event, not before (a race with the next).
    assert warm.status_code == 200 and warm.get_data().endswith(b"data: [DONE]\n\n")
    with hold_the_slot(app, lambda other: other.post("/v1/completions", json=one).get_data()):
        refused = client.post("/v1/completions", json=one)
        assert_openai_error(refused, 429, "overloaded")


def test_closing_the_stream_cancels_the_generation_and_frees_the_slot(make_app, monkeypatch):
    app = make_app(max_concurrency=1, queue_size=0, max_new_tokens=1000)
    generator, limit = app.extensions["kogpt2"], app.extensions["kogpt2.limit"]
    results = []
    real_run = generator.run
    monkeypatch.setattr(generator, "run",
                        lambda *a, **k: results.append(real_run(*a, **k)) or results[-1])
    body = {**STREAM, "prompt": "근육", "max_tokens": 1000, "temperature": 0}
    response = app.test_client().post("/v1/completions", json=body)
    assert response.status_code == 200
    assert next(iter(response.response))  # the first chunk
    response.close()  # as the server does when the client goes away
    ((result,),) = results  # close() waited for the generation to stop
    assert result.sequences[0].finish_reason == "cancelled"
    assert result.generated_tokens < 1000
    assert limit.running == 0


def test_a_failure_after_the_first_text_is_the_last_event(app, client, monkeypatch):
    generator = app.extensions["kogpt2"]

    def fail_half_way(prompts, *, on_token, **kwargs):
        for token in prompts[0].ids:  # some text goes out first
            on_token(token, None)
        raise RuntimeError("secret internals /srv/app.py line 12")

    monkeypatch.setattr(generator, "run", fail_half_way)
    response = client.post("/v1/completions", json=STREAM)
    assert response.status_code == 200
    *chunks, last = events(response)
    assert chunks and all(json.loads(chunk)["choices"][0]["text"] for chunk in chunks)
    error = json.loads(last)["error"]
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert app.extensions["kogpt2.limit"].running == 0
