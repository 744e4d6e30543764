"""scripts/deploy.sh end to end against a moto server on 127.0.0.1, with a fake docker.

Zappa runs for real; only AWS is moto and only docker is fake (it records its calls). moto has
no ListFunctionUrlConfigs, which `zappa update` calls: that one call is stubbed (empty list,
as AWS answers for a function without a URL) through a sitecustomize on the scripts' path.
moto 5.2 also drops an integration's responseTransferMode and has no UpdateIntegration: the
same sitecustomize records every API Gateway call (the tests check them against botocore's own
service model), plays UpdateIntegration on moto's PutIntegration, and keeps each integration's
transfer mode beside moto, for as long as moto's URI is the one it was set with.
The hub that resolves MODEL_REVISION to a commit is tests/fake_hub.py. Everything not on
127.0.0.1 (Zappa's PyPI version check) goes to a dead proxy.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import boto3
import botocore
import botocore.session
import pytest
from botocore.validate import validate_parameters
from local_server import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DEPLOY_FILES = ["zappa_settings.json", "Dockerfile", ".dockerignore", "app.py",
                "lambda_runtime.py", "scripts/deploy.sh", "scripts/deploy_aws.py"]
# The hub's commits of the checkpoints the tests deploy (MODEL_REVISION is resolved to them).
MAIN_COMMIT = "1a2b3c4d" * 5
V2_COMMIT = "9f8e7d6c" * 5
LICENCE = ("deploy: licence: KoGPT2 (skt/kogpt2-base-v2) by SK Telecom, licensed under "
           "CC BY-NC-SA 4.0; non-commercial use only (https://creativecommons.org/licenses/"
           "by-nc-sa/4.0/; https://huggingface.co/skt/kogpt2-base-v2)")
SETTINGS = json.loads((ROOT / "zappa_settings.json").read_text())["dev"]
REGION = SETTINGS["aws_region"]
REGISTRY = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"  # moto's default account

# Records its calls; `push` puts a manifest in moto's ECR under the tag, as a real push would.
FAKE_DOCKER = """\
#!{python}
import json, os, sys
call = sys.argv[1:]
if call[:1] == ["login"]:
    call.append("stdin:" + ("password" if sys.stdin.read().strip() else "empty"))
with open(os.environ["DOCKER_CALLS"], "a") as calls:
    calls.write(json.dumps(call) + "\\n")
if call[:1] == ["push"]:
    import boto3
    repository, _, tag = call[1].split("/", 1)[1].partition(":")
    manifest = {{"schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {{"digest": "sha256:" + "0" * 64}},
                "annotations": {{"built-as": tag}}}}
    boto3.client("ecr").put_image(repositoryName=repository, imageTag=tag,
                                  imageManifest=json.dumps(manifest))
"""

STUB_MISSING_MOTO_CALL = """\
import json
import os

import botocore.client
from botocore.validate import validate_parameters

_make_api_call = botocore.client.BaseClient._make_api_call
MODES = os.environ["TRANSFER_MODES"]  # {"api/resource/method": [uri, mode]}


def modes():
    return json.load(open(MODES)) if os.path.exists(MODES) else {}


def remember(key, uri, mode):
    known = modes()
    known[key] = [uri, mode]
    json.dump(known, open(MODES, "w"))


def make_api_call(self, operation_name, api_params):
    if operation_name == "ListFunctionUrlConfigs":  # no route in moto 5.2
        return {"FunctionUrlConfigs": []}
    if operation_name == os.environ.get("BREAK_AWS_CALL"):
        return {}  # an answer without what the caller reads it for: deploy_aws.py crashes
    if self.meta.service_model.service_name != "apigateway":
        return _make_api_call(self, operation_name, api_params)
    with open(os.environ["API_CALLS"], "a") as calls:
        calls.write(json.dumps({"operation": operation_name, "params": api_params}) + "\\n")
    where = {name: api_params[name] for name in ("restApiId", "resourceId", "httpMethod")
             if name in api_params}
    key = "/".join(where.values())
    model = self.meta.service_model
    if operation_name == "UpdateIntegration":  # moto 5.2 has no route for it
        validate_parameters(api_params, model.operation_model(operation_name).input_shape)
        integration = self.get_integration(**where)
        for operation in api_params["patchOperations"]:
            assert operation["op"] == "replace", operation
            integration[operation["path"].lstrip("/")] = operation["value"]
        put = model.operation_model("PutIntegration").input_shape.members
        _make_api_call(self, "PutIntegration", {
            **where, "integrationHttpMethod": integration["httpMethod"],
            **{name: value for name, value in integration.items()
               if name in put and name not in where and name != "responseTransferMode"}})
        remember(key, integration["uri"], integration["responseTransferMode"])
        return integration
    answer = _make_api_call(self, operation_name, api_params)
    if operation_name == "PutIntegration":
        remember(key, api_params.get("uri"), api_params.get("responseTransferMode", "BUFFERED"))
    if operation_name in ("GetIntegration", "PutIntegration"):
        uri, mode = modes().get(key, (None, None))
        answer["responseTransferMode"] = mode if uri == answer.get("uri") else "BUFFERED"
    return answer


