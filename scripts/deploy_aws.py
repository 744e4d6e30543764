#!/usr/bin/env python3
"""The AWS and settings look-ups that scripts/deploy.sh needs, each one small command.

    deploy_aws.py stage STAGE                    shell assignments: REGION ARCHITECTURE ...
    deploy_aws.py check-stage STAGE              refuse a stage that is unsafe to make public
    deploy_aws.py licence STAGE                  the served model's licence, said before a deploy
    deploy_aws.py resolve-revision MODEL_ID REVISION
                                                 the hub commit REVISION names (a commit as is)
    deploy_aws.py image-tag STAGE ENGINE MODEL_ID REVISION
                                                 the tag that names what the image holds
    deploy_aws.py credentials REGION             the account id, or a clear error
    deploy_aws.py ecr-repository REGION NAME     the repository URI (created if missing)
    deploy_aws.py ecr-password REGION            the password for `docker login`
    deploy_aws.py image-exists REGION NAME TAG   exit 0 if NAME:TAG is in ECR, 1 if not
    deploy_aws.py function-exists STAGE          exit 0 if the stage's function exists, 1 if
                                                 not; refuses one of another architecture
    deploy_aws.py apply-streaming STAGE          after zappa deploy/update: every Lambda
                                                 integration of the API STREAM (or BUFFERED, as
                                                 the stage's LAMBDA_RESPONSE_STREAMING says),
                                                 then a new deployment of the stage if one changed
    deploy_aws.py apply-limits STAGE             after apply-streaming: API throttling, and
                                                 the API key's usage plan and keyless preflight
    deploy_aws.py remove-usage-plan STAGE        before zappa undeploy

boto3 comes with zappa. AWS_ENDPOINT_URL (moto in the tests) is honoured by boto3 itself, and
HF_ENDPOINT by huggingface_hub.

Exit status: 0 done (or yes), 1 no (image-exists, function-exists: not there), 2 refused (a
clear message says why, AWS's or the hub's answer included), 3 crashed (a bug: its traceback
follows). deploy.sh reads 1 as "not there" and stops on anything else: a crash never looks like
a missing function, which would send `zappa deploy` onto an existing one.
"""

import base64
import hashlib
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from pathlib import Path

SETTINGS = Path("zappa_settings.json")
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
# The engine each architecture's image serves by default (ENGINE=... overrides): OpenVINO's
# arm64 wheels need glibc 2.35 and Lambda's Python image has 2.34, so arm64 gets CTranslate2.
DEFAULT_ENGINES = {"x86_64": "openvino", "arm64": "ctranslate2"}
ENGINES = {"openvino": {"x86_64"}, "ctranslate2": {"x86_64", "arm64"},
           "transformers": {"x86_64", "arm64"}}
# Stages that may answer any web page (KOGPT2_CORS_ORIGINS=*) without ALLOW_ANY_ORIGIN=1.
OPEN_CORS_STAGES = {"dev"}
# A Hugging Face hub id, which the image downloads while it builds ("--" and ".." are refused
# by the hub, which makes "/" -> "--" in the tag reversible).
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
REVISION = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]*")
COMMIT = re.compile(r"[0-9a-f]{40}")
CRASHED = 3  # see the exit statuses above
TAG_MAX = 128  # ECR and Docker: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
# What the image build reads beside the .dockerignore'd context. zappa_settings.py is left
# out: it is written from zappa_settings.json (counted) for the stage (in the tag).
BUILD_FILES = ["Dockerfile", ".dockerignore", "zappa_settings.json"]
DERIVED = {"zappa_settings.py"}
ROOT = Path(__file__).resolve().parent.parent
# An API Gateway integration's Lambda URI: buffered (Invoke) or streamed (InvokeWithResponseStream).
LAMBDA_URI = re.compile(r"(arn:[\w-]+:apigateway:[\w-]+:lambda:path)/\d{4}-\d{2}-\d{2}"
                        r"/functions/(arn:[^/]+)/(?:response-streaming-)?invocations")
TRANSFER = {True: ("STREAM", "2021-11-15", "response-streaming-invocations"),
            False: ("BUFFERED", "2015-03-31", "invocations")}


