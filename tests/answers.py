"""What every error answer of the native API looks like, checked one way everywhere."""


def assert_error(response, status: int, error_type: str) -> str:
    """The answer is `status` with the one error shape and `error_type`; returns its message."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, text
    assert response.mimetype == "application/json", text
    body = response.get_json()
    assert set(body) == {"error", "error_type", "request_id"}, body
    assert body["error_type"] == error_type, body
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["error"] and "Traceback" not in text and 'File "' not in text
    return body["error"]
