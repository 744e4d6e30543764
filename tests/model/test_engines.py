"""Every engine, side by side: the same request means the same thing on each."""

import time

import pytest
from convert import convert

from kogpt2.model import GenerationParams, Generator, ModelLoadError, engines
from kogpt2.model.seam import EngineRequest, Watch
from kogpt2.model.vocab import load_tokenizer

TITLE = "근육이 커지기 위해서는"
OTHER_TITLE = "오늘 아침 서울의 날씨는"
ENGINES = ["transformers", "ctranslate2", "openvino"]
GREEDY = GenerationParams()


def engine_dir(name: str, transformers_dir, out_dir, weight_format="int8"):
    """`transformers_dir` as `name` serves it: itself, or the engine's prepared copy."""
    if name == "transformers":
        return transformers_dir
    return convert(str(transformers_dir), out_dir / f"{name}-{weight_format}", engine=name,
                   weight_format=weight_format)


def load(name: str, model_dir):
    return engines.load(engines.ENGINES[name], model_dir, threads=1, compute_type="default")


@pytest.fixture(scope="module", params=ENGINES)
def engine(request, tiny_model_dir, tiny_ct2_dir, tiny_ov_dir):
    """Each engine on the tiny stand-in: transformers fp32, the others' int8 copies."""
    model_dir = {"transformers": tiny_model_dir, "ctranslate2": tiny_ct2_dir,
                 "openvino": tiny_ov_dir}[request.param]
    return load(request.param, model_dir)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def run(engine, tokenizer, params=GREEDY, *, max_new_tokens=30, seed=None, watch=None,
        text=TITLE):
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    [result] = engine.generate([EngineRequest(ids, max_new_tokens, params, seed,
                                              watch or Watch())])
    return [(out.token_ids, out.finish_reason) for out in result.rows]


def sampling(**options):
    return GenerationParams(do_sample=True, **options)


def rewire(transformers_dir, out_dir, favourite: int, runner_up: int | None = None):
    """A copy of the model whose next token never depends on the context.

    ln_f's weight is zeroed and its bias points along `favourite`'s embedding, so every step
    gives the same logits, `favourite` on top. With a `runner_up`, whose embedding is moved to
    0.75 of the favourite's, the runner-up scores 0.75 of the favourite: a repetition penalty
    of 2.0 on the favourite (0.5) puts the runner-up first.
    """
    import shutil

    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(transformers_dir)
    with torch.no_grad():
        embeddings = model.transformer.wte.weight
        top = embeddings[favourite].clone()
        if runner_up is not None:
            embeddings[runner_up].copy_(0.75 * top)
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(top * 12.0 / top.dot(top))  # favourite's logit: 12
    model.save_pretrained(out_dir)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(transformers_dir / name, out_dir / name)
    return out_dir


@pytest.fixture(scope="module", params=[0, -1], ids=["first", "last"])
def favourite_word_dirs(request, tiny_model_dir, tokenizer, tmp_path_factory):
    """The tiny stand-in rewired to favour one of the title's tokens by a margin that a
    repetition penalty of 2.0 flips: a title holding that word must not continue with it.
    (CTranslate2 treats the first token of a prompt apart from the others: both are tried.)"""
    title_ids = tokenizer.encode(TITLE, add_special_tokens=False).ids
    other_ids = tokenizer.encode(OTHER_TITLE, add_special_tokens=False).ids
    favourite = title_ids[request.param]
    runner_up = next(i for i in range(200, 51200) if i not in title_ids + other_ids)
    assert favourite not in other_ids
    out = tmp_path_factory.mktemp("favourite-word")
    source = rewire(tiny_model_dir, out / "transformers", favourite, runner_up)
    dirs = {name: engine_dir(name, source, out) for name in ENGINES}
    return dirs, favourite, runner_up


