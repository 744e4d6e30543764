"""Same request, same text: on the default engine (OpenVINO int8, default settings) a request's
text and log-probabilities are bit for bit what it gets alone, whatever shares its steps:
other titles, other lengths, requests joining and leaving, a batch of prompts, sampled
sequences.

On the full-size stand-in, where int8's rounding shows: before issue 22 a row computed beside
others (left-padded to the widest title, or reading its title a token a step beside others'
decoding) came out a little different, which changed log-probabilities at once and tokens
after a few steps.
"""

import threading

import pytest

from kogpt2.model import GenerationParams, Generator

TITLES = [
    "근육이 커지기 위해서는", "오늘 아침 서울의 날씨는", "가을", "인공지능이 바꾸는 미래의 직업",
    "첫 출근 날", "겨울 산행을 준비할 때 꼭 챙겨야 할 것들", "한국의 전통 음악",
    "바다가 보이는 작은 마을에서",
]
MORE_TITLES = [
    "기차 여행의 즐거움", "아이들과 함께하는 주말", "건강한 식습관", "밤하늘의 별을 보며",
    "새로운 언어를 배우는 일", "고양이와 함께 사는 법", "우리 동네 도서관",
    "김치찌개를 맛있게 끓이는 방법", "서울", "도서관에서 책을 읽으며 오후를 보냈다. 창밖에는",
    "봄", "한국 사람들이 즐겨 먹는 음식은",
]
NEW = 24


@pytest.fixture(scope="module")
def generator(full_size_model_dir):
    generator = Generator(str(full_size_model_dir))  # every setting as the server's default
    engine = generator.load(wait=True)
    assert (engine.name, engine.compute_type) == ("openvino", "int8 weights, int8 compute")
    return generator


def answer(result):
    """What a caller gets: each sequence's text, and each token's log-probability with its
    top alternatives; the prompt's log-probabilities when asked."""
    prompt = [None if scored is None else (scored.token_id, scored.logprob, scored.top)
              for scored in result.prompt_logprobs or []]
    return prompt, [(sequence.text, [(chosen.token_id, chosen.logprob, chosen.top)
                                     for chosen in sequence.logprobs or []])
                    for sequence in result.sequences]


def in_company(generator, prompts, *, together=3, after=3):
    """The first `together` prompts sent at once, then each of the rest joining when the one
    before it has written `after` tokens more than the one before that: every join comes at a
    different moment, beside rows of other lengths and ages, and rows leave as they end."""
    results = [None] * len(prompts)
    started = [threading.Event() for _ in prompts]

    def run(i):
        heard = []

        def on_token(token, chosen):
            heard.append(token)
            if len(heard) == after * (i + 1):
                started[i].set()

        try:
            results[i] = answer(generator.run(prompts[i], on_token=on_token))
        finally:
            started[i].set()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for i, thread in enumerate(threads):
        if i >= together:
            assert started[i - 1].wait(120)
        thread.start()
    for thread in threads:
        thread.join(300)
    return results


def test_titles_joining_at_different_moments_write_what_they_write_alone(generator):
    params = GenerationParams(max_new_tokens=NEW, logprobs=2)
    prompts = [generator.check(title, params) for title in TITLES]
    alone = [answer(generator.run(prompt)) for prompt in prompts]
    assert in_company(generator, prompts) == alone
    assert len({texts[0][0] for _, texts in alone}) == len(TITLES)


def test_a_batch_of_twenty_prompts_writes_and_scores_what_each_does_alone(generator):
    """What a /v1 completions request with 20 prompts runs (echo with logprobs: the prompts'
    log-probabilities too, as lm-eval asks for them), in one engine call."""
    params = GenerationParams(max_new_tokens=16, logprobs=1, prompt_logprobs=1)
    prompts = [generator.check(title, params) for title in TITLES + MORE_TITLES]
    assert len(prompts) == 20
    alone = [answer(generator.run(prompt)) for prompt in prompts]
    assert [answer(result) for result in generator.run(prompts)] == alone


def test_four_seeded_samples_write_what_they_write_alone(generator):
    sampled = GenerationParams(do_sample=True, top_p=0.9, num_return_sequences=4, seed=11,
                               max_new_tokens=NEW, logprobs=1)
    greedy = GenerationParams(max_new_tokens=NEW)
    prompts = [generator.check(TITLES[0], greedy), generator.check(TITLES[5], greedy),
               generator.check(TITLES[1], sampled), generator.check(TITLES[3], greedy)]
    alone = answer(generator.run(prompts[2]))
    assert len({text for text, _ in alone[1]}) == 4
    assert in_company(generator, prompts, together=1, after=2)[2] == alone
