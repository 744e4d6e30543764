"""OpenAI's and vLLM's extra knobs on every engine that claims them, against the reference.

The stand-in is rewired so every step gives the same logits: a favourite word scores 12, a
runner-up 9, the rest far below. Each knob must change the greedy choice there, and every
engine must make the same change as transformers (float32 exports: the same tokens, to the
last; int8 ones too, the margins being wide)."""

import time

import numpy as np
import pytest
from test_engines import engine_dir, rewire

from kogpt2.model import GenerationParams, Generator, InvalidInput, engines, sampling
from kogpt2.model.vocab import load_tokenizer

TITLE = "근육이 커지기 위해서는"
OTHER_TITLE = "오늘 아침 서울의 날씨는"
EOS = 1
ENGINES = ["transformers", "ctranslate2", "openvino"]
FLAT = dict(repetition_penalty=1.0)  # the repetition penalty apart, to see each knob alone


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def words(tokenizer):
    """A favourite and a runner-up that neither title holds."""
    titles = {token for text in (TITLE, OTHER_TITLE)
              for token in tokenizer.encode(text, add_special_tokens=False).ids}
    favourite, runner_up = [i for i in range(1000, 51200) if i not in titles][:2]
    return favourite, runner_up


class Generators(dict):
    """Engine name -> Generator, all serving one model's copies in `weight_format`, with the
    server's logprobs_mode `mode`."""

    def __init__(self, source, out, weight_format, mode="raw_logprobs", dirs=None):
        self.dirs = dirs or {name: engine_dir(name, source, out, weight_format)
                             for name in ENGINES}
        super().__init__({name: Generator(str(self.dirs[name]), engine=name, threads=1,
                                          logprobs_mode=mode) for name in ENGINES})
        self.source, self.weight_format, self.mode = source, weight_format, mode
        # How far an engine's log-probabilities may be from transformers float32's.
        self.precision = 1e-4 if weight_format == "float32" else 0.2

    def processed(self) -> "Generators":
        """The same engines and copies, the server set to processed_logprobs."""
        return Generators(self.source, None, self.weight_format, "processed_logprobs",
                          self.dirs)


@pytest.fixture(scope="module", params=["float32", "int8"])
def biased(request, tiny_model_dir, words, tmp_path_factory):
    """Generators of every engine on the stand-in that favours `words[0]`, then `words[1]`."""
    out = tmp_path_factory.mktemp(f"biased-{request.param}")
    source = rewire(tiny_model_dir, out / "transformers", *words)
    return Generators(source, out, request.param)


@pytest.fixture(scope="module")
def eos_biased(tiny_model_dir, words, tmp_path_factory):
    """Float32 generators of the stand-in that favours </s>, then `words[1]`."""
    out = tmp_path_factory.mktemp("eos-biased")
    source = rewire(tiny_model_dir, out / "transformers", EOS, words[1])
    return Generators(source, out, "float32")


def claimed(generators, feature):
    return {name: g for name, g in generators.items() if feature in g.features}


def greedy_tokens(generators, params, feature, text=TITLE):
    """Each claiming engine's tokens; they must be the reference's (transformers first)."""
    got = {name: generator.generate(text, params).sequences[0]
           for name, generator in claimed(generators, feature).items()}
    reference = got.pop("transformers")
    for name, sequence in got.items():
        assert (sequence.token_ids, sequence.finish_reason) == (
            reference.token_ids, reference.finish_reason), name
    return reference


def test_each_engine_claims_what_it_was_built_to(biased):
    everything = {"logprobs", "prompt_logprobs", "logit_bias", "presence_penalty",
                  "frequency_penalty", "min_new_tokens", "ignore_eos", "stop_token_ids"}
    assert biased["transformers"].features == everything
    assert biased["ctranslate2"].features == everything - {
        "logit_bias", "presence_penalty", "frequency_penalty"}
    assert biased["openvino"].features == everything


