from live_server import get_json, post_json

TITLE = "근육이 커지기 위해서는"


def test_gunicorn_serves_the_app(live_server):
    with live_server(max_new_tokens=64) as base:
        status, body = post_json(f"{base}/generate", {"text": TITLE, "max_new_tokens": 8})
        assert status == 200 and body["generated_text"].startswith(TITLE)
        assert get_json(f"{base}/info")["limits"]["max_new_tokens"] == 64
