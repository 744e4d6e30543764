"""The official `openai` client against gunicorn on the tiny stand-in, as its users call it."""

import threading
import time

import openai
import openai_checks as checks
import pytest
from live_server import get_json, post_json

MAX_NEW_TOKENS = 64


@pytest.fixture(scope="module")
def server(live_server):
    with live_server(max_new_tokens=MAX_NEW_TOKENS) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0,
                       timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def generate(server):
    def call(body):
        status, answer = post_json(f"{server}/generate", body, timeout=120)
        assert status == 200
        return answer

    return call


def test_models_list(client):
    checks.models_are_listed(client)


def test_greedy_completion_equals_generate_greedy(client, generate):
    checks.greedy_equals_generate(client, generate)


def test_streamed_chunks_joined_equal_the_non_streamed_text(client):
    checks.streamed_chunks_join_to_the_plain_text(client, streams_live=True)


def test_n2_sampled_with_a_seed_twice_gives_the_same_two_texts(client):
    checks.seeded_samples_repeat(client)


def test_stop_cuts_before_the_stop_text(client):
    checks.stop_cuts(client)


def test_echo_prepends_the_prompt(client):
    checks.echo_prepends_the_prompt(client)


def test_usage_adds_up(client, generate):
    checks.usage_adds_up(client, generate)


def test_errors_raise_the_sdks_exceptions(client):
    checks.errors_raise_what_users_expect(client, MAX_NEW_TOKENS)


def test_tokenizer_endpoints_answer_in_vllms_shapes(client, tiny_model_dir):
    checks.tokenizer_endpoints_answer_in_vllms_shapes(client, tiny_model_dir)


def test_a_batch_answers_each_prompt_in_order(client):
    checks.a_batch_answers_each_prompt_in_order(client)


def test_token_id_prompts_equal_their_text(client):
    checks.token_id_prompts_equal_their_text(client)


def test_generated_logprobs_have_openais_shape(client):
    checks.generated_logprobs_have_openais_shape(client)


def test_echo_scores_the_prompt_with_max_tokens_0_and_1(client, tiny_model_dir):
    checks.echo_scores_the_prompt(client, tiny_model_dir)


def test_continuous_usage_counts_every_chunk(client):
    checks.continuous_usage_counts_every_chunk(client)


def test_bad_batches_and_scores_are_400_naming_the_field(client):
    checks.bad_batches_and_scores_are_400_naming_the_field(client)


def test_a_full_queue_raises_rate_limit_error(live_server):
    with live_server(max_concurrency=1, queue_size=0, max_new_tokens=1000) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        long = {"model": checks.MODEL, "prompt": "근육", "max_tokens": 1000, "temperature": 0}
        holder = threading.Thread(target=post_json, args=(f"{base}/v1/completions", long, 120))
        holder.start()
        deadline = time.monotonic() + 60
        while get_json(f"{base}/info")["concurrency"]["running"] == 0:
            assert time.monotonic() < deadline, "the long completion never took the slot"
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as refused:
            client.completions.create(model=checks.MODEL, prompt=checks.TITLE, max_tokens=1)
        holder.join()
        assert int(refused.value.response.headers["Retry-After"]) >= 1
        assert refused.value.code == "overloaded" and refused.value.type == "rate_limit_error"
        # The slot is free again: the next completion is served.
        assert client.completions.create(model=checks.MODEL, prompt=checks.TITLE, max_tokens=1)


def test_a_client_that_goes_away_frees_the_slot(live_server):
    with live_server(max_concurrency=1, queue_size=0, max_new_tokens=1000) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        stream = client.completions.create(model=checks.MODEL, prompt="근육", max_tokens=1000,
                                           temperature=0, stream=True)
        next(iter(stream))
        stream.close()  # mid-generation
        deadline = time.monotonic() + 60
        while get_json(f"{base}/info")["concurrency"]["running"]:
            assert time.monotonic() < deadline, "the cancelled generation kept its slot"
            time.sleep(0.01)
        assert client.completions.create(model=checks.MODEL, prompt=checks.TITLE, max_tokens=1)
