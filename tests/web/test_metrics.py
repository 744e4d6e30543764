"""GET /metrics: Prometheus' text format, read back with prometheus_client's own parser."""

import json

import pytest
from answers import STAND_IN
from prometheus_client.parser import text_string_to_metric_families

TITLE = "근육이 커지기 위해서는"


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_by_the_requests_made(client):
    before = scrape(client)
    assert value(before, "kogpt2_model_state", state="not_loaded") == 1
    for _ in range(3):
        assert client.post("/generate", json={"text": TITLE, "max_new_tokens": 4}
                           ).status_code == 200
    assert client.post("/generate", json={"text": ""}).status_code == 422
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("kogpt2_requests_total", route="/generate", status="200") == 3
    assert moved("kogpt2_requests_total", route="/generate", status="422") == 1
    assert moved("kogpt2_request_duration_seconds_count", route="/generate") == 4
    assert moved("kogpt2_generated_tokens_total") == 12
    assert moved("kogpt2_prompt_tokens_total") == 12  # 4 title tokens, 3 times
    assert moved("kogpt2_time_to_first_token_seconds_count") == 3
    assert moved("kogpt2_time_per_output_token_seconds_count") == 3
    assert moved("kogpt2_queue_seconds_count") == 3
    assert value(after, "kogpt2_model_state", state="ready") == 1
    assert value(after, "kogpt2_model_state", state="not_loaded") == 0
    assert value(after, "kogpt2_model_load_seconds_count", stage="load") == 1
    assert value(after, "kogpt2_requests_running") == 0


def test_a_streamed_request_counts_when_its_body_ends(client):
    before = scrape(client)
    stream = client.post("/generate", json={"text": TITLE, "max_new_tokens": 5, "stream": True})
    stream.get_data()
    after = scrape(client)
    assert value(after, "kogpt2_generated_tokens_total") - value(
        before, "kogpt2_generated_tokens_total") == 5
    assert value(after, "kogpt2_time_to_first_token_seconds_count") - value(
        before, "kogpt2_time_to_first_token_seconds_count") == 1


def test_labels_hold_routes_never_paths_or_titles(client):
    client.get(f"/v1/models/{TITLE}")
    client.get("/no/such/" + TITLE)
    client.post("/generate", json={"text": TITLE, "max_new_tokens": 2})
    text = client.get("/metrics").get_data(as_text=True)
    assert TITLE not in text and "/no/such" not in text
    samples = scrape(client)
    assert value(samples, "kogpt2_requests_total", route="/v1/models/<path:model_id>",
                 status="404") == 1
    assert value(samples, "kogpt2_requests_total", route="unmatched", status="404") == 1


def test_metrics_can_be_turned_off(make_app):
    response = make_app(metrics=False).test_client().get("/metrics")
    assert response.status_code == 404


def test_emf_lines_go_to_stdout_when_asked(make_app, capsys):
    client = make_app(emf=True).test_client()
    capsys.readouterr()
    client.post("/generate", json={"text": TITLE, "max_new_tokens": 3})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith('{"_aws"')]
    (line,) = lines
    assert line["Route"] == "/generate" and line["GeneratedTokens"] == 3
    assert TITLE not in json.dumps(line, ensure_ascii=False)


def events_of(response) -> list[dict]:
    lines = response.get_data(as_text=True).split("\n\n")
    return [json.loads(line.removeprefix("data: ")) for line in lines
            if line and line != "data: [DONE]"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("knobs", [{"temperature": 0.9, "seed": 3}, {"temperature": 0}],
                         ids=["sampled", "greedy"])
def test_generated_tokens_are_the_usage_of_every_choice(make_app, capsys, access_lines,
                                                        knobs, stream):
    """n choices generate n times the tokens (a greedy one is one text, counted n times, as
    usage counts it): the header, the log line, /metrics and EMF say what usage says."""
    client = make_app(emf=True).test_client()
    before = scrape(client)
    capsys.readouterr()
    body = {"model": STAND_IN, "prompt": TITLE, "max_tokens": 5, "n": 3, "ignore_eos": True,
            "stream": stream, **knobs}
    if stream:
        body["stream_options"] = {"include_usage": True}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200
    usage = events_of(response)[-1]["usage"] if stream else response.get_json()["usage"]
    assert usage["completion_tokens"] == 15
    if not stream:  # a stream's headers go before its tokens are known
        assert response.headers["X-Generated-Tokens"] == "15"
    (line,) = [json.loads(text) for text in access_lines if '"/v1/completions"' in text]
    assert line["tokens"] == 15
    (emf,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()
              if text.startswith('{"_aws"') and '"/v1/completions"' in text]
    assert emf["GeneratedTokens"] == 15
    assert value(scrape(client), "kogpt2_generated_tokens_total") - value(
        before, "kogpt2_generated_tokens_total") == 15


@pytest.mark.parametrize("route, body", [
    ("/generate", {"text": TITLE, "max_new_tokens": 20, "stream": True}),
    ("/v1/completions", {"model": STAND_IN, "prompt": TITLE, "max_tokens": 20, "stream": True}),
])
def test_a_stream_that_fails_after_it_began_is_counted_as_an_error(make_app, capsys, monkeypatch,
                                                                    access_lines, route, body):
    """Its status is 200 (the answer had begun), but /metrics counts it among the streams that
    ended in an error and EMF among the server's errors."""
    app = make_app(emf=True)
    client = app.test_client()
    generator = app.extensions["kogpt2"]
    generator.load()

    def fail_after_three_tokens(requests):
        for token_id in (500, 501, 502):
            requests[0].watch.step(token_id)
        raise RuntimeError("CPU fault")

    monkeypatch.setattr(generator.engine, "generate", fail_after_three_tokens)
    before = scrape(client)
    capsys.readouterr()
    response = client.post(route, json=body)
    assert response.status_code == 200
    assert "internal_error" in response.get_data(as_text=True)  # the stream's last event
    after = scrape(client)
    assert value(after, "kogpt2_stream_errors_total", route=route,
                 error_type="internal_error") - value(
        before, "kogpt2_stream_errors_total", route=route, error_type="internal_error") == 1
    assert value(after, "kogpt2_requests_total", route=route, status="200") - value(
        before, "kogpt2_requests_total", route=route, status="200") == 1
    (line,) = [json.loads(text) for text in access_lines if f'"{route}"' in text]
    assert (line["status"], line["error_type"], line["error_status"]) == (
        200, "internal_error", 500)
    (emf,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()
              if text.startswith('{"_aws"') and f'"{route}"' in text]
    assert (emf["Status"], emf["ServerErrors"]) == (200, 1)


def test_a_stream_the_client_left_is_not_an_error(make_app, monkeypatch):
    app = make_app(max_new_tokens=1000)
    client = app.test_client()
    before = scrape(client)
    body = {"text": TITLE, "max_new_tokens": 1000, "stream": True}
    response = client.post("/generate", json=body)
    assert next(iter(response.response))
    response.close()
    after = scrape(client)
    assert value(after, "kogpt2_stream_errors_total", route="/generate",
                 error_type="internal_error") == 0
    assert value(after, "kogpt2_requests_total", route="/generate", status="200") - value(
        before, "kogpt2_requests_total", route="/generate", status="200") == 1
