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
# ENGINE=transformers builds the reference-engine image; MODEL_ID picks another checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "deploy: $*" >&2; exit 1; }

stage=${1:-}
action=${2:-deploy}
[ -n "$stage" ] || die "usage: scripts/deploy.sh STAGE [deploy|status|logs|undeploy]"
python=${PYTHON:-python3}
command -v zappa >/dev/null \
    || die "zappa is not installed: run 'make deploy STAGE=$stage' or pip install -r requirements-lambda.txt"

# REGION PROJECT LAMBDA_NAME ARCHITECTURE PLATFORM, from zappa_settings.json.
stage_settings=$("$python" scripts/deploy_aws.py stage "$stage") || exit 1
eval "$stage_settings"

case $action in
    status) exec zappa status "$stage" ;;
    logs) exec zappa tail "$stage" --since 1h ;;
    undeploy) exec zappa undeploy "$stage" --yes ;;
    deploy) ;;
    *) die "unknown action '$action': deploy, status, logs or undeploy" ;;
esac

command -v docker >/dev/null || die "docker is not installed (https://docs.docker.com/get-docker/)"
docker info >/dev/null 2>&1 || die "docker is installed but not running: start Docker and retry"
command -v git >/dev/null || die "git is needed: images are tagged with the commit"
account=$("$python" scripts/deploy_aws.py credentials "$REGION") || exit 1
echo "deploy: stage $stage of $PROJECT to account $account in $REGION ($ARCHITECTURE)"

# One image per stage and commit: the stage's zappa_settings.py is baked into the image.
commit=$(git rev-parse --short=12 HEAD) || die "not a git checkout: images are tagged with the commit"
engine=${ENGINE:-ctranslate2}
tag="$stage-$commit"
[ "$engine" = ctranslate2 ] || tag="$tag-$engine"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    # Uncommitted changes: a fresh tag, so the commit's tag always means the commit.
    tag="$tag-dirty-$(date -u +%Y%m%d%H%M%S)"
fi

zappa save-python-settings-file "$stage"
repository=$("$python" scripts/deploy_aws.py ecr-repository "$REGION" "$PROJECT")
image="$repository:$tag"

if "$python" scripts/deploy_aws.py image-exists "$REGION" "$PROJECT" "$tag"; then
    echo "deploy: $image is already in ECR; not rebuilding"
else
    # --provenance=false: Lambda rejects the image index that buildx's attestations create.
    docker buildx build --platform "$PLATFORM" --provenance=false --load \
        --build-arg ENGINE="$engine" \
        --build-arg MODEL_ID="${MODEL_ID:-skt/kogpt2-base-v2}" \
        --tag "$PROJECT:$tag" .
    "$python" scripts/deploy_aws.py ecr-password "$REGION" \
        | docker login --username AWS --password-stdin "${repository%%/*}"
    docker tag "$PROJECT:$tag" "$image"
    docker push "$image"
fi

if "$python" scripts/deploy_aws.py function-exists "$REGION" "$LAMBDA_NAME"; then
    zappa update "$stage" -d "$image"
else
    zappa deploy "$stage" -d "$image"
fi
