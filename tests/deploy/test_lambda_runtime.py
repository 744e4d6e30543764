"""The image's own Lambda runtime (lambda_runtime.py), run as the image runs it: the Dockerfile's
ENTRYPOINT + CMD, in the runtime stage's layout, in a venv of requirements-lambda.txt only,
against a fake Runtime API on 127.0.0.1 (fake_runtime_api.py, written from AWS's documented
protocol: it parses the chunked framing itself and notes when each chunk arrives).

One container serves the tests of this module in turn, as a warm Lambda container does; its
tokens each take SLOW_TOKEN_S more (tests/browser/slow_tokens), so that a stream lasts long
enough on any machine to show whether it arrives in pieces.
"""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
from events import parse_events, split_stream
from fake_runtime_api import DELIMITER, PRELUDE_TYPE
from lambda_image import lay_out
from lambda_task import (
    BUFFERED,
    ROOT,
    StreamingLambda,
    api_event,
    headers_of,
    invoke,
    run_image,
    scheduled_event,
)

TITLE = "근육이 커지기 위해서는"
SLOW_TOKEN_S = 0.02
JSON = {"Content-Type": "application/json"}
SLOW_TOKENS = ROOT / "tests" / "browser" / "slow_tokens"
FAILING_TOKENS = Path(__file__).parent / "failing_tokens"


@pytest.fixture(scope="module")
def image(runtime_instructions, tiny_ct2_dir, tmp_path_factory):
    return lay_out(runtime_instructions, tmp_path_factory.mktemp("image"), tiny_ct2_dir,
                   "ctranslate2")


@pytest.fixture(scope="module")
def container(image, image_venv, tmp_path_factory):
    slow = with_env(image, PYTHONPATH=f"{SLOW_TOKENS}:{image.task_root}",
                    SLOW_TOKEN_S=str(SLOW_TOKEN_S))
    with run_image(slow, image_venv, tmp_path_factory.mktemp("container")) as function:
        yield function


def with_env(image, **variables):
    return dataclasses.replace(image, env={**image.env, **variables})


def event_arrivals(answer) -> list[tuple[float, dict]]:
    """Each server-sent event of a streamed answer, with the time its last byte arrived."""
    arrivals, seen, received = [], b"", 0
    prelude_end = answer.body.index(DELIMITER) + len(DELIMITER)
    for arrived, data in answer.chunks:
        received += len(data)
        body = answer.body[prelude_end:max(prelude_end, received)]
        while len(seen) < len(body) and b"\n\n" in body[len(seen):]:
            end = body.index(b"\n\n", len(seen)) + 2
            arrivals.append((arrived, parse_events(body[len(seen):end].decode())[0]))
            seen = body[:end]
    return arrivals


def test_a_stream_reaches_lambda_in_pieces_as_it_is_written(container):
    answer = container.answer(api_event("POST", "/generate", headers=JSON, body={
        "text": TITLE, "max_new_tokens": 60, "stream": True, "repetition_penalty": 1}))

    assert answer.path == "response"
    for name, value in {"lambda-runtime-function-response-mode": "streaming",
                        "transfer-encoding": "chunked", "content-type": PRELUDE_TYPE}.items():
        assert answer.headers[name] == value
    assert {name.strip() for name in answer.headers["trailer"].split(",")} == {
        "Lambda-Runtime-Function-Error-Type", "Lambda-Runtime-Function-Error-Body"}
    assert answer.trailers == {}  # it went well
    prelude, body = answer.split()
    assert set(prelude) == {"statusCode", "headers", "multiValueHeaders", "cookies"}
    assert prelude["statusCode"] == 200 and prelude["cookies"] == []
    assert prelude["headers"]["Content-Type"] == "text/event-stream; charset=utf-8"
    assert prelude["multiValueHeaders"]["Cache-Control"] == ["no-cache"]
    assert "Content-Length" not in prelude["headers"]  # API Gateway frames the body
    assert answer.body.count(DELIMITER) == 1 and DELIMITER + b"data: " in answer.body
    tokens, last = split_stream(parse_events(body.decode()))
    assert len(tokens) == 60 and last["details"]["generated_tokens"] == 60
    assert TITLE + "".join(token["text"] for token in tokens) == last["generated_text"]

    # Each event went out as it was written: the first token's reached the Runtime API while
    # the other 59 (20 ms each at least) were still being made, in pieces of their own.
    arrivals = event_arrivals(answer)
    assert [event for _, event in arrivals] == parse_events(body.decode())
    first_token, last_event = arrivals[1][0], arrivals[-1][0]
    assert last_event - first_token >= 59 * SLOW_TOKEN_S * 0.8, (first_token, last_event)
    assert len({arrived for arrived, _ in arrivals}) >= 50
    assert len(answer.chunks) >= 50