@pytest.mark.parametrize("name", ENGINES)
def test_the_repetition_penalty_covers_the_title(favourite_word_dirs, tokenizer, name):
    dirs, favourite, runner_up = favourite_word_dirs
    engine = load(name, dirs[name])
    # Without the word in the title, nothing is penalised: the favourite comes first.
    [(ids, _)] = run(engine, tokenizer, max_new_tokens=3, text=OTHER_TITLE)
    assert ids[0] == favourite
    # In the title, the penalty of 2.0 halves it below the runner-up, as transformers does.
    heard = []
    [(ids, _)] = run(engine, tokenizer, max_new_tokens=3, text=TITLE,
                     watch=Watch(on_token=lambda token, _: heard.append(token)))
    assert ids[0] == runner_up
    # A stream hears only the tokens that stand, not one that CTranslate2 had to pick again.
    assert heard == ids
    [(ids, _)] = run(engine, tokenizer, GenerationParams(repetition_penalty=1.0),
                     max_new_tokens=1, text=TITLE)
    assert ids == [favourite]


def test_engines_report_their_name_and_compute_type(engine):
    expected = {
        "transformers": "float32", "ctranslate2": "int8_float32",
        "openvino": "int8 weights, int8 compute",
    }[engine.name]
    assert engine.compute_type == expected


@pytest.mark.parametrize("repetition_penalty", [2.0, 1.0])
def test_float32_greedy_text_is_identical_on_every_engine(
    tiny_model_dir, tiny_ct2_float32_dir, tiny_ov_float32_dir, repetition_penalty
):
    reference = Generator(str(tiny_model_dir), engine="transformers", threads=1)
    params = GenerationParams(repetition_penalty=repetition_penalty)
    expected = reference.generate(TITLE, params)
    # OpenVINO's float32 export computes in f32 by default (cache included).
    for name, model_dir, compute_type in [
        ("ctranslate2", tiny_ct2_float32_dir, "float32"),
        ("openvino", tiny_ov_float32_dir, "float32 weights, f32 compute"),
    ]:
        fast = Generator(str(model_dir), engine=name, threads=1)
        got = fast.generate(TITLE, params)
        assert fast.engine.compute_type == compute_type
        assert got.sequences == expected.sequences, name
        assert got.generated_tokens == 86  # the original handler's 90 tokens, prompt included


def test_greedy_is_deterministic(engine, tokenizer):
    assert run(engine, tokenizer, max_new_tokens=40) == run(engine, tokenizer, max_new_tokens=40)


def test_max_new_tokens_is_exact_when_no_eos_comes(engine, tokenizer):
    outputs = run(engine, tokenizer, max_new_tokens=7)
    assert [(len(ids), reason) for ids, reason in outputs] == [(7, "length")]


def test_repetition_penalty_is_applied(engine, tokenizer):
    plain = run(engine, tokenizer, GenerationParams(repetition_penalty=1.0), max_new_tokens=40)
    penalised = run(engine, tokenizer, GenerationParams(repetition_penalty=2.0),
                    max_new_tokens=40)
    assert len(set(penalised[0][0])) > len(set(plain[0][0]))


def test_seed_reproduces_sampling_even_between_other_runs(engine, tokenizer):
    params = sampling(temperature=1.5)
    first = run(engine, tokenizer, params, seed=1234)
    run(engine, tokenizer)  # a greedy run between
    run(engine, tokenizer, params, seed=99)  # and another seeded one
    assert run(engine, tokenizer, params, seed=1234) == first
    assert run(engine, tokenizer, params, seed=4321) != first


def test_back_to_back_seeded_runs_reproduce(engine, tokenizer):
    params = sampling(temperature=1.5)
    runs = [run(engine, tokenizer, params, seed=seed) for seed in (5, 5, 6, 5)]
    assert runs[0] == runs[1] == runs[3] != runs[2]


def test_top_k_1_and_a_tiny_top_p_sample_the_greedy_text(engine, tokenizer):
    greedy = run(engine, tokenizer)
    assert run(engine, tokenizer, sampling(top_k=1), seed=5) == greedy
    assert run(engine, tokenizer, sampling(top_k=0, top_p=1e-6), seed=5) == greedy
    assert run(engine, tokenizer, sampling(top_k=0), seed=5) != greedy


