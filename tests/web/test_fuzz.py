"""Schemathesis against /openapi.json on the app in process: no 5xx, every answer as documented."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from app import create_app

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
GENERATE_CASES = 1000
COMPLETIONS_CASES = 300


@pytest.fixture(scope="module")
def schema(tiny_model_dir):
    # Small caps keep 1,000+ generations quick; the cap is part of the contract being fuzzed.
    app = create_app({
        "TESTING": True, "MODEL": str(tiny_model_dir), "ENGINE": "transformers", "THREADS": 1,
        "MAX_NEW_TOKENS": 4, "QUEUE_TIMEOUT_S": 10,
    })
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def run_cases(strategy, max_examples: int) -> list:
    seen = []

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case):
        seen.append(case)
        response = case.call()
        case.validate_response(response, checks=CHECKS)

    check()
    return seen


def test_generate_survives_a_thousand_generated_requests(schema):
    operation = schema["/generate"]["POST"]
    strategy = st.one_of(
        operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
    )
    cases = run_cases(strategy, GENERATE_CASES)
    assert len(cases) >= GENERATE_CASES


def test_completions_survive_generated_requests(schema):
    operation = schema["/v1/completions"]["POST"]
    strategy = st.one_of(
        operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE),
    )
    assert len(run_cases(strategy, COMPLETIONS_CASES)) >= COMPLETIONS_CASES


@pytest.mark.parametrize("path", ["/health", "/info", "/openapi.json", "/v1/models",
                                  "/v1/models/{model}"])
def test_read_routes_answer_as_documented(schema, path):
    assert run_cases(schema[path]["GET"].as_strategy(), 20)


def test_the_checks_catch_an_answer_that_drifts_from_the_document(schema, monkeypatch):
    app = schema.app
    monkeypatch.setitem(app.view_functions, "api.health", lambda: {"status": "fine"})
    case = schema["/health"]["GET"].Case()
    with pytest.raises(FailureGroup, match="violates schema"):
        case.validate_response(case.call(), checks=CHECKS)
