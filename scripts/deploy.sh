#!/usr/bin/env bash
# Deploy to AWS Lambda + API Gateway with Zappa's Docker image mode, in one command.
#
#   scripts/deploy.sh STAGE            build, push to ECR, then `zappa deploy` (first time)
#                                      or `zappa update` (after)
#   scripts/deploy.sh STAGE status     what is deployed, and its URL
#   scripts/deploy.sh STAGE logs       follow the function's logs
#   scripts/deploy.sh STAGE undeploy   remove the function, API and schedule (ECR images stay)
#
# STAGE is a stage of zappa_settings.json (dev, production). Needs zappa and boto3 on PATH's
# python (`make deploy` uses .venv), docker, and AWS credentials. Optional environment:
#   ENGINE=openvino|ctranslate2|transformers   default: openvino on x86_64, ctranslate2 on arm64
#   MODEL_ID=owner/name  MODEL_REVISION=main    the hub checkpoint the image bakes in (the
#                                               revision is resolved to its commit first)
#   ALLOW_ANY_ORIGIN=1                          deploy a stage other than dev with CORS '*'
# The image tag names the stage, commit (plus a hash of uncommitted or untracked files the
# build reads), architecture, engine, model and the model's commit: a build happens when any
# differ. deploy_aws.py exits 1 for "no" (not there), 2 for a refusal, 3 when it crashes: only 1
# ever means "not there".
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "deploy: $*" >&2; exit 1; }

stage=${1:-}
action=${2:-deploy}
[ -n "$stage" ] || die "usage: scripts/deploy.sh STAGE [deploy|status|logs|undeploy]"
python=${PYTHON:-python3}
command -v zappa >/dev/null \
    || die "zappa is not installed: run 'make deploy STAGE=$stage' or pip install -r requirements-lambda.txt"

# REGION PROJECT LAMBDA_NAME ARCHITECTURE PLATFORM DEFAULT_ENGINE, from zappa_settings.json.
stage_settings=$("$python" scripts/deploy_aws.py stage "$stage") || exit 1
eval "$stage_settings"

case $action in
    status) exec zappa status "$stage" ;;
    logs) exec zappa tail "$stage" --since 1h ;;
    undeploy)
        # A stage in a usage plan (an API key's) can't be deleted: out of it first.
        "$python" scripts/deploy_aws.py remove-usage-plan "$stage"
        exec zappa undeploy "$stage" --yes ;;
    deploy) ;;
    *) die "unknown action '$action': deploy, status, logs or undeploy" ;;
esac

# Limits and CORS before anything is built or created, and whose model this is, on what terms.
"$python" scripts/deploy_aws.py check-stage "$stage" || exit 1
"$python" scripts/deploy_aws.py licence "$stage" || exit 1
command -v docker >/dev/null || die "docker is not installed (https://docs.docker.com/get-docker/)"
docker info >/dev/null 2>&1 || die "docker is installed but not running: start Docker and retry"
command -v git >/dev/null || die "git is needed: images are tagged with the commit"
account=$("$python" scripts/deploy_aws.py credentials "$REGION") || exit 1
echo "deploy: stage $stage of $PROJECT to account $account in $REGION ($ARCHITECTURE)"

engine=${ENGINE:-$DEFAULT_ENGINE}
model_id=${MODEL_ID:-skt/kogpt2-base-v2}
# A branch or tag moves; the image must name what it holds: its commit.
model_revision=$("$python" scripts/deploy_aws.py resolve-revision "$model_id" \
    "${MODEL_REVISION:-main}") || exit 1
[ "$model_revision" = "${MODEL_REVISION:-main}" ] \
    || echo "deploy: $model_id ${MODEL_REVISION:-main} is commit $model_revision"
tag=$("$python" scripts/deploy_aws.py image-tag "$stage" "$engine" "$model_id" "$model_revision") \
    || exit 1
# Before a build that can take minutes: a function of another architecture is refused.
if "$python" scripts/deploy_aws.py function-exists "$stage"; then
    zappa_command=update
else
    [ $? -eq 1 ] || exit 1
    zappa_command=deploy
fi

# The stage's zappa_settings.py is baked into the image (the tag names the stage).
zappa save-python-settings-file "$stage"
repository=$("$python" scripts/deploy_aws.py ecr-repository "$REGION" "$PROJECT")
image="$repository:$tag"

if "$python" scripts/deploy_aws.py image-exists "$REGION" "$PROJECT" "$tag"; then
    echo "deploy: $image is already in ECR; not rebuilding"
else
    [ $? -eq 1 ] || exit 1
    # --provenance=false: Lambda rejects the image index that buildx's attestations create.
    docker buildx build --platform "$PLATFORM" --provenance=false --load \
        --build-arg ENGINE="$engine" \
        --build-arg MODEL_ID="$model_id" \
        --build-arg MODEL_REVISION="$model_revision" \
        --tag "$PROJECT:$tag" .
    "$python" scripts/deploy_aws.py ecr-password "$REGION" \
        | docker login --username AWS --password-stdin "${repository%%/*}"
    docker tag "$PROJECT:$tag" "$image"
    docker push "$image"
fi

zappa "$zappa_command" "$stage" -d "$image"
# Zappa (and CloudFormation on an update) set the API's integrations BUFFERED: the image's
# runtime streams unless the stage says not to, and the integrations must say the same.
# Before apply-limits: a new keyless OPTIONS copies its ANY's integration, and the stage's
# throttling is set after every deployment made here.
"$python" scripts/deploy_aws.py apply-streaming "$stage"
# Zappa sets the function's reserved concurrency (lambda_concurrency); the rest is ours.
"$python" scripts/deploy_aws.py apply-limits "$stage"