class DeployError(Exception):
    pass


def stage_config(stage: str) -> dict:
    """The stage's settings with `extends` resolved, as Zappa reads them."""
    if not SETTINGS.is_file():
        raise DeployError(f"{SETTINGS} is missing: it defines the stages to deploy")
    try:
        stages = json.loads(SETTINGS.read_text())
    except ValueError as exc:
        raise DeployError(f"{SETTINGS} is not valid JSON: {exc}") from exc
    if stage not in stages:
        raise DeployError(f"no stage {stage!r} in {SETTINGS}; stages: {', '.join(stages)}")
    config, seen = dict(stages[stage]), {stage}
    while "extends" in config:
        parent = config.pop("extends")
        if parent not in stages or parent in seen:
            raise DeployError(f"stage {stage!r} extends {parent!r}, which is missing or a loop")
        seen.add(parent)
        config = {**stages[parent], **config}
    for key in ("project_name", "aws_region"):
        if not config.get(key):
            raise DeployError(f"stage {stage!r} in {SETTINGS} needs {key!r}")
    architecture = config.get("architecture", "x86_64")
    if architecture not in PLATFORMS:
        raise DeployError(f"architecture {architecture!r} is not one of {', '.join(PLATFORMS)}")
    return config


def print_stage(stage: str) -> None:
    config = stage_config(stage)
    architecture = config.get("architecture", "x86_64")
    values = {
        "REGION": config["aws_region"],
        "PROJECT": config["project_name"],
        "LAMBDA_NAME": f"{config['project_name']}-{stage}",
        "ARCHITECTURE": architecture,
        "PLATFORM": PLATFORMS[architecture],
        "DEFAULT_ENGINE": DEFAULT_ENGINES[architecture],
    }
    for name, value in values.items():
        print(f"{name}={shlex.quote(value)}")


# --- Limits: what a public stage must carry -------------------------------------------------

def cors_origins(config: dict) -> list[str]:
    """The origins the deployed app will allow. Zappa's handler copies the baked-in
    `environment_variables` over the function's own, and the app's default is '*'."""
    value = config.get("environment_variables", {}).get(
        "KOGPT2_CORS_ORIGINS",
        config.get("aws_environment_variables", {}).get("KOGPT2_CORS_ORIGINS", "*"))
    return [origin.strip() for origin in value.split(",") if origin.strip()]


def throttle(stage: str, config: dict) -> tuple[int, int]:
    """(rate limit in requests per second, burst limit) of the stage's API."""
    limits = config.get("kogpt2", {}).get("throttle", {})
    rate, burst = limits.get("rate_limit"), limits.get("burst_limit")
    if not all(isinstance(value, int) and not isinstance(value, bool) and value > 0
               for value in (rate, burst)):
        raise DeployError(
            f"stage {stage!r} needs \"kogpt2\": {{\"throttle\": {{\"rate_limit\": N, "
            f"\"burst_limit\": N}}}} in {SETTINGS}, whole numbers above 0 (requests per second, "
            "and at once): API Gateway refuses what goes beyond them with 429")
    return rate, burst


def streams(stage: str, config: dict) -> bool:
    """Whether the stage's function streams API Gateway's answers: its LAMBDA_RESPONSE_STREAMING,
    read by the image's runtime's own rule (lambda_runtime.py), so that the two never disagree.
    Zappa's handler copies the baked-in `environment_variables` over the function's own."""
    sys.path.insert(0, str(ROOT))
    from lambda_runtime import response_streaming

    variables = {**config.get("aws_environment_variables", {}),
                 **config.get("environment_variables", {})}
    try:
        return response_streaming(variables)
    except ValueError as exc:
        raise DeployError(f"stage {stage!r} in {SETTINGS}: {exc}") from exc


def time_budget(config: dict) -> float:
    """The seconds a generation may take on the stage: its KOGPT2_TIME_BUDGET_S, or the app's
    default."""
    sys.path.insert(0, str(ROOT))
    from kogpt2.config import Settings

    variables = {**config.get("aws_environment_variables", {}),
                 **config.get("environment_variables", {})}
    value = variables.get("KOGPT2_TIME_BUDGET_S")
    return float(value) if value else Settings.model_fields["time_budget_s"].default


