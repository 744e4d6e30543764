"""Both engines, side by side: the same request means the same thing on each."""

import json
import shutil
import time

import pytest

from kogpt2.model import GenerationParams, Generator, ModelLoadError
from kogpt2.model.engine import load_engine

TITLE = "근육이 커지기 위해서는"
ENGINES = ["transformers", "ctranslate2"]


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, tiny_model_dir, tiny_ct2_dir):
    """Each engine on the tiny stand-in: transformers fp32, and its int8 CTranslate2 copy."""
    source = tiny_ct2_dir if request.param == "ctranslate2" else tiny_model_dir
    return load_engine(str(source), request.param, threads=1)


GREEDY = GenerationParams()


def run(engine, params=GREEDY, *, max_new_tokens=30, seed=None, deadline=None, text=TITLE):
    outputs = engine.generate(
        engine.encode(text), max_new_tokens=max_new_tokens, params=params, seed=seed,
        deadline=deadline,
    )
    return [(out.token_ids, out.finish_reason) for out in outputs]


def sampling(**options):
    return GenerationParams(do_sample=True, **options)


@pytest.fixture(scope="module")
def eos_prone_dirs(tiny_model_dir, tmp_path_factory):
    """The tiny stand-in rewired so every step gives </s> (id 1) the top score, ~8% likely.

    ln_f's weight is zeroed and its bias points along </s>'s embedding, so the logits are the
    same at every step: greedy ends at once, sampling ends after a few tokens.
    """
    import torch
    from convert import convert
    from transformers import GPT2LMHeadModel

    out = tmp_path_factory.mktemp("eos-prone")
    model = GPT2LMHeadModel.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        eos_row = model.transformer.wte.weight[1]
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(eos_row * 9.0 / eos_row.dot(eos_row))
    model.save_pretrained(out / "transformers")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tiny_model_dir / name, out / "transformers" / name)
    return {
        "transformers": out / "transformers",
        "ctranslate2": convert(str(out / "transformers"), out / "ct2"),
    }


def test_engines_report_their_name_compute_type_and_positions(engine):
    expected = {"transformers": "float32", "ctranslate2": "int8_float32"}[engine.name]
    assert engine.compute_type == expected
    assert engine.max_positions == 1024


def test_both_engines_share_the_tokenizer(tiny_model_dir, tiny_ct2_dir):
    reference = load_engine(str(tiny_model_dir), "transformers", threads=1)
    fast = load_engine(str(tiny_ct2_dir), "ctranslate2", threads=1)
    ids = reference.encode(TITLE + " </s> 끝")
    assert fast.encode(TITLE + " </s> 끝") == ids
    assert fast.decode(ids) == reference.decode(ids)  # </s> skipped by both
    assert "</s>" not in fast.decode(ids)


@pytest.mark.parametrize("repetition_penalty", [2.0, 1.0])
def test_float32_greedy_text_is_identical_on_both_engines(
    tiny_model_dir, tiny_ct2_float32_dir, repetition_penalty
):
    reference = Generator(str(tiny_model_dir), engine="transformers", threads=1)
    fast = Generator(str(tiny_ct2_float32_dir), engine="ctranslate2", threads=1)
    params = GenerationParams(repetition_penalty=repetition_penalty)
    expected, got = reference.generate(TITLE, params), fast.generate(TITLE, params)
    assert fast.engine.compute_type == "float32"
    assert got.sequences == expected.sequences
    assert got.generated_tokens == 86  # the original handler's 90 tokens, prompt included


def test_greedy_is_deterministic(engine):
    assert run(engine, max_new_tokens=40) == run(engine, max_new_tokens=40)


def test_max_new_tokens_is_exact_when_no_eos_comes(engine):
    assert [(len(ids), reason) for ids, reason in run(engine, max_new_tokens=7)] == [(7, "length")]


def test_repetition_penalty_is_applied(engine):
    plain = run(engine, GenerationParams(repetition_penalty=1.0), max_new_tokens=40)[0][0]
    penalised = run(engine, GenerationParams(repetition_penalty=2.0), max_new_tokens=40)[0][0]
    assert len(set(penalised)) > len(set(plain))


def test_seed_reproduces_sampling_even_between_other_runs(engine):
    params = sampling(temperature=1.5)
    first = run(engine, params, seed=1234)
    run(engine)  # a greedy run between
    run(engine, params, seed=99)  # and another seeded one
    assert run(engine, params, seed=1234) == first
    assert run(engine, params, seed=4321) != first


def test_top_k_1_and_a_tiny_top_p_sample_the_greedy_text(engine):
    greedy = run(engine)
    assert run(engine, sampling(top_k=1), seed=5) == greedy
    assert run(engine, sampling(top_k=0, top_p=1e-6), seed=5) == greedy
    assert run(engine, sampling(top_k=0), seed=5) != greedy


