"""POST /generate with "stream": true, in process: the events, the refusals before a stream
starts, a failure after it, the slot and the log line. Against gunicorn, every engine
included: test_live_stream.py."""

import json
import threading

from answers import assert_error
from events import parse_events, split_stream

from kogpt2.model import ModelLoading, Progress

TITLE = "근육이 커지기 위해서는"


def stream(client, headers=None, **body):
    return client.post("/generate", json={"text": TITLE, "stream": True, **body},
                       headers=headers or {})


def test_a_stream_is_an_event_stream_with_the_usual_headers(client):
    response = stream(client, max_new_tokens=5,
                      headers={"Origin": "https://example.org", "X-Request-ID": "stream-1"})
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    headers = response.headers
    assert headers["Cache-Control"] == "no-cache" and headers["X-Accel-Buffering"] == "no"
    assert headers["X-Request-ID"] == "stream-1" and headers["X-Time-Ms"].isdigit()
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["Access-Control-Allow-Origin"] == "*"
    tokens, last = split_stream(parse_events(response.get_data(as_text=True)))
    assert [type(t["id"]) for t in tokens] == [int] * 5
    assert last["details"]["generated_tokens"] == 5


def test_the_slot_is_free_after_a_stream(app, client):
    stream(client, max_new_tokens=3).get_data()
    assert client.get("/info").get_json()["concurrency"]["running"] == 0


def test_a_load_that_used_up_the_budget_still_gets_its_first_step(make_app, monkeypatch):
    """The stuck-generation guard counts from the generation's start, not from the request's
    deadline, which a slow load (a cold start under load) may have used up already."""
    from kogpt2.web import stream as web_stream

    app = make_app(time_budget_s=0.05)
    generator = app.extensions["kogpt2"]
    generator.load()
    real_load = generator.load

    slowed = []

    def slow_load(*args, **kwargs):  # once: past the deadline and the guard's wait from it
        if not slowed:
            slowed.append(threading.Event().wait(0.3))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(generator, "load", slow_load)
    monkeypatch.setattr(web_stream, "STUCK_AFTER_S", 0.2)
    response = stream(app.test_client(), max_new_tokens=50)
    tokens, last = split_stream(parse_events(response.get_data(as_text=True)))
    assert last["details"]["finish_reason"] == "time"  # cut by the budget, not an error
    assert len(tokens) == last["details"]["generated_tokens"] >= 1


def test_a_stream_stops_at_the_time_budget_and_frees_its_slot(make_app, slow_tokens):
    client = make_app(time_budget_s=0.05).test_client()
    client.post("/generate", json={"text": TITLE, "max_new_tokens": 1})  # load first
    response = stream(client, max_new_tokens=250, repetition_penalty=1.0)
    tokens, last = split_stream(parse_events(response.get_data(as_text=True)))
    assert last["details"]["finish_reason"] == "time" and 1 <= len(tokens) < 250
    assert TITLE + "".join(t["text"] for t in tokens) == last["generated_text"]
    assert client.get("/info").get_json()["concurrency"]["running"] == 0


def test_several_sequences_cannot_stream(client):
    response = stream(client, do_sample=True, num_return_sequences=2)
    message = assert_error(response, 422, "validation_error")
    assert "num_return_sequences must be 1" in message


def test_an_invalid_request_is_a_json_error_not_a_stream(client):
    assert_error(client.post("/generate", json={"text": " ", "stream": True}),
                 422, "validation_error")
    assert_error(client.post("/generate", json={"text": TITLE, "stream": "yes"}),
                 422, "validation_error")


def test_a_busy_server_refuses_a_stream_with_429_before_it_starts(make_app):
    app = make_app(max_concurrency=1, queue_size=0)
    client = app.test_client()
    limit = app.extensions["kogpt2.limit"]
    with limit.slot(deadline=float("inf")):
        response = stream(client)
        assert_error(response, 429, "overloaded")
        assert int(response.headers["Retry-After"]) >= 1
    assert stream(client, max_new_tokens=2).status_code == 200


def test_a_model_being_prepared_is_a_503_before_the_stream_starts(app, client, monkeypatch):
    def preparing(**_):
        raise ModelLoading(Progress("converting to CTranslate2 int8", 40, "converting"))

    monkeypatch.setattr(app.extensions["kogpt2"], "load", preparing)
    response = stream(client)
    assert "converting to CTranslate2 int8, 40% done" in assert_error(
        response, 503, "model_loading")
    assert int(response.headers["Retry-After"]) >= 1
    assert client.get("/info").get_json()["concurrency"]["running"] == 0


def fail_at_step(app, monkeypatch, step: int):
    """The engine hears `step - 1` tokens, then fails with a message callers must not see."""
    generator = app.extensions["kogpt2"]
    generator.load()
    engine = generator.engine

    def generate(requests):
        for token_id in range(500, 500 + step - 1):
            requests[0].watch.step(token_id)
        raise RuntimeError("CPU fault in /srv/kogpt2/secret.py")

    monkeypatch.setattr(engine, "generate", generate)


