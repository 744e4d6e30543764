"""Zappa's real handler on real API Gateway REST (v1 proxy) events, against the app.

The task root holds what the image's runtime stage copies and the `zappa_settings.py` that
`zappa save-python-settings-file dev` writes from this repository's settings; the function's
environment is the dev stage's `aws_environment_variables`, pointed at the tiny stand-in.
Each test runs twice: through awslambdaric's way of calling the handler (what the image ran
before it had its own runtime), and through the image's own runtime (lambda_runtime.py, which
streams API Gateway's answers), as API Gateway would read its answers.
"""

import base64
import json
import re
from urllib.parse import quote

import pytest
from events import parse_events, split_stream
from lambda_task import (
    BUFFERED,
    ROOT,
    SETTINGS,
    STREAMING,
    api_event,
    headers_of,
    invoke,
    invoke_logged,
    make_task_root,
    scheduled_event,
)

ORIGIN = "https://example.org"
TITLE = "근육이 커지기 위해서는"


@pytest.fixture(params=[BUFFERED, STREAMING])
def runtime(request):
    return request.param


@pytest.fixture
def run(task_root, lambda_env, tmp_path, runtime):
    def events(*events, **env):
        responses = invoke(task_root, list(events), {**lambda_env, **env}, tmp_path,
                           runtime=runtime)
        for response in responses:
            assert "Traceback" not in json.dumps(response)
        return responses

    return events


def json_of(response):
    assert not response.get("isBase64Encoded")
    return json.loads(response["body"])


def test_the_settings_file_is_what_the_image_needs(task_root):
    text = (task_root / "zappa_settings.py").read_text()
    assert "APP_MODULE='app'" in text and "APP_FUNCTION='app'" in text
    assert "DEBUG=False" in text  # Zappa's default would put tracebacks in 500s
    assert "LOG_LEVEL='INFO'" in text  # DEBUG would log every event, prompts included
    # Zappa 0.63 decodes isBase64Encoded bodies only with binary support on; with it, the API
    # passes every body base64-encoded and Zappa answers text types (JSON, HTML, CSS) as text.
    assert "BINARY_SUPPORT=True" in text
    assert "API_STAGE='dev'" in text


def test_generate_with_a_json_body_and_with_a_base64_body(run):
    body = {"text": TITLE, "max_new_tokens": 5}
    headers = {"Content-Type": "application/json", "Origin": ORIGIN}
    plain, encoded = run(
        api_event("POST", "/generate", body=body, headers=headers),
        api_event("POST", "/generate", body=body, headers=headers, base64_body=True),
    )
    for response in (plain, encoded):
        assert response["statusCode"] == 200
        assert headers_of(response)["access-control-allow-origin"] == "*"
        assert json_of(response)["generated_text"].startswith(TITLE)
        assert json_of(response)["details"]["generated_tokens"] >= 1
    assert json_of(plain)["generated_text"] == json_of(encoded)["generated_text"]  # greedy


def test_the_original_handler_shape_still_works(run):
    (response,) = run(api_event(
        "POST", "/generate", body={"context": {"main_title": TITLE}},
        headers={"Content-Type": "application/json"},
    ))
    assert response["statusCode"] == 200
    assert json_of(response)["answer"]["gen_text"][0].startswith(TITLE)


def test_preflight_gets_cors_headers_from_the_app(run):
    (response,) = run(api_event("OPTIONS", "/generate", headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }))
    assert response["statusCode"] == 200
    headers = headers_of(response)
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"].lower()


def test_browsers_may_send_the_api_key_header(run):
    # A stage with api_key_required wants `x-api-key` on every call; from a page, that header
    # needs the app's preflight answer to allow it.
    (response,) = run(api_event("OPTIONS", "/generate", headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }))
    assert response["statusCode"] == 200
    allowed = headers_of(response)["access-control-allow-headers"].lower()
    assert {"content-type", "x-api-key"} <= {name.strip() for name in allowed.split(",")}


