"""What every error answer looks like, native and OpenAI-shaped, checked one way everywhere;
and the name the tiny stand-in is served under."""

# The tiny stand-in (tests/conftest.py) lives in a folder of this name: a local directory with no
# recorded hub id is named by its folder.
STAND_IN = "tiny-kogpt2"


def assert_error(response, status: int, error_type: str) -> str:
    """The answer is `status` with the one error shape and `error_type`; returns its message."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json", text
    body = response.get_json()
    # A model being prepared says how far it is, as /info does.
    progress = {"progress"} if error_type == "model_loading" else set()
    assert set(body) == {"error", "error_type", "request_id"} | progress, body
    assert body["error_type"] == error_type, body
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["error"] and "Traceback" not in text and 'File "' not in text
    return body["error"]


def assert_openai_error(response, status: int, code: str, param: str | None = None) -> str:
    """The answer of /v1 is `status` in OpenAI's error shape with `code`; returns its message."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json", text
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = body["error"]
    expected_type = ("server_error" if status >= 500 else
                     "rate_limit_error" if status == 429 else "invalid_request_error")
    assert (error["type"], error["code"], error["param"]) == (expected_type, code, param), body
    assert response.headers["X-Request-ID"]
    assert error["message"] and "Traceback" not in text and 'File "' not in text
    return error["message"]
