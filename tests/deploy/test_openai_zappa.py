"""The official `openai` client through Zappa's real handler, as API Gateway calls it under /dev.

The SDK's HTTP client sends each request as an API Gateway REST (v1 proxy) event to one warm
Lambda container running Zappa's handler on the tiny stand-in: as awslambdaric called it
(lambda_task.WarmLambda: a stream arrives whole, as Zappa's handler buffers it), and through the
image's own runtime (lambda_task.StreamingLambda: streamed, its events each sent as written).
The checks are the ones run against gunicorn (tests/openai_checks.py). A full queue can't be
shown here: Lambda gives a container one event at a time (more load starts more containers).
"""

import httpx2 as httpx
import openai
import openai_checks as checks
import pytest
from lambda_task import (
    BUFFERED,
    HOST,
    SETTINGS,
    STREAMING,
    ApiGateway,
    StreamingLambda,
    WarmLambda,
)

BASE = f"https://{HOST}/dev"
MAX_NEW_TOKENS = int(SETTINGS["dev"]["aws_environment_variables"]["KOGPT2_MAX_NEW_TOKENS"])


RUNTIMES = {BUFFERED: WarmLambda, STREAMING: StreamingLambda}


@pytest.fixture(scope="module", params=RUNTIMES)
def runtime(request):
    return request.param


@pytest.fixture(scope="module")
def gateway(task_root, lambda_env, tmp_path_factory, runtime):
    with RUNTIMES[runtime](task_root, lambda_env, tmp_path_factory.mktemp("lambda")) as function:
        yield ApiGateway(function)


@pytest.fixture(scope="module")
def client(gateway):
    http = httpx.Client(transport=gateway, timeout=120)
    with openai.OpenAI(base_url=f"{BASE}/v1", api_key="unused", max_retries=0,
                       http_client=http) as client:
        yield client


@pytest.fixture(scope="module")
def generate(gateway):
    http = httpx.Client(transport=gateway, base_url=BASE, timeout=120)

    def call(body):
        response = http.post("/generate", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    return call


def test_models_list(client):
    checks.models_are_listed(client)


def test_greedy_completion_equals_generate_greedy(client, generate):
    checks.greedy_equals_generate(client, generate)


def test_a_stream_joins_to_the_non_streamed_text(client, runtime):
    checks.streamed_chunks_join_to_the_plain_text(client, streams_live=runtime == STREAMING)


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


def test_answers_carry_cors_and_the_apis_headers(gateway):
    http = httpx.Client(transport=gateway, base_url=BASE, timeout=120)
    headers = {"Origin": "https://example.org"}
    body = {"model": checks.MODEL, "prompt": checks.TITLE, "max_tokens": 2}
    answer = http.post("/v1/completions", json=body, headers=headers)
    refused = http.post("/v1/completions", json={**body, "prompt": ""}, headers=headers)
    for response in (answer, refused):
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-request-id"]
    assert answer.status_code == 200  # (a sampled answer may end early, at end of text)
    assert answer.headers["x-generated-tokens"] == str(answer.json()["usage"]["completion_tokens"])
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "prompt"
