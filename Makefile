# make run    serve the app with gunicorn on http://127.0.0.1:8000
# make test   run the whole test suite (ruff included)
# make cache-list, make cache-prune   the prepared copies in KOGPT2_CACHE_DIR
# make quality  lm-eval through the service, once per engine (bench/quality.py)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run dev test stand-in quality

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/gunicorn app:app

dev: $(VENV)/.runtime
	$(BIN)/flask --app app run --debug

test: $(VENV)/.dev
	$(BIN)/python -m pytest

stand-in: $(VENV)/.runtime
	$(BIN)/python scripts/make_stand_in.py models/kogpt2-stand-in

# The cache of prepared copies (KOGPT2_CACHE_DIR): what is in it, and removing what is stale.
# make cache-prune ARGS=--unused also removes copies the configured model doesn't use.
.PHONY: cache-list cache-prune

cache-list: $(VENV)/.runtime
	$(BIN)/python scripts/cache.py list

cache-prune: $(VENV)/.runtime
	$(BIN)/python scripts/cache.py prune $(ARGS)

# MODEL=skt/kogpt2-base-v2 (the hub) or a directory; default: the full-size stand-in.
quality: $(VENV)/.dev
	$(BIN)/python bench/quality.py $(if $(MODEL),--model $(MODEL))

# AWS Lambda (README: "Deploy to AWS Lambda"): make deploy STAGE=dev, make status, make logs,
# make undeploy. Deploying needs Zappa and boto3, not torch: requirements-lambda.txt has them.
STAGE ?= dev
DEPLOY := PATH="$(CURDIR)/$(BIN):$$PATH" scripts/deploy.sh $(STAGE)

.PHONY: deploy status logs undeploy

$(VENV)/.deploy: requirements-lambda.txt requirements-slim.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-lambda.txt
	touch $@

deploy: $(VENV)/.deploy
	$(DEPLOY) deploy

status: $(VENV)/.deploy
	$(DEPLOY) status

logs: $(VENV)/.deploy
	$(DEPLOY) logs

undeploy: $(VENV)/.deploy
	$(DEPLOY) undeploy