# The tiny stand-in's top 50 are near-uniform (probabilities within 20%), so a hotter
# temperature moves them little (total variation ~0.01 a step) and 30 draws may all stay the
# same; a cold one sharpens them for any sampler.
@pytest.mark.parametrize("change", [{"temperature": 0.1}, {"top_k": 5}, {"top_p": 0.5}])
def test_each_sampling_knob_changes_the_draw(engine, tokenizer, change):
    base = sampling(top_k=50, temperature=1.0, top_p=1.0)
    changed = run(engine, tokenizer, base.model_copy(update=change), seed=11)
    assert changed != run(engine, tokenizer, base, seed=11)


def test_several_sequences_differ_and_reproduce(engine, tokenizer):
    params = sampling(num_return_sequences=3)
    outputs = run(engine, tokenizer, params, seed=7, max_new_tokens=10)
    assert len(outputs) == 3 and len({tuple(ids) for ids, _ in outputs}) == 3
    assert run(engine, tokenizer, params, seed=7, max_new_tokens=10) == outputs


def test_a_past_deadline_stops_after_one_token(engine, tokenizer):
    """The title was read for that token. OpenVINO's scheduler reads no title for a request
    whose deadline passed while it waited for a place (test_batching.py): nothing at all."""
    outputs = run(engine, tokenizer, sampling(num_return_sequences=2), seed=1,
                  watch=Watch(deadline=time.monotonic()))
    written = 0 if engine.name == "openvino" else 1
    assert [(len(ids), reason) for ids, reason in outputs] == [(written, "time")] * 2


def test_a_deadline_stops_a_long_generation(engine, tokenizer, slow_tokens):
    params = GenerationParams(repetition_penalty=1.0)  # 1000 tokens now take at least 10 s
    [(ids, reason)] = run(engine, tokenizer, params, max_new_tokens=1000,
                          watch=Watch(deadline=time.monotonic() + 0.01))
    assert reason == "time" and 1 <= len(ids) < 1000


def test_each_new_token_is_heard_as_it_is_made_and_a_cancel_stops_within_one(engine, tokenizer):
    import threading

    cancel, heard = threading.Event(), []

    def listen(token_id, _):
        heard.append(token_id)
        if len(heard) == 3:
            cancel.set()

    [(ids, reason)] = run(engine, tokenizer, max_new_tokens=50,
                          watch=Watch(cancel=cancel, on_token=listen))
    assert (ids, reason) == (heard, "cancelled") and len(ids) == 3
    full = run(engine, tokenizer, max_new_tokens=50)[0][0]
    assert full[:3] == ids  # the title's tokens are never heard as new ones


@pytest.fixture(scope="module")
def eos_prone_dirs(tiny_model_dir, tmp_path_factory):
    """The tiny stand-in rewired so every step gives </s> (id 1) the top score: greedy ends at
    once, sampling after a few tokens."""
    out = tmp_path_factory.mktemp("eos-prone")
    source = rewire(tiny_model_dir, out / "transformers", favourite=1)
    return {name: engine_dir(name, source, out) for name in ENGINES}


@pytest.mark.parametrize("name", ENGINES)
def test_generation_stops_at_eos(eos_prone_dirs, tokenizer, name):
    generator = Generator(str(eos_prone_dirs[name]), engine=name, threads=1)
    greedy = generator.generate(TITLE)
    assert greedy.finish_reason == "eos" and greedy.generated_tokens == 1
    assert greedy.sequences[0].text == TITLE
    [(ids, reason)] = run(generator.engine, tokenizer, sampling(top_k=0), seed=3,
                          max_new_tokens=200)
    assert reason == "eos" and 1 not in ids and len(ids) < 200


def test_compute_type_can_be_chosen(tiny_ct2_float32_dir, tokenizer):
    engine = engines.load(engines.CTRANSLATE2, tiny_ct2_float32_dir, threads=1,
                          compute_type="int8")
    assert engine.compute_type == "int8_float32"
    assert run(engine, tokenizer)[0][1] == "length"


def test_transformers_computes_in_float32_only(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="float32 only"):
        engines.load(engines.TRANSFORMERS, tiny_model_dir, threads=1, compute_type="int8")
