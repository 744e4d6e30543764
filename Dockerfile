# The Lambda image that Zappa deploys (`scripts/deploy.sh STAGE` builds and pushes it).
#
#   docker build --platform linux/amd64 -t kogpt2 .                          # CTranslate2 int8
#   docker build --platform linux/arm64 -t kogpt2 .                          # Graviton
#   docker build --build-arg ENGINE=transformers -t kogpt2-transformers .    # reference engine
#
# Needs zappa_settings.py in the context: `zappa save-python-settings-file STAGE` writes it.

# ctranslate2: the slim image (no torch, no transformers) serving an int8 conversion.
# transformers: torch + transformers serving the downloaded checkpoint as it is.
ARG ENGINE=ctranslate2
ARG LAMBDA_PYTHON=public.ecr.aws/lambda/python:3.12

# --- What serving needs, and nothing else ----------------------------------------------------
FROM ${LAMBDA_PYTHON} AS deps-ctranslate2
COPY requirements-slim.txt requirements-lambda.txt /build/
RUN pip install --no-cache-dir -r /build/requirements-lambda.txt

# torch's CPU build: PyPI's Linux build drags in several GB of CUDA libraries Lambda can't use.
FROM deps-ctranslate2 AS deps-transformers
COPY requirements.txt /build/
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir -r /build/requirements.txt

# --- The model: downloaded at build time, so a cold start never touches the hub --------------
FROM deps-transformers AS model
ARG ENGINE
ARG MODEL_ID=skt/kogpt2-base-v2
ENV HF_HOME=/build/huggingface
WORKDIR /build
COPY kogpt2/ kogpt2/
COPY scripts/ scripts/
RUN if [ "$ENGINE" = "ctranslate2" ]; then \
        python scripts/convert.py "$MODEL_ID" /opt/kogpt2/model --quantization int8; \
    else \
        python -c "import shutil, sys; from kogpt2.model.hub import snapshot; shutil.copytree(snapshot(sys.argv[1]), sys.argv[2])" \
            "$MODEL_ID" /opt/kogpt2/model; \
    fi

# --- The image Lambda runs -------------------------------------------------------------------
# deps-${ENGINE} names a stage above, not an image: there is no tag to pin.
# hadolint ignore=DL3006
FROM deps-${ENGINE} AS runtime
WORKDIR ${LAMBDA_TASK_ROOT}
# /tmp is the only writable path on Lambda: every cache goes there. The model is baked in,
# so the hub is never asked. The handler loads the app during Lambda's init phase.
ENV KOGPT2_MODEL=/opt/kogpt2/model \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    XDG_CACHE_HOME=/tmp/cache \
    INSTANTIATE_LAMBDA_HANDLER_ON_IMPORT=1
COPY --from=model /opt/kogpt2/model /opt/kogpt2/model
COPY app.py zappa_settings.py ${LAMBDA_TASK_ROOT}/
COPY kogpt2/ ${LAMBDA_TASK_ROOT}/kogpt2/
COPY templates/ ${LAMBDA_TASK_ROOT}/templates/
COPY static/ ${LAMBDA_TASK_ROOT}/static/
# Lambda's file system is read-only: byte-compile now, or every cold start compiles again.
RUN python -m compileall -q "${LAMBDA_TASK_ROOT}"
CMD ["zappa.handler.lambda_handler"]
