"""Bad input of every kind gets the documented 4xx JSON error, and the server keeps serving."""

import json

import pytest
from answers import assert_error

from app import create_app

TITLE = "근육이 커지기 위해서는"
JSON = "application/json"
MAX_BODY = 256 * 1024


def raw(body: str | bytes, content_type: str | None = JSON, method: str = "post",
        path: str = "/generate") -> dict:
    data = body.encode() if isinstance(body, str) else body
    return {"method": method, "path": path, "data": data, "content_type": content_type}


def body(value) -> dict:
    return raw(json.dumps(value))


def with_title(**params) -> dict:
    return body({"text": TITLE, **params})


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


BAD_INPUTS = {
    # Not JSON, or JSON that means more than one thing: 400 invalid_json.
    "malformed": (raw('{"text": "제목",}'), 400, "invalid_json"),
    "truncated_mid_string": (raw('{"text": "제'), 400, "invalid_json"),
    "truncated_mid_key": (raw('{"te'), 400, "invalid_json"),
    "empty_body": (raw(""), 400, "invalid_json"),
    "trailing_garbage": (raw('{"text": "제목"} x'), 400, "invalid_json"),
    "single_quotes": (raw("{'text': '제목'}"), 400, "invalid_json"),
    "non_utf8_bytes": (raw(b'{"text": "\xff\xfe\xfd"}'), 400, "invalid_json"),
    "latin1_bytes": (raw('{"text": "café"}'.encode("latin-1")), 400, "invalid_json"),
    "deeply_nested_arrays": (raw("[" * 100_000 + "]" * 100_000), 400, "invalid_json"),
    "deeply_nested_objects": (raw(nested(20_000)), 400, "invalid_json"),
    "nan": (raw('{"text": "제목", "temperature": NaN}'), 400, "invalid_json"),
    "infinity": (raw('{"text": "제목", "top_p": Infinity}'), 400, "invalid_json"),
    "minus_infinity": (raw('{"text": "제목", "temperature": -Infinity}'), 400, "invalid_json"),
    "duplicate_keys": (raw('{"text": "제목", "text": "다른 제목"}'), 400, "invalid_json"),
    "duplicate_nested_keys": (raw('{"context": {"main_title": "가", "main_title": "나"}}'),
                              400, "invalid_json"),
    # Not sent as JSON: 415.
    "text_plain": (raw('{"text": "제목"}', "text/plain"), 415, "unsupported_media_type"),
    "no_content_type": (raw('{"text": "제목"}', None), 415, "unsupported_media_type"),
    "form_urlencoded": (raw("text=제목", "application/x-www-form-urlencoded"),
                        415, "unsupported_media_type"),
    "multipart": (raw("--x\r\n\r\n제목\r\n--x--", "multipart/form-data; boundary=x"),
                  415, "unsupported_media_type"),
    "xml": (raw("<text>제목</text>", "application/xml"), 415, "unsupported_media_type"),
    # Too big: 413.
    "huge_body": (raw('{"text": "' + "가" * MAX_BODY + '"}'), 413, "payload_too_large"),
    # Valid JSON of the wrong shape or out of bounds: 422 validation_error.
    "null_body": (raw("null"), 422, "validation_error"),
    "array_body": (body([TITLE]), 422, "validation_error"),
    "number_body": (body(42), 422, "validation_error"),
    "string_body": (body(TITLE), 422, "validation_error"),
    "boolean_body": (body(True), 422, "validation_error"),
    "empty_object": (body({}), 422, "validation_error"),
    "text_is_number": (body({"text": 123}), 422, "validation_error"),
    "text_is_object": (body({"text": {"ko": TITLE}}), 422, "validation_error"),
    "text_is_array": (body({"text": [TITLE]}), 422, "validation_error"),
    "text_is_null": (body({"text": None}), 422, "validation_error"),
    "lone_surrogate": (raw('{"text": "제목\\ud800"}'), 422, "validation_error"),
    "nul_character": (body({"text": "제목\x00"}), 422, "validation_error"),
    "bell_control_character": (body({"text": "제목\x07"}), 422, "validation_error"),
    "escape_control_character": (body({"text": "\x1b[31m제목"}), 422, "validation_error"),
    "zero_width_only": (body({"text": "\u200b\u200c\u200d"}), 422, "validation_error"),
    "byte_order_mark_only": (body({"text": "\ufeff"}), 422, "validation_error"),
    "whitespace_only": (body({"text": " \n\t "}), 422, "validation_error"),
    "ten_thousand_character_title": (body({"text": "가" * 10_000}), 422, "validation_error"),
    "boolean_as_number": (with_title(max_new_tokens=True), 422, "validation_error"),
    "number_as_boolean": (with_title(do_sample=1), 422, "validation_error"),
    "number_as_string": (with_title(temperature="1.0"), 422, "validation_error"),
    "overflowing_float": (raw('{"text": "제목", "temperature": 1e999}'), 422, "validation_error"),
    "negative_max_new_tokens": (with_title(max_new_tokens=-1), 422, "validation_error"),
    "huge_max_new_tokens": (with_title(max_new_tokens=10**30), 422, "validation_error"),
    "over_server_cap": (with_title(max_new_tokens=9), 422, "validation_error"),
    "negative_seed": (with_title(seed=-1), 422, "validation_error"),
    "seed_over_32_bits": (with_title(do_sample=True, seed=2**64), 422, "validation_error"),
    "huge_top_k": (with_title(top_k=10**6), 422, "validation_error"),
    "zero_sequences": (with_title(num_return_sequences=0), 422, "validation_error"),
    "unknown_field": (with_title(prompt="다른 제목"), 422, "validation_error"),
    "unknown_legacy_field": (body({"context": {"main_title": TITLE, "x": 1}}),
                             422, "validation_error"),
    "legacy_context_is_string": (body({"context": TITLE}), 422, "validation_error"),
    "text_and_context": (body({"text": TITLE, "context": {"main_title": TITLE}}),
                         422, "validation_error"),
    # Wrong methods and missing routes.
    "get_generate": (raw("", None, "get"), 405, "method_not_allowed"),
    "put_generate": (raw('{"text": "제목"}', JSON, "put"), 405, "method_not_allowed"),
    "delete_health": (raw("", None, "delete", "/health"), 405, "method_not_allowed"),
    "post_health": (raw('{"text": "제목"}', JSON, "post", "/health"), 405, "method_not_allowed"),
    "missing_route": (raw("", None, "get", "/nope"), 404, "not_found"),
    "trailing_slash": (raw('{"text": "제목"}', JSON, "post", "/generate/"), 404, "not_found"),
    "path_traversal": (raw("", None, "get", "/static/..%2f..%2fapp.py"), 404, "not_found"),
    "path_traversal_dots": (raw("", None, "get", "/static/%2e%2e/%2e%2e/app.py"),
                            404, "not_found"),
    "path_traversal_backslash": (raw("", None, "get", "/static/..%5c..%5capp.py"),
                                 404, "not_found"),
}


