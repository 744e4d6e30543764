import pytest
from pydantic import ValidationError

from app import create_app
from kogpt2.config import Settings


def test_environment_then_mapping(monkeypatch):
    monkeypatch.setenv("KOGPT2_MAX_NEW_TOKENS", "100")
    monkeypatch.setenv("KOGPT2_MODEL", "/from/env")
    settings, flask_config = Settings.from_mapping({"MODEL": "/from/mapping", "TESTING": True})
    assert settings.max_new_tokens == 100 and settings.model == "/from/mapping"
    assert flask_config == {"TESTING": True}


def test_defaults(monkeypatch):
    for name in ("MODEL", "ENGINE", "CORS_ORIGINS", "MAX_NEW_TOKENS", "TIME_BUDGET_S",
                 "THREADS", "WORKERS", "LOAD_ON_START", "MODEL_LICENCE"):
        monkeypatch.delenv(f"KOGPT2_{name}", raising=False)
    settings = Settings()
    assert settings.model == "skt/kogpt2-base-v2"
    assert settings.cors_origins == ["*"] and settings.cors_credentials is False
    assert settings.max_new_tokens == 256 and settings.time_budget_s == 20
    # Threads: chosen from the CPUs when the generator is made (kogpt2/model/cpus.py).
    assert (settings.threads, settings.workers) == (None, 1)
    assert (settings.load_retry_s, settings.load_retry_max_s) == (5, 300)
    assert settings.load_on_start is True and settings.model_licence is None


def test_wildcard_origin_with_credentials_is_refused():
    with pytest.raises(ValidationError, match="CORS"):
        Settings(cors_credentials=True)
    assert Settings(cors_credentials=True, cors_origins="https://a.example").cors_credentials


def test_a_bad_environment_value_fails_at_start(monkeypatch):
    monkeypatch.setenv("KOGPT2_TIME_BUDGET_S", "forever")
    with pytest.raises(ValidationError, match="time_budget_s"):
        create_app()


def test_credentials_are_sent_only_for_listed_origins(monkeypatch, tiny_model_dir):
    app = create_app({"MODEL": str(tiny_model_dir), "CORS_CREDENTIALS": True,
                      "CORS_ORIGINS": "https://app.example"})
    response = app.test_client().get("/health", headers={"Origin": "https://app.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


def test_the_logprobs_mode_reaches_the_generator_and_a_wrong_one_is_refused(monkeypatch):
    from kogpt2.config import make_generator

    monkeypatch.delenv("KOGPT2_LOGPROBS_MODE", raising=False)
    assert make_generator(Settings()).logprobs_mode == "raw_logprobs"  # vLLM's default
    monkeypatch.setenv("KOGPT2_LOGPROBS_MODE", "processed_logprobs")
    assert make_generator(Settings()).logprobs_mode == "processed_logprobs"
    monkeypatch.setenv("KOGPT2_LOGPROBS_MODE", "raw_logits")  # vLLM's, not OpenAI's logprobs
    with pytest.raises(ValidationError, match="logprobs_mode"):
        Settings()