def test_the_page_keeps_the_stage_prefix_and_errors_stay_http_answers(container):
    page = container.invoke(api_event("GET", "/", headers={"Accept": "text/html"}))
    assert page["statusCode"] == 200
    assert headers_of(page)["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href|action)="(/[^"]*)"', page["body"])
    assert urls and all(url.startswith("/dev/") for url in urls), urls

    # Refusals are the app's answers, streamed like any other: not Lambda errors.
    empty = container.answer(api_event("POST", "/generate", headers=JSON, body={"text": "  "}))
    missing = container.answer(api_event("GET", "/nope"))
    for answer, status, error_type in [(empty, 422, "validation_error"),
                                       (missing, 404, "not_found")]:
        assert answer.path == "response" and answer.streamed and answer.trailers == {}
        prelude, body = answer.split()
        assert prelude["statusCode"] == status
        assert json.loads(body)["error_type"] == error_type


def test_the_warm_up_and_other_events_go_through_zappas_handler_whole(container):
    warm_up = container.answer(scheduled_event("kogpt2-dev-app.warm_up"))
    assert warm_up.path == "response" and not warm_up.streamed
    assert warm_up.headers["content-type"] == "application/json"
    assert warm_up.json()["loaded"] is True and warm_up.json()["engine"] == "ctranslate2"
    # What is said to follow a streamed invocation (unconfirmed; not an API Gateway event):
    # Zappa's handler knows no such event and answers null, not an error.
    after = container.answer({"invokeCompletionStatus": "Success", "requestId": "r-1"})
    assert (after.path, after.body) == ("response", b"null")


def test_a_crash_before_the_first_byte_goes_to_error_and_the_next_one_is_served(container):
    broken = api_event("POST", "/generate", body="abc", headers=JSON)
    broken["isBase64Encoded"] = True  # and "abc" is not base64: Zappa's request fails
    crashed = container.answer(broken)
    assert crashed.path == "error" and not crashed.streamed
    assert crashed.headers["lambda-runtime-function-error-type"] == "Error"  # binascii.Error
    assert crashed.json() == {"errorType": "Error", "errorMessage": "Error: see the function's "
                              "log", "stackTrace": []}  # no paths, no traceback
    assert "Traceback" in container.log()  # for the operator, in CloudWatch

    health = container.invoke(api_event("GET", "/health"))
    assert health["statusCode"] == 200


def test_every_invocation_went_through_one_process_initialised_once(container):
    # The module's tests above each sent their events to this one container.
    assert container.process.poll() is None
    assert container.log().count("Instancing..") == 1  # Zappa's handler, made at init
    assert container.api.next_calls >= 8
    assert container.api.init_errors == []


def test_a_failure_mid_stream_ends_with_the_error_trailers(image, image_venv, tmp_path):
    failing = with_env(image, PYTHONPATH=f"{FAILING_TOKENS}:{image.task_root}",
                       FAIL_AFTER_TOKENS="5")
    with run_image(failing, image_venv, tmp_path) as function:
        answer = function.answer(api_event("POST", "/generate", headers=JSON, body={
            "text": TITLE, "max_new_tokens": 20, "stream": True}))
        log = function.log()
    assert answer.path == "response" and answer.streamed
    prelude, body = answer.split()
    assert prelude["statusCode"] == 200  # it had begun
    tokens, last = split_stream(parse_events(body.decode()))
    assert len(tokens) == 5
    assert last["error_type"] == "internal_error"  # the app's own last event, first
    assert answer.trailers["lambda-runtime-function-error-type"] == "internal_error"
    assert answer.error_body() == {"errorType": "internal_error",
                                   "errorMessage": "the answer failed after it began"}
    assert "generation failed mid-stream" in log


BROKEN_APP = '''\
def app(environ, start_response):
    """A WSGI app whose body fails: before its first byte at /early, after two pieces else."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"),
                              ("Set-Cookie", "b=2"), ("X-Twice", "1"), ("X-Twice", "2")])

    def body():
        if environ["PATH_INFO"] == "/early":
            raise KeyError("early")
        yield b"one "
        yield b""
        yield b"two "
        raise ValueError("mid-stream")

    return body()
'''


@pytest.fixture
def broken_task_root(task_root, tmp_path):
    """The task root with Zappa's settings pointing at BROKEN_APP instead of the app."""
    root = tmp_path / "var-task"
    shutil.copytree(task_root, root)
    (root / "broken_app.py").write_text(BROKEN_APP)
    settings = root / "zappa_settings.py"
    settings.write_text(settings.read_text().replace("APP_MODULE='app'", "APP_MODULE='broken_app'"))
    return root


def test_any_wsgi_bodys_failure_is_an_error_before_its_first_byte_and_trailers_after(
        broken_task_root, lambda_env, tmp_path):
    with StreamingLambda(broken_task_root, lambda_env, tmp_path) as function:
        early = function.answer(api_event("GET", "/early"))
        late = function.answer(api_event("GET", "/late"))
    assert early.path == "error" and early.json()["errorType"] == "KeyError"
    assert late.path == "response"
    prelude, body = late.split()
    assert body == b"one two "
    assert prelude["cookies"] == ["a=1", "b=2"]  # apart from the headers, as API Gateway wants
    assert prelude["multiValueHeaders"]["X-Twice"] == ["1", "2"]
    assert late.trailers["lambda-runtime-function-error-type"] == "ValueError"
    assert late.error_body()["errorType"] == "ValueError"


@pytest.mark.parametrize("setting, variables", [
    ("LAMBDA_RESPONSE_STREAMING", {"LAMBDA_RESPONSE_STREAMING": "sometimes"}),
    ("threads", {"KOGPT2_THREADS": "many"}),  # the app refuses its settings
])
def test_an_init_failure_goes_to_init_error(task_root, lambda_env, tmp_path, setting, variables):
    with StreamingLambda(task_root, {**lambda_env, **variables}, tmp_path) as function:
        assert function.api.init_error_seen.wait(60), function.log()
        function.process.wait(timeout=30)
        (error,) = function.api.init_errors
        log = function.log()
    assert function.process.returncode == 1
    assert error["headers"]["lambda-runtime-function-error-type"] == error["body"]["errorType"]
    assert error["body"]["stackTrace"] == [] and function.api.next_calls == 0
    assert setting in log  # the traceback says what to fix


def test_with_streaming_off_the_answers_are_zappas_own(task_root, lambda_env, tmp_path):
    events = [api_event("GET", "/health"), api_event("GET", "/openapi.json"),
              scheduled_event("kogpt2-dev-app.warm_up"),
              api_event("POST", "/generate", headers=JSON, body={
                  "text": TITLE, "max_new_tokens": 8, "stream": True})]
    off = {**lambda_env, "LAMBDA_RESPONSE_STREAMING": "false"}
    with StreamingLambda(task_root, off, tmp_path) as function:
        answers = [function.answer(event) for event in events]
    *same, stream = answers
    zappa = invoke(task_root, events[:-1], off, tmp_path, runtime=BUFFERED)
    for answer, expected in zip(same, zappa, strict=True):
        assert answer.path == "response" and not answer.streamed
        got = answer.json()
        for response in (got, expected):  # the same answer, but for its id and timings
            for headers in (response.get("headers", {}), response.get("multiValueHeaders", {})):
                headers.pop("X-Request-ID", None), headers.pop("X-Time-Ms", None)
            response.pop("load_ms", None)
        assert got == expected
    # A stream arrives whole, as through Zappa's handler: the integration is BUFFERED.
    assert stream.path == "response" and not stream.streamed and stream.chunks == []
    tokens, last = split_stream(parse_events(stream.json()["body"]))
    assert len(tokens) == 8 and last["details"]["generated_tokens"] == 8