def test_production_origins_let_no_other_site_in(run):
    origins = SETTINGS["production"]["aws_environment_variables"]["KOGPT2_CORS_ORIGINS"]
    preflight, same_origin = run(
        api_event("OPTIONS", "/generate", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST"}),
        api_event("POST", "/generate", body={"text": TITLE, "max_new_tokens": 2},
                  headers={"Content-Type": "application/json"}),
        KOGPT2_CORS_ORIGINS=origins,
    )
    assert "access-control-allow-origin" not in headers_of(preflight)
    assert same_origin["statusCode"] == 200  # the page, served from the API's own URL


def test_bad_requests_get_json_errors_with_cors_headers(run):
    headers = {"Content-Type": "application/json", "Origin": ORIGIN}
    not_json, invalid, wrong_type, unknown = run(
        api_event("POST", "/generate", body="{not json", headers=headers),
        api_event("POST", "/generate", body={"text": "   "}, headers=headers),
        api_event("POST", "/generate", body="text=x", headers={
            "Content-Type": "application/x-www-form-urlencoded", "Origin": ORIGIN}),
        api_event("GET", "/nope", headers={"Origin": ORIGIN}),
    )
    expected = [(not_json, 400, "invalid_json"), (invalid, 422, "validation_error"),
                (wrong_type, 415, "unsupported_media_type"), (unknown, 404, "not_found")]
    for response, status, error_type in expected:
        assert response["statusCode"] == status
        assert json_of(response)["error_type"] == error_type
        assert headers_of(response)["content-type"] == "application/json"
    for response in (not_json, invalid, wrong_type):  # the API's routes carry CORS headers
        assert headers_of(response)["access-control-allow-origin"] == "*"


def test_a_missing_model_is_a_clear_503_not_a_traceback(run, tmp_path):
    headers = {"Content-Type": "application/json", "Origin": ORIGIN}
    (response,) = run(
        api_event("POST", "/generate", body={"text": TITLE}, headers=headers),
        KOGPT2_MODEL=str(tmp_path / "no-such-model"),
    )
    assert response["statusCode"] == 503
    assert json_of(response)["error_type"] == "model_unavailable"
    assert "no-such-model" not in response["body"]  # the path stays in the log
    assert headers_of(response)["access-control-allow-origin"] == "*"


def test_an_event_zappa_cannot_read_is_a_500_without_a_traceback(task_root, lambda_env, tmp_path):
    # Fails inside Zappa, before the app: only `debug: false` keeps the traceback out. (The
    # image's own runtime sends such a failure to Lambda's /error: test_lambda_runtime.py.)
    headers = {"Content-Type": "application/json"}
    broken = api_event("POST", "/generate", body="abc", headers=headers)
    broken["isBase64Encoded"] = True  # and "abc" is not base64
    (response,) = invoke(task_root, [broken], lambda_env, tmp_path, runtime=BUFFERED)
    assert response["statusCode"] == 500
    assert "uncaught exception" in response["body"]
    assert "traceback" not in response["body"].lower()


def test_the_scheduled_warm_up_loads_the_model_of_the_serving_app(run):
    (schedule,) = SETTINGS["dev"]["events"]
    assert schedule["function"] == "app.warm_up"
    # Zappa names the rule "<function name>-<function>"; its handler reads the function back.
    before, not_ready, warm_up, after, ready = run(
        api_event("GET", "/health"),
        api_event("GET", "/ready"),
        scheduled_event(f"kogpt2-dev-{schedule['function']}"),
        api_event("GET", "/health"),
        api_event("GET", "/ready"),
    )
    # Zappa's touch_path (/health) after a deploy meets a cold function: it must pass. On
    # Lambda the warm-up (or the first request) loads the model, not the process's start.
    assert before["statusCode"] == 200
    assert json_of(before) == {"status": "ok", "model_state": "not_loaded",
                               "model_loaded": False}
    assert (not_ready["statusCode"], json_of(not_ready)["model_state"]) == (503, "not_loaded")
    assert warm_up["loaded"] is True
    assert warm_up["engine"] == "transformers"
    assert json_of(after) == {"status": "ok", "model_state": "ready", "model_loaded": True}
    assert (ready["statusCode"], json_of(ready)["ready"]) == (200, True)


def test_the_page_and_its_assets_live_under_the_stage_prefix(run):
    (page,) = run(api_event("GET", "/", headers={"Accept": "text/html"}))
    assert page["statusCode"] == 200
    assert headers_of(page)["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href|action)="([^"]+)"', page["body"])
    rooted = [url for url in urls if url.startswith("/")]
    assert rooted and all(url.startswith("/dev/") for url in rooted), rooted
    assets = [url for url in rooted if url.startswith("/dev/static/")]
    assert assets
    responses = run(*[api_event("GET", url.removeprefix("/dev").split("?")[0]) for url in assets])
    assert [response["statusCode"] for response in responses] == [200] * len(assets)


def test_a_stream_arrives_whole_as_a_complete_event_stream(run):
    """API Gateway REST (v1 proxy) buffers: Zappa's handler returns the whole stream at once.
    It must still be a valid event stream, ending with the answer, and say the same as the
    non-streamed answer."""
    headers = {"Content-Type": "application/json", "Origin": ORIGIN}
    body = {"text": TITLE, "max_new_tokens": 12}
    streamed, plain = run(
        api_event("POST", "/generate", body={**body, "stream": True}, headers=headers),
        api_event("POST", "/generate", body=body, headers=headers),
    )
    assert streamed["statusCode"] == 200 and not streamed.get("isBase64Encoded")
    response_headers = headers_of(streamed)
    assert response_headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response_headers["access-control-allow-origin"] == "*"
    tokens, last = split_stream(parse_events(streamed["body"]))
    answer = json_of(plain)
    assert last["generated_text"] == answer["generated_text"]
    assert TITLE + "".join(t["text"] for t in tokens) == answer["generated_text"]
    assert len(tokens) == 12


def test_openapi_servers_carry_the_stage_prefix(run):
    # A client generated from the document must call /dev/generate, not /generate.
    (response,) = run(api_event("GET", "/openapi.json"))
    assert response["statusCode"] == 200
    assert json_of(response)["servers"] == [{"url": "/dev"}]


# --- Metrics: CloudWatch Embedded Metric Format lines in the function's log ------------------

EMF_UNITS = ["Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
             "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
             "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
             "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
             "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"]
# CloudWatch's specification of the format (docs: "Specification: Embedded metric format").
EMF_SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {"_aws": {
        "type": "object",
        "required": ["Timestamp", "CloudWatchMetrics"],
        "properties": {
            "Timestamp": {"type": "integer", "minimum": 0},
            "CloudWatchMetrics": {"type": "array", "items": {
                "type": "object",
                "required": ["Namespace", "Dimensions", "Metrics"],
                "properties": {
                    "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "Dimensions": {"type": "array", "items": {
                        "type": "array", "maxItems": 30,
                        "items": {"type": "string", "minLength": 1, "maxLength": 250}}},
                    "Metrics": {"type": "array", "maxItems": 100, "items": {
                        "type": "object", "required": ["Name"],
                        "properties": {"Name": {"type": "string", "minLength": 1,
                                                "maxLength": 1024},
                                       "Unit": {"enum": EMF_UNITS}}}},
                },
            }},
        },
    }},
}


def test_each_request_writes_one_embedded_metric_format_line(task_root, lambda_env, tmp_path,
                                                            runtime):
    import jsonschema

    events = [api_event("POST", "/generate", body={"text": TITLE, "max_new_tokens": 3},
                        headers={"Content-Type": "application/json"}),
              api_event("POST", "/generate", body={"text": ""},
                        headers={"Content-Type": "application/json"}),
              api_event("GET", "/health")]
    responses, log = invoke_logged(task_root, events, lambda_env, tmp_path, runtime=runtime)
    assert [r["statusCode"] for r in responses] == [200, 422, 200]
    lines = [json.loads(line) for line in log.splitlines() if line.startswith('{"_aws"')]
    assert [(line["Route"], line["Status"]) for line in lines] == [
        ("/generate", 200), ("/generate", 422), ("/health", 200)]
    for line in lines:
        jsonschema.validate(line, EMF_SCHEMA)
        for directive in line["_aws"]["CloudWatchMetrics"]:
            for dimension in (key for keys in directive["Dimensions"] for key in keys):
                assert isinstance(line[dimension], str)
            for metric in directive["Metrics"]:
                assert isinstance(line[metric["Name"]], int | float), metric
    assert lines[0]["GeneratedTokens"] == 3 and lines[0]["TimeToFirstToken"] >= 0
    assert "GeneratedTokens" not in lines[1]


# --- Titles stay out of the function's log (CloudWatch gets all the process writes) ---------

SECRET_TITLE = "로그에남으면안되는제목"  # in no other test, template or message


def secret_events():
    """The page's example link (with a Referer carrying it too), and /generate, plain and base64."""
    body = {"text": SECRET_TITLE, "max_new_tokens": 3}
    json_headers = {"Content-Type": "application/json", "Origin": ORIGIN}
    return [
        api_event("GET", "/", query={"text": SECRET_TITLE}, headers={
            "Accept": "text/html", "Referer": f"https://example.org/?text={quote(SECRET_TITLE)}"}),
        api_event("POST", "/generate", body=body, headers=json_headers),
        api_event("POST", "/generate", body=body, headers=json_headers, base64_body=True),
    ]


def traces_of_secret():
    """Every form in which the title or its body could reach a log line."""
    body = json.dumps({"text": SECRET_TITLE, "max_new_tokens": 3}, ensure_ascii=False)
    return {
        SECRET_TITLE,
        quote(SECRET_TITLE),  # a query string
        quote(SECRET_TITLE).lower(),
        json.dumps(SECRET_TITLE)[1:-1],  # \\uXXXX escapes
        "".join(f"\\\\x{byte:02x}" for byte in SECRET_TITLE.encode()),  # repr() of the bytes
        base64.b64encode(body.encode()).decode(),  # an isBase64Encoded body
    }


@pytest.fixture(scope="module")
def debug_task_root(tmp_path_factory):
    """The dev stage with Zappa's defaults for `debug` and `log_level`: every event logged."""
    settings = json.loads((ROOT / "zappa_settings.json").read_text())
    settings["dev"].update(debug=True, log_level="DEBUG")
    settings_dir = tmp_path_factory.mktemp("debug-settings")
    (settings_dir / "zappa_settings.json").write_text(json.dumps(settings))
    root = make_task_root(tmp_path_factory.mktemp("var-task-debug"), settings_dir)
    assert "LOG_LEVEL='DEBUG'" in (root / "zappa_settings.py").read_text()
    return root


def serve_secret(root, lambda_env, tmp_path, runtime, **env):
    responses, log = invoke_logged(root, secret_events(), {**lambda_env, **env}, tmp_path,
                                   runtime=runtime)
    assert [response["statusCode"] for response in responses] == [200, 200, 200]
    return log


def test_the_log_holds_no_title_at_info(task_root, lambda_env, tmp_path, runtime):
    log = serve_secret(task_root, lambda_env, tmp_path, runtime)
    leaks = [trace for trace in traces_of_secret() if trace in log]
    assert not leaks, log
    assert log.count('{"_aws"') == 3  # the metric lines were written, without the title
    # Zappa's access line is still written, with the path and without the query string.
    assert re.search(r'"GET / HTTP/1\.1" 200 \d+ "https://example\.org/" "curl', log), log
    assert log.count('"POST /generate HTTP/1.1" 200') == 2, log


def test_the_log_holds_no_title_with_zappa_debug_logging(debug_task_root, lambda_env, tmp_path,
                                                         runtime):
    log = serve_secret(debug_task_root, lambda_env, tmp_path, runtime)
    leaks = [trace for trace in traces_of_secret() if trace in log]
    assert not leaks, log
    assert "Zappa Event:" not in log
    assert "DEBUG:zappa.handler:host found" in log  # DEBUG records do reach the log


def test_log_prompts_lets_the_title_into_the_log(debug_task_root, lambda_env, tmp_path, runtime):
    log = serve_secret(debug_task_root, lambda_env, tmp_path, runtime, KOGPT2_LOG_PROMPTS="true")
    access = [json.loads(line) for line in log.splitlines() if line.startswith('{"request_id"')]
    assert [line["prompt"] for line in access if line["route"] == "/generate"] == [
        SECRET_TITLE, SECRET_TITLE]
    # What the filter removes when the setting is off: the query string and the event dump.
    assert f'"GET /?text={quote(SECRET_TITLE)} HTTP/1.1"' in log
    assert "Zappa Event:" in log and SECRET_TITLE in log.split("Zappa Event:")[2]
