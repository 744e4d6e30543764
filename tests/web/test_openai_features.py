"""/v1 beyond one prompt: batches, token ids, log-probabilities, echo scoring, vLLM's extras,
the tokenizer endpoints and the server's generation defaults (in process, tiny stand-in,
transformers: the reference engine)."""

import json
import math

import pytest
from answers import STAND_IN, assert_openai_error

MODEL = STAND_IN  # the tiny stand-in, named by its folder
TITLE = "근육이 커지기 위해서는"
TITLE_IDS = [33245, 10114, 12748, 11357]  # KoGPT2's tokenizer (../shared/kogpt2/README.md)
OTHER = "오늘 아침 서울의 날씨는"


def complete(client, **fields):
    response = client.post("/v1/completions", json={"model": MODEL, "prompt": TITLE, **fields})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def greedy(client, prompt, max_tokens=8, **fields):
    return complete(client, prompt=prompt, temperature=0, max_tokens=max_tokens, **fields)


def generated_ids(client) -> list[int]:
    """The ids of the greedy continuation of TITLE (8 tokens), from /generate's stream: the
    same defaults as /v1's."""
    stream = client.post("/generate", json={"text": TITLE, "max_new_tokens": 8, "stream": True})
    events = [json.loads(line.removeprefix("data: "))
              for line in stream.get_data(as_text=True).split("\n\n") if line]
    return [event["token"]["id"] for event in events if "token" in event]


def test_a_batch_answers_each_prompt_as_alone_in_order(client):
    batch = greedy(client, [TITLE, OTHER, TITLE], n=2)
    alone = [greedy(client, p)["choices"][0]["text"] for p in (TITLE, OTHER)]
    # index = prompt position × n + choice; greedy: the n choices are one text.
    assert [c["index"] for c in batch["choices"]] == [0, 1, 2, 3, 4, 5]
    assert [c["text"] for c in batch["choices"]] == [alone[0]] * 2 + [alone[1]] * 2 + [alone[0]] * 2
    prompt_tokens = 2 * len(TITLE_IDS) + len(client.post(
        "/tokenize", json={"prompt": OTHER}).get_json()["tokens"])
    assert batch["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 6 * 8,
                              "total_tokens": prompt_tokens + 48}


def test_sampled_batches_give_each_prompt_its_text_alone_with_the_same_seed(client):
    fields = dict(temperature=0.9, seed=7, max_tokens=8)
    batch = complete(client, prompt=[OTHER, TITLE], n=2, **fields)["choices"]
    alone = complete(client, prompt=TITLE, n=2, **fields)["choices"]
    assert [c["text"] for c in batch[2:]] == [c["text"] for c in alone]
    assert batch[0]["text"] != batch[1]["text"]  # two draws, not one text twice


def test_token_id_prompts_are_the_text_they_encode(client):
    as_text = greedy(client, TITLE, echo=True)["choices"][0]["text"]
    assert greedy(client, TITLE_IDS, echo=True)["choices"][0]["text"] == as_text
    both = greedy(client, [TITLE_IDS, TITLE_IDS[:2]])["choices"]
    assert both[0]["text"] == as_text[len(TITLE):]
    assert both[1]["text"] == greedy(client, TITLE_IDS[:2])["choices"][0]["text"]


def test_logprobs_cover_the_text_and_an_unpenalized_greedy_token_is_its_best(client):
    (choice,) = greedy(client, TITLE, logprobs=3, repetition_penalty=1.0)["choices"]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert len(logprobs["tokens"]) == 8
    offsets = [sum(map(len, logprobs["tokens"][:i])) for i in range(8)]
    assert logprobs["text_offset"] == offsets
    for token, value, top in zip(logprobs["tokens"], logprobs["token_logprobs"],
                                 logprobs["top_logprobs"], strict=True):
        assert value <= 0 and math.isfinite(value)
        assert 3 <= len(top) <= 4 and top[token] == value
        assert value == max(top.values())  # lm-eval's "is greedy"


