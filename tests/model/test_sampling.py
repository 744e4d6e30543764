"""sampling.py, the one place where a row's next token is chosen, against transformers' own
logits processors and warpers (the reference engine's chain, engines/transformers.py)."""

import numpy as np
import pytest
import torch

from kogpt2.model import sampling
from kogpt2.model.engines.transformers import processors
from kogpt2.model.params import GenerationParams
from kogpt2.model.sampling import RowSampler

EOS = 1
VOCAB = 3000
FULL = 51200  # KoGPT2's vocabulary


def reference_scores(logits, prompt, generated, params):
    """The scores transformers samples from (or takes the argmax of), -inf where filtered."""
    ids = torch.tensor([prompt + generated])
    scores = torch.tensor(logits[None])
    return processors(params, len(prompt), EOS)(ids, scores)[0].numpy()


def sampler_after(params, prompt, generated, seed=0, mode="raw_logprobs"):
    """A RowSampler that has made `generated` already."""
    row = RowSampler(params, prompt, eos_id=EOS, seed=seed if params.do_sample else None,
                     logprobs_mode=mode)
    for token in generated:
        row.record(token)
    return row


def race_over(scores, kept, seed, choice, step):
    """The draw as defined: among `kept` (ids into `scores`, transformers' warped scores), the
    largest p / E, each token's E its own at (seed, choice, step)."""
    exponentials = sampling.exponentials(seed, choice, step, kept, scores.size)
    weights = np.exp(scores[kept] - scores[kept].max())
    return int(kept[np.argmax(weights / exponentials)])


PARAMS = [
    GenerationParams(),
    GenerationParams(repetition_penalty=1.3),
    GenerationParams(do_sample=True),
    GenerationParams(do_sample=True, top_k=0),
    GenerationParams(do_sample=True, top_k=0, top_p=0.9, temperature=0.7),
    GenerationParams(do_sample=True, top_k=5, top_p=0.5, temperature=1.5),
    GenerationParams(do_sample=True, top_k=1),
    GenerationParams(do_sample=True, top_k=0, top_p=1e-6),
    GenerationParams(do_sample=True, top_k=1000, top_p=0.95, repetition_penalty=1.0),
    GenerationParams(presence_penalty=1.5, frequency_penalty=-0.7),
    GenerationParams(do_sample=True, top_k=0, top_p=0.8, presence_penalty=-2.0,
                     frequency_penalty=2.0),
    GenerationParams(logit_bias={7: 100.0, 11: -100.0, 12: 3.25, 2999: -0.5}),
    GenerationParams(logit_bias={7: 4.0, 12: -3.0}, presence_penalty=0.5),
    GenerationParams(min_new_tokens=50, stop_token_ids=[4, 9]),
    GenerationParams(ignore_eos=True, do_sample=True, top_k=20, logit_bias={EOS: 50.0}),
]
IDS = lambda p: p.model_dump_json(exclude_defaults=True)  # noqa: E731


def rows(rng, count=5):
    for _ in range(count):
        logits = (rng.standard_normal(VOCAB) * 3).astype(np.float32)
        logits[:10] = logits[10]  # ties at the top-k edge must be kept, as transformers keeps
        logits[[EOS, 4, 9]] = logits.max() + np.array([1, 1.5, 2])  # on top, for the masks
        prompt = list(rng.integers(0, VOCAB, 20)) + [0, 5]
        generated = list(rng.integers(0, VOCAB, 20)) + [12, 12, 12, 7]
        yield logits, [int(t) for t in prompt], [int(t) for t in generated]


@pytest.mark.parametrize("params", PARAMS, ids=IDS)
def test_processing_and_warpers_match_transformers(params):
    rng = np.random.default_rng(0)
    for logits, prompt, generated in rows(rng):
        expected = reference_scores(logits, prompt, generated, params)
        mine = sampler_after(params, prompt, generated).process(logits.copy())
        if not params.do_sample:
            np.testing.assert_array_equal(mine, expected)
            continue
        candidates, probs = sampling.distribution(mine, params)
        assert set(candidates.tolist()) == set(np.flatnonzero(np.isfinite(expected)).tolist())
        finite = expected[candidates]
        reference = np.exp(finite - finite.max()) / np.exp(finite - finite.max()).sum()
        np.testing.assert_allclose(probs, reference, rtol=1e-5, atol=1e-9)