def test_logit_bias_changes_the_greedy_choice(biased, words):
    favourite, runner_up = words
    plain = greedy_tokens(biased, GenerationParams(max_new_tokens=3, **FLAT), "logit_bias")
    assert plain.token_ids == [favourite] * 3
    lifted = greedy_tokens(biased, GenerationParams(max_new_tokens=3, logit_bias={
        runner_up: 3.5}, **FLAT), "logit_bias")
    assert lifted.token_ids == [runner_up] * 3  # 9 + 3.5 over 12
    banned = greedy_tokens(biased, GenerationParams(max_new_tokens=3, logit_bias={
        str(favourite): -100.0}, **FLAT), "logit_bias")  # keys as JSON sends them
    assert banned.token_ids == [runner_up] * 3


def test_presence_and_frequency_penalties_change_the_greedy_choice(biased, words):
    favourite, runner_up = words
    presence = greedy_tokens(biased, GenerationParams(max_new_tokens=4, presence_penalty=2.0,
                                                      **FLAT), "presence_penalty")
    assert presence.token_ids == [favourite] * 4  # once present: 10, still over 9
    both = greedy_tokens(biased, GenerationParams(
        max_new_tokens=3, presence_penalty=1.0, frequency_penalty=1.5, **FLAT),
        "frequency_penalty")
    # The favourite's 12, once it came 9.5 (still over 9), twice 8: the runner-up.
    assert both.token_ids == [favourite, favourite, runner_up]
    # Counting generated tokens only: a prompt that holds the favourite changes nothing.
    frequency = GenerationParams(max_new_tokens=2, frequency_penalty=2.0, **FLAT)
    prompt = biased["transformers"].tokenize(TITLE) + [favourite] * 3
    # 12, then 12 - 2 = 10 over 9; had the prompt's three counted, 12 - 6 = 6: the runner-up.
    assert greedy_tokens(biased, frequency, "frequency_penalty", prompt).token_ids == [
        favourite, favourite]


def test_logit_bias_comes_before_the_penalties(biased, words):
    favourite, runner_up = words
    # As transformers' own list and vLLM order them: once the favourite came, the bias first
    # (12 + 4), then the repetition penalty's halving (8), then the frequency penalty (7.5):
    # under the runner-up's 9. Were the bias added after the halving, 6 + 4 - 0.5 = 9.5 would
    # keep the favourite.
    params = GenerationParams(max_new_tokens=2, repetition_penalty=2.0,
                              logit_bias={favourite: 4.0}, frequency_penalty=0.5)
    assert greedy_tokens(biased, params, "logit_bias").token_ids == [favourite, runner_up]


def test_min_new_tokens_ignore_eos_and_stop_ids(eos_biased, words):
    _, runner_up = words
    params = GenerationParams(max_new_tokens=6, **FLAT)
    ended = greedy_tokens(eos_biased, params, "min_new_tokens")
    assert (ended.token_ids, ended.finish_reason, ended.generated_tokens) == ([], "eos", 1)
    at_least = greedy_tokens(eos_biased, params.model_copy(update={"min_new_tokens": 3}),
                             "min_new_tokens")
    assert at_least.token_ids == [runner_up] * 3 and at_least.finish_reason == "eos"
    ignoring = greedy_tokens(eos_biased, params.model_copy(update={"ignore_eos": True}),
                             "ignore_eos")
    assert (ignoring.token_ids, ignoring.finish_reason) == ([runner_up] * 6, "length")
    stopped = greedy_tokens(eos_biased, params.model_copy(update={
        "ignore_eos": True, "stop_token_ids": [runner_up]}), "stop_token_ids")
    assert (stopped.token_ids, stopped.finish_reason, stopped.generated_tokens) == (
        [], "stop", 1)
    # Before min_new_tokens neither EOS nor a stop id can come: the third-best word does.
    late = greedy_tokens(eos_biased, params.model_copy(update={
        "ignore_eos": True, "stop_token_ids": [runner_up], "min_new_tokens": 2}),
        "stop_token_ids")
    assert late.finish_reason == "stop" and len(late.token_ids) == 2
    assert runner_up not in late.token_ids and EOS not in late.token_ids


def test_a_stop_id_is_not_streamed_as_text(eos_biased, words):
    _, runner_up = words
    generator = eos_biased["openvino"]
    prompt = generator.check(TITLE, GenerationParams(
        max_new_tokens=6, ignore_eos=True, min_new_tokens=2, stop_token_ids=[runner_up],
        **FLAT))
    stream, pieces = generator.text_stream(prompt), []
    result = generator.run(prompt, on_token=lambda i, _: pieces.append(stream.push(i)))
    assert len(pieces) == 3 and pieces[-1] is None  # the stop id was heard, as no text
    assert TITLE + "".join(pieces[:2]) == result.sequences[0].text


