"""The openvino engine on its own: its export, its loading, and its numpy decoding loop.

Every request parameter is also checked on it beside the other engines (test_engines.py).
"""

import json
import shutil
import threading

import numpy as np
import pytest

from kogpt2.model import engines
from kogpt2.model.engines import openvino
from kogpt2.model.engines.openvino import MODEL_BIN, MODEL_XML
from kogpt2.model.params import GenerationParams
from kogpt2.model.prepare import MARKER_FILE
from kogpt2.model.sampling import penalize
from kogpt2.model.seam import EngineRequest, ModelLoadError, Watch
from kogpt2.model.vocab import METADATA_FILE, load_tokenizer

TITLES = ["근육이 커지기 위해서는", "오늘 아침 서울의 날씨는"]


@pytest.fixture(scope="module")
def exported(tiny_ov_dir, tiny_ov_float32_dir):
    return {"int8": tiny_ov_dir, "float32": tiny_ov_float32_dir}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def encode(tokenizer, text):
    return tokenizer.encode(text, add_special_tokens=False).ids


GREEDY = GenerationParams()


def generate(engine, prompt_ids, params=GREEDY, max_new_tokens=30, seed=None):
    [result] = engine.generate([EngineRequest(prompt_ids, max_new_tokens, params, seed, Watch())])
    return [(out.token_ids, out.finish_reason) for out in result.rows]


def test_convert_writes_a_complete_directory(exported, tiny_model_dir):
    import openvino as ov

    out = exported["int8"]
    assert {path.name for path in out.iterdir()} == {
        "openvino_model.xml", "openvino_model.bin", "tokenizer.json", "tokenizer_config.json",
        METADATA_FILE, MARKER_FILE,
    }
    assert (out / "tokenizer.json").read_bytes() == (tiny_model_dir / "tokenizer.json").read_bytes()
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert (metadata["engine"], metadata["weight_format"]) == ("openvino", "int8")
    assert metadata["max_positions"] == 1024
    assert metadata["versions"] == {"openvino": ov.__version__.split("-")[0]}


@pytest.mark.parametrize("weight_format", ["int8", "float32"])
def test_prepare_reports_each_stage_as_it_goes(tiny_model_dir, tmp_path, weight_format):
    stages = []
    openvino.prepare(tiny_model_dir, tmp_path, weight_format=weight_format,
                     progress=lambda stage, fraction: stages.append((stage, fraction)))
    expected = ["loading the transformers model", "converting to OpenVINO",
                "compressing weights to int8", "writing the OpenVINO model"]
    if weight_format == "float32":
        expected.remove("compressing weights to int8")
    assert [stage for stage, _ in stages] == expected
    fractions = [fraction for _, fraction in stages]
    assert fractions == sorted(fractions) and 0.0 == fractions[0] < fractions[-1] < 1.0
    assert {path.name for path in tmp_path.iterdir()} == {MODEL_XML, MODEL_BIN}


def test_int8_weights_take_about_a_quarter_of_float32s(exported):
    int8, float32 = (exported[fmt] / MODEL_BIN for fmt in ("int8", "float32"))
    assert int8.stat().st_size < 0.3 * float32.stat().st_size


def test_the_directory_is_recognised_by_its_files(exported, tiny_model_dir, tiny_ct2_dir):
    from kogpt2.model import engines

    assert openvino.is_own_format(exported["int8"])
    assert engines.kind_of(exported["int8"]) is engines.OPENVINO
    assert not openvino.is_own_format(tiny_model_dir) and not openvino.is_own_format(tiny_ct2_dir)


def test_an_unknown_weight_format_is_refused_before_any_work(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="int4"):
        openvino.prepare(tiny_model_dir, tmp_path, weight_format="int4",
                         progress=lambda *_: pytest.fail("started"))


@pytest.mark.parametrize("repetition_penalty", [2.0, 1.0])
def test_float32_export_at_f32_gives_transformers_greedy_tokens(
    exported, tiny_model_dir, tokenizer, repetition_penalty
):
    import torch
    from transformers import GPT2LMHeadModel

    reference = GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()
    engine = engines.load(engines.OPENVINO, exported["float32"], threads=1, compute_type="default")
    assert engine.compute_type == "float32 weights, f32 compute"
    params = GenerationParams(repetition_penalty=repetition_penalty)
    for title in TITLES:
        prompt = encode(tokenizer, title)
        with torch.inference_mode():
            expected = reference.generate(
                torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=int),
                max_new_tokens=86, repetition_penalty=repetition_penalty, do_sample=False,
                pad_token_id=3, eos_token_id=1,
            )[0, len(prompt):].tolist()
        assert 1 not in expected  # no EOS: all 86 tokens are compared
        assert generate(engine, prompt, params, max_new_tokens=86) == [(expected, "length")]