@pytest.mark.parametrize("change", [{"temperature": 3.0}, {"top_k": 5}, {"top_p": 0.5}])
def test_each_sampling_knob_changes_the_draw(engine, change):
    base = sampling(top_k=50, temperature=1.0, top_p=1.0)
    assert run(engine, base.model_copy(update=change), seed=11) != run(engine, base, seed=11)


def test_several_sequences_differ_and_reproduce(engine):
    params = sampling(num_return_sequences=3)
    outputs = run(engine, params, seed=7, max_new_tokens=10)
    assert len(outputs) == 3 and len({tuple(ids) for ids, _ in outputs}) == 3
    assert run(engine, params, seed=7, max_new_tokens=10) == outputs


def test_a_past_deadline_stops_after_one_token(engine):
    outputs = run(engine, sampling(num_return_sequences=2), seed=1, deadline=time.monotonic())
    assert [(len(ids), reason) for ids, reason in outputs] == [(1, "time"), (1, "time")]


def test_a_deadline_stops_a_long_generation(engine):
    params = GenerationParams(repetition_penalty=1.0)
    [(ids, reason)] = run(engine, params, max_new_tokens=1000, deadline=time.monotonic() + 0.01)
    assert reason == "time" and 1 <= len(ids) < 1000


@pytest.mark.parametrize("engine_name", ENGINES)
def test_generation_stops_at_eos(eos_prone_dirs, engine_name):
    generator = Generator(str(eos_prone_dirs[engine_name]), engine=engine_name, threads=1)
    greedy = generator.generate(TITLE)
    assert greedy.finish_reason == "eos" and greedy.generated_tokens == 1
    assert greedy.sequences[0].text == TITLE
    engine = generator.engine
    [(ids, reason)] = run(engine, sampling(top_k=0), seed=3, max_new_tokens=200)
    assert reason == "eos" and 1 not in ids and len(ids) < 200


def test_auto_picks_the_engine_from_the_directory(tiny_model_dir, tiny_ct2_dir):
    assert load_engine(str(tiny_model_dir), "auto", threads=1).name == "transformers"
    fast = Generator(str(tiny_ct2_dir), threads=1)  # the default engine is auto
    assert fast.generate(TITLE).engine == "ctranslate2"


def test_compute_type_can_be_chosen(tiny_ct2_float32_dir):
    engine = load_engine(str(tiny_ct2_float32_dir), "auto", threads=1, compute_type="int8")
    assert engine.compute_type == "int8_float32"
    assert run(engine)[0][1] == "length"


def test_ctranslate2_on_a_transformers_model_says_to_convert(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="not a CTranslate2 model.*scripts/convert.py"):
        load_engine(str(tiny_model_dir), "ctranslate2", threads=1)


def test_ctranslate2_on_a_hub_id_says_to_convert_without_downloading(monkeypatch):
    def no_download(*args):
        raise AssertionError("tried the hub")

    monkeypatch.setattr("kogpt2.model.hub.snapshot", no_download)
    with pytest.raises(ModelLoadError, match="hub id.*scripts/convert.py"):
        load_engine("skt/kogpt2-base-v2", "ctranslate2", threads=1)


def test_transformers_on_a_converted_directory_is_refused(tiny_ct2_dir):
    with pytest.raises(ModelLoadError, match="is a CTranslate2 model directory"):
        load_engine(str(tiny_ct2_dir), "transformers", threads=1)


def test_transformers_computes_in_float32_only(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="float32 only"):
        load_engine(str(tiny_model_dir), "transformers", 1, compute_type="int8")


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("tokenizer.json", "has no tokenizer.json"),
        ("config.json", "has no config.json"),
        ("model.bin", "not a CTranslate2 model directory"),
    ],
)
def test_a_converted_directory_missing_a_file_is_named(tiny_ct2_dir, tmp_path, broken, message):
    model_dir = shutil.copytree(tiny_ct2_dir, tmp_path / "model")
    (model_dir / broken).unlink()
    with pytest.raises(ModelLoadError, match=message):
        load_engine(str(model_dir), "ctranslate2", threads=1)


def test_corrupt_converted_weights_give_a_load_error(tiny_ct2_dir, tmp_path):
    model_dir = shutil.copytree(tiny_ct2_dir, tmp_path / "model")
    (model_dir / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="could not load"):
        Generator(str(model_dir)).load()


def test_positions_come_from_tokenizer_config(tiny_ct2_dir, tmp_path):
    model_dir = shutil.copytree(tiny_ct2_dir, tmp_path / "model")
    config_path = model_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    del config["model_max_length"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="model_max_length.*scripts/convert.py"):
        load_engine(str(model_dir), "auto", threads=1)