def agree(got, generators):
    """Each engine's greedy tokens and log-probabilities are transformers'."""
    reference = got["transformers"]
    for name, sequence in got.items():
        assert sequence.token_ids == reference.token_ids, name
        assert len(sequence.logprobs) == len(sequence.token_ids)
        for mine, theirs in zip(sequence.logprobs, reference.logprobs, strict=True):
            assert len(mine.top) == 5
            assert mine.logprob == pytest.approx(theirs.logprob, abs=generators.precision), name
            if generators.weight_format == "float32":
                assert [t for t, _ in mine.top] == [t for t, _ in theirs.top], name
                np.testing.assert_allclose([v for _, v in mine.top],
                                           [v for _, v in theirs.top], atol=1e-4)
    return reference


def test_greedy_logprobs_are_the_models_own_distribution(biased, words):
    """raw_logprobs, the default: the model's distribution, before the repetition penalty. The
    runner-up, chosen once the favourite is halved, has its own log-probability, and the
    favourite stays the best of its list."""
    favourite, runner_up = words
    params = GenerationParams(max_new_tokens=2, logprobs=5)
    got = {name: g.generate(TITLE, params).sequences[0] for name, g in biased.items()}
    reference = agree(got, biased)
    assert reference.token_ids == [favourite, runner_up]
    first, second = reference.logprobs
    assert first.top[0] == (favourite, first.logprob)
    assert second.top[0][0] == favourite and second.top[1] == (runner_up, second.logprob)
    assert second.top[0][1] == pytest.approx(first.logprob, abs=1e-5)  # the same row, raw


def test_processed_greedy_logprobs_make_each_token_the_best_of_its_list(biased, words):
    favourite, runner_up = words
    processed = biased.processed()
    params = GenerationParams(max_new_tokens=2, logprobs=5)
    got = {name: g.generate(TITLE, params).sequences[0] for name, g in processed.items()}
    reference = agree(got, processed)
    assert reference.token_ids == [favourite, runner_up]
    for name, sequence in got.items():
        for entry in sequence.logprobs:
            assert entry.top[0] == (entry.token_id, entry.logprob), name  # lm-eval's "greedy"


def test_sampled_logprobs_are_the_models_own_distribution(biased):
    """raw_logprobs: top-k 3 draws from three tokens, yet each token's list holds the model's
    five likeliest, its value the model's log-softmax given the tokens before it."""
    import torch
    from transformers import GPT2LMHeadModel

    params = GenerationParams(do_sample=True, top_k=3, seed=4, max_new_tokens=6, logprobs=5,
                              num_return_sequences=2)
    model = GPT2LMHeadModel.from_pretrained(biased.source).eval()
    for name, generator in biased.items():
        result = generator.generate(OTHER_TITLE, params)
        for sequence in result.sequences:
            ids = result.prompt_ids + sequence.token_ids
            with torch.inference_mode():
                logits = model(torch.tensor([ids])).logits[0, len(result.prompt_ids) - 1:]
            expected = torch.log_softmax(logits, -1).numpy()
            assert len(sequence.logprobs) == len(sequence.token_ids) == 6
            for step, entry in enumerate(sequence.logprobs):
                assert len(entry.top) == 5, name
                assert entry.logprob == pytest.approx(expected[step, entry.token_id],
                                                      abs=biased.precision), name
                top = [v for _, v in entry.top]
                np.testing.assert_allclose(top, np.sort(expected[step])[::-1][:5],
                                           atol=biased.precision)


def test_processed_sampled_logprobs_come_from_the_warped_distribution(biased):
    params = GenerationParams(do_sample=True, top_k=3, seed=4, max_new_tokens=6, logprobs=5,
                              num_return_sequences=2)
    for name, generator in biased.processed().items():
        for sequence in generator.generate(OTHER_TITLE, params).sequences:
            for entry in sequence.logprobs:
                assert len(entry.top) == 3, name  # three can be drawn: no -inf alternatives
                assert entry.token_id in dict(entry.top)
                assert dict(entry.top)[entry.token_id] == entry.logprob
                assert np.exp([v for _, v in entry.top]).sum() == pytest.approx(1, abs=1e-5)


