import json

import pytest
from live_server import get_json, post_json

PREPARED = [("openvino", "tiny_ov_dir", "int8 weights, int8 compute"),
            ("ctranslate2", "tiny_ct2_dir", "int8_float32")]


@pytest.mark.parametrize("engine, model_fixture, compute_type", PREPARED)
def test_gunicorn_serves_a_prepared_model_with_its_own_engine(live_server, request, engine,
                                                                model_fixture, compute_type):
    model_dir = request.getfixturevalue(model_fixture)
    with live_server(model=str(model_dir), engine="auto") as base:
        body = {"text": "근육이 커지기 위해서는", "max_new_tokens": 8}
        _, answer = post_json(f"{base}/generate", body, timeout=30)
        info = get_json(f"{base}/info", timeout=5)
    assert answer["details"]["engine"] == engine
    assert answer["details"]["generated_tokens"] == 8
    assert (info["engine"], info["compute_type"]) == (engine, compute_type)
    assert str(model_dir) not in json.dumps([answer, info])


def test_info_names_the_model_by_the_hub_id_and_commit_it_was_made_from(
    make_app, tiny_ov_dir, tmp_path
):
    import shutil

    from kogpt2.model.vocab import read_metadata, write_metadata

    model = shutil.copytree(tiny_ov_dir, tmp_path / "model")
    metadata = read_metadata(model)
    write_metadata(model, **{**metadata, "hub_id": "someone/kogpt2-fork", "revision": "c0ffee"})
    client = make_app(model=str(model), engine="auto").test_client()
    before = client.get("/info").get_json()  # from the directory's record, before any load
    answer = client.post("/generate", json={"text": "근육이", "max_new_tokens": 2}).get_json()
    after = client.get("/info").get_json()
    assert (before["model"], before["revision"]) == ("someone/kogpt2-fork", "c0ffee")
    assert (after["model"], after["revision"]) == ("someone/kogpt2-fork", "c0ffee")
    assert answer["details"]["model"] == "someone/kogpt2-fork"
    renamed = make_app(model=str(model), engine="auto", model_name="my-kogpt2").test_client()
    assert renamed.get("/info").get_json()["model"] == "my-kogpt2"
