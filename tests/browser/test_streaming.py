"""The page streams: text as it comes, 정지 stops the server, a buffered stream still renders,
and a model still being prepared is waited out with a progress bar."""

import json
import shutil
from pathlib import Path

import pytest
from live_server import access_line
from playwright.sync_api import expect

from kogpt2.model import engines

TITLE = "근육이 커지기 위해서는"
ROOT = Path(__file__).resolve().parents[2]
DEFAULT = next(kind for kind in engines.PREFERRED if kind.installed())  # what auto prepares for
PHONE = {"width": 375, "height": 812}
# True once the page says it has received more than `n` tokens of the stream.
TOKENS_SHOWN = "n => Number(document.getElementById('stream-tokens').textContent) > n"

# Records the continuation's length each time it changes before the stream's last event
# (the details stay hidden until then).
WATCH_PARTIALS = """() => {
  window.partials = [];
  const continuation = document.getElementById("result-continuation");
  const details = document.getElementById("details");
  new MutationObserver(() => {
    if (details.hidden) window.partials.push(continuation.textContent.length);
  }).observe(continuation, {childList: true, characterData: true, subtree: true});
}"""


def open_advanced(page, **values):
    page.locator("details.advanced summary").click()
    for name, value in values.items():
        page.fill(f"#{name}", str(value))


def generate(page, title=TITLE):
    page.fill("#text", title)
    page.click("#generate-button")


def test_text_appears_in_steps_before_the_end(page, streaming_server, browser_errors,
                                              screenshots):
    page.goto(f"{streaming_server}/")
    page.evaluate(WATCH_PARTIALS)
    open_advanced(page, max_new_tokens=600, repetition_penalty=1)
    generate(page)
    expect(page.locator("#stop-button")).to_be_visible()
    expect(page.locator("#stream-stats")).to_be_visible()  # tokens and tokens/s, mid-stream
    page.wait_for_function(TOKENS_SHOWN, arg=40)
    page.screenshot(path=screenshots / "desktop-streaming.png")
    expect(page.locator("#details")).to_be_visible(timeout=60_000)
    expect(page.locator("#stop-button")).to_be_hidden()
    final = page.locator("#result-continuation").text_content()
    partials = page.evaluate("window.partials")
    assert len({n for n in partials if 0 < n < len(final)}) >= 2, partials
    assert page.locator("#detail-tokens").text_content() == "600"
    assert page.locator("#detail-finish").text_content() == "정한 길이에 도달"
    page.click("#copy-button")
    expect(page.locator("#copy-button")).to_have_text("복사됨")
    assert page.evaluate("navigator.clipboard.readText()") == TITLE + final
    assert browser_errors == []


def test_stop_ends_the_stream_and_the_generation(page, streaming_server, streaming_server_log,
                                                 screenshots):
    page.goto(f"{streaming_server}/")
    requests = []
    page.on("request", lambda request: requests.append(request))
    open_advanced(page, max_new_tokens=1000, repetition_penalty=1)
    generate(page)
    page.wait_for_function(TOKENS_SHOWN, arg=10)
    page.click("#stop-button")
    expect(page.locator("#generate-button")).to_be_enabled()
    expect(page.locator("#stop-button")).to_be_hidden()
    expect(page.locator("#time-note")).to_have_text("정지했습니다. 여기까지 쓴 글입니다.")
    expect(page.locator("#details")).to_be_hidden()  # no answer came: no details to show
    stopped_at = page.locator("#result-continuation").text_content()
    assert stopped_at
    expect(page.locator("#copy-button")).to_be_visible()
    page.set_viewport_size(PHONE)
    page.locator("#result").screenshot(path=screenshots / "phone-stopped.png")

    (generate_request,) = [r for r in requests if r.url.endswith("/generate")]
    request_id = generate_request.response().headers["x-request-id"]
    line = access_line(streaming_server_log, request_id)
    assert line["cancelled"] is True and line["finish_reason"] == "cancelled"
    assert line["tokens"] < 1000
    assert page.locator("#result-continuation").text_content() == stopped_at  # nothing more
    info = page.request.get(f"{streaming_server}/info").json()
    assert info["concurrency"]["running"] == 0

    generate(page)  # and the page works again
    expect(page.locator("#details")).to_be_visible(timeout=60_000)
    expect(page.locator("#time-note")).to_be_hidden()