def test_logprobs_are_the_models_own_distribution(client):
    """vLLM's default (raw_logprobs): a token's log-probability is what echo scores it at,
    the model's own, whatever the penalty or the sampling knobs; top_k 1 still lists five
    alternatives. KOGPT2_LOGPROBS_MODE=processed_logprobs gives the distribution it was
    drawn from: one token, at 0."""
    fields = dict(max_tokens=4, temperature=0.8, top_k=1, seed=3, logprobs=5)
    logprobs = complete(client, prompt=TITLE_IDS, **fields)["choices"][0]["logprobs"]
    # Five alternatives (and the token itself where it is not one of them), never a 0.
    assert all(5 <= len(top) <= 6 for top in logprobs["top_logprobs"])
    assert all(value < 0 for value in logprobs["token_logprobs"])

    def five(top):
        return dict(sorted(top.items(), key=lambda item: -item[1])[:5])

    # Echo scores a prompt's last token given the title: its five are the first token's.
    scored = complete(client, prompt=TITLE_IDS + [7], echo=True, max_tokens=0, logprobs=5)
    after_title = scored["choices"][0]["logprobs"]["top_logprobs"][-1]
    assert five(logprobs["top_logprobs"][0]) == pytest.approx(five(after_title), abs=1e-5)
    first, value = logprobs["tokens"][0], logprobs["token_logprobs"][0]
    assert value == pytest.approx(after_title.get(first, value), abs=1e-5)


def test_processed_logprobs_are_the_distribution_a_token_was_drawn_from(make_app):
    client = make_app(logprobs_mode="processed_logprobs").test_client()
    fields = dict(max_tokens=4, temperature=0.8, top_k=1, seed=3, logprobs=5)
    logprobs = complete(client, **fields)["choices"][0]["logprobs"]
    assert logprobs["token_logprobs"] == [0.0] * 4
    assert all(top == {token: 0.0} for token, top in
               zip(logprobs["tokens"], logprobs["top_logprobs"], strict=True))
    # A greedy token with the repetition penalty is the best of its list (lm-eval's test).
    greedy_logprobs = greedy(client, TITLE, logprobs=3)["choices"][0]["logprobs"]
    for value, top in zip(greedy_logprobs["token_logprobs"], greedy_logprobs["top_logprobs"],
                          strict=True):
        assert value == max(top.values())


def test_logprobs_zero_gives_the_chosen_tokens_only(client):
    logprobs = greedy(client, TITLE, logprobs=0)["choices"][0]["logprobs"]
    assert all(list(top) == [token] for token, top in
               zip(logprobs["tokens"], logprobs["top_logprobs"], strict=True))


def test_echo_with_max_tokens_0_scores_the_prompt(client):
    (choice,) = complete(client, echo=True, max_tokens=0, logprobs=1, temperature=0)["choices"]
    logprobs = choice["logprobs"]
    assert choice["text"] == TITLE
    assert "".join(logprobs["tokens"]) == TITLE and len(logprobs["tokens"]) == len(TITLE_IDS)
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert all(v < 0 for v in logprobs["token_logprobs"][1:])
    # lm-eval's loglikelihood request: echo, 1 new token; the prompt's scores are the same.
    (one,) = complete(client, echo=True, max_tokens=1, logprobs=1, temperature=0)["choices"]
    assert one["logprobs"]["token_logprobs"][:4] == logprobs["token_logprobs"]
    assert len(one["logprobs"]["tokens"]) == 5 and one["text"].startswith(TITLE)


def test_prompt_scores_do_not_depend_on_the_batch(client):
    alone = complete(client, echo=True, max_tokens=0, logprobs=0, prompt=TITLE_IDS)
    batch = complete(client, echo=True, max_tokens=0, logprobs=0,
                     prompt=[[7, 8, 9, 10, 11, 12], TITLE_IDS])
    assert (batch["choices"][1]["logprobs"]["token_logprobs"]
            == alone["choices"][0]["logprobs"]["token_logprobs"])
    assert batch["usage"]["completion_tokens"] == 0


def test_stop_token_ids_end_a_completion_before_them(client):
    whole = greedy(client, TITLE, logprobs=0)["choices"][0]
    third = generated_ids(client)[2]
    (choice,) = greedy(client, TITLE, logprobs=0, stop_token_ids=[third])["choices"]
    assert choice["finish_reason"] == "stop"
    # The stop id's own entry comes last, with no text: it was generated.
    assert choice["logprobs"]["tokens"] == whole["logprobs"]["tokens"][:2] + [""]
    assert choice["text"] == "".join(whole["logprobs"]["tokens"][:2])


def test_include_stop_str_in_output_keeps_the_stop_text(client):
    text = greedy(client, TITLE)["choices"][0]["text"]
    stop = text[3:5]
    cut = greedy(client, TITLE, stop=stop)["choices"][0]
    kept = greedy(client, TITLE, stop=stop, include_stop_str_in_output=True)["choices"][0]
    assert cut["text"] == text[:3] and kept["text"] == text[:5]
    assert cut["finish_reason"] == kept["finish_reason"] == "stop"