def test_logit_bias_comes_before_the_repetition_penalty():
    """transformers' own list (SequenceBiasLogitsProcessor first) and vLLM add the bias, then
    penalize: a token already seen, at 12 with a bias of 4, is (12 + 4) / 2 = 8, not
    12 / 2 + 4 = 10; then the presence penalty."""
    params = GenerationParams(logit_bias={5: 4.0}, presence_penalty=0.5)
    logits = np.zeros(8, dtype=np.float32)
    logits[5] = 12.0
    processed = sampler_after(params, [5], [5]).process(logits.copy())
    assert processed[5] == 7.5


def test_the_reference_chain_is_transformers_own_order():
    """transformers' own generate, given the knobs as its GenerationConfig fields, processes
    each step's logits as processors() does: its own list adds the bias first."""
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64,
                                       n_positions=32)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(40)  # logits of a few units: the penalty and bias matter
    prompt = torch.tensor([[5, 6, 7]])
    bias = {5: 4.0, 9: -2.0, 6: 1.5}
    params = GenerationParams(repetition_penalty=1.7, logit_bias=bias)
    own = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=(
        GenerationConfig(max_new_tokens=4, do_sample=False, repetition_penalty=1.7,
                         sequence_bias=[[[token], value] for token, value in bias.items()],
                         output_scores=True, output_logits=True, return_dict_in_generate=True,
                         pad_token_id=0, eos_token_id=None)))
    for step, (logits, scores) in enumerate(zip(own.logits, own.scores, strict=True)):
        ids = own.sequences[:, : prompt.shape[1] + step]
        torch.testing.assert_close(processors(params, 3, EOS)(ids, logits.clone()), scores)


def test_a_tie_across_the_top_p_edge_keeps_as_many_as_transformers_the_higher_ids():
    """Where tied tokens straddle the top-p edge, transformers keeps as many as it needs in
    the order its (unstable) sort left them; here the order is fixed: the higher ids first,
    as a stable ascending sort leaves them (the rule before this module existed)."""
    logits = np.zeros(20, dtype=np.float32)
    logits[[3, 8, 13, 17]] = 5.0  # four equal tokens hold almost all the mass
    params = GenerationParams(do_sample=True, top_k=0, top_p=0.6, repetition_penalty=1.0)
    expected = reference_scores(logits, [0], [], params)
    candidates, probs = sampling.distribution(logits.copy(), params)
    assert len(candidates) == np.isfinite(expected).sum() == 3
    assert sorted(candidates.tolist()) == [8, 13, 17]
    np.testing.assert_allclose(probs, [1 / 3] * 3)
    # The race never draws the fourth, whatever the numbers.
    draws = {sampling.draw(logits.copy(), params, 1, 0, step) for step in range(300)}
    assert draws == {8, 13, 17}


def test_presence_and_frequency_are_openais_definitions():
    params = GenerationParams(repetition_penalty=1.0, presence_penalty=0.5,
                              frequency_penalty=0.25)
    row = sampler_after(params, prompt=[3, 4], generated=[5, 5, 5, 6])
    logits = row.process(np.zeros(8, dtype=np.float32))
    # 5 came 3 times: 0.5 + 3 * 0.25; 6 once: 0.5 + 0.25; 3 and 4 only in the prompt: nothing.
    assert logits.tolist() == [0, 0, 0, 0, 0, -1.25, -0.75, 0]


def test_end_tokens_are_masked_before_min_new_tokens_and_eos_with_ignore_eos():
    params = GenerationParams(repetition_penalty=1.0, min_new_tokens=2, stop_token_ids=[4])
    row = sampler_after(params, [3], [])
    logits = np.zeros(6, dtype=np.float32)
    logits[[EOS, 4]] = 5.0
    assert row.choose(logits.copy())[0] == 0  # not EOS, not 4: the first of the rest
    assert row.choose(logits.copy())[0] == 0
    assert row.choose(logits.copy())[0] == EOS  # from the third new token on
    assert row.ends(EOS) and row.ends(4) and not row.ends(0)
    ignore = sampler_after(GenerationParams(repetition_penalty=1.0, ignore_eos=True), [3], [])
    assert ignore.choose(logits.copy())[0] == 4 and not ignore.ends(EOS)


# --- the draw --------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    GenerationParams(do_sample=True, top_k=3, repetition_penalty=1.0),
    GenerationParams(do_sample=True, top_k=0, top_p=0.85, repetition_penalty=1.0),
], ids=IDS)
def test_draws_follow_the_distribution(params):
    logits = np.full(100, -10.0, dtype=np.float32)
    logits[[3, 7, 9]] = np.log([0.5, 0.3, 0.2])
    row = RowSampler(params, [], eos_id=EOS, seed=1)
    draws = [row.choose(logits.copy())[0] for _ in range(20000)]
    counts = {token: draws.count(token) / len(draws) for token in set(draws)}
    # With top_p 0.85: 0.5 + 0.3 hold less, so 9 is in; the rest (0.004 in all) are out.
    assert counts.keys() == {3, 7, 9}
    assert counts == pytest.approx({3: 0.5, 7: 0.3, 9: 0.2}, abs=0.015)