botocore.client.BaseClient._make_api_call = make_api_call
"""


@pytest.fixture(scope="module")
def moto_url():
    port = free_port()
    server = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=20)


@pytest.fixture
def aws(moto_url):
    """boto3 clients on the moto server, which starts each test empty."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"))

    def client(service):
        return boto3.client(
            service, region_name=REGION, endpoint_url=moto_url,
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )

    return client


@pytest.fixture
def project(tmp_path):
    """A git checkout of the deploy files, touch off (it would GET the real execute-api URL)."""
    root = tmp_path / "project"
    for name in DEPLOY_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    # The model layer states the licence the deploy prints.
    shutil.copytree(ROOT / "kogpt2", root / "kogpt2",
                    ignore=shutil.ignore_patterns("__pycache__"))
    settings = json.loads((root / "zappa_settings.json").read_text())
    settings["dev"]["touch"] = False
    (root / "zappa_settings.json").write_text(json.dumps(settings, indent=4))
    git(root, "init", "-q")
    commit(root, "first")
    return root


def git(root, *args):
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout.strip()


def commit(root, message):
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "--short=12", "HEAD")


@pytest.fixture
def hub(fake_hub):
    fake_hub.add("skt/kogpt2-base-v2", {}, commit=MAIN_COMMIT)
    fake_hub.add("someone/kogpt2-finetuned", {}, commit=V2_COMMIT, refs=("v2",))
    return fake_hub


