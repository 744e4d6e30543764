import json
import re
import shutil
import threading

import pytest
from answers import STAND_IN, assert_error

TITLE = "근육이 커지기 위해서는"
HANGUL = re.compile("[가-힣]")


def test_generate_answers_korean_text_starting_with_the_title(client):
    response = client.post("/generate", json={"text": TITLE})
    assert response.status_code == 200
    body = response.get_json()
    assert body["generated_text"].startswith(TITLE)
    assert HANGUL.search(body["generated_text"][len(TITLE):])
    assert body["generations"][0]["text"] == body["generated_text"]
    details = body["details"]
    assert details["finish_reason"] in ("length", "eos")
    assert details["prompt_tokens"] > 0 and details["generated_tokens"] > 0
    assert details["seed"] is None and details["engine"] == "transformers"
    assert isinstance(details["time_ms"], int)
    assert TITLE in response.get_data(as_text=True)  # not \u-escaped


def test_seed_makes_sampling_reproducible_over_http(client):
    body = {"text": TITLE, "do_sample": True, "seed": 99, "top_k": 20, "top_p": 0.9,
            "temperature": 0.8, "max_new_tokens": 20, "num_return_sequences": 2}
    first, second = client.post("/generate", json=body), client.post("/generate", json=body)
    assert first.status_code == 200
    assert first.get_json()["generations"] == second.get_json()["generations"]
    assert len(first.get_json()["generations"]) == 2
    assert first.get_json()["details"]["seed"] == 99


def test_original_handler_body_round_trips(client):
    response = client.post("/generate", json={"context": {"main_title": TITLE}})
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["answer"] and list(body["answer"]) == ["gen_text"]
    (text,) = body["answer"]["gen_text"]
    assert text.startswith(TITLE)
    assert text == client.post("/generate", json={"text": TITLE}).get_json()["generated_text"]


def test_original_handler_body_is_validated(client):
    assert_error(client.post("/generate", json={"context": {}}), 422, "validation_error")
    assert_error(client.post("/generate", json={"context": {"main_title": " "}}),
                 422, "validation_error")


def test_malformed_json_is_400(client):
    response = client.post("/generate", data='{"text": "제목"', content_type="application/json")
    assert_error(response, 400, "invalid_json")


