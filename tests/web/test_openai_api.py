"""/v1 in process: OpenAI's shapes and statuses, under the same rules as /generate."""

import json

import pytest
from answers import STAND_IN, assert_error, assert_openai_error

MODEL = STAND_IN  # the stand-in's folder
TITLE = "근육이 커지기 위해서는"


def complete(client, **fields):
    return client.post("/v1/completions", json={"model": MODEL, "prompt": TITLE, **fields})


def test_a_completion_has_openais_shape_and_the_apis_headers(client):
    response = complete(client, max_tokens=3, temperature=0)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"id", "object", "created", "model", "choices", "usage"}
    assert body["object"] == "text_completion" and body["model"] == MODEL
    (choice,) = body["choices"]
    assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
    assert choice["index"] == 0 and choice["logprobs"] is None
    assert choice["finish_reason"] == "length" and choice["text"]
    assert body["usage"]["completion_tokens"] == 3
    assert response.headers["X-Generated-Tokens"] == "3"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "fields, param, mentions",
    [
        ({"model": None}, "model", "required"),
        ({"prompt": None}, "prompt", "required"),
        ({"prompt": ""}, "prompt", "prompt is empty"),
        ({"prompt": "  \n"}, "prompt", "prompt is empty"),
        ({"prompt": "가" * 1001}, "prompt", "1000"),
        ({"prompt": []}, "prompt", "empty list"),
        ({"prompt": [[]]}, "prompt", "empty token-id list"),
        ({"prompt": [TITLE, 464]}, "prompt", "a list of token ids"),
        ({"prompt": [[464], [True]]}, "prompt", "only integers"),
        ({"prompt": [51200]}, "prompt", "vocabulary"),
        ({"prompt": [[5], [-1]]}, "prompt", "0 or greater"),
        ({"prompt": [TITLE] * 21}, "prompt", "at most 20"),
        ({"prompt": "제목\ud800"}, "prompt", "surrogate"),
        ({"max_tokens": 0}, "max_tokens", "only with echo"),
        ({"max_tokens": -1}, "max_tokens", "greater than or equal to 0"),
        ({"max_tokens": 257}, "max_tokens", "max_tokens is 257; this server allows at most 256"),
        ({"max_tokens": "5"}, "max_tokens", "integer"),
        ({"temperature": 2.5}, "temperature", "2"),
        ({"top_p": 0}, "top_p", "greater than 0"),
        ({"n": 5}, "n", "4"),
        ({"best_of": 3}, "best_of", "equal to n"),
        ({"seed": -1}, "seed", "0"),
        ({"top_k": -2}, "top_k", "-1"),
        ({"repetition_penalty": 0.5}, "repetition_penalty", "1"),
        ({"stop": ["", "끝"]}, "stop", "empty"),
        ({"stop": ["가", "나", "다", "라", "마"]}, "stop", "at most 4"),
        ({"stop": [1]}, "stop", "string"),
        ({"logprobs": 6}, "logprobs", "less than or equal to 5"),
        ({"suffix": "끝"}, "suffix", "not supported"),
        ({"logit_bias": {"근육": 1}}, "logit_bias", "not a token id"),
        ({"logit_bias": {"51200": 1}}, "logit_bias", "vocabulary"),
        ({"logit_bias": {"5": 101}}, "logit_bias", "100"),
        ({"stop_token_ids": [51200]}, "stop_token_ids", "vocabulary"),
        ({"presence_penalty": 2.5}, "presence_penalty", "2"),
        ({"frequency_penalty": -3}, "frequency_penalty", "-2"),
        ({"min_tokens": 17}, "min_tokens", "over max_tokens (16)"),
        ({"stream_options": {"include_usage": True}}, "stream_options", "stream"),
        ({"functions": []}, "functions", "not permitted"),
    ],
)
def test_invalid_or_unsupported_fields_are_400(client, fields, param, mentions):
    body = {"model": MODEL, "prompt": TITLE, **fields}
    body = {key: value for key, value in body.items() if value is not None}
    response = client.post("/v1/completions", data=json.dumps(body),  # \ud800 as JSON has it
                           content_type="application/json")
    message = assert_openai_error(response, 400, "validation_error", param)
    assert mentions in message


def test_prompt_plus_max_tokens_over_the_positions_is_400(make_app):
    response = complete(make_app(max_new_tokens=1023).test_client(), prompt=TITLE * 40,
                        max_tokens=1000)
    message = assert_openai_error(response, 400, "validation_error", "max_tokens")
    assert "1024 positions" in message and "prompt (" in message


def test_fields_sent_as_null_or_off_take_the_defaults(client):
    # What LangChain's OpenAI class sends when a user sets nothing.
    response = complete(client, max_tokens=None, temperature=None, top_p=None, n=None,
                        best_of=1, logprobs=None, echo=None, stop=None, stream=None,
                        logit_bias={}, presence_penalty=0, frequency_penalty=0.0,
                        suffix=None, seed=None, user="someone")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["usage"]["completion_tokens"] == 16  # OpenAI's default max_tokens
    assert len(body["choices"]) == 1


