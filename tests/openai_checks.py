"""What the official `openai` client sees from /v1, checked one way against gunicorn
(tests/web/test_openai_sdk.py) and through Zappa's handler (tests/deploy/test_openai_zappa.py).

Each check takes an `openai.OpenAI` client (retries off) and, where it compares with the native
API, `generate(body) -> dict`, a POST /generate on the same server.
"""

import openai
import pytest
from answers import STAND_IN

MODEL = STAND_IN  # the stand-in's public name: its folder's
TITLE = "근육이 커지기 위해서는"
VARIED = {"repetition_penalty": 2.0}  # greedy text that doesn't repeat one token on the stand-in


def greedy(client, **options):
    return client.completions.create(model=MODEL, prompt=TITLE, temperature=0, **options)


def models_are_listed(client):
    listed = client.models.list()
    assert [model.id for model in listed.data] == [MODEL]
    served = client.models.retrieve(MODEL)
    # A hub id's owner owns it ("skt" for skt/kogpt2-base-v2); a folder's name has none.
    assert (served.id, served.object, served.owned_by) == (MODEL, "model", "kogpt2")
    assert isinstance(served.created, int)


def greedy_equals_generate(client, generate):
    # Both APIs take the server's generation settings for what a request leaves out
    # (repetition_penalty 2.0, the original handler's), and the same value when told one.
    default = greedy(client, max_tokens=12)
    native_default = generate({"text": TITLE, "max_new_tokens": 12})
    assert TITLE + default.choices[0].text == native_default["generated_text"]
    plain = greedy(client, max_tokens=12, extra_body={"repetition_penalty": 1.0})
    native = generate({"text": TITLE, "max_new_tokens": 12, "repetition_penalty": 1.0})
    assert TITLE + plain.choices[0].text == native["generated_text"]
    assert default.choices[0].text != plain.choices[0].text  # the extra field was used
    assert default.usage.prompt_tokens == native_default["details"]["prompt_tokens"]
    assert default.model == MODEL and default.object == "text_completion"
    assert default.id.startswith("cmpl-") and default.id != plain.id


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
    with pytest.raises(openai.BadRequestError) as too_many_logprobs:
        client.completions.create(model=MODEL, prompt=TITLE, logprobs=6)
    assert too_many_logprobs.value.param == "logprobs" and "5" in too_many_logprobs.value.message


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


# --- Batches, token ids, log-probabilities and echo scoring (issue 15) ---
# What lm-evaluation-harness and LangChain send (their sources: ../shared/notes/
# openai-clients.md), through the SDK. Prompt log-probabilities are compared with transformers'
# own log_softmax of the same stand-in, float32, which both transports serve.

OTHER_TITLES = ["오늘 아침 서울의 날씨는", "바다"]


def server_root(client) -> str:
    """The service root (vLLM's tokenizer endpoints live there, beside /v1)."""
    return str(client.base_url).rstrip("/").removesuffix("/v1")


def tokenize(client, text: str) -> list[int]:
    answer = client.post(f"{server_root(client)}/tokenize", cast_to=object,
                         body={"prompt": text, "add_special_tokens": False})
    return answer["tokens"]


def reference_prompt_logprobs(model_dir, ids: list[int]) -> tuple[list, list]:
    """transformers' float32 log-softmax of each prompt token given the tokens before it, and
    of the likeliest token there (None for the first token, which has no context)."""
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    best = logprobs.max(dim=-1).values
    scored = [logprobs[i - 1, ids[i]].item() for i in range(1, len(ids))]
    return [None, *scored], [None, *(best[i - 1].item() for i in range(1, len(ids)))]


def tokenizer_endpoints_answer_in_vllms_shapes(client, model_dir):
    """What lm-eval's remote tokenizer reads: /tokenizer_info's tokens, /tokenize of each of
    them as its id, and /detokenize back; the ids are the model's own tokenizer's."""
    from tokenizers import Tokenizer

    own = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    info = client.get(f"{server_root(client)}/tokenizer_info", cast_to=object)
    assert (info["eos_token"], info["bos_token"], info["pad_token"]) == ("</s>", "</s>", "<pad>")
    assert tokenize(client, info["eos_token"]) == [own.token_to_id("</s>")]
    ids = tokenize(client, TITLE)
    assert ids == own.encode(TITLE, add_special_tokens=False).ids
    back = client.post(f"{server_root(client)}/detokenize", cast_to=object,
                       body={"tokens": ids})
    assert back == {"prompt": TITLE}