def test_logit_bias_bans_and_forces_tokens(client):
    first = generated_ids(client)[0]
    banned = greedy(client, TITLE, logit_bias={str(first): -100}, logprobs=0)["choices"][0]
    unbanned = greedy(client, TITLE, logprobs=0)["choices"][0]
    assert banned["logprobs"]["tokens"][0] != unbanned["logprobs"]["tokens"][0]
    forced = greedy(client, TITLE, logit_bias={"33245": 100}, repetition_penalty=1.0)
    assert forced["choices"][0]["text"] == " 근육이" * 8  # 33245 is ▁근육이


def test_ignore_eos_and_min_tokens_write_past_the_end(client):
    eos = 1  # </s>
    ended = complete(client, temperature=0, max_tokens=6, logit_bias={str(eos): 100})
    assert ended["choices"][0]["finish_reason"] == "stop"
    assert ended["usage"]["completion_tokens"] == 1  # </s> at once, no text
    for extra in ({"ignore_eos": True}, {"min_tokens": 6}):
        kept = complete(client, temperature=0, max_tokens=6, logit_bias={str(eos): 100}, **extra)
        assert kept["choices"][0]["finish_reason"] == "length", extra
        assert kept["usage"]["completion_tokens"] == 6


def test_presence_and_frequency_penalties_change_a_repetitive_text(client):
    plain = greedy(client, TITLE, repetition_penalty=1.0, max_tokens=24)["choices"][0]["text"]
    for penalty in ("presence_penalty", "frequency_penalty"):
        penalized = greedy(client, TITLE, repetition_penalty=1.0, max_tokens=24,
                           **{penalty: 2.0})["choices"][0]["text"]
        assert penalized != plain, penalty


def test_defaults_are_the_servers_generation_settings_on_both_apis(make_app):
    client = make_app().test_client()
    info = client.get("/info").get_json()
    assert info["generation_defaults"] == {"repetition_penalty": 2.0, "temperature": 1.0,
                                           "top_k": 50, "top_p": 1.0}
    native = client.post("/generate", json={"text": TITLE, "max_new_tokens": 12}).get_json()
    openai = greedy(client, TITLE, max_tokens=12)["choices"][0]["text"]
    assert native["generated_text"] == TITLE + openai
    plain = greedy(client, TITLE, max_tokens=12, repetition_penalty=1.0)["choices"][0]["text"]
    configured = make_app(generation_config={"repetition_penalty": 1.0}).test_client()
    assert configured.get("/info").get_json()["generation_defaults"]["repetition_penalty"] == 1.0
    assert greedy(configured, TITLE, max_tokens=12)["choices"][0]["text"] == plain
    assert configured.post("/generate", json={"text": TITLE, "max_new_tokens": 12}).get_json()[
        "generated_text"] == TITLE + plain


def test_a_generation_config_outside_the_bounds_is_refused_at_start(make_app):
    with pytest.raises(ValueError, match="repetition_penalty"):
        make_app(generation_config={"repetition_penalty": 0.5})
    with pytest.raises(ValueError, match="unknown generation setting"):
        make_app(generation_config={"max_tokens": 5})


def test_the_tokenizer_endpoints_speak_vllms_shapes(client):
    info = client.get("/tokenizer_info").get_json()
    assert (info["eos_token"], info["bos_token"], info["pad_token"]) == ("</s>", "</s>", "<pad>")
    assert info["model_max_length"] == 1024 and info["chat_template"] is None
    tokens = client.post("/tokenize", json={"prompt": TITLE, "add_special_tokens": False})
    assert tokens.get_json() == {"count": 4, "max_model_len": 1024, "tokens": TITLE_IDS,
                                 "token_strs": None}
    text = client.post("/detokenize", json={"tokens": TITLE_IDS, "model": MODEL})
    assert text.get_json() == {"prompt": TITLE}


@pytest.mark.parametrize("path, body, param", [
    ("/tokenize", {"prompt": 5}, "prompt"),
    ("/tokenize", {"prompt": TITLE, "model": "gpt-4"}, "model"),
    ("/detokenize", {"tokens": [51200]}, "tokens"),
    ("/detokenize", {"tokens": "33245"}, "tokens"),
])
def test_tokenizer_endpoints_refuse_in_openais_shape(client, path, body, param):
    code = "model_not_found" if param == "model" else "validation_error"
    assert_openai_error(client.post(path, json=body), 404 if param == "model" else 400, code,
                        param)


