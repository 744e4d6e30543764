"""LangChain's `langchain_openai.OpenAI` against gunicorn on the tiny stand-in, as its users
call it: invoke, batch (several prompts in one request) and stream."""

import pytest
from langchain_openai import OpenAI
from openai_checks import MODEL, OTHER_TITLES, TITLE

PROMPTS = [TITLE, *OTHER_TITLES]


@pytest.fixture(scope="module")
def server(warm_server):
    return warm_server


def llm(server, **options):
    return OpenAI(base_url=f"{server}/v1", api_key="unused", model=MODEL, temperature=0,
                  max_tokens=10, max_retries=0, timeout=120, **options)


def test_batch_gives_each_prompt_its_greedy_text_alone(server):
    model = llm(server)
    alone = [model.invoke(prompt) for prompt in PROMPTS]
    assert all(alone) and len(set(alone)) == len(PROMPTS)
    assert model.batch(PROMPTS) == alone  # one request of three prompts
    # batch_size 2: LangChain splits the three into two requests; the answers keep their order.
    assert llm(server, batch_size=2).batch(PROMPTS) == alone


def test_generate_adds_up_usage_over_the_batch(server):
    result = llm(server).generate(PROMPTS)
    usage = result.llm_output["token_usage"]
    alone = [llm(server).generate([prompt]).llm_output["token_usage"] for prompt in PROMPTS]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert usage[key] == sum(one[key] for one in alone)
    assert [len(generations) for generations in result.generations] == [1, 1, 1]
    assert {g[0].generation_info["finish_reason"] for g in result.generations} == {"length"}


def test_stream_joins_to_the_invoked_text(server):
    model = llm(server)
    chunks = list(model.stream(TITLE))
    assert len([chunk for chunk in chunks if chunk]) > 2  # streamed as written, not at once
    assert "".join(chunks) == model.invoke(TITLE)