def check_stage(stage: str) -> None:
    config = stage_config(stage)
    if streams(stage, config):
        # What API Gateway's STREAM mode can't do (it would have to hold the whole answer).
        if config.get("payload_compression", True):  # Zappa's default: on
            raise DeployError(
                f"stage {stage!r} streams its answers (LAMBDA_RESPONSE_STREAMING), and API "
                "Gateway can't compress a stream: set \"payload_compression\": false in "
                f"{SETTINGS}, or turn streaming off with \"LAMBDA_RESPONSE_STREAMING\": "
                "\"false\" in its aws_environment_variables")
        if config.get("cache_cluster_enabled", False):
            raise DeployError(
                f"stage {stage!r} streams its answers (LAMBDA_RESPONSE_STREAMING), and API "
                "Gateway can't cache a stream: set \"cache_cluster_enabled\": false, or turn "
                "streaming off")
        # Nothing else ends a stream (no 29 s integration limit): the app's time budget must
        # end the generation, with its last event, before Lambda ends the function.
        budget, timeout = time_budget(config), config.get("timeout_seconds", 30)
        if budget >= timeout:
            raise DeployError(
                f"stage {stage!r} streams its answers, and only the function's timeout ends a "
                f"stream: KOGPT2_TIME_BUDGET_S ({budget:g} s) must end a generation before "
                f"\"timeout_seconds\" ({timeout} s) ends the function")
    concurrency = config.get("lambda_concurrency")
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise DeployError(
            f"stage {stage!r} needs \"lambda_concurrency\": N in {SETTINGS} (a whole number "
            "above 0): the most containers that can run, and bill, at once")
    throttle(stage, config)
    if ("*" in cors_origins(config) and stage not in OPEN_CORS_STAGES
            and os.environ.get("ALLOW_ANY_ORIGIN") != "1"):
        raise DeployError(
            f"stage {stage!r} would let any web page call the API (KOGPT2_CORS_ORIGINS is '*' "
            "or unset). List the sites that may call it in its aws_environment_variables, "
            "e.g. \"KOGPT2_CORS_ORIGINS\": \"https://www.example.com\" (\"\" for none: the "
            "page needs none), or deploy it open on purpose with ALLOW_ANY_ORIGIN=1")


# --- What is deployed: whose model, at which commit ---------------------------------------

def licence(stage: str) -> None:
    """Say the licence of the model the stage serves, before anything is built: KoGPT2's
    (kogpt2/model/licence.py), or the weights' own from the stage's KOGPT2_MODEL_LICENCE with
    KoGPT2's for its tokenizer."""
    sys.path.insert(0, str(ROOT))
    from kogpt2.model.licence import Licence, model_licences

    config = stage_config(stage)
    variables = {**config.get("aws_environment_variables", {}),
                 **config.get("environment_variables", {})}
    weights = None
    if variables.get("KOGPT2_MODEL_LICENCE"):
        try:
            weights = Licence(**json.loads(variables["KOGPT2_MODEL_LICENCE"]))
        except (ValueError, TypeError) as exc:
            raise DeployError(f"stage {stage!r}: KOGPT2_MODEL_LICENCE is not a licence "
                              f"(JSON with {', '.join(Licence.__dataclass_fields__)}): {exc}"
                              ) from exc
    statements = model_licences(weights)
    for statement in statements:
        print(f"deploy: licence: {statement.notice()}")
    if any(statement.non_commercial for statement in statements):
        print(f"deploy: stage {stage} may serve only non-commercial use: see README.md, "
              "\"Licence\"")


