from live_server import get_json, post_json


def test_gunicorn_serves_a_converted_model_with_ctranslate2(live_server, tiny_ct2_dir):
    with live_server(model=str(tiny_ct2_dir), engine="auto") as base:
        body = {"text": "근육이 커지기 위해서는", "max_new_tokens": 8}
        _, answer = post_json(f"{base}/generate", body, timeout=30)
        info = get_json(f"{base}/info", timeout=5)
    assert answer["details"]["engine"] == "ctranslate2"
    assert answer["details"]["generated_tokens"] == 8
    assert (info["engine"], info["compute_type"]) == ("ctranslate2", "int8_float32")