SAMPLED = [
    GenerationParams(do_sample=True, top_k=0, top_p=0.9, seed=5, max_new_tokens=16,
                     num_return_sequences=2, logprobs=2),
    GenerationParams(do_sample=True, seed=6, max_new_tokens=16, temperature=0.7),
    GenerationParams(do_sample=True, top_k=0, top_p=0.5, temperature=1.3, seed=7,
                     max_new_tokens=16, repetition_penalty=1.0, logprobs=1),
]


@pytest.mark.parametrize("biased", ["float32"], indirect=True)
@pytest.mark.parametrize("params", SAMPLED, ids=lambda p: p.model_dump_json(
    exclude_defaults=True))
def test_seeded_samples_on_openvino_float32_are_the_references(
    biased, params, tiny_model_dir, tiny_ov_float32_dir
):
    """The same seed, the same text: OpenVINO (float32) draws what the reference draws with
    transformers' own warpers, on flat rows (the tiny stand-in's random weights) and peaked
    ones (the copy that favours a word), every row of n."""
    flat = {"transformers": tiny_model_dir, "openvino": tiny_ov_float32_dir}
    for dirs in (flat, biased.dirs):
        got = {name: Generator(str(dirs[name]), engine=name, threads=1).generate(
            OTHER_TITLE, params).sequences for name in ("transformers", "openvino")}
        reference = got["transformers"]
        assert [s.token_ids for s in got["openvino"]] == [s.token_ids for s in reference]
        assert logprobs_of([got["openvino"]]) == pytest.approx(logprobs_of([reference]),
                                                                abs=1e-4)
        assert len({token for s in reference for token in s.token_ids}) > 3  # drawn


def test_echo_scores_the_prompt_with_the_raw_model_in_either_mode(biased, tokenizer):
    """A prompt's log-probabilities (echo) are the model's own in both modes: lm-eval's
    loglikelihood and "is greedy" read them."""
    ids = tokenizer.encode(OTHER_TITLE + " " + TITLE, add_special_tokens=False).ids
    params = GenerationParams(max_new_tokens=1, prompt_logprobs=2, logprobs=2)
    other_mode = biased.processed()
    for name, generator in biased.items():
        raw = generator.generate(ids, params)
        processed = other_mode[name].generate(ids, params)
        assert processed.prompt_logprobs == raw.prompt_logprobs, name
        assert raw.prompt_logprobs[0] is None and len(raw.prompt_logprobs) == len(ids)


@pytest.mark.parametrize("engine", ["ctranslate2", "openvino"])
def test_prompt_logprobs_of_float32_engines_are_the_references(
    engine, tiny_model_dir, tiny_ct2_float32_dir, tiny_ov_float32_dir, tokenizer
):
    ids = tokenizer.encode(OTHER_TITLE + " " + TITLE, add_special_tokens=False).ids
    params = GenerationParams(max_new_tokens=0, prompt_logprobs=3)
    reference = Generator(str(tiny_model_dir), engine="transformers").generate(ids, params)
    model_dir = {"ctranslate2": tiny_ct2_float32_dir, "openvino": tiny_ov_float32_dir}[engine]
    got = Generator(str(model_dir), engine=engine).generate(ids, params)
    assert reference.prompt_logprobs[0] is None and got.prompt_logprobs[0] is None
    assert len(got.prompt_logprobs) == len(ids)
    for mine, theirs in zip(got.prompt_logprobs[1:], reference.prompt_logprobs[1:], strict=True):
        assert mine.token_id == theirs.token_id
        assert mine.logprob == pytest.approx(theirs.logprob, abs=1e-4)
        assert [t for t, _ in mine.top] == [t for t, _ in theirs.top]