@pytest.fixture(scope="module")
def client(tiny_model_dir):
    app = create_app({
        "TESTING": True, "MODEL": str(tiny_model_dir), "ENGINE": "transformers", "THREADS": 1,
        "MAX_NEW_TOKENS": 8, "MAX_BODY_BYTES": MAX_BODY,
    })
    return app.test_client()


@pytest.mark.parametrize("request_args, status, error_type", BAD_INPUTS.values(),
                         ids=BAD_INPUTS.keys())
def test_bad_input_gets_a_json_4xx_and_the_server_keeps_serving(
    client, request_args, status, error_type
):
    args = dict(request_args)
    method, path = args.pop("method"), args.pop("path")
    response = client.open(path, method=method.upper(), **args)
    assert_error(response, status, error_type)
    assert "create_app" not in response.get_data(as_text=True)  # no file of the app leaks
    good = client.post("/generate", json={"text": TITLE, "max_new_tokens": 2})
    assert good.status_code == 200, good.get_data(as_text=True)


@pytest.mark.parametrize("title", ["😀🎉🔥", "ㄱㄴㄷ", "한\u0301글", "제목 " * 150, "\u200b제목"])
def test_odd_but_valid_titles_are_answered(client, title):
    response = client.post("/generate", json={"text": title, "max_new_tokens": 2})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["generated_text"].startswith(title.strip())


def test_path_traversal_cases_reach_the_static_route(client):
    """The traversal cases above are refused by /static/ itself, which does serve its files."""
    assert client.get("/static/app.js").status_code == 200
    for case in ("path_traversal", "path_traversal_dots", "path_traversal_backslash"):
        path = BAD_INPUTS[case][0]["path"]
        response = client.get(path)
        assert response.status_code == 404
        assert client.application.url_map.bind("").match(
            response.request.path, method="GET"
        )[0] == "static"


def test_seven_thousand_keys_are_refused_in_linear_time(client):
    """Parsing and validation cost linear in the body: 64 KB of distinct keys is cheap to refuse."""
    import time

    keys = {str(i): 0 for i in range(7300)}
    data = json.dumps({"text": TITLE, **keys}, separators=(",", ":"), ensure_ascii=False)
    data = data.encode()
    assert 64_000 < len(data) < 65_536
    walls, cpus = [], []
    for _ in range(3):  # the least of three: a collection of the test process's heap is not it
        started, cpu_started = time.perf_counter(), time.thread_time()
        response = client.post("/generate", data=data, content_type=JSON)
        walls.append(time.perf_counter() - started)
        cpus.append(time.thread_time() - cpu_started)
        message = assert_error(response, 422, "validation_error")
        assert "and 7295 more" in message and len(message) < 1000
    print(f"7,300-key body refused in {min(walls) * 1000:.1f} ms, {min(cpus) * 1000:.1f} ms of "
          f"CPU (each of 3: {', '.join(f'{c * 1000:.0f}' for c in cpus)} ms of CPU)")
    # CPU time, not wall time: other work on a shared machine can't make this fail.
    assert min(cpus) < 0.25