def test_full_size_float32_export_gives_transformers_greedy_tokens(
    full_size_model_dir, tmp_path_factory
):
    """The same on KoGPT2's real shape (12 layers, 12 heads, 768 wide; ~20 s): the default
    request's 86 greedy tokens, as transformers gives them, to the last one."""
    import torch
    from convert import convert
    from transformers import GPT2LMHeadModel

    out = convert(str(full_size_model_dir), tmp_path_factory.mktemp("full-ov") / "float32",
                  engine="openvino", weight_format="float32")
    prompt = encode(load_tokenizer(full_size_model_dir), TITLES[0])
    reference = GPT2LMHeadModel.from_pretrained(full_size_model_dir).eval()
    with torch.inference_mode():
        expected = reference.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=int),
            max_new_tokens=86, repetition_penalty=2.0, do_sample=False, pad_token_id=3,
            eos_token_id=1,
        )[0, len(prompt):].tolist()
    del reference
    assert len(expected) == 86 and 1 not in expected
    engine = engines.load(engines.OPENVINO, out, threads=2, compute_type="default")
    assert generate(engine, prompt, max_new_tokens=86) == [(expected, "length")]


def bf16_cpu() -> bool:
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def test_compute_type_says_what_runs(exported):
    def compute_type(weights, name):
        engine = engines.load(engines.OPENVINO, exported[weights], threads=1, compute_type=name)
        return engine.compute_type

    assert compute_type("int8", "default") == "int8 weights, int8 compute"
    assert compute_type("int8", "f32") == compute_type("int8", "float32") == (
        "int8 weights, f32 compute"
    )
    bf16 = "bf16" if bf16_cpu() else "f32"  # a CPU without bf16 runs f32
    assert compute_type("int8", "bf16") == f"int8 weights, {bf16} compute"
    assert compute_type("float32", "default") == "float32 weights, f32 compute"


def test_an_unknown_compute_type_is_refused(exported):
    with pytest.raises(ModelLoadError, match="int8, bf16, f32 or default, not 'int4'"):
        engines.load(engines.OPENVINO, exported["int8"], threads=1, compute_type="int4")


def test_int8_compute_needs_int8_weights(exported):
    with pytest.raises(ModelLoadError, match="float32 weights: int8 compute needs an int8"):
        engines.load(engines.OPENVINO, exported["float32"], threads=1, compute_type="int8")


def test_a_transformers_directory_says_how_to_convert(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="not an OpenVINO model directory.*convert.py"):
        engines.load(engines.OPENVINO, tiny_model_dir, threads=1, compute_type="default")


def test_corrupt_weights_give_a_load_error(exported, tmp_path):
    model_dir = shutil.copytree(exported["int8"], tmp_path / "model")
    (model_dir / "openvino_model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="could not load"):
        engines.load(engines.OPENVINO, model_dir, threads=1, compute_type="default")


def test_a_missing_tokenizer_is_named(exported, tmp_path):
    model_dir = shutil.copytree(exported["int8"], tmp_path / "model")
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="tokenizer"):
        engines.load(engines.OPENVINO, model_dir, threads=1, compute_type="default")


def test_an_openvino_model_from_elsewhere_is_refused(exported, tmp_path):
    import openvino as ov
    from openvino import opset13 as ops

    model_dir = shutil.copytree(exported["int8"], tmp_path / "model")
    ids = ops.parameter([-1, -1], ov.Type.i64, name="input_ids")
    ov.save_model(ov.Model([ops.convert(ids, ov.Type.f32)], [ids]),
                  model_dir / "openvino_model.xml")
    with pytest.raises(ModelLoadError, match="didn't export.*convert.py"):
        engines.load(engines.OPENVINO, model_dir, threads=1, compute_type="default")


