"""The page at / through Flask's test client: the no-JS form post, bounds, escaping, CSP."""

import re
from html.parser import HTMLParser

import pytest

TITLE = "근육이 커지기 위해서는"
HANGUL = re.compile("[가-힣]")
FORM = {"text": TITLE, "max_new_tokens": "12", "repetition_penalty": "2.0",
        "temperature": "1.0", "top_p": "1.0", "seed": ""}


class Page(HTMLParser):
    """The parts of a rendered page the tests look at: elements by id, tags, attributes."""

    def __init__(self, html):
        super().__init__()
        self.tags, self.by_id, self._open = [], {}, []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        element = {"tag": tag, "attrs": attrs, "text": ""}
        self.tags.append(element)
        if "id" in attrs:
            self.by_id[attrs["id"]] = element
        self._open.append(element)

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"] += data

    def text(self, element_id):
        return self.by_id[element_id]["text"]

    def shown(self, element_id):
        return "hidden" not in self.by_id[element_id]["attrs"]


def page_of(response):
    return Page(response.get_data(as_text=True))


def test_form_page_is_korean_and_uses_only_its_own_files(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "unsafe-inline" not in csp
    page = page_of(response)
    assert page.tags[0]["tag"] == "html" and page.tags[0]["attrs"]["lang"] == "ko"
    for element in page.tags:
        assert "style" not in element["attrs"], element
        assert not any(name.startswith("on") for name in element["attrs"]), element
        if element["tag"] == "script":
            assert "src" in element["attrs"] or element["attrs"]["type"] == "application/json"
    assert not page.shown("result") and not page.shown("error")
    assert len([e for e in page.tags if "example" in e["attrs"].get("class", "").split()]) >= 3


def number(info: dict, name: str) -> dict:
    """A parameter's numeric schema in /info (an optional one is `anyOf` it and null)."""
    schema = info["parameters"][name]
    return next(s for s in schema.get("anyOf", [schema]) if s.get("type") != "null")


def test_advanced_bounds_are_the_ones_info_reports(make_app):
    client = make_app(max_new_tokens=64).test_client()
    info = client.get("/info").get_json()
    page = page_of(client.get("/"))
    inputs = {e["attrs"]["name"]: e["attrs"] for e in page.tags if e["tag"] == "input"}
    assert inputs["max_new_tokens"]["max"] == "64" == str(info["limits"]["max_new_tokens"])
    assert inputs["repetition_penalty"]["min"] == str(number(info, "repetition_penalty")
                                                      ["minimum"])
    assert inputs["repetition_penalty"]["value"] == str(
        info["generation_defaults"]["repetition_penalty"])
    assert inputs["temperature"]["max"] == str(number(info, "temperature")["maximum"])
    assert float(inputs["top_p"]["min"]) > number(info, "top_p")["exclusiveMinimum"]
    assert inputs["seed"]["max"] == str(number(info, "seed")["maximum"])
    assert inputs["text"]["maxlength"] == str(info["limits"]["max_prompt_chars"])
    assert inputs["do_sample"]["type"] == "checkbox"


def test_form_post_renders_the_result_page(client):
    response = client.post("/", data=FORM)
    assert response.status_code == 200
    assert "Content-Security-Policy" in response.headers
    page = page_of(response)
    assert page.shown("result") and not page.shown("error")
    assert page.text("result-title") == TITLE
    continuation = page.text("result-continuation")
    assert HANGUL.search(continuation)
    api_text = client.post("/generate", json={"text": TITLE, "max_new_tokens": 12}).get_json()
    assert TITLE + continuation == api_text["generated_text"]  # greedy: the same text
    assert page.text("detail-tokens") == "12"
    assert page.text("detail-finish") == "정한 길이에 도달"
    assert not page.shown("detail-seed-row") and not page.shown("time-note")
    # The form keeps what was typed.
    inputs = {e["attrs"]["name"]: e["attrs"] for e in page.tags if e["tag"] == "input"}
    assert inputs["text"]["value"] == TITLE and inputs["max_new_tokens"]["value"] == "12"


def test_sampling_from_the_form_reports_its_seed(client):
    form = {**FORM, "do_sample": "on", "seed": "7", "temperature": "0.8", "top_p": "0.9"}
    first, second = page_of(client.post("/", data=form)), page_of(client.post("/", data=form))
    assert first.text("detail-seed") == "7" and first.shown("detail-seed-row")
    assert first.text("result-continuation") == second.text("result-continuation")


@pytest.mark.parametrize("form, mentions", [
    ({"text": "   "}, "text"),
    ({"text": TITLE, "temperature": "9"}, "temperature"),
    ({"text": TITLE, "top_p": "0"}, "top_p"),
    ({"text": TITLE, "max_new_tokens": "abc"}, "max_new_tokens"),
    ({"text": TITLE, "max_new_tokens": "1.5"}, "max_new_tokens"),
    ({"text": TITLE, "repetition_penalty": "nan"}, "repetition_penalty"),
    ({"text": TITLE, "max_new_tokens": "300"}, "at most 256"),  # the server's cap
    ({}, "text"),
])
def test_invalid_form_shows_the_apis_message_with_422(client, form, mentions):
    response = client.post("/", data=form)
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    page = page_of(response)
    assert page.shown("error") and not page.shown("result")
    assert page.text("error-headline") == "입력을 확인해 주세요."
    message = page.text("error-message")
    assert mentions in message and "{" not in message and "Traceback" not in message


def test_page_and_api_word_the_same_error_alike(client):
    api_error = client.post("/generate", json={"text": " ", "temperature": 9.0}).get_json()
    page = page_of(client.post("/", data={"text": " ", "temperature": "9"}))
    assert page.text("error-message") == api_error["error"]


def test_time_budget_cut_is_noted_on_the_page(make_app, slow_tokens):
    client = make_app(time_budget_s=0.05).test_client()
    client.post("/generate", json={"text": TITLE, "max_new_tokens": 1})  # load first
    page = page_of(client.post("/", data={**FORM, "max_new_tokens": "250",
                                          "repetition_penalty": "1.0"}))
    assert page.text("detail-finish") == "시간 한도에 걸림"
    assert page.shown("time-note") and "0.05초" in page.text("time-note")


def test_unavailable_model_is_a_503_page_with_retry_after(make_app, tmp_path):
    client = make_app(model=str(tmp_path / "missing"), load_retry_s=3).test_client()
    response = client.post("/", data=FORM)
    assert response.status_code == 503 and response.headers["Retry-After"] == "3"
    page = page_of(response)
    assert page.text("error-headline").startswith("모델을 불러오지 못했습니다")
    assert "X-Request-ID" in page.text("error-message")
    assert str(tmp_path) not in response.get_data(as_text=True)


def test_markup_in_the_title_is_escaped(client):
    title = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    response = client.post("/", data={**FORM, "text": title})
    html = response.get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html
    page = page_of(response)
    assert page.text("result-title") == title
    assert not [e for e in page.tags if e["tag"] == "img"]
    prefilled = page_of(client.get("/", query_string={"text": title}))
    value = next(e for e in prefilled.tags if e["attrs"].get("name") == "text")["attrs"]["value"]
    assert value == title


def test_example_links_prefill_the_title_without_javascript(client):
    page = page_of(client.get("/"))
    link = next(e for e in page.tags if "example" in e["attrs"].get("class", "").split())
    prefilled = page_of(client.get(link["attrs"]["href"]))
    value = next(e for e in prefilled.tags if e["attrs"].get("name") == "text")["attrs"]["value"]
    assert value == link["attrs"]["data-title"] and HANGUL.search(value)


def test_every_url_follows_the_stage_prefix(client):
    response = client.get("/", environ_overrides={"SCRIPT_NAME": "/dev"})
    page = page_of(response)
    urls = [value for e in page.tags for name, value in e["attrs"].items()
            if name in ("href", "src", "action", "data-generate-url", "data-info-url")]
    own = [url for url in urls if not url.startswith("https://")]
    assert len(own) >= 8
    for url in own:
        assert url.startswith("/dev/"), url
    # Only the licence's links leave the site (and the page loads nothing from them).
    assert sorted(set(urls) - set(own)) == [
        "https://creativecommons.org/licenses/by-nc-sa/4.0/",
        "https://huggingface.co/skt/kogpt2-base-v2"]


def test_oversized_form_post_is_a_413_page(make_app):
    client = make_app(max_body_bytes=2048).test_client()
    response = client.post("/", data={"text": "가" * 3000})
    assert response.status_code == 413 and response.mimetype == "text/html"
    page = page_of(response)
    assert page.text("error-headline") == "입력이 너무 큽니다."


def test_an_unexpected_error_is_a_500_page_without_details(app, client, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("secret internals /srv/app.py line 12")

    monkeypatch.setattr(app.extensions["kogpt2"], "run", explode)
    response = client.post("/", data=FORM)
    assert response.status_code == 500 and response.mimetype == "text/html"
    assert "secret" not in response.get_data(as_text=True)
    assert page_of(response).text("error-headline") == "서버에 문제가 생겼습니다."


def test_the_footer_states_kogpt2s_licence(client):
    page = page_of(client.get("/"))
    [licence] = [t for t in page.tags if t["attrs"].get("class") == "licence"]
    assert " ".join(licence["text"].split()) == (
        "KoGPT2 (skt/kogpt2-base-v2) © SK Telecom · CC BY-NC-SA 4.0 · "
        "비영리 목적으로만 쓸 수 있습니다")


def test_weights_under_another_licence_still_name_kogpt2s_for_the_tokenizer(make_app):
    weights = {"work": "Someone's KoGPT2-shaped model", "owner": "Someone",
               "name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0",
               "source_url": "https://example.org/model", "non_commercial": False}
    page = page_of(make_app(model_licence=weights).test_client().get("/"))
    lines = [" ".join(t["text"].split()) for t in page.tags
             if t["attrs"].get("class") == "licence"]
    assert lines == [
        "Someone's KoGPT2-shaped model © Someone · Apache-2.0",
        "KoGPT2's tokenizer (skt/kogpt2-base-v2) © SK Telecom · CC BY-NC-SA 4.0 · "
        "비영리 목적으로만 쓸 수 있습니다",
    ]