def test_a_failure_before_the_first_token_is_a_json_500(app, client, monkeypatch, access_lines):
    fail_at_step(app, monkeypatch, 1)
    response = stream(client)
    assert "secret" not in assert_error(response, 500, "internal_error")
    assert client.get("/info").get_json()["concurrency"]["running"] == 0
    line = json.loads(access_lines[0])
    assert (line["status"], line["error_type"]) == (500, "internal_error")


def test_a_failure_after_the_first_token_is_the_last_event(app, client, monkeypatch,
                                                           access_lines):
    fail_at_step(app, monkeypatch, 3)
    response = stream(client, headers={"X-Request-ID": "failing"})
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    tokens, last = split_stream(parse_events(text))
    assert [t["id"] for t in tokens] == [500, 501]
    assert last == {"error": last["error"], "error_type": "internal_error",
                    "request_id": "failing"}
    assert "secret" not in text and "Traceback" not in text
    assert client.get("/info").get_json()["concurrency"]["running"] == 0
    line = json.loads(access_lines[0])
    assert line["request_id"] == "failing" and line["status"] == 200
    assert line["error_type"] == "internal_error" and "cancelled" not in line


def test_an_event_that_fails_to_be_written_ends_the_stream_with_an_error_event(
        client, monkeypatch, access_lines):
    from kogpt2.web.native.events import GenerateEvents

    real_token = GenerateEvents.token

    def token(self, token_id, text, chosen):
        if self.sent == 2:
            raise RuntimeError("a bug in /srv/kogpt2/events.py")
        self.sent += 1
        yield from real_token(self, token_id, text, chosen)

    monkeypatch.setattr(GenerateEvents, "sent", 0, raising=False)
    monkeypatch.setattr(GenerateEvents, "token", token)
    response = stream(client, max_new_tokens=8, headers={"X-Request-ID": "buggy"})
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    tokens, last = split_stream(parse_events(text))
    assert len(tokens) == 2 and last["error_type"] == "internal_error"
    assert "srv" not in text and "Traceback" not in text
    assert client.get("/info").get_json()["concurrency"]["running"] == 0
    (line,) = (json.loads(text) for text in access_lines if '"buggy"' in text)
    assert line["error_type"] == "internal_error"


def test_one_log_line_per_stream_written_at_its_end(client, access_lines):
    response = stream(client, max_new_tokens=6)
    assert access_lines == []  # the body has not been read yet
    response.get_data()
    response.close()
    (line,) = (json.loads(text) for text in access_lines)
    assert line["route"] == "/generate" and line["status"] == 200
    assert line["tokens"] == line["tokens_sent"] == 6 and line["finish_reason"] == "length"
    assert "cancelled" not in line and "prompt" not in line
    assert TITLE not in access_lines[0]


def test_a_stream_closed_early_is_cancelled_and_frees_its_slot(app, access_lines):
    """What gunicorn does when the client goes away: stop reading, close the body."""
    generator = app.extensions["kogpt2"]
    generator.load()
    heard, reader_done = [], threading.Event()
    real_run = generator.run

    def run(prompt, **kwargs):
        on_token = kwargs.pop("on_token")

        def slowed(token_id, chosen):  # a token every 20 ms, until the reader has gone
            heard.append(token_id)
            on_token(token_id, chosen)
            reader_done.wait(0.02)

        return real_run(prompt, on_token=slowed, **kwargs)

    generator.run = run
    client = app.test_client()
    response = client.post("/generate", json={"text": TITLE, "stream": True,
                                              "max_new_tokens": 200, "repetition_penalty": 1.0},
                           buffered=False)
    body = iter(response.response)
    first_two = [next(body), next(body)]
    assert all(chunk.startswith(b'data: {"token"') for chunk in first_two)
    response.close()
    reader_done.set()
    (line,) = (json.loads(text) for text in access_lines)
    assert line["cancelled"] is True and line["finish_reason"] == "cancelled"
    assert line["tokens_sent"] == 2 and line["tokens"] == len(heard) < 200
    assert app.test_client().get("/info").get_json()["concurrency"]["running"] == 0


def test_the_document_describes_streams(client):
    doc = client.get("/openapi.json").get_json()
    generate = doc["paths"]["/generate"]["post"]
    event = generate["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert event["properties"]["data"]["contentSchema"] == {"anyOf": [
        {"$ref": f"#/components/schemas/{name}"}
        for name in ("TokenEvent", "GenerateResponse", "ErrorResponse")]}
    assert "num_return_sequences` > 1 with `stream` is 422" in generate["description"]
    assert doc["components"]["schemas"]["GenerateRequest"]["properties"]["stream"]["default"] \
        is False
