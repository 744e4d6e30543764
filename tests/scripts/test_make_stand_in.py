import json

import pytest
from make_stand_in import DEFAULT_SOURCE, main

from kogpt2.model import Generator

TITLE = "근육이 커지기 위해서는"
needs_shared = pytest.mark.skipif(
    not (DEFAULT_SOURCE / "tokenizer.json").is_file(), reason="../shared/kogpt2 is absent"
)


@needs_shared
def test_tiny_stand_in_has_kogpt2s_tokenizer_and_special_tokens(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert (config["vocab_size"], config["n_layer"], config["n_embd"]) == (51200, 2, 64)
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (0, 1, 3)
    tokenizer_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["bos_token"] == tokenizer_config["eos_token"] == "</s>"
    assert (tiny_model_dir / "model.safetensors").is_file()
    engine = Generator(str(tiny_model_dir), engine="transformers").load()
    assert engine.encode(TITLE) == [33245, 10114, 12748, 11357]
    assert engine.tokenizer.bos_token_id == engine.tokenizer.eos_token_id == 1
    assert engine.tokenizer.pad_token_id == 3 and len(engine.tokenizer) == 51200


def test_without_shared_files_tiny_trains_a_tokenizer(tmp_path, capsys):
    assert main([str(tmp_path / "m"), "--tiny", "--source", str(tmp_path / "absent")]) == 0
    assert "wrote tiny stand-in" in capsys.readouterr().out
    result = Generator(str(tmp_path / "m"), engine="transformers").generate(TITLE)
    assert result.sequences[0].text.startswith(TITLE)


def test_full_size_needs_the_real_tokenizer(tmp_path):
    with pytest.raises(SystemExit, match="--source"):
        main([str(tmp_path / "m"), "--source", str(tmp_path / "absent")])