def test_a_buffered_stream_renders_the_whole_text(page, streaming_server, browser_errors):
    """As behind API Gateway REST through Zappa: the same event stream, all of it at the end.
    A route in the browser stands for the buffering proxy: it fetches the real server's
    stream to its end, then hands the page the whole body at once."""
    buffered = []

    def buffer_whole(route):
        response = route.fetch()
        buffered.append((response.headers["content-type"], response.body()))
        route.fulfill(response=response)

    page.route("**/generate", buffer_whole)
    page.goto(f"{streaming_server}/")
    open_advanced(page, max_new_tokens=80)
    generate(page)
    expect(page.locator("#details")).to_be_visible()
    ((content_type, body),) = buffered
    assert content_type.startswith("text/event-stream")
    last = json.loads(body.decode().strip().split("\n\n")[-1].removeprefix("data: "))
    assert page.locator("#result-text").text_content() == last["generated_text"]
    assert page.locator("#detail-tokens").text_content() == "80"
    expect(page.locator("#generate-button")).to_be_enabled()
    expect(page.locator("#error")).to_be_hidden()
    assert browser_errors == []


def test_markup_in_a_streamed_title_and_text_stays_text(page, streaming_server, browser_errors):
    page.on("dialog", lambda dialog: browser_errors.append(f"dialog: {dialog.message}"))
    markup = '<img src=x onerror="window.pwned = 1"><script>window.pwned = 2</script>'
    responses = []
    page.on("response", lambda response: responses.append(response))
    page.goto(f"{streaming_server}/")
    page.evaluate(WATCH_PARTIALS)
    open_advanced(page, max_new_tokens=300, repetition_penalty=1)
    generate(page, markup)
    expect(page.locator("#details")).to_be_visible(timeout=60_000)
    (answer,) = [r for r in responses if r.url.endswith("/generate")]
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert page.locator("#result-title").text_content() == markup
    assert page.locator("#result img, #result script").count() == 0
    assert page.evaluate("window.pwned") is None
    assert browser_errors == []


@pytest.fixture
def preparing_server(live_server, tiny_model_dir, tmp_path):
    """A server whose model (a transformers directory, engine auto) still has to be prepared
    for the default engine into an empty cache, slowed to take ~8 s
    (slow_prepare/sitecustomize.py)."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    env = {
        "PYTHONPATH": f"{Path(__file__).parent / 'slow_prepare'}:{ROOT}",
        "SLOW_PREPARE_S": "8",
    }
    with live_server(env=env, model=str(model), engine="auto", cache_dir=str(tmp_path / "cache"),
                     max_new_tokens=64, wait_for_model=False) as base:
        yield base


# Records each stage and percent the loading box shows.
WATCH_LOADING = """() => {
  window.loadingSeen = [];
  const box = document.getElementById("loading");
  new MutationObserver(() => {
    if (!box.hidden) window.loadingSeen.push([
      document.getElementById("loading-stage").textContent,
      document.getElementById("loading-bar").value]);
  }).observe(box, {attributes: true, childList: true, characterData: true, subtree: true});
}"""


def test_a_model_being_prepared_shows_progress_then_generates_by_itself(
        page, preparing_server, browser_errors, screenshots):
    statuses = []
    page.on("response", lambda r: r.url.endswith("/generate") and statuses.append(r.status))
    page.goto(f"{preparing_server}/")
    page.evaluate(WATCH_LOADING)
    generate(page)
    loading = page.locator("#loading")
    expect(loading).to_be_visible()
    # The step in Korean (/info's progress.step), not the API's English stage.
    expect(page.locator("#loading-stage")).to_have_text("빠른 엔진에 맞게 모델을 변환하는 중")
    expect(page.locator("#progress")).to_be_hidden()  # nothing is being written yet
    page.wait_for_function("() => document.getElementById('loading-bar').value >= 20")
    page.screenshot(path=screenshots / "desktop-model-loading.png")
    page.set_viewport_size(PHONE)
    page.screenshot(path=screenshots / "phone-model-loading.png")
    expect(page.locator("#details")).to_be_visible(timeout=90_000)
    expect(loading).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    assert page.locator("#result-title").text_content() == TITLE
    assert statuses[0] == 503 and statuses[-1] == 200, statuses
    seen = page.evaluate("window.loadingSeen")
    percents = [percent for _, percent in seen]
    assert len(set(percents)) >= 2 and max(percents) > 0, percents  # the bar moved
    assert not [stage for stage, _ in seen if "converting" in stage], seen
    info = page.request.get(f"{preparing_server}/info").json()
    assert (info["state"], info["engine"]) == ("ready", DEFAULT.name)
    # The browser logs each 503 itself; nothing else went wrong.
    assert [e for e in browser_errors if "status of 503" not in e] == []