def test_the_exponentials_are_each_tokens_own_and_exp1():
    every = sampling.exponentials(5, 2, 7, None, FULL)
    some = np.array([0, 3, 777, FULL - 1])
    # A token's number is its own: asked alone or among all, the same.
    np.testing.assert_array_equal(sampling.exponentials(5, 2, 7, some, FULL), every[some])
    assert every.dtype == np.float32 and np.all(every > 0) and np.all(np.isfinite(every))
    assert len(np.unique(every)) > 0.998 * FULL  # a few coincide, rounded to float32
    # Exp(1): its mean and median; and a key's change changes every number.
    many = np.concatenate([sampling.exponentials(9, 0, step, None, FULL) for step in range(40)])
    assert many.mean() == pytest.approx(1.0, abs=0.005)
    assert np.mean(many < np.log(2)) == pytest.approx(0.5, abs=0.003)
    for other in [(5, 2, 8), (5, 3, 7), (6, 2, 7)]:
        changed = sampling.exponentials(*other, None, FULL)
        assert abs(np.corrcoef(every, changed)[0, 1]) < 0.02
        assert np.mean(every == changed) < 0.001


def test_a_rows_draws_depend_on_its_seed_and_choice_only():
    params = GenerationParams(do_sample=True, top_k=0, repetition_penalty=1.0)
    logits = np.zeros(1000, dtype=np.float32)

    def draws(seed, choice):
        row = RowSampler(params, [], eos_id=EOS, seed=seed, choice=choice)
        return [row.choose(logits.copy())[0] for _ in range(20)]

    assert draws(5, 2) == draws(5, 2)
    assert len({tuple(draws(5, c)) for c in range(4)} | {tuple(draws(6, 0))}) == 5


def test_a_moved_top_p_boundary_leaves_the_later_draws_alone():
    """A step's draw is keyed to (seed, choice, step): how many tokens an earlier step could
    draw (its top-p boundary) doesn't move what the later steps draw."""
    rng = np.random.default_rng(11)
    flat = (rng.standard_normal(FULL) * 0.1).astype(np.float32)  # top_p moves its boundary
    later = []
    for _ in range(12):  # three likely tokens, both top_p values keep exactly those three
        row = np.full(FULL, -30.0, dtype=np.float32)
        row[rng.choice(FULL, 3, replace=False)] = 0.0
        later.append(row)

    def draws(top_p):
        params = GenerationParams(do_sample=True, top_k=0, top_p=top_p, repetition_penalty=1.0)
        row = RowSampler(params, [], eos_id=EOS, seed=3)
        return [row.choose(logits.copy())[0] for logits in [flat, *later]]

    at_90, at_95 = draws(0.9), draws(0.95)
    assert len(sampling.nucleus(flat, 0.9)) < len(sampling.nucleus(flat, 0.95))
    assert at_90[1:] == at_95[1:]
    assert len(set(at_90[1:])) > 1  # they are draws, not the one likeliest token


@pytest.mark.parametrize("params", [
    GenerationParams(do_sample=True, top_k=0, top_p=0.9),
    GenerationParams(do_sample=True, top_k=0, top_p=0.5, temperature=0.7),
    GenerationParams(do_sample=True, top_k=0),
    GenerationParams(do_sample=True),
    GenerationParams(do_sample=True, top_k=200, top_p=0.95, temperature=1.3),
    GenerationParams(do_sample=True, top_k=0, top_p=0.2, logit_bias={42: 2.0},
                     presence_penalty=0.5),
], ids=IDS)
@pytest.mark.parametrize("scale", [0.1, 3.0], ids=["flat", "peaked"])
def test_sampled_tokens_are_the_race_over_transformers_warped_set(params, scale):
    """The same draws, transformers' warpers: what a row draws is the race (each token's own
    numbers at its step) over the tokens transformers' chain leaves finite, on KoGPT2-sized
    rows, flat as the stand-in's (top_p 0.9 keeps ~90%) or peaked as a trained model's."""
    rng = np.random.default_rng(int(scale * 10))
    prompt = [int(t) for t in rng.integers(0, FULL, 12)]
    row = RowSampler(params, prompt, eos_id=EOS, seed=77, choice=1)
    generated = []
    for step in range(8):
        logits = (rng.standard_normal(FULL) * scale).astype(np.float32)
        scores = reference_scores(logits, prompt, generated, params)
        expected = race_over(scores, np.flatnonzero(np.isfinite(scores)), 77, 1, step)
        token, _ = row.choose(logits)
        assert token == expected
        generated.append(token)