def a_batch_answers_each_prompt_in_order(client):
    """LangChain's batch(): several prompts in one request, n choices each, index = prompt × n
    + choice; each prompt's greedy text is the one it gets alone, and usage adds them up."""
    prompts = [TITLE, *OTHER_TITLES]
    alone = [greedy_of(client, prompt, max_tokens=8) for prompt in prompts]
    batch = client.completions.create(model=MODEL, prompt=prompts, n=2, temperature=0,
                                      max_tokens=8)
    assert [choice.index for choice in batch.choices] == list(range(2 * len(prompts)))
    texts = [choice.text for choice in batch.choices]
    assert texts == [one.choices[0].text for one in alone for _ in range(2)]
    assert len({one.choices[0].text for one in alone}) == len(prompts)  # three prompts, not one
    assert batch.usage.prompt_tokens == sum(one.usage.prompt_tokens for one in alone)
    assert batch.usage.completion_tokens == 2 * sum(one.usage.completion_tokens for one in alone)


def greedy_of(client, prompt, **options):
    return client.completions.create(model=MODEL, prompt=prompt, temperature=0, **options)


def token_id_prompts_equal_their_text(client):
    """lm-eval's prompts: a list of token ids, or a list of such lists (a batch)."""
    ids = tokenize(client, TITLE)
    by_text = greedy_of(client, TITLE, max_tokens=8)
    by_ids = greedy_of(client, ids, max_tokens=8)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == len(ids) == by_text.usage.prompt_tokens
    echoed = greedy_of(client, ids, max_tokens=8, echo=True)
    assert echoed.choices[0].text == TITLE + by_text.choices[0].text
    others = [tokenize(client, title) for title in OTHER_TITLES]
    batch = greedy_of(client, [ids, *others], max_tokens=8)
    expected = [greedy_of(client, title, max_tokens=8).choices[0].text
                for title in [TITLE, *OTHER_TITLES]]
    assert [choice.text for choice in batch.choices] == expected


def _check_logprobs_object(logprobs, text: str, top: int):
    """OpenAI's shape: one entry per token, the tokens joined are the text, each offset is the
    one before plus that token's characters (where they start: see the echo check), each
    top_logprobs entry holds the `top` likeliest tokens (and, as vLLM does, the token itself
    where it isn't one of them)."""
    count = len(logprobs.tokens)
    assert count and len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == count
    assert len(logprobs.text_offset) == count
    assert "".join(logprobs.tokens) == text
    offsets = logprobs.text_offset[:1]
    for token in logprobs.tokens[:-1]:
        offsets.append(offsets[-1] + len(token))
    assert logprobs.text_offset == offsets
    for alternatives in logprobs.top_logprobs:
        assert alternatives is None or top <= len(alternatives) <= top + 1


