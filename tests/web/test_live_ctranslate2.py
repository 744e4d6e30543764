import json
import urllib.request


def test_gunicorn_serves_a_converted_model_with_ctranslate2(live_server, tiny_ct2_dir):
    with live_server(model=str(tiny_ct2_dir), engine="auto") as base:
        request = urllib.request.Request(
            f"{base}/generate",
            data=json.dumps({"text": "근육이 커지기 위해서는", "max_new_tokens": 8}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        with urllib.request.urlopen(f"{base}/info", timeout=5) as response:
            info = json.loads(response.read())
    assert answer["details"]["engine"] == "ctranslate2"
    assert answer["details"]["generated_tokens"] == 8
    assert (info["engine"], info["compute_type"]) == ("ctranslate2", "int8_float32")
