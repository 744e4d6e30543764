import pytest
from live_server import post_json
from openai_checks import MODEL


@pytest.fixture(scope="module")
def warm_server(live_server):
    """gunicorn on the tiny stand-in with its model loaded: the clients' first requests aren't
    the one that loads it (which counts in that request's time budget)."""
    with live_server() as base:
        post_json(f"{base}/v1/completions", {"model": MODEL, "prompt": "가", "max_tokens": 1},
                  timeout=120)
        yield base