def resolve_revision(model_id: str, revision: str) -> None:
    """Print the hub commit `revision` names today, so that the image tag and the build name a
    checkpoint that can't move under them. A commit is printed as it is, without the hub."""
    if COMMIT.fullmatch(revision):
        print(revision)
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise DeployError(
            f"MODEL_REVISION={revision} must be resolved to a commit on the hub, and "
            "HF_HUB_OFFLINE is set: give the commit itself (40 hex digits), e.g. "
            f"MODEL_REVISION=$(git ls-remote https://huggingface.co/{model_id} {revision})")
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        commit = HfApi().model_info(model_id, revision=revision, timeout=15).sha
    except RepositoryNotFoundError as exc:
        raise DeployError(f"MODEL_ID={model_id} is not on the hub (or is private)") from exc
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            raise DeployError(f"{model_id} has no revision {revision!r} on the hub") from exc
        raise DeployError(f"the hub did not say which commit {revision!r} of {model_id} is: "
                          f"{exc}") from exc
    except (OSError, httpx2.HTTPError) as exc:  # no network, a proxy, a timeout
        raise DeployError(
            f"the hub can't be reached to resolve MODEL_REVISION={revision} of {model_id} "
            f"({type(exc).__name__}: {exc}); give the commit itself (40 hex digits)") from exc
    if not commit or not COMMIT.fullmatch(commit):
        raise DeployError(f"the hub named no commit for {revision!r} of {model_id}")
    print(commit)


# --- The image tag: what the image holds ----------------------------------------------------

def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], check=True, capture_output=True,
                              text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DeployError("not a git checkout: images are tagged with the commit") from exc


def ignore_rules(path: Path = Path(".dockerignore")) -> list[tuple[re.Pattern, bool, str]]:
    """.dockerignore as (pattern, excludes, literal prefix), in file order, read as Docker
    does: `*` and `?` within a path segment, `**` any number of segments, `!` lets back in; a
    rule covers what is under a directory it matches; the last rule that matches decides.
    ([character classes] are not supported: this file needs none.)"""
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token))
        prefix = re.split(r"[*?\[]", pattern)[0]
        rules.append((re.compile(regex), excludes, prefix))
    return rules


def excluded(path: str, rules) -> bool:
    parents = [path]
    while "/" in parents[-1]:
        parents.append(parents[-1].rsplit("/", 1)[0])
    result = False
    for regex, excludes, _prefix in rules:
        if any(regex.fullmatch(candidate) for candidate in parents):
            result = excludes
    return result


def blob(path: Path) -> tuple[str, str]:
    """(mode, git blob id) of a file in the working tree, as `git ls-tree` shows them."""
    if path.is_symlink():
        mode, data = "120000", os.readlink(path).encode()
    else:
        mode, data = ("100755" if os.access(path, os.X_OK) else "100644"), path.read_bytes()
    return mode, hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def build_inputs_in_worktree(rules) -> dict[str, tuple[str, str]]:
    """Every file the build reads, from the working tree: committed or not, tracked or not."""
    found = {name: blob(Path(name)) for name in BUILD_FILES if Path(name).is_file()}
    lets_back_in = [prefix for _regex, excludes, prefix in rules if not excludes]

    def worth_walking(directory: str) -> bool:
        # Not one that is ignored and that no `!` rule reaches into (.venv, .git, models).
        return not excluded(directory, rules) or any(
            prefix.startswith(directory + "/") or (directory + "/").startswith(prefix)
            for prefix in lets_back_in)

    for top, dirs, files in os.walk("."):
        top = os.path.relpath(top)
        dirs[:] = [name for name in dirs
                   if worth_walking(os.path.normpath(os.path.join(top, name)))]
        for name in files:
            path = os.path.normpath(os.path.join(top, name))
            if path not in DERIVED and not excluded(path, rules):
                found[path] = blob(Path(path))
    return found


def build_inputs_in_commit(rules) -> dict[str, tuple[str, str]]:
    found = {}
    for entry in git("ls-tree", "-r", "-z", "HEAD").split("\0"):
        if not entry:
            continue
        info, path = entry.split("\t", 1)
        mode, kind, object_id = info.split()
        if kind == "blob" and (path in BUILD_FILES or (
                path not in DERIVED and not excluded(path, rules))):
            found[path] = (mode, object_id)
    return found


def context_digest() -> str:
    """'' when the build reads exactly the commit's files, else a hash of what it reads."""
    rules = ignore_rules()
    worktree = build_inputs_in_worktree(rules)
    if worktree == build_inputs_in_commit(rules):
        return ""
    return hashlib.sha256(json.dumps(sorted(worktree.items())).encode()).hexdigest()