def test_scoring_only_generates_nothing_and_one_token_scores_too(biased, words, tokenizer):
    favourite, _ = words
    generator = biased["transformers"]
    ids = tokenizer.encode(TITLE, add_special_tokens=False).ids
    scored = generator.generate(ids, GenerationParams(max_new_tokens=0, prompt_logprobs=1))
    [sequence] = scored.sequences
    assert (sequence.token_ids, sequence.generated_tokens, sequence.text) == ([], 0, TITLE)
    assert scored.prompt_ids == ids and len(scored.prompt_logprobs) == len(ids)
    # lm-eval's loglikelihood request: echo, logprobs 1, one new token.
    one = generator.generate(ids, GenerationParams(max_new_tokens=1, prompt_logprobs=1,
                                                   logprobs=1, **FLAT))
    assert one.sequences[0].token_ids == [favourite]
    assert one.sequences[0].logprobs[0].top == [(favourite, one.sequences[0].logprobs[0].logprob)]
    assert one.prompt_logprobs == scored.prompt_logprobs


def test_an_engine_refuses_what_it_lacks_before_anything_loads(tiny_ct2_dir, tiny_ov_dir):
    for model_dir, engine, asked, feature in [
        (tiny_ct2_dir, "ctranslate2", {"logit_bias": {5: 1.0}}, "logit_bias"),
        (tiny_ct2_dir, "ctranslate2", {"presence_penalty": 0.5}, "presence_penalty"),
        (tiny_ct2_dir, "ctranslate2", {"frequency_penalty": -0.5}, "frequency_penalty"),
    ]:
        generator = Generator(str(model_dir), engine="auto", threads=1)
        with pytest.raises(InvalidInput) as refused:
            generator.check(TITLE, GenerationParams(**asked))
        assert str(refused.value) == f"the {engine} engine does not implement {feature}"
        assert refused.value.field == feature
        assert not generator.loaded


@pytest.mark.parametrize("prompt, params, field", [
    ([], GenerationParams(), "prompt"),
    ([5, 51200], GenerationParams(), "prompt"),
    ([5, -1], GenerationParams(), "prompt"),
    (TITLE, GenerationParams(logit_bias={51200: 1.0}), "logit_bias"),
    (TITLE, GenerationParams(stop_token_ids=[7, 99999]), "stop_token_ids"),
    (TITLE, GenerationParams(max_new_tokens=3, min_new_tokens=4), "min_new_tokens"),
])
def test_bad_ids_and_lists_name_the_field(tiny_model_dir, prompt, params, field):
    generator = Generator(str(tiny_model_dir), engine="transformers", threads=1)
    with pytest.raises(InvalidInput) as refused:
        generator.check(prompt, params)
    assert refused.value.field == field and field in str(refused.value)
    assert not generator.loaded


def test_a_batch_of_prompts_gives_each_prompt_its_own_text(
    tiny_model_dir, tiny_ct2_float32_dir, tiny_ov_float32_dir
):
    """Greedy and seeded: a prompt's text in a batch is what it gets alone, on every engine's
    float32 path, exactly (prompts of different lengths, as rows of one batch where the
    engine batches)."""
    texts = [TITLE, OTHER_TITLE, TITLE + " 그리고 " + OTHER_TITLE, "서울"]
    dirs = {"transformers": tiny_model_dir, "ctranslate2": tiny_ct2_float32_dir,
            "openvino": tiny_ov_float32_dir}
    for params in [GenerationParams(max_new_tokens=12),
                   GenerationParams(max_new_tokens=12, do_sample=True, top_k=0, seed=9,
                                    num_return_sequences=2, logprobs=1)]:
        for name, model_dir in dirs.items():
            generator = Generator(str(model_dir), engine=name, threads=1)
            prompts = [generator.check(text, params) for text in texts]
            together = generator.run(prompts)
            alone = [generator.run(prompt) for prompt in prompts]
            assert texts_of(together) == texts_of(alone), name
            # A float32 row's log-probabilities beside others: the same within float rounding.
            assert logprobs_of(together) == pytest.approx(logprobs_of(alone), abs=1e-6), name
            assert len({r.seed for r in together}) == 1


def texts_of(results):
    return [[(s.text, s.token_ids, s.finish_reason) for s in r.sequences] for r in results]


def logprobs_of(results):
    """Every log-probability of results, or of lists of sequences."""
    rows = [r if isinstance(r, list) else r.sequences for r in results]
    return [t.logprob for sequences in rows for s in sequences for t in s.logprobs or []]


