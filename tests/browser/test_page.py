"""The page in a real browser: generate, examples, errors, no-JS, XSS, the stage prefix."""

import re

from playwright.sync_api import expect

TITLE = "근육이 커지기 위해서는"
HANGUL = re.compile("[가-힣]")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}
MARKUP_TITLE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'

# Remembers whether the page was ever busy (button disabled, elapsed time shown): with the tiny
# stand-in the busy state can be over before a test could look at it.
WATCH_BUSY = """() => {
  window.busySeen = [];
  const button = document.getElementById("generate-button");
  const progress = document.getElementById("progress");
  new MutationObserver(() => {
    if (button.disabled && !progress.hidden) window.busySeen.push(progress.textContent);
  }).observe(document.body, {attributes: true, subtree: true, characterData: true,
                             childList: true});
}"""


def generate(page, title):
    page.fill("#text", title)
    page.click("#generate-button")


def test_generate_shows_the_title_and_its_continuation(page, server, browser_errors,
                                                       screenshots):
    response = page.goto(f"{server}/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.evaluate(WATCH_BUSY)
    generate(page, TITLE)
    expect(page.locator("#result")).to_be_visible()
    expect(page.locator("#generate-button")).to_be_enabled()
    expect(page.locator("#progress")).to_be_hidden()
    assert page.locator("#result-title").text_content() == TITLE
    continuation = page.locator("#result-continuation").text_content()
    assert HANGUL.search(continuation)
    busy = page.evaluate("window.busySeen")
    assert busy and "글을 쓰는 중" in busy[0] and "초" in busy[0]

    assert int(page.locator("#detail-tokens").text_content()) > 0
    assert page.locator("#detail-finish").text_content() in ("정한 길이에 도달", "글이 스스로 끝남")
    expect(page.locator("#time-note")).to_be_hidden()

    page.click("#copy-button")
    expect(page.locator("#copy-button")).to_have_text("복사됨")
    assert page.evaluate("navigator.clipboard.readText()") == TITLE + continuation

    page.screenshot(path=screenshots / "desktop-result.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=screenshots / "phone-result.png", full_page=True)
    page.locator("details.advanced summary").click()
    page.screenshot(path=screenshots / "phone-advanced.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=screenshots / "desktop-advanced.png", full_page=True)
    page.set_viewport_size(PHONE)
    # Nothing sticks out sideways on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert browser_errors == []


def test_advanced_settings_take_their_bounds_from_info(page, server):
    page.goto(f"{server}/")
    page.locator("details.advanced summary").click()
    expect(page.locator("#max_new_tokens")).to_have_attribute("max", "64")  # server cap
    expect(page.locator("#temperature")).to_have_attribute("min", "0.05")
    expect(page.locator("#top_p")).to_have_attribute("max", "1")
    page.fill("#max_new_tokens", "5")
    page.check("#do_sample")
    page.fill("#seed", "42")
    generate(page, TITLE)
    expect(page.locator("#detail-seed")).to_have_text("42")
    assert page.locator("#detail-tokens").text_content() == "5"


def test_time_budget_cut_is_noted(page, hurried_server, screenshots):
    page.goto(f"{hurried_server}/")
    page.locator("details.advanced summary").click()
    page.fill("#max_new_tokens", "250")
    page.fill("#repetition_penalty", "1")
    generate(page, TITLE)
    expect(page.locator("#detail-finish")).to_have_text("시간 한도에 걸림")
    expect(page.locator("#time-note")).to_be_visible()
    expect(page.locator("#time-note")).to_contain_text("0.05초")
    assert int(page.locator("#detail-tokens").text_content()) < 250
    page.set_viewport_size(PHONE)
    page.locator("#result").screenshot(path=screenshots / "phone-time-note.png")


def test_example_fills_the_title(page, server):
    page.goto(f"{server}/")
    example = page.locator("a.example").nth(1)
    title = example.text_content()
    example.click()
    expect(page.locator("#text")).to_have_value(title)
    assert page.url == f"{server}/"  # filled in place, no navigation
    page.click("#generate-button")
    expect(page.locator("#result-title")).to_have_text(title)


def test_invalid_input_shows_a_readable_error(page, server, browser_errors, screenshots):
    page.goto(f"{server}/")
    generate(page, "   ")  # passes the browser's `required`, not the server's validation
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(page.locator("#error-headline")).to_have_text("입력을 확인해 주세요.")
    message = page.locator("#error-message").text_content()
    assert "text" in message and "{" not in message
    expect(page.locator("#result")).to_be_hidden()
    expect(page.locator("#generate-button")).to_be_enabled()
    page.screenshot(path=screenshots / "desktop-error.png")

    generate(page, TITLE)  # a good request clears the error
    expect(page.locator("#result")).to_be_visible()
    expect(error).to_be_hidden()
    # The browser logs the 422 itself; nothing else went wrong.
    assert [e for e in browser_errors if "status of 422" not in e] == []


def test_form_works_without_javascript(page_without_js, server, screenshots):
    page = page_without_js
    page.goto(f"{server}/")
    page.locator("a.example").first.click()  # a link to ?text=... without JavaScript
    expect(page.locator("#text")).not_to_have_value("")
    with page.expect_navigation() as navigation:
        generate(page, TITLE)
    assert navigation.value.status == 200
    expect(page.locator("#result")).to_be_visible()
    assert page.locator("#result-title").text_content() == TITLE
    assert HANGUL.search(page.locator("#result-continuation").text_content())
    expect(page.locator("#copy-button")).to_be_hidden()  # it needs the script
    page.set_viewport_size(PHONE)
    page.screenshot(path=screenshots / "phone-no-js-result.png", full_page=True)

    with page.expect_navigation() as navigation:
        generate(page, "   ")
    assert navigation.value.status == 422
    expect(page.locator("#error-headline")).to_have_text("입력을 확인해 주세요.")
    expect(page.locator("#result")).to_be_hidden()


def test_markup_in_the_title_stays_text(page, server, browser_errors):
    page.on("dialog", lambda dialog: browser_errors.append(f"dialog: {dialog.message}"))
    page.goto(f"{server}/")
    generate(page, MARKUP_TITLE)
    expect(page.locator("#result")).to_be_visible()
    assert page.locator("#result-title").text_content() == MARKUP_TITLE
    assert page.locator("#result img, #result script").count() == 0
    assert page.evaluate("window.pwned") is None
    assert browser_errors == []


def test_markup_in_the_title_stays_text_without_javascript(page_without_js, server):
    page = page_without_js
    page.goto(f"{server}/")
    with page.expect_navigation():
        generate(page, MARKUP_TITLE)
    assert page.locator("#result-title").text_content() == MARKUP_TITLE
    assert page.locator("#result img, #result script").count() == 0


def test_page_works_under_a_stage_prefix(page, staged_server, browser_errors):
    requests = []
    page.on("requestfinished", lambda request: requests.append(request))
    page.goto(f"{staged_server}/")
    page.wait_for_load_state("networkidle")
    # The stylesheet applied: the button has the page's colour, not the browser's grey.
    color = page.locator("#generate-button").evaluate("b => getComputedStyle(b).backgroundColor")
    assert color == "rgb(52, 81, 178)"
    generate(page, TITLE)
    expect(page.locator("#result-title")).to_have_text(TITLE)
    expect(page.locator("#details")).to_be_visible()  # the stream's last event came
    page.wait_for_load_state("networkidle")
    urls = {request.url.split("?")[0] for request in requests}
    assert {f"{staged_server}/static/style.css", f"{staged_server}/static/app.js",
            f"{staged_server}/info", f"{staged_server}/generate"} <= urls
    for request in requests:
        assert request.url.startswith(f"{staged_server}/"), request.url
        assert request.response().status < 400, request.url
    assert browser_errors == []


def test_the_footer_says_whose_model_it_is_and_on_what_terms(page, server, screenshots):
    page.goto(f"{server}/")
    licence = page.locator("footer .licence")
    expect(licence).to_be_visible()
    expect(licence).to_have_text(  # whitespace as the browser shows it
        "KoGPT2 (skt/kogpt2-base-v2) © SK Telecom · CC BY-NC-SA 4.0 · "
        "비영리 목적으로만 쓸 수 있습니다")
    owner, terms = licence.locator("a").all()
    assert owner.get_attribute("href") == "https://huggingface.co/skt/kogpt2-base-v2"
    assert terms.get_attribute("href") == "https://creativecommons.org/licenses/by-nc-sa/4.0/"
    assert terms.get_attribute("rel") == "license"
    page.set_viewport_size(PHONE)
    licence.scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "phone-licence.png")
