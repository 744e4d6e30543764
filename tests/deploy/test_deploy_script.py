"""scripts/deploy.sh end to end against a moto server on 127.0.0.1, with a fake docker.

Zappa runs for real; only AWS is moto and only docker is fake (it records its calls). moto has
no ListFunctionUrlConfigs, which `zappa update` calls: that one call is stubbed (empty list,
as AWS answers for a function without a URL) through a sitecustomize on the scripts' path.
Everything not on 127.0.0.1 (Zappa's PyPI version check) goes to a dead proxy.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from local_server import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DEPLOY_FILES = ["zappa_settings.json", "Dockerfile", ".dockerignore", "app.py",
                "scripts/deploy.sh", "scripts/deploy_aws.py"]
SETTINGS = json.loads((ROOT / "zappa_settings.json").read_text())["dev"]
REGION = SETTINGS["aws_region"]
REGISTRY = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"  # moto's default account

FAKE_DOCKER = """\
#!{python}
import json, os, sys
call = sys.argv[1:]
if call[:1] == ["login"]:
    call.append("stdin:" + ("password" if sys.stdin.read().strip() else "empty"))
with open(os.environ["DOCKER_CALLS"], "a") as calls:
    calls.write(json.dumps(call) + "\\n")
"""

STUB_MISSING_MOTO_CALL = """\
import botocore.client

_make_api_call = botocore.client.BaseClient._make_api_call


def make_api_call(self, operation_name, api_params):
    if operation_name == "ListFunctionUrlConfigs":  # no route in moto 5.2
        return {"FunctionUrlConfigs": []}
    return _make_api_call(self, operation_name, api_params)


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
def run_deploy(project, moto_url, tmp_path):
    """Run scripts/deploy.sh in `project` with moto as AWS; returns the process and docker calls."""
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "docker").write_text(FAKE_DOCKER.format(python=sys.executable))
    (fake_bin / "docker").chmod(0o755)
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir()
    (stub_dir / "sitecustomize.py").write_text(STUB_MISSING_MOTO_CALL)
    calls_file = tmp_path / "docker-calls.jsonl"

    def run(*args, docker=True, credentials=True):
        calls_file.unlink(missing_ok=True)
        path = [str(VENV_BIN), "/usr/bin", "/bin"]
        env = {
            "PATH": os.pathsep.join([str(fake_bin)] * docker + path),
            "HOME": str(tmp_path),
            "PYTHONPATH": str(stub_dir),
            "DOCKER_CALLS": str(calls_file),
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        if credentials:
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        process = subprocess.run(
            ["scripts/deploy.sh", *args], cwd=project, env=env,
            capture_output=True, text=True, timeout=300,
        )
        calls = []
        if calls_file.exists():
            calls = [json.loads(line) for line in calls_file.read_text().splitlines()]
        return process, calls

    return run


def assert_built_and_pushed(calls, tag, platform="linux/amd64"):
    image = f"{REGISTRY}/kogpt2:{tag}"
    assert [call[0] for call in calls] == ["info", "buildx", "login", "tag", "push"]
    build = calls[1]
    assert build[build.index("--platform") + 1] == platform
    assert "--provenance=false" in build
    assert build[-1] == "."
    assert calls[2] == ["login", "--username", "AWS", "--password-stdin", REGISTRY,
                        "stdin:password"]
    assert calls[3] == ["tag", f"kogpt2:{tag}", image]
    assert calls[4] == ["push", image]
    return image


def test_deploy_update_status_undeploy(run_deploy, project, aws):
    first = git(project, "rev-parse", "--short=12", "HEAD")
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    assert "Deployment complete" in process.stdout
    image = assert_built_and_pushed(calls, f"dev-{first}")
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
    new_image = assert_built_and_pushed(calls, f"dev-{second}")
    function = aws("lambda").get_function(FunctionName="kogpt2-dev")
    assert function["Code"]["ImageUri"] == new_image

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


def test_arm64_builds_and_deploys_for_graviton(run_deploy, project, aws):
    settings = json.loads((project / "zappa_settings.json").read_text())
    settings["dev"]["architecture"] = "arm64"
    (project / "zappa_settings.json").write_text(json.dumps(settings, indent=4))
    head = commit(project, "arm64")
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    image = assert_built_and_pushed(calls, f"dev-{head}", platform="linux/arm64")
    function = aws("lambda").get_function(FunctionName="kogpt2-dev")
    assert function["Code"]["ImageUri"] == image
    assert function["Configuration"]["Architectures"] == ["arm64"]


def test_a_dirty_checkout_gets_its_own_tag(run_deploy, project, aws):
    head = git(project, "rev-parse", "--short=12", "HEAD")
    (project / "app.py").write_text((project / "app.py").read_text() + "\n# not committed\n")
    process, calls = run_deploy("dev")
    assert process.returncode == 0, process.stdout + process.stderr
    pushed = calls[-1][1]
    assert pushed.startswith(f"{REGISTRY}/kogpt2:dev-{head}-dirty-")


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
        PLATFORM=linux/amd64""").splitlines()
