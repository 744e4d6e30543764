import json
import re

import pytest

TITLE = "근육이 커지기 위해서는"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def test_a_valid_request_id_is_echoed(client):
    response = client.get("/health", headers={"X-Request-ID": "trace-42.a:b_c"})
    assert response.headers["X-Request-ID"] == "trace-42.a:b_c"


@pytest.mark.parametrize("given", ["", "has space", "<script>", "a" * 129, "제목", "a;b", "a\tb"])
def test_an_unsafe_request_id_is_replaced(client, given):
    response = client.get("/health", headers={"X-Request-ID": given})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/health").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_generate_answers_carry_timing_and_token_headers(client):
    response = client.post("/generate", json={"text": TITLE, "max_new_tokens": 5})
    assert response.status_code == 200
    tokens = response.get_json()["details"]["generated_tokens"]
    assert response.headers["X-Generated-Tokens"] == str(tokens)
    assert int(response.headers["X-Time-Ms"]) >= response.get_json()["details"]["time_ms"]


def test_errors_carry_timing_but_no_token_count(client):
    response = client.post("/generate", json={"text": ""})
    assert response.status_code == 422
    assert response.headers["X-Time-Ms"].isdigit()
    assert "X-Generated-Tokens" not in response.headers


@pytest.mark.parametrize("method, path", [("get", "/health"), ("get", "/info"),
                                          ("get", "/nope"), ("get", "/docs"),
                                          ("get", "/openapi.json"), ("put", "/generate")])
def test_security_headers_on_every_response(client, method, path):
    response = getattr(client, method)(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_an_html_page_keeps_its_own_policy(app):
    from flask import Response

    app.add_url_rule("/page", "page", lambda: Response("<p>hi</p>", mimetype="text/html"))
    response = app.test_client().get("/page")
    assert "Content-Security-Policy" not in response.headers  # the page's author sets it
    assert response.headers["X-Frame-Options"] == "DENY"


def test_cors_exposes_the_headers_to_browsers(client):
    response = client.post("/generate", json={"text": TITLE, "max_new_tokens": 2},
                           headers={"Origin": "https://example.org"})
    exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"X-Request-ID", "X-Time-Ms", "X-Generated-Tokens", "Retry-After"} <= exposed


def test_one_json_log_line_per_request_without_the_prompt(client, access_lines):
    client.post("/generate", json={"text": TITLE, "max_new_tokens": 3},
                headers={"X-Request-ID": "req-1"})
    client.post("/generate", json={"text": TITLE + "\x00"})
    client.get("/nope/" + TITLE)
    assert len(access_lines) == 3
    assert all(TITLE not in line for line in access_lines)
    ok, invalid, missing = (json.loads(line) for line in access_lines)
    assert ok["request_id"] == "req-1" and ok["method"] == "POST"
    assert ok["route"] == "/generate" and ok["status"] == 200
    assert ok["tokens"] == 3 and isinstance(ok["time_ms"], int)
    assert invalid["status"] == 422 and invalid["error_type"] == "validation_error"
    assert missing["route"] is None and missing["status"] == 404


def test_prompts_are_logged_only_when_asked(make_app, access_lines):
    make_app(log_prompts=True).test_client().post(
        "/generate", json={"text": TITLE, "max_new_tokens": 2})
    assert json.loads(access_lines[-1])["prompt"] == TITLE


def test_an_internal_error_is_logged_as_500(app, client, access_lines, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["kogpt2"], "run", explode)
    client.post("/generate", json={"text": TITLE})
    line = json.loads(access_lines[-1])
    assert line["status"] == 500 and line["error_type"] == "internal_error"
