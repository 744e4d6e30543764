"""A real headless Chromium (Debian's package, driven by Playwright) against gunicorn."""

import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Flags for a container without a GPU or a user namespace sandbox, and no network beyond
# loopback: see /work/shared/notes/browser-tests.md.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium fonts-nanum (.ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    # The first generation loads the model on 2 shared cores: give it time.
    expect.set_options(timeout=30_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server(live_server):
    """The app at the root of 127.0.0.1:port, with a small server cap on new tokens."""
    with live_server(max_new_tokens=64) as base:
        yield base


@pytest.fixture(scope="session")
def streaming_server_log(tmp_path_factory):
    return tmp_path_factory.mktemp("streaming-server") / "stderr.log"


@pytest.fixture(scope="session")
def streaming_server(live_server, streaming_server_log):
    """Room for long generations (a few seconds on the tiny stand-in), its log in a file."""
    with live_server(max_new_tokens=1000, log=streaming_server_log) as base:
        urllib.request.urlopen(urllib.request.Request(  # load the model before any test
            f"{base}/generate", data=b'{"text": "warm", "max_new_tokens": 1}',
            headers={"Content-Type": "application/json"}), timeout=120).close()
        yield base


@pytest.fixture(scope="session")
def staged_server(live_server):
    """The app mounted under /dev, as API Gateway's stage prefix mounts it."""
    with live_server(script_name="/dev") as base:
        yield base


@pytest.fixture(scope="session")
def hurried_server(live_server):
    """The app with a time budget too short for a long generation: each token takes 10 ms
    more (slow_tokens/sitecustomize.py), so 250 take 2.5 s on any machine."""
    env = {"PYTHONPATH": f"{Path(__file__).parent / 'slow_tokens'}:{ROOT}",
           "SLOW_TOKEN_S": "0.01"}
    with live_server(time_budget_s=0.05, env=env) as base:
        yield base


@pytest.fixture
def browser_errors():
    """Console errors and uncaught exceptions of the page: CSP violations land here."""
    return []


@pytest.fixture
def new_page(browser, browser_errors):
    """Factory: a page in a fresh context (a desktop viewport unless told otherwise)."""
    contexts = []

    def open_page(*, javascript=True, viewport=DESKTOP):
        context = browser.new_context(
            viewport=viewport, locale="ko-KR", java_script_enabled=javascript,
            permissions=["clipboard-read", "clipboard-write"] if javascript else [],
        )
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda msg: msg.type == "error" and browser_errors.append(msg.text))
        page.on("pageerror", lambda exc: browser_errors.append(str(exc)))
        page.set_default_timeout(30_000)
        return page

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page):
    return new_page()


@pytest.fixture
def page_without_js(new_page):
    return new_page(javascript=False)


@pytest.fixture(scope="session")
def screenshots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