def image_tag(stage: str, engine: str, model_id: str, revision: str) -> None:
    config = stage_config(stage)
    architecture = config.get("architecture", "x86_64")
    if engine not in ENGINES:
        raise DeployError(f"ENGINE={engine!r} is not one of {', '.join(ENGINES)}")
    if architecture not in ENGINES[engine]:
        raise DeployError(
            f"ENGINE={engine} can't serve on {architecture}: its wheels for arm64 need a newer "
            "glibc than Lambda's image has. Use ENGINE=ctranslate2, or x86_64.")
    if not HUB_ID.fullmatch(model_id) or "--" in model_id or ".." in model_id:
        raise DeployError(f"MODEL_ID={model_id!r} is not a Hugging Face hub id (owner/name)")
    if not REVISION.fullmatch(revision) or ".." in revision:
        raise DeployError(f"MODEL_REVISION={revision!r} is not a branch, tag or commit name")
    commit = git("rev-parse", "HEAD").strip()
    context = context_digest()
    readable = "-".join(part for part in [
        stage, commit[:12], context and f"ctx{context[:8]}",
        PLATFORMS[architecture].split("/")[1], engine, model_id.replace("/", "--"),
        re.sub(r"[^A-Za-z0-9_.-]", "_", revision),
    ] if part)
    # Parts can hold '-' themselves (model names, revisions): a hash of the exact values
    # keeps two different builds from ever sharing a tag.
    exact = "\0".join([stage, commit, context, architecture, engine, model_id, revision])
    digest = hashlib.sha256(exact.encode()).hexdigest()[:8]
    print(f"{readable[:TAG_MAX - len(digest) - 1]}-{digest}")


# --- AWS ------------------------------------------------------------------------------------

def client(service: str, region: str):
    import boto3

    return boto3.client(service, region_name=region)