@pytest.fixture
def run_deploy(project, moto_url, tmp_path, hub):
    """Run scripts/deploy.sh in `project` with moto as AWS; returns the process and docker calls."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "docker").write_text(FAKE_DOCKER.format(python=sys.executable))
    (fake_bin / "docker").chmod(0o755)
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir()
    (stub_dir / "sitecustomize.py").write_text(STUB_MISSING_MOTO_CALL)
    calls_file = tmp_path / "docker-calls.jsonl"
    api_calls = tmp_path / "api-calls.jsonl"  # API Gateway's, the last run's

    def run(*args, docker=True, credentials=True, **extra_env):
        calls_file.unlink(missing_ok=True)
        api_calls.unlink(missing_ok=True)
        path = [str(VENV_BIN), "/usr/bin", "/bin"]
        env = {
            "PATH": os.pathsep.join([str(fake_bin)] * docker + path),
            "HOME": str(tmp_path),
            "PYTHONPATH": str(stub_dir),
            "DOCKER_CALLS": str(calls_file),
            "API_CALLS": str(api_calls),
            "TRANSFER_MODES": str(run.transfer_modes),
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_DEFAULT_REGION": REGION,
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "HF_ENDPOINT": hub.url,
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        }
        if credentials:
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        env.update(extra_env)
        process = subprocess.run(
            ["scripts/deploy.sh", *args], cwd=project, env=env,
            capture_output=True, text=True, timeout=300,
        )
        calls = []
        if calls_file.exists():
            calls = [json.loads(line) for line in calls_file.read_text().splitlines()]
        return process, calls

    run.api_calls = api_calls
    run.transfer_modes = tmp_path / "transfer-modes.json"
    return run


def tag_pattern(stage, commit, *, architecture="amd64", engine="openvino",
                model="skt--kogpt2-base-v2", revision=MAIN_COMMIT, context=""):
    """The tag scripts/deploy.sh gives an image: what it holds, then a hash of the exact values."""
    context = context and f"-{context}"
    return rf"{stage}-{commit}{context}-{architecture}-{engine}-{model}-{revision}-[0-9a-f]{{8}}"


DOCKERFILE_ARGS = {line.split()[1].split("=")[0]
                   for line in (ROOT / "Dockerfile").read_text().splitlines()
                   if line.startswith("ARG ")}


def assert_built_and_pushed(calls, tag, platform="linux/amd64", **build_args):
    """The image pushed, after checking the docker calls; `tag` is a regular expression."""
    assert [call[0] for call in calls] == ["info", "buildx", "login", "tag", "push"]
    build = calls[1]
    assert build[build.index("--platform") + 1] == platform
    assert "--provenance=false" in build
    assert build[-1] == "."
    given = dict(build[i + 1].split("=", 1) for i, word in enumerate(build)
                 if word == "--build-arg")
    assert set(given) <= DOCKERFILE_ARGS  # docker ignores an argument the file doesn't name
    expected = {"ENGINE": "openvino", "MODEL_ID": "skt/kogpt2-base-v2",
                "MODEL_REVISION": MAIN_COMMIT}
    assert given == {**expected, **build_args}
    built = build[build.index("--tag") + 1]
    assert re.fullmatch(f"kogpt2:{tag}", built), (built, tag)
    assert len(built.partition(":")[2]) <= 128
    image = f"{REGISTRY}/{built}"
    assert calls[2] == ["login", "--username", "AWS", "--password-stdin", REGISTRY,
                        "stdin:password"]
    assert calls[3] == ["tag", built, image]
    assert calls[4] == ["push", image]
    return image


def stage_limits(aws, stage):
    """(reserved concurrency, stage method settings for */*) as deployed."""
    concurrency = aws("lambda").get_function_concurrency(FunctionName=f"kogpt2-{stage}")
    api = aws("cloudformation").describe_stack_resource(
        StackName=f"kogpt2-{stage}", LogicalResourceId="Api")["StackResourceDetail"]
    settings = aws("apigateway").get_stage(
        restApiId=api["PhysicalResourceId"], stageName=stage)["methodSettings"]["*/*"]
    return (concurrency["ReservedConcurrentExecutions"],
            (settings["throttlingRateLimit"], settings["throttlingBurstLimit"]))


def edit_settings(project, stage, **changes):
    settings = json.loads((project / "zappa_settings.json").read_text())
    settings[stage].update(changes)
    (project / "zappa_settings.json").write_text(json.dumps(settings, indent=4))
    return settings


def test_deploy_update_status_undeploy(run_deploy, project, aws):
    first = git(project, "rev-parse", "--short=12", "HEAD")
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    assert "Deployment complete" in process.stdout
    image = assert_built_and_pushed(calls, tag_pattern("dev", first))
    assert (project / "zappa_settings.py").is_file()  # written before the build, for the image

    repository = aws("ecr").describe_repositories(repositoryNames=["kogpt2"])["repositories"][0]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    function = aws("lambda").get_function(FunctionName="kogpt2-dev")
    assert function["Code"]["ImageUri"] == image
    config = function["Configuration"]
    assert config["PackageType"] == "Image"
    assert config["MemorySize"] == SETTINGS["memory_size"]
    assert config["Timeout"] == SETTINGS["timeout_seconds"]
    assert config["Architectures"] == [SETTINGS["architecture"]]
    assert config["Environment"]["Variables"] == SETTINGS["aws_environment_variables"]
    # The cost limits: containers at once, and API Gateway's rate and burst for the stage.
    assert stage_limits(aws, "dev") == (2, (1.0, 2))
    assert (SETTINGS["lambda_concurrency"], SETTINGS["kogpt2"]["throttle"]) == (
        2, {"rate_limit": 1, "burst_limit": 2})
    api = next(a for a in aws("apigateway").get_rest_apis()["items"] if a["name"] == "kogpt2-dev")
    # moto drops the endpoint type from the REST API it creates: read what Zappa asked for.
    template = aws("cloudformation").get_template(StackName="kogpt2-dev")["TemplateBody"]
    api_properties = template["Resources"]["Api"]["Properties"]
    assert api_properties["EndpointConfiguration"]["Types"] == ["REGIONAL"]
    rules = aws("events").list_rules()["Rules"]
    warm_up = [rule for rule in rules if rule["Name"].endswith("-app.warm_up")]
    assert [rule["ScheduleExpression"] for rule in warm_up] == ["rate(5 minutes)"]
    targets = aws("events").list_targets_by_rule(Rule=warm_up[0]["Name"])["Targets"]
    assert [target["Arn"] for target in targets] == [config["FunctionArn"]]
    assert not [rule for rule in rules if "keep_warm" in rule["Name"]]  # the warm-up does it

    (project / "app.py").write_text((project / "app.py").read_text() + "\n# second commit\n")
    second = commit(project, "second")
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    assert "Your updated Zappa deployment is live" in process.stdout
    new_image = assert_built_and_pushed(calls, tag_pattern("dev", second))
    function = aws("lambda").get_function(FunctionName="kogpt2-dev")
    assert function["Code"]["ImageUri"] == new_image
    assert stage_limits(aws, "dev") == (2, (1.0, 2))  # update applies them again

    process, calls = run_deploy("dev", "status")
    assert process.returncode == 0, process.stdout + process.stderr
    assert config["FunctionArn"] in process.stdout
    assert f"https://{api['id']}.execute-api.{REGION}.amazonaws.com/dev" in process.stdout
    assert calls == []

    process, calls = run_deploy("dev", "undeploy")
    assert process.returncode == 0, process.stdout + process.stderr
    assert aws("lambda").list_functions()["Functions"] == []
    # Zappa removes the API by deleting its CloudFormation stack (moto doesn't cascade that
    # to the REST API, AWS does).
    stacks = aws("cloudformation").list_stacks()["StackSummaries"]
    assert [s["StackStatus"] for s in stacks if s["StackName"] == "kogpt2-dev"] == [
        "DELETE_COMPLETE"
    ]
    assert not [r for r in aws("events").list_rules()["Rules"] if "warm_up" in r["Name"]]


def test_arm64_builds_and_deploys_for_graviton_with_ctranslate2(run_deploy, project, aws):
    edit_settings(project, "dev", architecture="arm64")
    head = commit(project, "arm64")
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    image = assert_built_and_pushed(
        calls, tag_pattern("dev", head, architecture="arm64", engine="ctranslate2"),
        platform="linux/arm64", ENGINE="ctranslate2")
    function = aws("lambda").get_function(FunctionName="kogpt2-dev")
    assert function["Code"]["ImageUri"] == image
    assert function["Configuration"]["Architectures"] == ["arm64"]


def test_openvino_is_refused_on_arm64(run_deploy, project, aws):
    edit_settings(project, "dev", architecture="arm64")
    commit(project, "arm64")
    process, calls = run_deploy("dev", ENGINE="openvino")
    assert process.returncode != 0
    assert "ENGINE=openvino can't serve on arm64" in process.stderr
    assert [call[0] for call in calls] == ["info"]


def image_tag(project, *args):
    process = subprocess.run(
        [sys.executable, "scripts/deploy_aws.py", "image-tag", "dev", *args],
        cwd=project, capture_output=True, text=True)
    assert process.returncode == 0, process.stderr
    return process.stdout.strip()


def test_the_tag_changes_with_everything_the_build_reads(project):
    model = ("openvino", "skt/kogpt2-base-v2", MAIN_COMMIT)  # deploy.sh gives it the commit
    head = git(project, "rev-parse", "--short=12", "HEAD")
    clean = image_tag(project, *model)
    assert re.fullmatch(tag_pattern("dev", head), clean)
    assert image_tag(project, *model) == clean  # the same files, the same tag

    # Files the build context leaves out change nothing: the image would be the same.
    (project / "notes.txt").write_text("not in the image\n")
    (project / "scripts" / "deploy.sh").write_text(
        (project / "scripts" / "deploy.sh").read_text() + "# edited\n")
    assert image_tag(project, *model) == clean

    tags = {clean}
    changes = [
        ("app.py", "# uncommitted\n"),  # a tracked file, edited
        ("kogpt2/web/extra.py", "X = 1\n"),  # an untracked file the context lets in
        ("Dockerfile", "# edited\n"),  # what the build runs
        ("zappa_settings.json", " "),  # what zappa_settings.py in the image is made from
    ]
    for name, addition in changes:
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((path.read_text() if path.exists() else "") + addition)
        tag = image_tag(project, *model)
        assert re.fullmatch(tag_pattern("dev", head, context="ctx[0-9a-f]{8}"), tag), name
        assert tag not in tags, name
        tags.add(tag)
    git(project, "checkout", "--", ".")  # back to the commit's files, back to its tag
    (project / "kogpt2/web/extra.py").unlink()
    assert image_tag(project, *model) == clean

    # Committed, the same content gets the new commit's plain tag.
    second = commit(project, "second")
    assert re.fullmatch(tag_pattern("dev", second), image_tag(project, *model))


def test_the_tag_names_engine_model_and_revision_and_stays_valid(project):
    head = git(project, "rev-parse", "--short=12", "HEAD")
    assert re.fullmatch(
        tag_pattern("dev", head, engine="transformers", model="someone--gpt2.small_v1",
                    revision="refs_pr_1"),
        image_tag(project, "transformers", "someone/gpt2.small_v1", "refs/pr/1"))
    # Different values that read alike still get different tags.
    assert image_tag(project, "openvino", "a/b", "c-d") != image_tag(
        project, "openvino", "a/b-c", "d")
    long = image_tag(project, "openvino", "o" * 40 + "/" + "n" * 90, "r" * 40)
    assert len(long) <= 128 and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", long)
    assert long != image_tag(project, "openvino", "o" * 40 + "/" + "n" * 90, "r" * 39)
    for args, message in [
        (("openvino", "not a hub id!", "main"), "is not a Hugging Face hub id"),
        (("openvino", "a/b", "../x"), "is not a branch, tag or commit name"),
        (("tensorflow", "a/b", "main"), "is not one of openvino, ctranslate2, transformers"),
    ]:
        process = subprocess.run(
            [sys.executable, "scripts/deploy_aws.py", "image-tag", "dev", *args],
            cwd=project, capture_output=True, text=True)
        assert process.returncode == 2 and message in process.stderr, process.stderr


def test_a_new_model_or_untracked_file_rebuilds_the_same_commit(run_deploy, project, aws):
    head = git(project, "rev-parse", "--short=12", "HEAD")
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    first_image = assert_built_and_pushed(calls, tag_pattern("dev", head))

    process, calls = run_deploy("dev")  # nothing changed: the image in ECR is used
    assert process.returncode == 0, process.stdout + process.stderr
    assert "already in ECR; not rebuilding" in process.stdout
    assert [call[0] for call in calls] == ["info"]

    process, calls = run_deploy("dev", MODEL_ID="someone/kogpt2-finetuned", MODEL_REVISION="v2")
    assert process.returncode == 0, process.stdout + process.stderr
    assert f"deploy: someone/kogpt2-finetuned v2 is commit {V2_COMMIT}" in process.stdout
    image = assert_built_and_pushed(
        calls, tag_pattern("dev", head, model="someone--kogpt2-finetuned", revision=V2_COMMIT),
        MODEL_ID="someone/kogpt2-finetuned", MODEL_REVISION=V2_COMMIT)
    assert aws("lambda").get_function(FunctionName="kogpt2-dev")["Code"]["ImageUri"] == image

    (project / "templates").mkdir()
    (project / "templates" / "index.html").write_text("<p>not committed</p>\n")
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    image = assert_built_and_pushed(calls, tag_pattern("dev", head, context="ctx[0-9a-f]{8}"))
    assert image != first_image
    assert aws("lambda").get_function(FunctionName="kogpt2-dev")["Code"]["ImageUri"] == image


def test_a_changed_architecture_is_refused_with_the_commands_that_change_it(
        run_deploy, project, aws):
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    edit_settings(project, "dev", architecture="arm64")
    commit(project, "arm64")
    process, calls = run_deploy("dev")
    assert process.returncode != 0
    assert "kogpt2-dev runs on x86_64 and the stage now says arm64" in process.stderr
    assert "    make undeploy STAGE=dev\n    make deploy STAGE=dev" in process.stderr
    assert "Traceback" not in process.stderr
    assert [call[0] for call in calls] == ["info"]  # refused before building anything
    function = aws("lambda").get_function(FunctionName="kogpt2-dev")
    assert function["Configuration"]["Architectures"] == ["x86_64"]


PRODUCTION = json.loads((ROOT / "zappa_settings.json").read_text())["production"]


def test_production_deploys_with_its_limits_and_explicit_origins(run_deploy, project, aws):
    assert PRODUCTION["extends"] == "dev"
    process, calls = run_deploy("production")
    assert process.returncode == 0, process.stdout + process.stderr
    head = git(project, "rev-parse", "--short=12", "HEAD")
    assert_built_and_pushed(calls, tag_pattern("production", head))
    assert stage_limits(aws, "production") == (5, (2.0, 5))
    variables = aws("lambda").get_function(FunctionName="kogpt2-production")[
        "Configuration"]["Environment"]["Variables"]
    # No cross-origin caller until someone lists one; the page is served same-origin.
    assert variables["KOGPT2_CORS_ORIGINS"] == ""
    assert variables["KOGPT2_MODEL"] == "/opt/kogpt2/model"
    assert "2 requests/s (bursts of 5), at most 5 containers at once" in process.stdout
    # Whose model, and that it may not be used commercially, before anything is deployed.
    said = process.stdout
    assert LICENCE in said
    assert "deploy: stage production may serve only non-commercial use" in said
    assert said.index(LICENCE) < said.index("deploy: stage production of kogpt2 to account")
    assert said.index(LICENCE) < said.index("Deployment complete")


@pytest.mark.parametrize("origins", ["*", "https://example.org,*", None])
def test_production_refuses_cors_for_any_origin(run_deploy, project, aws, origins):
    settings = json.loads((project / "zappa_settings.json").read_text())
    variables = settings["production"]["aws_environment_variables"]
    if origins is None:  # unset: the app's default is '*'
        del variables["KOGPT2_CORS_ORIGINS"]
    else:
        variables["KOGPT2_CORS_ORIGINS"] = origins
    (project / "zappa_settings.json").write_text(json.dumps(settings, indent=4))
    process, calls = run_deploy("production")
    assert process.returncode != 0
    assert "stage 'production' would let any web page call the API" in process.stderr
    assert "ALLOW_ANY_ORIGIN=1" in process.stderr
    assert calls == []  # before docker, before AWS
    assert aws("lambda").list_functions()["Functions"] == []
    assert aws("ecr").describe_repositories()["repositories"] == []

    process, calls = run_deploy("production", ALLOW_ANY_ORIGIN="1")
    assert process.returncode == 0, process.stdout + process.stderr
    assert aws("lambda").get_function(FunctionName="kogpt2-production")


def test_a_stage_without_limits_is_refused(run_deploy, project, aws):
    settings = json.loads((project / "zappa_settings.json").read_text())
    del settings["dev"]["lambda_concurrency"]
    (project / "zappa_settings.json").write_text(json.dumps(settings, indent=4))
    process, calls = run_deploy("dev")
    assert process.returncode != 0
    assert "stage 'dev' needs \"lambda_concurrency\": N" in process.stderr
    settings["dev"]["lambda_concurrency"] = 2
    settings["dev"]["kogpt2"]["throttle"]["burst_limit"] = 0
    (project / "zappa_settings.json").write_text(json.dumps(settings, indent=4))
    process, calls = run_deploy("dev")
    assert process.returncode != 0
    assert "stage 'dev' needs \"kogpt2\": {\"throttle\"" in process.stderr
    assert calls == []
    assert aws("lambda").list_functions()["Functions"] == []


def test_an_api_key_stage_lets_keyed_callers_and_browser_preflights_in(run_deploy, project, aws):
    edit_settings(project, "dev", api_key_required=True)
    commit(project, "api key")
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    apigateway = aws("apigateway")
    api_id = aws("cloudformation").describe_stack_resource(
        StackName="kogpt2-dev", LogicalResourceId="Api")["StackResourceDetail"][
        "PhysicalResourceId"]
    resources = apigateway.get_resources(restApiId=api_id)["items"]
    assert sorted(resource["path"] for resource in resources) == ["/", "/{proxy+}"]
    for resource in resources:
        def method(name, resource=resource):
            return apigateway.get_method(
                restApiId=api_id, resourceId=resource["id"], httpMethod=name)
        assert method("ANY")["apiKeyRequired"] is True
        # A preflight never carries the key: OPTIONS goes to the app without one.
        assert method("OPTIONS")["apiKeyRequired"] is False
        assert method("OPTIONS")["methodIntegration"]["type"] == "AWS_PROXY"
    # The preflight reaches the same function, answering the same (streamed) way.
    targets = integrations(aws, run_deploy)
    for path in ("/", "/{proxy+}"):
        assert targets["OPTIONS", path] == targets["ANY", path] == (streaming_uri(aws), "STREAM")
    # API Gateway refuses a key that is in no usage plan of the stage.
    (key,) = apigateway.get_api_keys()["items"]
    assert f"deploy: API key {key['id']}" in process.stdout
    (plan,) = apigateway.get_usage_plans()["items"]
    assert plan["name"] == "kogpt2-dev"
    assert plan["apiStages"] == [{"apiId": api_id, "stage": "dev"}]
    assert plan["throttle"] == {"rateLimit": 1, "burstLimit": 2}
    assert [k["id"] for k in apigateway.get_usage_plan_keys(usagePlanId=plan["id"])["items"]] == [
        key["id"]]

    process, calls = run_deploy("dev")  # an update: nothing added twice
    assert process.returncode == 0, process.stdout + process.stderr
    assert len(apigateway.get_usage_plans()["items"]) == 1
    assert len(apigateway.get_api_keys()["items"]) == 1

    process, calls = run_deploy("dev", "undeploy")
    assert process.returncode == 0, process.stdout + process.stderr
    assert apigateway.get_usage_plans()["items"] == []


def test_no_docker_is_a_clear_error_before_anything_is_created(run_deploy, aws):
    process, calls = run_deploy("dev", docker=False)
    assert process.returncode != 0
    assert "docker is not installed" in process.stderr
    assert aws("lambda").list_functions()["Functions"] == []
    assert aws("ecr").describe_repositories()["repositories"] == []


def test_no_credentials_is_a_clear_error(run_deploy, aws):
    process, calls = run_deploy("dev", credentials=False)
    assert process.returncode != 0
    assert "AWS credentials don't work" in process.stderr
    assert "Traceback" not in process.stderr
    assert [call[0] for call in calls] == ["info"]
    assert aws("ecr").describe_repositories()["repositories"] == []
    process, calls = run_deploy("dev", "undeploy", credentials=False)
    assert process.returncode != 0
    assert "deploy: remove-usage-plan: Unable to locate credentials" in process.stderr
    assert "Traceback" not in process.stderr


def test_unknown_stage_and_missing_settings_are_clear_errors(run_deploy, project):
    process, calls = run_deploy("staging")
    assert process.returncode != 0
    assert "no stage 'staging' in zappa_settings.json; stages: dev, production" in process.stderr
    (project / "zappa_settings.json").unlink()
    process, calls = run_deploy("dev")
    assert process.returncode != 0
    assert "zappa_settings.json is missing" in process.stderr
    assert calls == []


def test_production_extends_dev(project):
    settings = json.loads((project / "zappa_settings.json").read_text())
    assert settings["production"]["extends"] == "dev"
    process = subprocess.run(
        [sys.executable, "scripts/deploy_aws.py", "stage", "production"],
        cwd=project, capture_output=True, text=True, check=True,
    )
    assert process.stdout.splitlines() == textwrap.dedent(f"""\
        REGION={REGION}
        PROJECT=kogpt2
        LAMBDA_NAME=kogpt2-production
        ARCHITECTURE=x86_64
        PLATFORM=linux/amd64
        DEFAULT_ENGINE=openvino""").splitlines()


def deploy_aws(project, *args, **env):
    return subprocess.run([sys.executable, "scripts/deploy_aws.py", *args], cwd=project,
                          capture_output=True, text=True, env={**os.environ, **env})


def test_a_revision_is_resolved_to_its_commit_on_the_hub(project, hub):
    said = deploy_aws(project, "resolve-revision", "skt/kogpt2-base-v2", "main")
    assert (said.returncode, said.stdout) == (0, MAIN_COMMIT + "\n")
    assert "/api/models/skt/kogpt2-base-v2/revision/main" in [r.path for r in hub.requests]
    hub.requests.clear()
    said = deploy_aws(project, "resolve-revision", "skt/kogpt2-base-v2", "b" * 40)
    assert (said.returncode, said.stdout) == (0, "b" * 40 + "\n")
    assert hub.requests == []  # a commit needs no hub


@pytest.mark.parametrize("args, env, message", [
    (("skt/kogpt2-base-v2", "no-such-branch"), {},
     "skt/kogpt2-base-v2 has no revision 'no-such-branch' on the hub"),
    (("nobody/nothing", "main"), {}, "MODEL_ID=nobody/nothing is not on the hub"),
    (("skt/kogpt2-base-v2", "main"), {"HF_HUB_OFFLINE": "1"},
     "HF_HUB_OFFLINE is set: give the commit itself (40 hex digits)"),
    (("skt/kogpt2-base-v2", "main"), {"HF_ENDPOINT": "http://127.0.0.1:9"},
     "the hub can't be reached to resolve MODEL_REVISION=main of skt/kogpt2-base-v2"),
])
def test_a_revision_that_cant_be_resolved_is_a_clear_refusal(project, hub, args, env, message):
    said = deploy_aws(project, "resolve-revision", *args, **env)
    assert said.returncode == 2 and message in said.stderr, said.stderr
    assert "Traceback" not in said.stderr


def test_offline_a_commit_is_still_taken(project, hub):
    said = deploy_aws(project, "resolve-revision", "skt/kogpt2-base-v2", "c" * 40,
                      HF_HUB_OFFLINE="1")
    assert (said.returncode, said.stdout) == (0, "c" * 40 + "\n")


def test_a_crash_is_never_taken_for_a_missing_function(run_deploy, aws):
    """function-exists says 1 for "no such function"; a crash used to exit 1 too, and deploy.sh
    then ran `zappa deploy` onto a function that may well exist."""
    process, calls = run_deploy("dev", BREAK_AWS_CALL="GetFunction")
    assert process.returncode != 0
    assert "deploy: function-exists crashed (a bug in scripts/deploy_aws.py)" in process.stderr
    assert "Traceback" in process.stderr  # a bug: its traceback is what helps
    assert "Deployment complete" not in process.stdout
    assert [call[0] for call in calls] == ["info"]  # nothing built
    assert aws("lambda").list_functions()["Functions"] == []


def test_a_crash_has_an_exit_status_of_its_own(monkeypatch, capsys):
    import deploy_aws

    def broken(stage):
        raise KeyError("Configuration")

    monkeypatch.setitem(deploy_aws.COMMANDS, "function-exists", broken)
    assert deploy_aws.main(["function-exists", "dev"]) == deploy_aws.CRASHED == 3
    assert "KeyError" in capsys.readouterr().err
    monkeypatch.setitem(deploy_aws.COMMANDS, "function-exists", lambda stage: False)
    assert deploy_aws.main(["function-exists", "dev"]) == 1  # "no": only this is 1


def test_the_licence_of_other_weights_is_said_with_kogpt2s_for_the_tokenizer(project):
    settings = json.loads((project / "zappa_settings.json").read_text())
    settings["dev"]["aws_environment_variables"]["KOGPT2_MODEL_LICENCE"] = json.dumps({
        "work": "Someone's model", "owner": "Someone", "name": "MIT",
        "url": "https://opensource.org/license/mit", "source_url": "https://example.org",
        "non_commercial": False})
    (project / "zappa_settings.json").write_text(json.dumps(settings))
    said = deploy_aws(project, "licence", "dev")
    assert said.returncode == 0, said.stderr
    assert said.stdout.splitlines() == [
        "deploy: licence: Someone's model by Someone, licensed under MIT "
        "(https://opensource.org/license/mit; https://example.org)",
        "deploy: licence: KoGPT2's tokenizer (skt/kogpt2-base-v2) by SK Telecom, licensed "
        "under CC BY-NC-SA 4.0; non-commercial use only (https://creativecommons.org/licenses/"
        "by-nc-sa/4.0/; https://huggingface.co/skt/kogpt2-base-v2)",
        "deploy: stage dev may serve only non-commercial use: see README.md, \"Licence\"",
    ]


# --- Streaming: the API's integrations as the image's runtime answers ------------------------

APIGATEWAY = botocore.session.get_session().get_service_model("apigateway")


def api_id(aws, stage="dev"):
    return aws("cloudformation").describe_stack_resource(
        StackName=f"kogpt2-{stage}", LogicalResourceId="Api")["StackResourceDetail"][
        "PhysicalResourceId"]


def integrations(aws, run_deploy, stage="dev"):
    """{(method, path): (URI, transfer mode)} of the stage's API: moto's URI, and the mode the
    stub keeps beside it (moto drops it)."""
    modes = (json.loads(run_deploy.transfer_modes.read_text())
             if run_deploy.transfer_modes.exists() else {})
    apigateway, api = aws("apigateway"), api_id(aws, stage)
    found = {}
    for resource in apigateway.get_resources(restApiId=api)["items"]:
        for method in resource.get("resourceMethods", {}):
            uri = apigateway.get_integration(
                restApiId=api, resourceId=resource["id"], httpMethod=method)["uri"]
            kept_uri, mode = modes.get(f"{api}/{resource['id']}/{method}", (None, None))
            found[method, resource["path"]] = (uri, mode if kept_uri == uri else "BUFFERED")
    return found


def function_arn(aws, stage="dev"):
    return aws("lambda").get_function(FunctionName=f"kogpt2-{stage}")["Configuration"][
        "FunctionArn"]


def streaming_uri(aws, stage="dev"):
    """AWS's documented form: InvokeWithResponseStream's API version and action."""
    return (f"arn:aws:apigateway:{REGION}:lambda:path/2021-11-15/functions/"
            f"{function_arn(aws, stage)}/response-streaming-invocations")


def buffered_uri(aws, stage="dev"):
    return (f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/"
            f"{function_arn(aws, stage)}/invocations")


def api_calls(run_deploy):
    """The last run's API Gateway calls, each checked against botocore's model of the API."""
    calls = [json.loads(line) for line in run_deploy.api_calls.read_text().splitlines()]
    for call in calls:
        validate_parameters(call["params"],
                            APIGATEWAY.operation_model(call["operation"]).input_shape)
    integration = APIGATEWAY.operation_model("GetIntegration").output_shape.members
    for call in calls:
        for operation in call["params"].get("patchOperations", []):
            if call["operation"] != "UpdateIntegration":
                continue
            member = integration[operation["path"].removeprefix("/")]  # a field it has
            assert operation["op"] == "replace"
            assert not member.enum or operation["value"] in member.enum, operation
    return [(call["operation"], call["params"]) for call in calls]


def switches(calls):
    """The UpdateIntegration calls: {method: [(path, value)]}, and the deployments made after
    the first of them (Zappa makes one of its own before)."""
    updates, deployments = {}, []
    for operation, params in calls:
        if operation == "UpdateIntegration":
            updates.setdefault(params["httpMethod"], []).append(
                sorted((op["path"], op["value"]) for op in params["patchOperations"]))
        elif operation == "CreateDeployment" and updates:
            deployments.append(params)
    return updates, deployments


def test_botocore_knows_the_transfer_mode():
    assert tuple(map(int, botocore.__version__.split(".")[:2])) >= (1, 41)
    field = APIGATEWAY.operation_model("PutIntegration").input_shape.members
    assert field["responseTransferMode"].enum == ["BUFFERED", "STREAM"]


def test_deploy_and_update_switch_the_api_to_streaming(run_deploy, project, aws):
    assert SETTINGS["aws_environment_variables"]["LAMBDA_RESPONSE_STREAMING"] == "true"
    process, _ = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    stream = (streaming_uri(aws), "STREAM")
    assert integrations(aws, run_deploy) == {("ANY", "/"): stream, ("ANY", "/{proxy+}"): stream}
    calls = api_calls(run_deploy)
    updates, deployments = switches(calls)
    assert updates == {"ANY": [sorted([("/responseTransferMode", "STREAM"),
                                       ("/uri", streaming_uri(aws))])] * 2}
    assert [d["stageName"] for d in deployments] == ["dev"]  # the stage serves the switch
    operations = [operation for operation, _ in calls]
    # The throttling is set after the last deployment, and holds.
    last = {name: i for i, name in enumerate(operations)}  # each one's last call
    assert last["UpdateIntegration"] < last["CreateDeployment"] < last["UpdateStage"]
    assert "/*/*/throttling/rateLimit" in json.dumps(calls[last["UpdateStage"]][1])
    assert stage_limits(aws, "dev") == (2, (1.0, 2))
    assert ("deploy: dev: ANY /, ANY /{proxy+} switched to STREAM (streamed answers); stage "
            "redeployed") in process.stdout
    # Nothing Zappa does can be compressed or cached: STREAM mode refuses both.
    api = aws("apigateway").get_rest_api(restApiId=api_id(aws))
    assert "minimumCompressionSize" not in api

    # An update whose CloudFormation left the integrations alone changes nothing.
    process, _ = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    assert switches(api_calls(run_deploy)) == ({}, [])
    assert "deploy: dev: the Lambda integrations were already STREAM" in process.stdout
    assert integrations(aws, run_deploy)["ANY", "/{proxy+}"] == stream

    # One whose CloudFormation put them back to BUFFERED (as AWS may) gets them switched again.
    run_deploy.transfer_modes.unlink()
    process, _ = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    updates, deployments = switches(api_calls(run_deploy))
    assert updates == {"ANY": [[("/responseTransferMode", "STREAM")]] * 2}
    assert len(deployments) == 1
    assert set(integrations(aws, run_deploy).values()) == {stream}
    assert stage_limits(aws, "dev") == (2, (1.0, 2))


def test_a_stage_with_streaming_off_stays_buffered_and_goes_back(run_deploy, project, aws):
    process, _ = run_deploy("dev")  # streamed first
    assert process.returncode == 0, process.stdout + process.stderr
    settings = json.loads((project / "zappa_settings.json").read_text())
    settings["dev"]["aws_environment_variables"]["LAMBDA_RESPONSE_STREAMING"] = "false"
    (project / "zappa_settings.json").write_text(json.dumps(settings, indent=4))
    commit(project, "streaming off")
    process, _ = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    buffered = (buffered_uri(aws), "BUFFERED")
    assert integrations(aws, run_deploy) == {("ANY", "/"): buffered,
                                             ("ANY", "/{proxy+}"): buffered}
    updates, deployments = switches(api_calls(run_deploy))
    assert updates == {"ANY": [sorted([("/responseTransferMode", "BUFFERED"),
                                       ("/uri", buffered_uri(aws))])] * 2}
    assert len(deployments) == 1
    # The function is told the same: its runtime answers buffered.
    variables = aws("lambda").get_function(FunctionName="kogpt2-dev")["Configuration"][
        "Environment"]["Variables"]
    assert variables["LAMBDA_RESPONSE_STREAMING"] == "false"

    process, _ = run_deploy("dev")  # and stays so
    assert process.returncode == 0, process.stdout + process.stderr
    assert switches(api_calls(run_deploy)) == ({}, [])
    assert "deploy: dev: the Lambda integrations were already BUFFERED" in process.stdout


@pytest.mark.parametrize("change, message", [
    ({"payload_compression": True}, "API Gateway can't compress a stream"),
    ({"cache_cluster_enabled": True}, "API Gateway can't cache a stream"),
    ({"timeout_seconds": 20}, "KOGPT2_TIME_BUDGET_S (20 s) must end a generation before "
                              "\"timeout_seconds\" (20 s) ends the function"),
    ({"aws_environment_variables": {**SETTINGS["aws_environment_variables"],
                                    "LAMBDA_RESPONSE_STREAMING": "yes"}},
     "LAMBDA_RESPONSE_STREAMING='yes': it is 'true' (the default) or 'false'"),
])
def test_what_streaming_cant_do_is_refused_before_anything_is_built(
        run_deploy, project, aws, change, message):
    edit_settings(project, "dev", **change)
    process, calls = run_deploy("dev")
    assert process.returncode != 0
    assert message in process.stderr and "Traceback" not in process.stderr
    assert calls == []
    assert aws("lambda").list_functions()["Functions"] == []