def generated_logprobs_have_openais_shape(client):
    """logprobs=3 on greedy tokens, no repetition penalty: each token's log-probability (the
    model's own, as vLLM's) is the best of its three alternatives (lm-eval's "is greedy"
    test), and a stream's chunks carry their own."""
    unpenalized = {"extra_body": {"repetition_penalty": 1.0}}
    completion = greedy_of(client, TITLE, max_tokens=6, logprobs=3, **unpenalized)
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    logprobs = choice.logprobs
    _check_logprobs_object(logprobs, choice.text, top=3)
    assert len(logprobs.tokens) == completion.usage.completion_tokens == 6
    for value, alternatives in zip(logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert len(alternatives) == 3
        assert value <= 0 and all(other <= 0 for other in alternatives.values())
        assert value == max(alternatives.values())
    chunks = list(greedy_of(client, TITLE, max_tokens=6, logprobs=3, stream=True,
                            **unpenalized))
    streamed_tokens, streamed_values = [], []
    for chunk in chunks:
        for part in chunk.choices:
            if part.text:
                assert part.logprobs and "".join(part.logprobs.tokens) == part.text
            if part.logprobs:
                streamed_tokens += part.logprobs.tokens
                streamed_values += part.logprobs.token_logprobs
    assert streamed_tokens == logprobs.tokens
    assert streamed_values == logprobs.token_logprobs


def echo_scores_the_prompt(client, model_dir):
    """lm-eval's loglikelihood request: echo, logprobs 1, max_tokens 1 (older releases: 0),
    prompt as token ids. The prompt's tokens come first, the first with null, each with the
    model's log-softmax given the tokens before it (transformers' float32 within 1e-4), and its
    top alternative the model's likeliest token there (what "is greedy" compares with)."""
    ids = tokenize(client, TITLE)
    expected, best = reference_prompt_logprobs(model_dir, ids)
    scored = greedy_of(client, TITLE, max_tokens=0, echo=True, logprobs=1)
    choice = scored.choices[0]
    assert choice.text == TITLE
    assert (scored.usage.prompt_tokens, scored.usage.completion_tokens) == (len(ids), 0)
    _check_logprobs_object(choice.logprobs, TITLE, top=1)
    assert choice.logprobs.text_offset[0] == 0  # the text starts with the prompt
    values = choice.logprobs.token_logprobs
    assert values[0] is None and choice.logprobs.top_logprobs[0] is None
    assert values[1:] == pytest.approx(expected[1:], abs=1e-4)
    tops = [max(alternatives.values()) for alternatives in choice.logprobs.top_logprobs[1:]]
    assert tops == pytest.approx(best[1:], abs=1e-4)
    assert any(top > value + 1e-3 for top, value in zip(tops, values[1:], strict=True))
    # max_tokens 1, prompt as ids, as lm-eval 0.4.13 sends it: the same prompt scores, then one
    # generated token, the greedy one.
    one = client.completions.create(model=MODEL, prompt=[ids], temperature=0, max_tokens=1,
                                    logprobs=1, seed=1234, echo=True)
    plain = greedy_of(client, TITLE, max_tokens=1).choices[0].text
    choice = one.choices[0]
    assert choice.text == TITLE + plain
    assert choice.logprobs.tokens[: len(ids)] == scored.choices[0].logprobs.tokens
    assert choice.logprobs.token_logprobs[: len(ids)] == pytest.approx(values, abs=1e-6)
    assert "".join(choice.logprobs.tokens[len(ids):]) == plain
    last, last_top = choice.logprobs.token_logprobs[-1], choice.logprobs.top_logprobs[-1]
    assert last == max(last_top.values())
    # The generated token may be the end of text (forced here with logit_bias): it keeps its
    # entry, or lm-eval's [ctxlen:-1] would cut the prompt's last token from the score instead.
    (eos,) = tokenize(client, "</s>")
    ended = client.completions.create(model=MODEL, prompt=[ids], temperature=0, max_tokens=1,
                                      logprobs=1, echo=True, logit_bias={str(eos): 100})
    choice = ended.choices[0]
    assert (choice.finish_reason, choice.text, ended.usage.completion_tokens) == ("stop", TITLE, 1)
    assert len(choice.logprobs.token_logprobs) == len(ids) + 1
    assert choice.logprobs.token_logprobs[: len(ids)] == pytest.approx(values, abs=1e-6)
    assert "".join(choice.logprobs.tokens) == TITLE  # the end of text adds no text
    # A batch of id lists, as lm-eval sends with batch_size > 1: each scored as alone.
    other = tokenize(client, OTHER_TITLES[0])
    batch = client.completions.create(model=MODEL, prompt=[ids, other], temperature=0,
                                      max_tokens=0, logprobs=1, echo=True)
    alone = greedy_of(client, other, max_tokens=0, echo=True, logprobs=1)
    assert [c.index for c in batch.choices] == [0, 1]
    assert batch.choices[0].logprobs.token_logprobs == pytest.approx(values, abs=1e-6)
    assert batch.choices[1].logprobs.token_logprobs == pytest.approx(
        alone.choices[0].logprobs.token_logprobs, abs=1e-6)


def continuous_usage_counts_every_chunk(client):
    """vLLM's stream_options.continuous_usage_stats (guidellm sends it): usage on every chunk,
    the completion's tokens so far, ending at the total."""
    chunks = list(greedy_of(client, TITLE, max_tokens=6, stream=True,
                            stream_options={"include_usage": True,
                                            "continuous_usage_stats": True}))
    assert all(chunk.usage is not None for chunk in chunks)
    counts = [chunk.usage.completion_tokens for chunk in chunks]
    assert counts == sorted(counts) and counts[-1] == 6
    assert {chunk.usage.prompt_tokens for chunk in chunks} == {len(tokenize(client, TITLE))}


def bad_batches_and_scores_are_400_naming_the_field(client):
    """Refused before anything queues, each naming its field."""
    cap = client.get(f"{server_root(client)}/info", cast_to=object)["limits"]["max_batch_prompts"]
    assert cap >= 20  # LangChain's batch size
    refusals = [
        ({"prompt": [[5, 10**9]]}, "prompt"),         # an id outside the vocabulary
        ({"prompt": []}, "prompt"),                   # an empty list
        ({"prompt": ["가"] * (cap + 1)}, "prompt"),    # a batch over the server's cap
        ({"prompt": TITLE, "logprobs": 6}, "logprobs"),
        ({"prompt": TITLE, "max_tokens": 0}, "max_tokens"),  # scoring needs echo
        ({"prompt": TITLE, "logit_bias": {"abc": 1}}, "logit_bias"),
    ]
    for fields, param in refusals:
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model=MODEL, **fields)
        assert refused.value.param == param, fields