def test_top_p_sampling_orders_nothing(monkeypatch):
    """No sort of the vocabulary on the way to a token, however flat the row."""
    def no_sort(*_):
        raise AssertionError("sorted")

    monkeypatch.setattr(sampling, "ascending", no_sort)
    monkeypatch.setattr(np, "sort", no_sort)
    monkeypatch.setattr(np, "argsort", no_sort)
    rng = np.random.default_rng(5)
    params = GenerationParams(do_sample=True, top_k=0, top_p=0.9)
    row = RowSampler(params, [3, 4], eos_id=EOS, seed=5)
    for _ in range(20):
        row.choose((rng.standard_normal(FULL) * 0.1).astype(np.float32))


# --- top-p's set, listed and raced, against a plain full sort ---------------------------------

def full_sort_nucleus(scores, top_p):
    """TopPLogitsWarper's rule written plainly: a stable sort of every score, best first
    (ties: the higher index first), each kept while the ones before it hold < top_p."""
    order = np.argsort(scores + np.float32(0.0), kind="stable")[::-1]
    weights = np.exp(scores - scores.max()).astype(np.float64)
    above = np.concatenate(([0.0], np.cumsum(weights[order])[:-1]))
    return np.sort(order[above < top_p * weights.sum()])


def adversarial_rows(rng, size=FULL):
    yield (rng.standard_normal(size) * 0.1).astype(np.float32)  # flat: random weights
    for scale in (2.0, 4.0, 8.0):  # peaked, as a trained model's
        yield (rng.standard_normal(size) * scale).astype(np.float32)
    yield np.zeros(size, dtype=np.float32)  # all equal
    one = np.zeros(size, dtype=np.float32)
    one[777] = 30.0  # one token holds all but all the mass
    yield one
    ties = (rng.standard_normal(size) * 4).astype(np.float32)
    ties[rng.choice(size, 40, replace=False)] = ties.max() + 1  # 40 tied at the top
    yield ties
    edge = (rng.standard_normal(size) * 4).astype(np.float32)
    edge[np.argsort(edge)[-300:]] = np.sort(edge)[-300]  # a tie across the boundary
    yield edge
    masked = (rng.standard_normal(size) * 4).astype(np.float32)
    masked[rng.choice(size, 1000, replace=False)] = -np.inf  # masked tokens (min_new_tokens)
    yield masked
    zeros = (rng.standard_normal(size) * 4).astype(np.float32)
    zeros[:5], zeros[5:10] = -0.0, 0.0  # -0.0 and 0.0 are equal to a sort
    zeros[10] = zeros.max() + 1
    yield zeros


@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.95, 0.999, 1e-6])
def test_top_p_keeps_and_draws_what_the_full_sort_keeps(top_p):
    """The listed set (processed log-probabilities) is the full sort's; the race draws from
    it, by the same numbers, without listing it."""
    rng = np.random.default_rng(int(top_p * 1000))
    params = GenerationParams(do_sample=True, top_k=0, top_p=top_p, repetition_penalty=1.0)
    for row, scores in enumerate(adversarial_rows(rng)):
        kept = full_sort_nucleus(scores, top_p)
        np.testing.assert_array_equal(sampling.nucleus(scores, top_p), kept)
        for step in range(4):
            assert sampling.draw(scores.copy(), params, row, 0, step) == race_over(
                scores, kept, row, 0, step)


# --- log-probabilities ------------------------------------------------------------------------