def credentials(region: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        identity = client("sts", region).get_caller_identity()
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(
            f"AWS credentials don't work ({exc}). Run `aws configure` or set AWS_PROFILE, "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (README: Deploy to AWS Lambda)."
        ) from exc
    print(identity["Account"])


def ecr_repository(region: str, name: str) -> None:
    ecr = client("ecr", region)
    try:
        repository = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        # Tags name the content: an immutable tag can never point at a different image.
        repository = ecr.create_repository(
            repositoryName=name,
            imageTagMutability="IMMUTABLE",
            imageScanningConfiguration={"scanOnPush": True},
        )["repository"]
        print(f"created ECR repository {repository['repositoryUri']}", file=sys.stderr)
    print(repository["repositoryUri"])


def ecr_password(region: str) -> None:
    data = client("ecr", region).get_authorization_token()["authorizationData"][0]
    _user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    print(password)


def image_exists(region: str, name: str, tag: str) -> bool:
    ecr = client("ecr", region)
    try:
        ecr.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        return False
    return True


def function_exists(stage: str) -> bool:
    config = stage_config(stage)
    architecture = config.get("architecture", "x86_64")
    name = f"{config['project_name']}-{stage}"
    lambda_client = client("lambda", config["aws_region"])
    try:
        function = lambda_client.get_function(FunctionName=name)
    except lambda_client.exceptions.ResourceNotFoundException:
        return False
    deployed = function["Configuration"].get("Architectures", ["x86_64"])[0]
    if deployed != architecture:
        # zappa update would push an image of the new architecture to a function of the old:
        # Zappa passes the architecture only when it creates the function.
        raise DeployError(
            f"{name} runs on {deployed} and the stage now says {architecture}; zappa update "
            f"never changes a function's architecture. To change it (the URL changes too):\n"
            f"    make undeploy STAGE={stage}\n    make deploy STAGE={stage}")
    return True


def api_id_of(config: dict, stage: str) -> str:
    """The REST API of the stage's CloudFormation stack, the way Zappa finds it."""
    stack = f"{config['project_name']}-{stage}"
    resource = client("cloudformation", config["aws_region"]).describe_stack_resource(
        StackName=stack, LogicalResourceId="Api")
    return resource["StackResourceDetail"]["PhysicalResourceId"]


def apply_streaming(stage: str) -> None:
    """Point every AWS_PROXY integration of the stage's function at the Lambda API the image's
    runtime answers: InvokeWithResponseStream with responseTransferMode STREAM when the stage
    streams, Invoke with BUFFERED when not. Zappa (and CloudFormation on `zappa update`) only
    know the buffered one. A stage serves its last deployment: deploy again when one changed."""
    config = stage_config(stage)
    mode, version, action = TRANSFER[streams(stage, config)]
    function = f"{config['project_name']}-{stage}"
    apigateway = client("apigateway", config["aws_region"])
    api_id = api_id_of(config, stage)
    changed = []
    for resource in apigateway.get_resources(restApiId=api_id, limit=500)["items"]:
        for method in sorted(resource.get("resourceMethods", {})):
            where = {"restApiId": api_id, "resourceId": resource["id"], "httpMethod": method}
            integration = apigateway.get_integration(**where)
            target = LAMBDA_URI.fullmatch(integration.get("uri", ""))
            if (integration.get("type") != "AWS_PROXY" or not target
                    or target[2].split(":")[6] != function):
                continue  # not a proxy to this stage's function: not ours to change
            uri = f"{target[1]}/{version}/functions/{target[2]}/{action}"
            operations = [{"op": "replace", "path": "/uri", "value": uri}] * (
                integration["uri"] != uri)
            if integration.get("responseTransferMode", "BUFFERED") != mode:
                operations.append(
                    {"op": "replace", "path": "/responseTransferMode", "value": mode})
            if operations:
                apigateway.update_integration(**where, patchOperations=operations)
                changed.append(f"{method} {resource['path']}")
    if changed:
        apigateway.create_deployment(restApiId=api_id, stageName=stage,
                                     description=f"Lambda integrations {mode}")
        print(f"deploy: {stage}: {', '.join(changed)} switched to {mode} "
              f"({'streamed' if mode == 'STREAM' else 'buffered'} answers); stage redeployed")
    else:
        print(f"deploy: {stage}: the Lambda integrations were already {mode}")


def apply_limits(stage: str) -> None:
    config = stage_config(stage)
    rate, burst = throttle(stage, config)
    apigateway = client("apigateway", config["aws_region"])
    api_id = api_id_of(config, stage)
    if config.get("api_key_required"):
        keyless_preflight(apigateway, api_id, stage)
        key_id = usage_plan(apigateway, config, api_id, stage, rate, burst)
        print(f"deploy: API key {key_id} (value: aws apigateway get-api-key --api-key {key_id} "
              "--include-value)")
    # Zappa has no setting for stage throttling: every method of the stage, at once.
    apigateway.update_stage(restApiId=api_id, stageName=stage, patchOperations=[
        {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": str(rate)},
        {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": str(burst)},
    ])
    print(f"deploy: {stage} throttled to {rate} requests/s (bursts of {burst}), at most "
          f"{config['lambda_concurrency']} containers at once")


def keyless_preflight(apigateway, api_id: str, stage: str) -> None:
    """Zappa's ANY methods require the key for OPTIONS too, and a browser's preflight never
    carries it: give each resource an OPTIONS method without the key, proxied to the app
    like ANY, so the app's CORS answer reaches the browser."""
    resources = apigateway.get_resources(restApiId=api_id, limit=500)["items"]
    changed = False
    for resource in resources:
        methods = resource.get("resourceMethods", {})
        if "ANY" not in methods or "OPTIONS" in methods:
            continue
        integration = apigateway.get_integration(
            restApiId=api_id, resourceId=resource["id"], httpMethod="ANY")
        apigateway.put_method(restApiId=api_id, resourceId=resource["id"], httpMethod="OPTIONS",
                              authorizationType="NONE", apiKeyRequired=False)
        # The same function, answering the same way (apply-streaming ran before).
        same_target = {key: integration[key]
                       for key in ("uri", "credentials", "responseTransferMode")
                       if key in integration}
        apigateway.put_integration(
            restApiId=api_id, resourceId=resource["id"], httpMethod="OPTIONS",
            type="AWS_PROXY", integrationHttpMethod="POST", **same_target)
        changed = True
    if changed:
        apigateway.create_deployment(restApiId=api_id, stageName=stage)


def usage_plan(apigateway, config: dict, api_id: str, stage: str, rate: int, burst: int) -> str:
    """API Gateway refuses (403) every key that is in no usage plan of the stage, and Zappa's
    key is in none: put it in one, with the stage's throttling. Returns the key's id."""
    name = f"{config['project_name']}-{stage}"
    plans = [plan for plan in apigateway.get_usage_plans(limit=500)["items"]
             if plan["name"] == name]
    if plans:
        plan = plans[0]
        operations = [{"op": "replace", "path": "/throttle/rateLimit", "value": str(rate)},
                      {"op": "replace", "path": "/throttle/burstLimit", "value": str(burst)}]
        if {"apiId": api_id, "stage": stage} not in plan.get("apiStages", []):
            operations.append({"op": "add", "path": "/apiStages", "value": f"{api_id}:{stage}"})
        apigateway.update_usage_plan(usagePlanId=plan["id"], patchOperations=operations)
    else:
        plan = apigateway.create_usage_plan(
            name=name, apiStages=[{"apiId": api_id, "stage": stage}],
            throttle={"rateLimit": rate, "burstLimit": burst})
    key_id = config.get("api_key")
    if not key_id:  # the key `zappa deploy` creates; `zappa update` creates none
        key_name = f"{stage}_{api_id}"
        keys = apigateway.get_api_keys(nameQuery=key_name, limit=500)["items"]
        keys = [key for key in keys if key["name"] == key_name]
        key_id = keys[0]["id"] if keys else apigateway.create_api_key(
            name=key_name, enabled=True)["id"]
    in_plan = apigateway.get_usage_plan_keys(usagePlanId=plan["id"], limit=500)["items"]
    if key_id not in [key["id"] for key in in_plan]:
        apigateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key_id, keyType="API_KEY")
    return key_id


def remove_usage_plan(stage: str) -> None:
    """A stage in a usage plan can't be deleted: take it out before zappa undeploy."""
    config = stage_config(stage)
    apigateway = client("apigateway", config["aws_region"])
    name = f"{config['project_name']}-{stage}"
    for plan in apigateway.get_usage_plans(limit=500)["items"]:
        if plan["name"] != name:
            continue
        operations = [{"op": "remove", "path": "/apiStages",
                       "value": f"{api_stage['apiId']}:{api_stage['stage']}"}
                      for api_stage in plan.get("apiStages", [])]
        if operations:
            apigateway.update_usage_plan(usagePlanId=plan["id"], patchOperations=operations)
        apigateway.delete_usage_plan(usagePlanId=plan["id"])


COMMANDS = {
    "stage": print_stage,
    "check-stage": check_stage,
    "licence": licence,
    "resolve-revision": resolve_revision,
    "image-tag": image_tag,
    "credentials": credentials,
    "ecr-repository": ecr_repository,
    "ecr-password": ecr_password,
    "image-exists": image_exists,
    "function-exists": function_exists,
    "apply-streaming": apply_streaming,
    "apply-limits": apply_limits,
    "remove-usage-plan": remove_usage_plan,
}


def main(argv: list[str]) -> int:
    command = COMMANDS.get(argv[0]) if argv else None
    if command is None or len(argv) - 1 != len(inspect.signature(command).parameters):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        result = command(*argv[1:])
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # AWS's answer (no credentials, a missing permission, a quota) says what to fix; the
        # traceback through boto3 says nothing more.
        if _is_aws_error(exc):
            print(f"deploy: {argv[0]}: {exc}", file=sys.stderr)
            return 2
        traceback.print_exc()
        print(f"deploy: {argv[0]} crashed (a bug in scripts/deploy_aws.py): {exc!r}",
              file=sys.stderr)
        return CRASHED
    return 1 if result is False else 0


def _is_aws_error(exc: Exception) -> bool:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return False
    return isinstance(exc, (BotoCoreError, ClientError))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
