import json

import pytest
from make_stand_in import DEFAULT_SOURCE, main

from kogpt2.model import Generator
from kogpt2.model.vocab import SPECIAL_TOKENS_MAP, load_tokenizer

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
    tokenizer = load_tokenizer(tiny_model_dir)
    assert tokenizer.encode(TITLE, add_special_tokens=False).ids == [33245, 10114, 12748, 11357]
    ids = {name: tokenizer.token_to_id(token) for name, token in SPECIAL_TOKENS_MAP.items()}
    assert ids["bos_token"] == ids["eos_token"] == 1 and ids["pad_token"] == 3
    assert tokenizer.get_vocab_size() == 51200
    # transformers, as the reference engine loads it, agrees on every one of those.
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert (reference.bos_token_id, reference.eos_token_id, reference.pad_token_id) == (1, 1, 3)
    assert len(reference) == 51200


def test_without_shared_files_tiny_trains_a_tokenizer(tmp_path, capsys):
    assert main([str(tmp_path / "m"), "--tiny", "--source", str(tmp_path / "absent")]) == 0
    assert "wrote tiny stand-in" in capsys.readouterr().out
    result = Generator(str(tmp_path / "m"), engine="transformers").generate(TITLE)
    assert result.sequences[0].text.startswith(TITLE)


def test_full_size_needs_the_real_tokenizer(tmp_path):
    with pytest.raises(SystemExit, match="--source"):
        main([str(tmp_path / "m"), "--source", str(tmp_path / "absent")])