def test_a_prompt_that_starts_with_the_end_of_text_keeps_every_new_token(
    tiny_model_dir, tiny_ct2_float32_dir, tiny_ov_float32_dir, tokenizer
):
    """lm-eval's rolling windows begin with </s> (KoGPT2's BOS is its EOS). CTranslate2 leaves a
    leading BOS out of its result: its first new token must not be taken for the prompt's."""
    ids = [EOS, *tokenizer.encode(TITLE, add_special_tokens=False).ids]
    params = GenerationParams(max_new_tokens=3, logprobs=1)
    dirs = {"transformers": tiny_model_dir, "ctranslate2": tiny_ct2_float32_dir,
            "openvino": tiny_ov_float32_dir}
    got = {name: Generator(str(path), engine=name, threads=1).generate(ids, params).sequences[0]
           for name, path in dirs.items()}
    reference = got["transformers"]
    assert len(reference.token_ids) == 3
    for name, sequence in got.items():
        assert sequence.token_ids == reference.token_ids, name
        assert [t.logprob for t in sequence.logprobs] == pytest.approx(
            [t.logprob for t in reference.logprobs], abs=1e-4), name


def test_token_ids_prompts_and_the_tokenizer_verbs(tiny_model_dir, tokenizer):
    generator = Generator(str(tiny_model_dir), engine="transformers", threads=1)
    ids = generator.tokenize(TITLE)
    assert ids == tokenizer.encode(TITLE, add_special_tokens=False).ids
    assert generator.detokenize(ids) == TITLE
    # Special tokens stay; the title's first word begins with the tokenizer's space mark.
    assert generator.detokenize([EOS] + ids) == "</s> " + TITLE
    with pytest.raises(InvalidInput, match="tokens holds token id 51200"):
        generator.detokenize([51200])
    assert generator.special_tokens() == {"eos_token": "</s>", "bos_token": "</s>",
                                          "pad_token": "<pad>", "unk_token": "<unk>"}
    assert generator.vocab_size == 51200
    assert not generator.loaded  # none of it needs the model
    by_ids = generator.generate(ids, GenerationParams(max_new_tokens=10))
    by_text = generator.generate(TITLE, GenerationParams(max_new_tokens=10))
    assert by_ids.sequences == by_text.sequences


def test_token_pieces_join_to_the_continuation(tiny_model_dir):
    generator = Generator(str(tiny_model_dir), engine="transformers", threads=1)
    result = generator.generate(TITLE, GenerationParams(max_new_tokens=12))
    [sequence] = result.sequences
    pieces = generator.token_pieces(result.prompt_ids, sequence.token_ids)
    assert len(pieces) == 12 and TITLE + "".join(pieces) == sequence.text
    words = generator.tokenize(" 근육을 키우려면")
    pieces = generator.token_pieces(result.prompt_ids, words)
    assert pieces[0].startswith(" ") and "".join(pieces) == " 근육을 키우려면"  # the space too


def test_batch_stats_count_rows_and_the_engines_cap(tiny_model_dir, tiny_ov_dir):
    generator = Generator(str(tiny_ov_dir), engine="openvino", threads=1)
    assert generator.batch_stats() == {"rows_running": 0, "rows_waiting": 0, "max_rows": None}
    heard = []
    params = GenerationParams(do_sample=True, seed=1, num_return_sequences=3, max_new_tokens=3)
    generator.generate(TITLE, params, on_token=lambda *_: heard.append(generator.batch_stats()))
    assert heard[0] == {"rows_running": 3, "rows_waiting": 0, "max_rows": 20}
    assert generator.batch_stats()["rows_running"] == 0


def test_queued_ms_counts_the_wait_for_the_engine(tiny_model_dir):
    import threading

    generator = Generator(str(tiny_model_dir), engine="transformers", threads=1)
    generator.load()
    started, release, results = threading.Event(), threading.Event(), []

    def hold(*_):
        started.set()
        release.wait(10)

    first = threading.Thread(target=lambda: generator.generate(
        TITLE, GenerationParams(max_new_tokens=2), on_token=hold))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=lambda: results.append(
        generator.generate(TITLE, GenerationParams(max_new_tokens=2))))
    second.start()
    while generator.batch_stats()["rows_waiting"] == 0:
        time.sleep(0.01)
    time.sleep(0.2)
    release.set()
    first.join()
    second.join()
    assert results[0].queued_ms >= 200


