import json
import shutil
import time

import pytest
from convert import main

TITLE = "근육이 커지기 위해서는"


def test_converted_directory_serves_end_to_end(tiny_model_dir, tmp_path, make_app, capsys):
    out = tmp_path / "ct2"
    assert main([str(tiny_model_dir), str(out), "--engine", "ctranslate2",
                 "--quantization", "int8"]) == 0
    said = capsys.readouterr()
    assert "wrote the ctranslate2 int8 model" in said.out
    assert "convert: converting to CTranslate2 int8" in said.err  # progress, as it goes
    assert {"model.bin", "config.json", "tokenizer.json", "tokenizer_config.json",
            "kogpt2-model.json"} <= {path.name for path in out.iterdir()}
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_config["bos_token"] == tokenizer_config["eos_token"] == "</s>"
    assert tokenizer_config["model_max_length"] == 1024
    assert out.stat().st_mode & 0o777 == 0o755  # Lambda runs as another user than the build
    metadata = json.loads((out / "kogpt2-model.json").read_text())
    assert metadata["engine"] == "ctranslate2" and metadata["weight_format"] == "int8"
    assert metadata["source"] == str(tiny_model_dir) and metadata["max_positions"] == 1024

    client = make_app(model=str(out), engine="auto").test_client()
    response = client.post("/generate", json={"text": TITLE, "max_new_tokens": 12})
    assert response.status_code == 200, response.json
    assert response.json["generated_text"].startswith(TITLE)
    assert response.json["details"]["engine"] == "ctranslate2"
    info = client.get("/info").json
    assert (info["engine"], info["compute_type"]) == ("ctranslate2", "int8_float32")
    assert info["limits"]["max_positions"] == 1024


def test_a_source_without_tokenizer_config_keeps_kogpt2s_vocabulary(tiny_model_dir, tmp_path):
    # AutoTokenizer alone would add <|endoftext|> and the converter would refuse the model.
    source = shutil.copytree(tiny_model_dir, tmp_path / "source")
    (source / "tokenizer_config.json").unlink()
    assert main([str(source), str(tmp_path / "ct2"), "--engine", "ctranslate2"]) == 0
    vocabulary = json.loads((tmp_path / "ct2" / "vocabulary.json").read_text())
    config = json.loads((source / "config.json").read_text())
    assert len(vocabulary) == config["vocab_size"]


def test_an_existing_output_needs_force(tiny_ct2_dir, tiny_model_dir, tmp_path):
    out = shutil.copytree(tiny_ct2_dir, tmp_path / "ct2")
    with pytest.raises(SystemExit, match="--force"):
        main([str(tiny_model_dir), str(out), "--engine", "ctranslate2"])
    assert main([str(tiny_model_dir), str(out), "--engine", "ctranslate2", "--force",
                 "--quantization", "float32"]) == 0


def test_a_missing_source_is_named(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main([str(tmp_path / "absent"), str(tmp_path / "out")])


def test_a_hub_id_goes_through_the_apps_download(monkeypatch, unused_port, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{unused_port}")
    started = time.monotonic()
    with pytest.raises(SystemExit, match="hub .* can't be reached"):
        main(["kogpt2-tests/not-in-any-cache", str(tmp_path / "out")])
    assert time.monotonic() - started < 10