def test_raw_logprobs_are_the_models_own_distribution():
    """The default (vLLM's raw_logprobs): before the penalty, the bias, the masks and the
    warpers, so a greedy token needn't be the best of its list, and top-p's cut takes none
    of the alternatives."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal(50).astype(np.float32)
    logits[8] = logits.max() + 1.0  # the model's favourite, already in the prompt
    expected = torch.log_softmax(torch.tensor(logits), -1).numpy()
    greedy = GenerationParams(logprobs=3, logit_bias={9: 1.0})  # penalty 2.0 on 8
    token, logprob = sampler_after(greedy, [8], []).choose(logits.copy())
    assert token != 8 and logprob.token_id == token
    assert logprob.logprob == pytest.approx(expected[token], abs=1e-6)
    assert [t for t, _ in logprob.top] == np.argsort(-expected)[:3].tolist()
    assert logprob.top[0][0] == 8
    np.testing.assert_allclose([v for _, v in logprob.top], np.sort(expected)[::-1][:3],
                               atol=1e-6)
    sampled = GenerationParams(do_sample=True, top_k=0, top_p=0.05, logprobs=5,
                               repetition_penalty=1.0)
    token, logprob = sampler_after(sampled, [1], [], seed=4).choose(logits.copy())
    assert token == 8  # top_p 0.05 leaves the favourite alone
    assert logprob.logprob == pytest.approx(expected[8], abs=1e-6)
    assert [t for t, _ in logprob.top] == np.argsort(-expected)[:5].tolist()


def test_processed_greedy_logprobs_come_from_the_processed_logits_the_token_the_best():
    params = GenerationParams(logprobs=3, logit_bias={8: 10.0})
    rng = np.random.default_rng(3)
    logits = rng.standard_normal(50).astype(np.float32)
    row = sampler_after(params, [1, 2], [], mode="processed_logprobs")
    token, logprob = row.choose(logits.copy())
    processed = sampler_after(params, [1, 2], []).process(logits.copy())
    expected = torch.log_softmax(torch.tensor(processed), -1).numpy()
    assert token == 8 and logprob.token_id == 8
    assert logprob.logprob == pytest.approx(expected[8], abs=1e-6)
    assert [t for t, _ in logprob.top] == np.argsort(-expected)[:3].tolist()
    assert logprob.top[0] == (token, logprob.logprob)
    np.testing.assert_allclose([v for _, v in logprob.top], np.sort(expected)[::-1][:3],
                               atol=1e-6)


def test_processed_sampled_logprobs_come_from_the_warped_distribution():
    params = GenerationParams(do_sample=True, top_k=4, temperature=0.5, logprobs=5,
                              repetition_penalty=1.0)
    logits = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -1.0], dtype=np.float32)
    row = RowSampler(params, [], eos_id=EOS, seed=2, logprobs_mode="processed_logprobs")
    token, logprob = row.choose(logits.copy())
    warped = torch.log_softmax(torch.tensor(logits[2:6] / 0.5, dtype=torch.float64), -1)
    assert logprob.token_id == token and 2 <= token <= 5
    assert logprob.logprob == pytest.approx(warped[token - 2].item(), abs=1e-6)
    # Four tokens can be drawn: only four alternatives, never a -inf one.
    assert [t for t, _ in logprob.top] == [5, 4, 3, 2]


def test_a_drawn_token_outside_the_listed_set_joins_it():
    """CTranslate2 draws by its own rules: a token tied at its top-k edge that the warpers
    leave out still gets its log-probability, as drawn."""
    logits = np.array([3.0, 1.0, 1.0, 0.0], dtype=np.float32)
    params = GenerationParams(do_sample=True, top_k=2, logprobs=3)
    entry = sampling.sampled_logprob(logits.copy(), params, 3, 3)
    assert entry.token_id == 3 and np.isfinite(entry.logprob)
    assert {t for t, _ in entry.top} == {0, 1, 2}


def test_best_breaks_ties_by_the_lower_id_and_never_lists_minus_infinity():
    logprobs = np.array([-1.0, -0.5, -0.5, -np.inf, -0.5, -2.0])
    assert sampling.best(logprobs, 2) == [(1, -0.5), (2, -0.5)]
    assert sampling.best(logprobs, 6) == [(1, -0.5), (2, -0.5), (4, -0.5), (0, -1.0),
                                          (5, -2.0)]
    assert sampling.best(logprobs, 0) == []
    rng = np.random.default_rng(8)
    row = rng.standard_normal(FULL)
    row[[5, 900, 40000]] = row.max() + 1  # tied on top, in a row too long to order
    assert [t for t, _ in sampling.best(row, 4)] == [5, 900, 40000, int(np.argsort(-row)[3])]


def test_prompt_logprobs_are_the_raw_log_softmax_given_the_tokens_before():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((4, 30)).astype(np.float32)
    prompt = [5, 6, 7, 8]
    scored = sampling.prompt_logprobs(logits, prompt, 2)
    expected = torch.log_softmax(torch.tensor(logits), -1).numpy()
    assert scored[0] is None and [s.token_id for s in scored[1:]] == [6, 7, 8]
    for i, entry in enumerate(scored[1:]):
        assert entry.logprob == pytest.approx(expected[i, prompt[i + 1]], abs=1e-6)
        assert [t for t, _ in entry.top] == np.argsort(-expected[i])[:2].tolist()
