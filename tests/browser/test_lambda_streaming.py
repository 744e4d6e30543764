"""The page as deployed: behind API Gateway's STREAM integration (tests/api_gateway_stream.py)
in front of the image's own Lambda runtime (its ENTRYPOINT + CMD, against a fake Runtime API),
serving the app under /dev. Each token takes SLOW_TOKEN_S more (slow_tokens/), so that the
stream lasts long enough, on any machine, to watch it grow."""

import sys
import time
from pathlib import Path

import pytest
from api_gateway_stream import ApiGatewayStream
from lambda_task import SETTINGS, StreamingLambda, make_task_root, scheduled_event
from playwright.sync_api import expect
from test_streaming import TOKENS_SHOWN, generate, open_advanced

ROOT = Path(__file__).resolve().parents[2]
SLOW_TOKEN_S = 0.02

# Records (time, length of the continuation) each time it changes before the last event.
WATCH_GROWTH = """() => {
  window.growth = [];
  const continuation = document.getElementById("result-continuation");
  const details = document.getElementById("details");
  new MutationObserver(() => {
    if (details.hidden) window.growth.push([performance.now(), continuation.textContent.length]);
  }).observe(continuation, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def lambda_function(tiny_model_dir, tmp_path_factory):
    task_root = make_task_root(tmp_path_factory.mktemp("var-task"))
    env = {
        "PATH": "/usr/bin:/bin", "HOME": "/tmp", "HF_HUB_OFFLINE": "1",
        "INSTANTIATE_LAMBDA_HANDLER_ON_IMPORT": "1",
        "AWS_DEFAULT_REGION": SETTINGS["dev"]["aws_region"],
        "AWS_LAMBDA_FUNCTION_NAME": "kogpt2-dev",
        **SETTINGS["dev"]["aws_environment_variables"],
        "KOGPT2_MODEL": str(tiny_model_dir), "KOGPT2_ENGINE": "transformers",
        "PYTHONPATH": f"{Path(__file__).parent / 'slow_tokens'}:{task_root}",
        "SLOW_TOKEN_S": str(SLOW_TOKEN_S),
    }
    with StreamingLambda(task_root, env, tmp_path_factory.mktemp("lambda"),
                         python=sys.executable) as function:
        assert function.answer(scheduled_event("kogpt2-dev-app.warm_up")).json()["loaded"]
        yield function


@pytest.fixture(scope="module")
def gateway(lambda_function):
    with ApiGatewayStream(lambda_function.api) as gateway:
        yield gateway


def test_the_page_streams_through_the_lambda_runtime(page, gateway, browser_errors,
                                                     screenshots):
    page.goto(f"{gateway.url}/dev/")
    page.evaluate(WATCH_GROWTH)
    open_advanced(page, max_new_tokens=150, repetition_penalty=1)
    generate(page)
    expect(page.locator("#stop-button")).to_be_visible()
    page.wait_for_function(TOKENS_SHOWN, arg=40)
    page.screenshot(path=screenshots / "desktop-lambda-streaming.png")
    expect(page.locator("#details")).to_be_visible(timeout=60_000)
    assert page.locator("#detail-tokens").text_content() == "150"
    final = page.locator("#result-continuation").text_content()
    growth = [(ms, n) for ms, n in page.evaluate("window.growth") if 0 < n < len(final)]
    # The text grew in many steps over the stream's life, not all at once at its end.
    assert len({n for _, n in growth}) >= 50, growth
    assert growth[-1][0] - growth[0][0] >= 1000 * 100 * SLOW_TOKEN_S, growth
    assert browser_errors == []


def test_stop_ends_the_reading_and_the_connection_at_once(page, gateway, lambda_function):
    page.goto(f"{gateway.url}/dev/")
    open_advanced(page, max_new_tokens=250, repetition_penalty=1)
    generate(page)
    page.wait_for_function(TOKENS_SHOWN, arg=10)
    answer = list(lambda_function.api.answers.values())[-1]
    stopped_at = time.monotonic()
    page.click("#stop-button")
    expect(page.locator("#time-note")).to_have_text("정지했습니다. 여기까지 쓴 글입니다.")
    shown = page.locator("#result-continuation").text_content()
    # The browser closed its connection: API Gateway's next write to it failed, while the
    # function was still writing (it goes on to its end, as Lambda's does: the time budget
    # and the token cap bound what that costs).
    deadline = time.monotonic() + 5
    while not gateway.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.disconnects and gateway.disconnects[0] - stopped_at < 2
    assert not answer.done.is_set() or answer.chunks[-1][0] > gateway.disconnects[0]
    assert answer.done.wait(60)
    assert len(answer.body) > len(shown.encode())
    assert page.locator("#result-continuation").text_content() == shown  # nothing more shown