def test_continuous_usage_stats_count_on_every_chunk(client):
    response = client.post("/v1/completions", json={
        "model": MODEL, "prompt": TITLE, "max_tokens": 5, "temperature": 0, "stream": True,
        "ignore_eos": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
    chunks = [json.loads(line.removeprefix("data: ")) for line in
              response.get_data(as_text=True).split("\n\n") if line and line != "data: [DONE]"]
    counts = [chunk["usage"]["completion_tokens"] for chunk in chunks]
    assert counts == sorted(counts) and counts[-1] == 5
    assert all(chunk["usage"]["prompt_tokens"] == 4 for chunk in chunks)


def test_streamed_logprobs_join_to_the_answers(client):
    fields = dict(prompt=TITLE, max_tokens=8, temperature=0, logprobs=2)
    whole = complete(client, **fields)["choices"][0]
    response = client.post("/v1/completions", json={"model": MODEL, "stream": True, **fields})
    chunks = [json.loads(line.removeprefix("data: ")) for line in
              response.get_data(as_text=True).split("\n\n") if line and line != "data: [DONE]"]
    pieces = [c["choices"][0] for c in chunks]
    assert "".join(p["text"] for p in pieces) == whole["text"]
    joined = {key: [v for p in pieces if p["logprobs"] for v in p["logprobs"][key]]
              for key in whole["logprobs"]}
    assert joined == whole["logprobs"]
    assert sum(1 for p in pieces if p["logprobs"]) > 1  # sent as the tokens come, not at the end


def test_the_models_licence_is_on_v1_models_and_info(client):
    (model,) = client.get("/v1/models").get_json()["data"]
    info = client.get("/info").get_json()
    assert model["licences"] == info["licences"]
    (kogpt2,) = info["licences"]
    assert (kogpt2["owner"], kogpt2["name"], kogpt2["non_commercial"]) == (
        "SK Telecom", "CC BY-NC-SA 4.0", True)
    assert kogpt2["url"] == "https://creativecommons.org/licenses/by-nc-sa/4.0/"
    assert kogpt2["source_url"] == "https://huggingface.co/skt/kogpt2-base-v2"


# --- Issue 23: what a peer server's own tests and review found ---------------------------------

def stream_chunks(client, **fields) -> list[dict]:
    response = client.post("/v1/completions", json={"model": MODEL, "stream": True, **fields})
    assert response.status_code == 200, response.get_data(as_text=True)
    return [json.loads(line.removeprefix("data: ")) for line in
            response.get_data(as_text=True).split("\n\n") if line and line != "data: [DONE]"]


def test_echo_with_max_tokens_0_and_no_logprobs_returns_the_prompt(client):
    """OpenAI and vLLM answer it with the prompt (nothing generated, nothing scored)."""
    for prompt, text in ((TITLE, TITLE), (TITLE_IDS, TITLE), ([TITLE, OTHER], None)):
        answer = complete(client, prompt=prompt, echo=True, max_tokens=0)
        texts = [text] if text else [TITLE, OTHER]
        assert [c["text"] for c in answer["choices"]] == texts
        assert all(c["logprobs"] is None for c in answer["choices"])
        assert answer["usage"]["completion_tokens"] == 0
    chunks = stream_chunks(client, prompt=TITLE, echo=True, max_tokens=0)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == TITLE


def test_continuous_usage_stats_need_include_usage(client):
    """vLLM adds usage to every chunk only when include_usage is true too."""
    fields = dict(prompt=TITLE, max_tokens=4, temperature=0, ignore_eos=True)
    alone = stream_chunks(client, **fields, stream_options={"continuous_usage_stats": True})
    assert alone and all(chunk["usage"] is None for chunk in alone)
    both = stream_chunks(client, **fields, stream_options={"continuous_usage_stats": True,
                                                           "include_usage": True})
    assert all(chunk["usage"] is not None for chunk in both)
    usage_only = stream_chunks(client, **fields, stream_options={"include_usage": True})
    assert [chunk["usage"] is not None for chunk in usage_only] == (
        [False] * (len(usage_only) - 1) + [True])


def test_an_echoed_token_id_prompt_keeps_its_special_tokens(client):
    """vLLM echoes tokenizer.decode(ids), special tokens kept, as /detokenize says them."""
    ids = [0, 0, 0, 0, 0]  # <s> five times
    said = client.post("/detokenize", json={"tokens": ids}).get_json()["prompt"]
    assert said  # "<s><s><s><s><s>"
    scored = complete(client, prompt=ids, echo=True, max_tokens=0, logprobs=1)["choices"][0]
    assert scored["text"] == said
    assert "".join(scored["logprobs"]["tokens"]) == said
    assert all(scored["logprobs"]["tokens"])  # each token has its text
    generated = complete(client, prompt=ids, echo=True, max_tokens=3, temperature=0)
    plain = complete(client, prompt=ids, max_tokens=3, temperature=0)
    assert generated["choices"][0]["text"] == said + plain["choices"][0]["text"]
    chunks = stream_chunks(client, prompt=ids, echo=True, max_tokens=3, temperature=0)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == (
        generated["choices"][0]["text"])


def test_tokenize_returns_the_token_strings_when_asked(client):
    """vLLM's return_token_strs: each id's token as the vocabulary writes it."""
    asked = client.post("/tokenize", json={"prompt": TITLE, "add_special_tokens": False,
                                           "return_token_strs": True}).get_json()
    assert asked["tokens"] == TITLE_IDS and len(asked["token_strs"]) == 4
    assert asked["token_strs"][0] == "▁근육이"  # 33245 (../shared/kogpt2/README.md)
    assert "".join(asked["token_strs"]).replace("▁", " ").strip() == TITLE
    plain = client.post("/tokenize", json={"prompt": TITLE, "return_token_strs": False})
    assert plain.get_json()["token_strs"] is None


def test_tokens_with_the_same_text_keep_the_likeliest_in_top_logprobs(app, client, monkeypatch):
    """Every special token's text is "": the likeliest of them stands for that text, so a
    greedy token is still the best of its list (lm-eval's "is greedy")."""
    from kogpt2.model import TokenLogprob
    from kogpt2.model.seam import EngineOutput, EngineResult

    generator = app.extensions["kogpt2"]
    generator.load()
    pad, unk, word = 3, 5, TITLE_IDS[0]  # <pad>, <unk>: special, their text is ""
    first = TokenLogprob(pad, -0.5, [(pad, -0.5), (unk, -1.5), (word, -2.0)])
    second = TokenLogprob(word, -0.1, [(word, -0.1), (pad, -2.5), (unk, -3.0)])

    def pad_then_word(requests):
        for request in requests:
            request.watch.step(pad, first)
            request.watch.step(word, second)
        return [EngineResult([EngineOutput([pad, word], "length", [first, second])])
                for _ in requests]

    monkeypatch.setattr(generator.engine, "generate", pad_then_word)
    word_text = " " + client.post("/detokenize", json={"tokens": [word]}).get_json()["prompt"]
    expected = [{"": -0.5, word_text: -2.0}, {word_text: -0.1, "": -2.5}]
    answer = complete(client, max_tokens=2, temperature=0, logprobs=2)["choices"][0]
    assert answer["text"] == word_text
    assert answer["logprobs"]["tokens"] == ["", word_text]
    assert answer["logprobs"]["top_logprobs"] == expected
    chunks = stream_chunks(client, prompt=TITLE, max_tokens=2, temperature=0, logprobs=2)
    tops = [top for c in chunks if c["choices"] and c["choices"][0]["logprobs"]
            for top in c["choices"][0]["logprobs"]["top_logprobs"]]
    assert tops == expected


def test_a_last_token_with_no_text_keeps_its_entry(app, client, monkeypatch):
    """A special token adds no text, but it was generated: lm-eval's loglikelihood takes the
    last entry as the generated one, so every token has one, the last included."""
    from kogpt2.model import TokenLogprob
    from kogpt2.model.seam import EngineOutput, EngineResult

    generator = app.extensions["kogpt2"]
    generator.load()
    word, unk = TITLE_IDS[0], 5
    scored = [TokenLogprob(word, -0.1, [(word, -0.1)]), TokenLogprob(unk, -0.2, [(unk, -0.2)])]
    monkeypatch.setattr(generator.engine, "generate", lambda requests: [
        EngineResult([EngineOutput([word, unk], "length", scored)]) for _ in requests])
    logprobs = complete(client, max_tokens=2, temperature=0, logprobs=0)["choices"][0][
        "logprobs"]
    assert logprobs["token_logprobs"] == [-0.1, -0.2]
    assert logprobs["tokens"][1] == "" and len(logprobs["text_offset"]) == 2
