"""/docs in a real browser: Swagger UI from the app's own files, and "Try it out" works."""

import json
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

BODY = {"text": "근육이 커지기 위해서는", "max_new_tokens": 5}


@pytest.fixture(params=["server", "staged_server"])
def base(request):
    """The app at the root, and mounted under /dev as API Gateway's stage mounts it."""
    return request.getfixturevalue(request.param)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_docs_load_without_errors_or_requests_leaving_the_origin(page, base, browser_errors,
                                                                  screenshots):
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto(f"{base}/docs")
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    expect(page.locator("#operations-default-generate")).to_be_visible()
    expect(page.locator("#operations-OpenAI-compatible-createCompletion")).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert requested and all(origin(url) == origin(base) for url in requested), requested
    assert f"{base}/openapi.json" in requested
    assert browser_errors == []
    if base.endswith("/dev"):
        page.screenshot(path=screenshots / "docs.png", full_page=True)


def test_try_it_out_on_generate_returns_200(page, base, browser_errors):
    page.goto(f"{base}/docs")
    operation = page.locator("#operations-default-generate")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    body = operation.locator("textarea.body-param__text")
    body.fill(json.dumps(BODY, ensure_ascii=False))
    with page.expect_response(lambda answer: answer.request.method == "POST") as answered:
        operation.locator("button.execute").click()
    answer = answered.value
    assert answer.url == f"{base}/generate"  # under /dev too: the stage prefix is kept
    assert answer.status == 200
    assert answer.json()["generated_text"].startswith(BODY["text"])
    shown = operation.locator(".live-responses-table tbody .response-col_status").first
    expect(shown).to_have_text("200")
    assert browser_errors == []