def test_each_sequence_is_its_own_when_titles_differ_fan_out_join_and_drop_out(exported,
                                                                                tokenizer):
    """The paged cache as the batching loop uses it: titles of different lengths read in one
    step, a title's sequence forking into two (sharing its blocks), a newcomer's title read
    beside others' decoding, and finished sequences dropping out. Each sequence's logits must
    be bit for bit those of its own tokens run alone (its title in one step, then a token a
    step), on int8 and with 2 threads."""
    engine = engines.load(engines.OPENVINO, exported["int8"], threads=2, compute_type="default")
    cache = engine._cache
    b, a, c = (encode(tokenizer, title) for title in [*TITLES, "서울의 봄"])
    assert len(a) > len(b)

    def step(*plan):
        return engine._forward([(seq, tokens, [len(tokens) - 1]) for seq, tokens in plan]).copy()

    def alone(title, *tokens):
        seq = cache.sequence()
        logits = step((seq, title))
        for token in tokens:
            logits = step((seq, [token]))
        cache.release(seq)
        return logits[0]

    expected = {
        "a": alone(a), "b": alone(b), "a+300": alone(a, 300), "a+301": alone(a, 301),
        "b+302": alone(b, 302), "a+300+400": alone(a, 300, 400), "c": alone(c),
        "c+7": alone(c, 7), "b+302+402+502": alone(b, 302, 402, 502),
    }
    seq_a, seq_b = cache.sequence(), cache.sequence()
    np.testing.assert_array_equal(step((seq_a, a), (seq_b, b)), [expected["a"], expected["b"]])
    seq_a2 = cache.fork(seq_a)  # a fans out to two sequences; b goes on
    got = step((seq_a, [300]), (seq_a2, [301]), (seq_b, [302]))
    np.testing.assert_array_equal(got, [expected["a+300"], expected["a+301"], expected["b+302"]])
    seq_c = cache.sequence()  # c's title is read beside their decoding
    got = step((seq_a, [400]), (seq_a2, [401]), (seq_b, [402]), (seq_c, c))
    np.testing.assert_array_equal(got[[0, 3]], [expected["a+300+400"], expected["c"]])
    cache.release(seq_a)  # a's two sequences finish; b and c go on in their own context
    cache.release(seq_a2)
    got = step((seq_b, [502]), (seq_c, [7]))
    np.testing.assert_array_equal(got, [expected["b+302+402+502"], expected["c+7"]])
    cache.release(seq_b)
    cache.release(seq_c)
    assert len(cache.free) == cache.size - sum(len(filler.blocks) for filler in engine._fillers)


def test_several_sequences_at_top_k_1_are_each_the_greedy_text(exported, tokenizer):
    # At f32: in bf16 a batch of 4 rounds differently from a batch of 1, flipping near-ties.
    engine = engines.load(engines.OPENVINO, exported["float32"], threads=1, compute_type="f32")
    prompt = encode(tokenizer, TITLES[0])
    greedy = generate(engine, prompt)
    params = GenerationParams(do_sample=True, top_k=1, num_return_sequences=4)
    assert generate(engine, prompt, params, seed=3) == greedy * 4


def test_sequences_that_end_early_leave_the_others_in_their_own_context(
    exported, tiny_model_dir, tokenizer
):
    """Sampled from the top 3, sequences end at different steps (an "EOS" made common); every
    token of every sequence must still be one of the top 3 that transformers gives its own
    sequence, so no sequence ever continued another's cache row."""
    import torch
    from transformers import GPT2LMHeadModel

    engine = engines.load(engines.OPENVINO, exported["float32"], threads=1, compute_type="f32")
    prompt = encode(tokenizer, TITLES[1])
    params = GenerationParams(do_sample=True, top_k=3, num_return_sequences=4)
    rows = [ids for ids, _ in generate(engine, prompt, params, seed=8, max_new_tokens=12)]
    # The token the first sequence makes 4th, and no other sequence makes before its 6th.
    engine.eos_id = rows[0][3]
    assert all(engine.eos_id not in row[:6] for row in rows[1:]) and engine.eos_id not in prompt
    outputs = generate(engine, prompt, params, seed=8, max_new_tokens=12)
    assert outputs[0] == (rows[0][:3], "eos")
    assert any(reason == "length" for _, reason in outputs)

    reference = GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()
    for ids, reason in outputs:
        sequence = prompt + ids + ([engine.eos_id] if reason == "eos" else [])
        with torch.inference_mode():
            logits = reference(torch.tensor([sequence])).logits[0].numpy()
        for step in range(len(prompt), len(sequence)):
            scores = logits[step - 1].copy()
            penalize(scores, list(dict.fromkeys(sequence[:step])), 2.0)
            assert sequence[step] in np.argsort(scores)[-3:], (ids, step)


def test_concurrent_seeded_requests_each_reproduce(exported, tokenizer):
    """They share steps, each from its own stream: on float32, the same text as alone (int8
    computes a row a little differently beside others: bench/serving.py measures how often
    that changes a token)."""
    engine = engines.load(engines.OPENVINO, exported["float32"], threads=1, compute_type="f32")
    prompt = encode(tokenizer, TITLES[0])
    params = GenerationParams(do_sample=True, temperature=1.5, num_return_sequences=2)
    expected = {seed: generate(engine, prompt, params, seed=seed) for seed in range(6)}
    got = {}

    def request(seed):
        got[seed] = generate(engine, prompt, params, seed=seed)

    threads = [threading.Thread(target=request, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == expected and len({str(value) for value in got.values()}) == 6
