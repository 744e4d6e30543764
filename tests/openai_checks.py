"""What the official `openai` client sees from /v1, checked one way against gunicorn
(tests/web/test_openai_sdk.py) and through Zappa's handler (tests/deploy/test_openai_zappa.py).

Each check takes an `openai.OpenAI` client (retries off) and, where it compares with the native
API, `generate(body) -> dict`, a POST /generate on the same server.
"""

import openai
import pytest

MODEL = "skt/kogpt2-base-v2"  # the stand-in's public name
TITLE = "근육이 커지기 위해서는"
VARIED = {"repetition_penalty": 2.0}  # greedy text that doesn't repeat one token on the stand-in


def greedy(client, **options):
    return client.completions.create(model=MODEL, prompt=TITLE, temperature=0, **options)


def models_are_listed(client):
    listed = client.models.list()
    assert [model.id for model in listed.data] == [MODEL]
    served = client.models.retrieve(MODEL)  # the id's slash travels as %2F
    assert (served.id, served.object, served.owned_by) == (MODEL, "model", "skt")
    assert isinstance(served.created, int)


def greedy_equals_generate(client, generate):
    # /v1's repetition_penalty defaults to 1.0 (OpenAI's: no penalty); /generate's to 2.0.
    # Same value on both sides: /v1's default against /generate told 1.0, and 2.0 against
    # /generate's default.
    plain = greedy(client, max_tokens=12)
    native = generate({"text": TITLE, "max_new_tokens": 12, "repetition_penalty": 1.0})
    assert TITLE + plain.choices[0].text == native["generated_text"]
    penalised = greedy(client, max_tokens=12, extra_body=VARIED)
    native_default = generate({"text": TITLE, "max_new_tokens": 12})
    assert TITLE + penalised.choices[0].text == native_default["generated_text"]
    assert penalised.choices[0].text != plain.choices[0].text  # the extra field was used
    assert penalised.usage.prompt_tokens == native_default["details"]["prompt_tokens"]
    assert penalised.model == MODEL and penalised.object == "text_completion"
    assert penalised.id.startswith("cmpl-") and penalised.id != plain.id


def seeded_samples_repeat(client):
    def sample():
        completion = client.completions.create(
            model=MODEL, prompt=TITLE, n=2, seed=20, temperature=1.0, max_tokens=12,
        )
        assert [choice.index for choice in completion.choices] == [0, 1]
        return [choice.text for choice in completion.choices]

    first, second = sample(), sample()
    assert first == second
    assert first[0] != first[1]  # two samples, not one twice


def stop_cuts(client):
    whole = greedy(client, max_tokens=16, extra_body=VARIED).choices[0]
    assert whole.finish_reason == "length"
    stop = whole.text[6:9]
    expected = whole.text[: whole.text.index(stop)]
    cut = greedy(client, max_tokens=16, stop=["없는 말", stop], extra_body=VARIED)
    assert cut.choices[0].text == expected
    assert cut.choices[0].finish_reason == "stop"
    assert cut.usage.completion_tokens < 16  # it stopped there; nothing past it was made
    never = greedy(client, max_tokens=16, stop="없는 말", extra_body=VARIED)
    assert never.choices[0].text == whole.text and never.choices[0].finish_reason == "length"


def echo_prepends_the_prompt(client):
    plain = greedy(client, max_tokens=8, extra_body=VARIED).choices[0].text
    echoed = greedy(client, max_tokens=8, echo=True, extra_body=VARIED).choices[0].text
    assert echoed == TITLE + plain


def usage_adds_up(client, generate):
    prompt_tokens = generate({"text": TITLE, "max_new_tokens": 1})["details"]["prompt_tokens"]
    sampled = client.completions.create(model=MODEL, prompt=[TITLE], n=3, seed=4, max_tokens=7)
    assert [choice.finish_reason for choice in sampled.choices] == ["length"] * 3
    assert sampled.usage.prompt_tokens == prompt_tokens
    assert sampled.usage.completion_tokens == 3 * 7
    assert sampled.usage.total_tokens == prompt_tokens + 3 * 7
    # Greedy decoding has one answer: n greedy choices are the same text, counted n times.
    same = greedy(client, n=2, max_tokens=5)
    assert same.choices[0].text == same.choices[1].text
    assert same.usage.completion_tokens == 2 * 5


def errors_raise_what_users_expect(client, max_new_tokens: int):
    with pytest.raises(openai.NotFoundError) as wrong_model:
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt=TITLE)
    assert (wrong_model.value.code, wrong_model.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-3.5-turbo-instruct")
    with pytest.raises(openai.BadRequestError) as empty:
        client.completions.create(model=MODEL, prompt="")
    assert empty.value.param == "prompt" and empty.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as too_many:
        client.completions.create(model=MODEL, prompt=TITLE, max_tokens=max_new_tokens + 1)
    assert too_many.value.param == "max_tokens"
    assert f"at most {max_new_tokens}" in too_many.value.message
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.completions.create(model=MODEL, prompt=TITLE, logprobs=1)
    assert unsupported.value.param == "logprobs" and "not supported" in unsupported.value.message


def joined(chunks) -> dict[int, str]:
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    return texts


def streamed_chunks_join_to_the_plain_text(client, *, streams_live: bool):
    """`streams_live`: text arrives in several chunks (through gunicorn, not through Zappa's
    buffering handler, where the chunks are the same but come at once)."""
    whole = greedy(client, max_tokens=16, extra_body=VARIED)
    chunks = list(greedy(client, max_tokens=16, extra_body=VARIED, stream=True,
                         stream_options={"include_usage": True}))
    assert joined(chunks) == {0: whole.choices[0].text}
    with_text = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].text]
    assert len(with_text) > (2 if streams_live else 0)
    assert {chunk.id for chunk in chunks} == {chunks[0].id}
    finished = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finished[-1] == whole.choices[0].finish_reason and set(finished[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    # A stop text: what was sent before it is never taken back, and it never shows.
    stop = whole.choices[0].text[6:9]
    cut = greedy(client, max_tokens=16, stop=stop, extra_body=VARIED)
    streamed = list(greedy(client, max_tokens=16, stop=stop, extra_body=VARIED, stream=True))
    assert joined(streamed) == {0: cut.choices[0].text}
    assert streamed[-1].choices[0].finish_reason == "stop"
    echoed = joined(greedy(client, max_tokens=6, echo=True, stream=True, extra_body=VARIED))
    assert echoed == {0: TITLE + greedy(client, max_tokens=6, extra_body=VARIED).choices[0].text}
    # n choices: each joins to its non-streamed text.
    sampled = {"n": 2, "seed": 8, "temperature": 1.0, "max_tokens": 10}
    plain = client.completions.create(model=MODEL, prompt=TITLE, **sampled)
    chunks = client.completions.create(model=MODEL, prompt=TITLE, stream=True, **sampled)
    assert joined(chunks) == {choice.index: choice.text for choice in plain.choices}