def test_non_json_is_415(client):
    assert_error(client.post("/generate", data="text=제목"), 415, "unsupported_media_type")
    response = client.post("/generate", data='{"text": "a"}', content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_body_too_large_is_413(make_app):
    client = make_app(max_body_bytes=2048).test_client()
    body = '{"text": "' + "가" * 3000 + '"}'
    assert_error(client.post("/generate", data=body, content_type="application/json"),
                 413, "payload_too_large")


@pytest.mark.parametrize(
    "body, mentions",
    [
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": "   \n\t "}, "text"),
        ({"text": "가" * 1001}, "text"),
        ({"text": 123}, "text"),
        ({"text": ["제목"]}, "text"),
        ({"text": "제목\x00"}, "control"),
        ({"text": "\u200b\u200b"}, "visible"),
        ({"text": TITLE, "max_new_tokens": "10"}, "max_new_tokens"),
        ({"text": TITLE, "max_new_tokens": 0}, "max_new_tokens"),
        ({"text": TITLE, "max_new_tokens": 257}, "256"),
        ({"text": TITLE, "max_new_tokens": True}, "max_new_tokens"),
        ({"text": TITLE, "do_sample": 1}, "do_sample"),
        ({"text": TITLE, "temperature": 0}, "temperature"),
        ({"text": TITLE, "top_p": 1.5}, "top_p"),
        ({"text": TITLE, "top_k": -1}, "top_k"),
        ({"text": TITLE, "seed": -5}, "seed"),
        ({"text": TITLE, "repetition_penalty": 100}, "repetition_penalty"),
        ({"text": TITLE, "num_return_sequences": 5}, "num_return_sequences"),
        ({"text": TITLE, "num_return_sequences": 2}, "do_sample"),
        ({"text": TITLE, "beams": 4}, "beams"),
        ([TITLE], "body"),
        ("제목", "body"),
    ],
)
def test_validation_errors_are_422(client, body, mentions):
    message = assert_error(client.post("/generate", json=body), 422, "validation_error")
    assert mentions in message


def test_prompt_plus_new_tokens_over_1024_positions_is_422(make_app):
    client = make_app(max_new_tokens=1023).test_client()
    response = client.post("/generate", json={"text": TITLE * 40, "max_new_tokens": 1000})
    assert "1024 positions" in assert_error(response, 422, "validation_error")


def test_nan_is_not_json(client):
    body = '{"text": "제목", "temperature": NaN}'
    response = client.post("/generate", data=body, content_type="application/json")
    assert "NaN" in assert_error(response, 400, "invalid_json")


def test_unknown_route_and_wrong_method_are_json(client):
    assert_error(client.get("/nope"), 404, "not_found")
    response = client.get("/generate")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_health_does_not_load_the_model_and_says_its_state(app, client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok", "model_state": "not_loaded", "model_loaded": False,
    }
    assert app.extensions["kogpt2"].load_count == 0
    client.post("/generate", json={"text": TITLE, "max_new_tokens": 1})
    assert client.get("/health").get_json() == {
        "status": "ok", "model_state": "ready", "model_loaded": True,
    }


def test_ready_is_503_until_the_model_is_loaded(app, client):
    response = client.get("/ready")
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert response.get_json() == {"ready": False, "model_state": "not_loaded", "progress": None}
    assert app.extensions["kogpt2"].load_count == 0  # a probe never loads
    client.post("/generate", json={"text": TITLE, "max_new_tokens": 1})
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.get_json() == {"ready": True, "model_state": "ready", "progress": None}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # meant
def test_ready_starts_the_background_loader_again_if_it_died(make_app, monkeypatch):
    """Whatever ends start()'s loader before the model is ready, the probe that gates traffic
    starts it again: the model still becomes ready with no request."""
    import time

    from kogpt2.model import engines

    app = make_app()
    real_kind_of, killed = engines.kind_of, []

    def kill_the_loader_once(path):
        if not killed:
            killed.append(path)
            raise SystemExit("the loader's thread ends here")
        return real_kind_of(path)

    monkeypatch.setattr(engines, "kind_of", kill_the_loader_once)
    generator = app.extensions["kogpt2"]
    generator.start()
    client = app.test_client()
    deadline = time.monotonic() + 60
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health").get_json()
        time.sleep(0.1)
    assert killed and generator.load_count == 1


def test_ready_asks_the_loaded_engine_whether_it_can_serve(app, client, monkeypatch):
    """An engine that can break while loaded says why in `failure` (seam.engine_failure):
    the model is then failed and not ready, until the engine says nothing again."""
    generator = app.extensions["kogpt2"]
    engine = generator.load()
    assert client.get("/ready").status_code == 200
    monkeypatch.setattr(engine, "failure", "the scheduler stopped", raising=False)
    ready = client.get("/ready")
    assert ready.status_code == 503 and int(ready.headers["Retry-After"]) >= 1
    assert ready.get_json()["model_state"] == "failed"
    assert client.get("/health").get_json()["model_state"] == "failed"
    assert generator.last_load_error == "the scheduler stopped"
    monkeypatch.setattr(engine, "failure", None)
    assert client.get("/ready").status_code == 200


def test_info_tells_model_engine_and_limits(client):
    before = client.get("/info").get_json()
    assert before["loaded"] is False
    client.post("/generate", json={"text": TITLE, "max_new_tokens": 2})
    info = client.get("/info").get_json()
    assert info["loaded"] is True and info["engine"] == "transformers"
    assert (info["model"], info["state"], info["progress"]) == (STAND_IN, "ready", None)
    assert info["limits"] == {
        "max_prompt_chars": 1000, "max_new_tokens": 256, "max_positions": 1024,
        "time_budget_s": 20.0, "max_body_bytes": 65536, "max_batch_prompts": 20,
    }
    top_p = info["parameters"]["top_p"]["anyOf"][0]  # or null: the server's default
    assert top_p["maximum"] == 1.0 and info["generation_defaults"]["top_p"] == 1.0


def test_a_local_directory_is_named_by_its_folder_everywhere(make_app, tiny_model_dir,
                                                             tmp_path):
    model = shutil.copytree(tiny_model_dir, tmp_path / "my-finetuned-kogpt2")
    client = make_app(model=str(model)).test_client()
    answer = client.post("/generate", json={"text": TITLE, "max_new_tokens": 1}).get_json()
    names = [client.get("/info").get_json()["model"], answer["details"]["model"],
             client.get("/v1/models").get_json()["data"][0]["id"]]
    assert names == ["my-finetuned-kogpt2"] * 3
    assert str(tmp_path) not in json.dumps(names)


def test_sixteen_concurrent_first_requests_load_the_model_once(make_app):
    app = make_app(queue_size=16, queue_timeout_s=25)  # all wait their turn, none gets 429
    barrier = threading.Barrier(16)
    statuses = []

    def first_request():
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post("/generate", json={"text": TITLE, "max_new_tokens": 3})
                        .status_code)

    threads = [threading.Thread(target=first_request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 16
    assert app.extensions["kogpt2"].load_count == 1


def test_model_load_failure_is_503_then_recovers(make_app, tiny_model_dir, tmp_path,
                                                 access_lines):
    model_dir = tmp_path / "model"
    client = make_app(model=str(model_dir)).test_client()
    response = client.post("/generate", json={"text": TITLE})
    message = assert_error(response, 503, "model_unavailable")
    assert str(tmp_path) not in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) >= 1
    ready = client.get("/ready")  # not ready; alive all the same
    assert (ready.status_code, ready.get_json()["model_state"]) == (503, "failed")
    assert int(ready.headers["Retry-After"]) >= 1
    assert client.get("/health").status_code == 200
    assert client.get("/info").get_json()["state"] == "failed"
    # The operator finds why in the log line of that request id.
    line = json.loads(access_lines[0])
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert str(model_dir) in line["error_detail"] and "does not exist" in line["error_detail"]
    assert "Try again" in message
    shutil.copytree(tiny_model_dir, model_dir)
    assert client.post("/generate", json={"text": TITLE}).status_code == 200


def test_unreachable_hub_is_503_loading_then_unavailable(make_app, monkeypatch, unused_port):
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{unused_port}")
    app = make_app(model="kogpt2-tests/not-in-any-cache", load_retry_s=60)
    client = app.test_client()
    first = client.post("/generate", json={"text": TITLE})  # starts the download
    assert "being prepared" in assert_error(first, 503, "model_loading")
    assert first.get_json()["progress"]["step"] == "downloading"
    assert int(first.headers["Retry-After"]) >= 1
    with pytest.raises(Exception, match="can't be reached"):
        app.extensions["kogpt2"].load(wait=True)
    later = client.post("/generate", json={"text": TITLE})
    assert_error(later, 503, "model_unavailable")
    assert "127.0.0.1" not in later.get_data(as_text=True)


def test_deadline_stops_a_long_generation(make_app, slow_tokens):
    client = make_app(time_budget_s=0.05).test_client()
    client.get("/health")
    client.post("/generate", json={"text": TITLE, "max_new_tokens": 1})  # load first
    body = {"text": TITLE, "max_new_tokens": 250, "repetition_penalty": 1.0}
    details = client.post("/generate", json=body).get_json()["details"]
    assert details["finish_reason"] == "time"
    assert details["generated_tokens"] < 250


def test_an_unexpected_error_is_a_json_500_without_traceback(app, client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals /srv/app.py line 12")

    monkeypatch.setattr(app.extensions["kogpt2"], "run", explode)
    response = client.post("/generate", json={"text": TITLE})
    message = assert_error(response, 500, "internal_error")
    assert "secret" not in message
    assert client.get("/health").status_code == 200


def test_cors_preflight_is_answered(client):
    response = client.options("/generate", headers={
        "Origin": "https://example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type",
    })
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://example.org")
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_cors_headers_on_an_error_response(client):
    response = client.post("/generate", json={"text": ""}, headers={"Origin": "https://a.org"})
    assert response.status_code == 422
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_origins_come_from_settings(make_app):
    client = make_app(cors_origins="https://good.example, https://also.example").test_client()
    allowed = client.get("/health", headers={"Origin": "https://also.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://also.example"
    refused = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers


def test_no_response_ever_contains_a_traceback(client):
    requests = [
        ("post", {"data": b"\xff\xfe\x00", "content_type": "application/json"}),
        ("post", {"data": "[" * 5000, "content_type": "application/json"}),
        ("post", {"json": {"text": TITLE, "seed": 2**64}}),
        ("post", {"data": '{"text": "\\ud800"}', "content_type": "application/json"}),
        ("post", {"json": {"context": "x"}}),
        ("put", {"json": {"text": TITLE}}),
    ]
    for method, kwargs in requests:
        response = getattr(client, method)("/generate", **kwargs)
        text = response.get_data(as_text=True)
        assert 400 <= response.status_code < 500, (kwargs, text)
        assert "Traceback" not in text and 'File "' not in text
        assert set(response.get_json()) == {"error", "error_type", "request_id"}


@pytest.mark.parametrize(
    "raw, mentions",
    [
        ('{"text": "제목", "text": "다른 제목"}', "duplicate"),
        ('{"text": "제목", "temperature": Infinity}', "Infinity"),
        ('{"text": "제목", "top_p": NaN}', "NaN"),
        ("[" * 100_000 + "]" * 100_000, "nested"),
    ],
)
def test_ambiguous_json_is_400(make_app, raw, mentions):
    client = make_app(max_body_bytes=1_000_000).test_client()
    response = client.post("/generate", data=raw, content_type="application/json")
    assert mentions in assert_error(response, 400, "invalid_json")