def test_temperatures_below_the_native_minimum_decode_greedily(client):
    def text(temperature):
        answer = complete(client, max_tokens=6, temperature=temperature, seed=1).get_json()
        return answer["choices"][0]["text"]

    assert text(0.01) == text(0)
    assert text(1.0) != text(0)


@pytest.mark.parametrize(
    "call, status, code",
    [
        (lambda c: c.post("/v1/completions", data="{nope", content_type="application/json"),
         400, "invalid_json"),
        (lambda c: c.post("/v1/completions", data="prompt=x"), 400, "unsupported_media_type"),
        (lambda c: c.get("/v1/completions"), 405, "method_not_allowed"),
        (lambda c: c.get("/v1/chat/completions"), 404, "not_found"),
        (lambda c: c.get("/v1/models/gpt-4"), 404, "model_not_found"),
        (lambda c: complete(c, model="gpt-3.5-turbo-instruct"), 404, "model_not_found"),
    ],
)
def test_http_errors_under_v1_have_openais_shape(client, call, status, code):
    assert_openai_error(call(client), status, code, "model" if code == "model_not_found" else None)


def test_a_body_too_large_is_413(make_app):
    client = make_app(max_body_bytes=2048).test_client()
    body = json.dumps({"model": MODEL, "prompt": "가" * 3000})
    response = client.post("/v1/completions", data=body, content_type="application/json")
    assert_openai_error(response, 413, "payload_too_large")


def test_the_native_api_keeps_its_own_error_shape(client):
    assert_error(client.post("/generate", json={"text": ""}), 422, "validation_error")
    assert_error(client.get("/v1"), 404, "not_found")  # not under /v1/


def test_a_missing_model_is_503_with_retry_after_and_no_path(make_app, tmp_path, access_lines):
    client = make_app(model=str(tmp_path / "no-model")).test_client()
    response = complete(client, model="no-model")  # a directory is named by its folder
    assert "Try again" in assert_openai_error(response, 503, "model_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
    assert str(tmp_path) not in response.get_data(as_text=True)
    assert "no-model" in json.loads(access_lines[-1])["error_detail"]  # for the operator


def test_a_bug_is_500_without_details(app, client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals /srv/app.py line 12")

    monkeypatch.setattr(app.extensions["kogpt2"], "run", explode)
    response = complete(client)
    assert "secret" not in assert_openai_error(response, 500, "internal_error")


def test_the_time_budget_ends_a_completion_with_length(make_app, slow_tokens):
    client = make_app(time_budget_s=0.05).test_client()
    complete(client, max_tokens=1)  # load first
    body = complete(client, max_tokens=250, temperature=0).get_json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] < 250


def test_everything_is_checked_before_the_queue(make_app, hold_the_slot):
    app = make_app(max_concurrency=1, queue_size=0)
    client = app.test_client()
    assert complete(client, max_tokens=1).status_code == 200
    with hold_the_slot(app, lambda other: complete(other, max_tokens=1)):
        # Refused for what they are, not for the busy slot.
        assert_openai_error(complete(client, model="gpt-4"), 404, "model_not_found", "model")
        assert_openai_error(complete(client, prompt=""), 400, "validation_error", "prompt")
        assert_openai_error(complete(client, max_tokens=300), 400, "validation_error",
                            "max_tokens")
        refused = complete(client, max_tokens=1)
        assert_openai_error(refused, 429, "overloaded")
        assert int(refused.headers["Retry-After"]) >= 1


def test_cors_preflight_and_errors_under_v1(client):
    preflight = client.options("/v1/completions", headers={
        "Origin": "https://example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    })
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    error = client.post("/v1/completions", json={"model": MODEL, "prompt": ""},
                        headers={"Origin": "https://example.org"})
    assert error.status_code == 400
    assert error.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Request-ID" in error.headers["Access-Control-Expose-Headers"]


def test_one_log_line_per_request_with_the_prompt_only_when_asked(make_app, access_lines):
    complete(make_app().test_client(), max_tokens=2, user="someone")
    line = json.loads(access_lines[-1])
    assert (line["route"], line["status"], line["tokens"]) == ("/v1/completions", 200, 2)
    assert TITLE not in access_lines[-1] and "someone" not in access_lines[-1]
    complete(make_app(log_prompts=True).test_client(), max_tokens=2)
    assert json.loads(access_lines[-1])["prompt"] == TITLE


def test_models_name_the_public_id(client, make_app):
    listed = client.get("/v1/models").get_json()
    assert listed["object"] == "list"
    assert [model["id"] for model in listed["data"]] == [MODEL]
    assert client.get(f"/v1/models/{MODEL}").get_json() == listed["data"][0]
    named = make_app(model_name="someone/kogpt2-fork").test_client()
    listed = named.get("/v1/models").get_json()
    assert named.get("/v1/models/someone%2Fkogpt2-fork").get_json() == listed["data"][0]
