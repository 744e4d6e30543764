import json
import urllib.request

TITLE = "근육이 커지기 위해서는"


def post_json(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.load(response)


def test_gunicorn_serves_the_app(live_server):
    with live_server(max_new_tokens=64) as base:
        status, body = post_json(f"{base}/generate", {"text": TITLE, "max_new_tokens": 8})
        assert status == 200 and body["generated_text"].startswith(TITLE)
        with urllib.request.urlopen(f"{base}/info", timeout=10) as response:
            assert json.load(response)["limits"]["max_new_tokens"] == 64