def test_full_size_prompt_logprobs_are_transformers_log_softmax(full_size_model_dir):
    """On KoGPT2's real shape: the reference path's prompt log-probabilities are the
    log-softmax of the model's logits, within 1e-4."""
    import torch
    from transformers import GPT2LMHeadModel

    generator = Generator(str(full_size_model_dir), engine="transformers", threads=2)
    ids = generator.tokenize(OTHER_TITLE + " " + TITLE)
    result = generator.generate(ids, GenerationParams(max_new_tokens=0, prompt_logprobs=5))
    model = GPT2LMHeadModel.from_pretrained(full_size_model_dir).eval()
    with torch.inference_mode():
        expected = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1).numpy()
    for i, entry in enumerate(result.prompt_logprobs[1:]):
        assert entry.logprob == pytest.approx(expected[i, ids[i + 1]], abs=1e-4)
        top = np.argsort(-expected[i])[:5]
        np.testing.assert_allclose([v for _, v in entry.top], expected[i, top], atol=1e-4)


def test_engine_kinds_declare_features_without_loading():
    assert engines.CTRANSLATE2.features == engines.ENGINES["ctranslate2"].features
    assert "logit_bias" not in engines.CTRANSLATE2.features


def test_ctranslate2_serves_concurrent_greedy_calls_in_one_batch(tiny_ct2_float32_dir,
                                                                 tokenizer, monkeypatch):
    import threading

    from kogpt2.model.seam import EngineRequest, Watch

    engine = engines.load(engines.CTRANSLATE2, tiny_ct2_float32_dir, threads=1,
                          compute_type="default", tokenizer=tokenizer)
    params = GenerationParams(max_new_tokens=6)
    texts = ["서울", OTHER_TITLE, TITLE + " 그리고"]

    def call(text, watch=None):
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        [result] = engine.generate([EngineRequest(ids, 6, params, None, watch or Watch())])
        return result.rows[0].token_ids

    alone = [call(text) for text in texts]
    rounds, real_run = [], engine._run
    monkeypatch.setattr(engine, "_run", lambda rows, options: rounds.append(len(rows))
                        or real_run(rows, options))
    holding, release = threading.Event(), threading.Event()

    def hold(*_):
        holding.set()
        release.wait(10)

    first = threading.Thread(target=call, args=(TITLE, Watch(on_token=hold)))
    first.start()
    assert holding.wait(10)
    got = {}
    waiting = [threading.Thread(target=lambda t=text: got.update({t: call(t)}))
               for text in texts]
    for thread in waiting:
        thread.start()
    while engine.stats()["rows_waiting"] < 3:
        time.sleep(0.01)
    release.set()
    for thread in [first, *waiting]:
        thread.join()
    assert [got[text] for text in texts] == alone
    # The held call's round had its one row; the three that waited began in one round.
    assert rounds[0] == 1 and 3 in rounds


def test_ctranslate2_reads_a_scored_prompt_once_for_one_new_tokens_logprobs(
    tiny_ct2_float32_dir, tokenizer, monkeypatch
):
    """lm-eval's loglikelihood request (echo, logprobs, one new token): the prompt's pass
    gives the new token's raw log-probability too, not a second pass over the same ids."""
    from kogpt2.model.seam import EngineRequest, Watch

    engine = engines.load(engines.CTRANSLATE2, tiny_ct2_float32_dir, threads=1,
                          compute_type="default", tokenizer=tokenizer)
    passes, real = [], engine._forward
    monkeypatch.setattr(engine, "_forward", lambda ids: passes.append(len(ids)) or real(ids))
    ids = tokenizer.encode(TITLE, add_special_tokens=False).ids
    params = GenerationParams(max_new_tokens=1, prompt_logprobs=1, logprobs=1)
    [result] = engine.generate([EngineRequest(ids, 1, params, None, Watch())])
    assert passes == [len(ids)]
    [token] = result.rows[0].token_ids
    alone = sampling.token_logprob(real(ids)[-1], token, 1)
    assert result.rows[0].logprobs == [alone]
    two = GenerationParams(max_new_tokens=2, prompt_logprobs=1, logprobs=1)
    engine.generate([EngineRequest(ids, 2, two, None, Watch())])
    assert passes[1:] == [len(ids), len(ids) + 1]  # the prompt, then prompt and first token
