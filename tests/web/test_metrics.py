"""GET /metrics: Prometheus' text format, read back with prometheus_client's own parser."""

import json

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
