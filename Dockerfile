# The Lambda image that Zappa deploys (`scripts/deploy.sh STAGE` builds and pushes it).
#
#   docker build --platform linux/amd64 -t kogpt2 .                               # OpenVINO int8
#   docker build --platform linux/arm64 --build-arg ENGINE=ctranslate2 -t kogpt2 .  # Graviton
#   docker build --build-arg ENGINE=transformers -t kogpt2-transformers .         # reference
#   --build-arg MODEL_ID=owner/name --build-arg MODEL_REVISION=<branch, tag or commit>
#
# Needs zappa_settings.py in the context: `zappa save-python-settings-file STAGE` writes it.

# openvino (x86_64 only: its arm64 wheels need glibc 2.35, Lambda's image has 2.34) and
# ctranslate2: the slim runtime (no torch, no transformers) serving an int8 model converted
# at build time. transformers: torch + transformers serving the checkpoint as downloaded.
ARG ENGINE=openvino
ARG MODEL_ID=skt/kogpt2-base-v2
ARG MODEL_REVISION=main
ARG LAMBDA_PYTHON=public.ecr.aws/lambda/python:3.12

# --- What serving needs, and nothing else ----------------------------------------------------
# requirements-slim.txt marks OpenVINO's pins platform_machine == "x86_64": arm64 skips them.
FROM ${LAMBDA_PYTHON} AS deps-slim
COPY requirements-slim.txt requirements-lambda.txt /build/
RUN pip install --no-cache-dir -r /build/requirements-lambda.txt

FROM deps-slim AS deps-openvino

FROM deps-slim AS deps-ctranslate2

# torch's CPU build: PyPI's Linux build drags in several GB of CUDA libraries Lambda can't use.
FROM deps-slim AS deps-transformers
COPY requirements.txt /build/
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir -r /build/requirements.txt

# --- The model: downloaded and converted at build time, so a cold start never touches the hub -
# Only what conversion reads comes in: a change to the app (app.py, kogpt2/web, templates,
# static) leaves this stage cached, and the model is not downloaded or converted again.
FROM deps-transformers AS model
ARG ENGINE
ARG MODEL_ID
ARG MODEL_REVISION
ENV HF_HOME=/build/huggingface
WORKDIR /build
COPY kogpt2/__init__.py kogpt2/
COPY kogpt2/model/ kogpt2/model/
COPY scripts/convert.py scripts/
# transformers serves the checkpoint as downloaded, plus the metadata file that names its
# hub id and commit (/info shows them), as convert.py writes for the other engines.
RUN if [ "$ENGINE" = "transformers" ]; then \
        python -c "import shutil, sys; from kogpt2.model import hub, vocab; source = hub.download(sys.argv[1], sys.argv[3]); shutil.copytree(source.path, sys.argv[2]); vocab.write_metadata(sys.argv[2], hub_id=source.hub_id, revision=source.revision, source=source.hub_id, engine='transformers')" \
            "$MODEL_ID" /opt/kogpt2/model "$MODEL_REVISION"; \
    else \
        python scripts/convert.py "$MODEL_ID" /opt/kogpt2/model --engine "$ENGINE" \
            --weight-format int8 --revision "$MODEL_REVISION"; \
    fi

# --- The image Lambda runs -------------------------------------------------------------------
# deps-${ENGINE} names a stage above, not an image: there is no tag to pin.
# hadolint ignore=DL3006
FROM deps-${ENGINE} AS runtime
ARG ENGINE
ARG MODEL_ID
ARG MODEL_REVISION
WORKDIR ${LAMBDA_TASK_ROOT}
# /tmp is the only writable path on Lambda: every cache goes there. The model is baked in,
# so the hub is never asked. The handler loads the app during Lambda's init phase. The image
# names its engine: with `auto`, the transformers image would prepare a CTranslate2 copy at
# every cold start (zappa_settings.json leaves KOGPT2_ENGINE unset, as the function's
# environment would win over this).
ENV KOGPT2_MODEL=/opt/kogpt2/model \
    KOGPT2_ENGINE=${ENGINE} \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    XDG_CACHE_HOME=/tmp/cache \
    INSTANTIATE_LAMBDA_HANDLER_ON_IMPORT=1
COPY --from=model /opt/kogpt2/model /opt/kogpt2/model
COPY app.py lambda_runtime.py zappa_settings.py ${LAMBDA_TASK_ROOT}/
COPY kogpt2/ ${LAMBDA_TASK_ROOT}/kogpt2/
COPY templates/ ${LAMBDA_TASK_ROOT}/templates/
COPY static/ ${LAMBDA_TASK_ROOT}/static/
# Lambda's file system is read-only: byte-compile now, or every cold start compiles again.
RUN python -m compileall -q "${LAMBDA_TASK_ROOT}"
# What the image serves, readable with `docker inspect` (the deploy's image tag names it too).
LABEL kogpt2.engine="${ENGINE}" \
      kogpt2.model.id="${MODEL_ID}" \
      kogpt2.model.revision="${MODEL_REVISION}"
# The image's own Lambda runtime (lambda_runtime.py) instead of the base image's awslambdaric,
# which can't stream: it runs Zappa's handler (the CMD) and streams API Gateway's answers when
# the stage's LAMBDA_RESPONSE_STREAMING is on. -u: each log line reaches CloudWatch at once.
ENTRYPOINT ["python3", "-u", "/var/task/lambda_runtime.py"]
CMD ["zappa.handler.lambda_handler"]
