#!/usr/bin/env python3
"""The AWS and settings look-ups that scripts/deploy.sh needs, each one small command.

    deploy_aws.py stage STAGE                    shell assignments: REGION ARCHITECTURE ...
    deploy_aws.py credentials REGION             the account id, or a clear error
    deploy_aws.py ecr-repository REGION NAME     the repository URI (created if missing)
    deploy_aws.py ecr-password REGION            the password for `docker login`
    deploy_aws.py image-exists REGION NAME TAG   exit 0 if NAME:TAG is in ECR, 1 if not
    deploy_aws.py function-exists REGION NAME    exit 0 if the Lambda function exists, 1 if not

boto3 comes with zappa. AWS_ENDPOINT_URL (moto in the tests) is honoured by boto3 itself.
"""

import base64
import inspect
import json
import shlex
import sys
from pathlib import Path

SETTINGS = Path("zappa_settings.json")
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


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
    }
    for name, value in values.items():
        print(f"{name}={shlex.quote(value)}")


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
        # Tags are commits: an immutable tag can never point at a different image.
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


def function_exists(region: str, name: str) -> bool:
    lambda_client = client("lambda", region)
    try:
        lambda_client.get_function(FunctionName=name)
    except lambda_client.exceptions.ResourceNotFoundException:
        return False
    return True


COMMANDS = {
    "stage": print_stage,
    "credentials": credentials,
    "ecr-repository": ecr_repository,
    "ecr-password": ecr_password,
    "image-exists": image_exists,
    "function-exists": function_exists,
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
    return 1 if result is False else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
