"""The Lambda image without Docker: its stages read from the Dockerfile, and its runtime stage
laid out under a temporary root.

`lay_out(instructions, root, model_dir, engine)` copies what the runtime stage copies (paths
like /opt/kogpt2/model and ${LAMBDA_TASK_ROOT} moved under `root`, the converted model being
`model_dir`) and returns the task root, the function's environment (the image's ENV and the dev
stage's `aws_environment_variables`) and the command Lambda starts: ENTRYPOINT + CMD.
"""

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from dockerfile_parse import DockerfileParser
from lambda_task import ROOT, SETTINGS, save_python_settings

DOCKERFILE = ROOT / "Dockerfile"
LAMBDA_TASK_ROOT = "/var/task"  # the base image's ENV


def stages(build_args=None):
    """{stage name: (parent, [(instruction, value)])}, with the file's ARG defaults applied."""
    parser = DockerfileParser(str(DOCKERFILE))
    args = {}
    result, current = {}, None
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "ARG" and current is None:
            name, _, default = value.partition("=")
            args[name] = (build_args or {}).get(name, default)
        elif instruction == "FROM":
            for name, arg in args.items():
                value = value.replace("${" + name + "}", arg)
            parent, _, name = value.partition(" AS ")
            current = result[name.strip()] = (parent.strip(), [])
        elif current is not None and instruction != "COMMENT":
            current[1].append((instruction, value))
    return result


def chain(all_stages, name):
    """The instructions that make stage `name`, its parent stages' first."""
    parent, instructions = all_stages[name]
    return (chain(all_stages, parent) if parent in all_stages else []) + instructions


def global_args():
    parser = DockerfileParser(str(DOCKERFILE))
    args = {}
    for item in parser.structure:
        if item["instruction"] == "FROM":
            return args
        if item["instruction"] == "ARG":
            name, _, default = item["value"].partition("=")
            args[name] = default
    return args


def image_env(instructions, moved=lambda value: value, build_args=None):
    """The image's ENV, with the build's ARG values put in as Docker does."""
    args = {**global_args(), **(build_args or {})}
    env = {}
    for kind, value in instructions:
        if kind == "ENV":
            for pair in shlex.split(value):
                name, _, setting = pair.partition("=")
                for arg, arg_value in args.items():
                    setting = setting.replace("${" + arg + "}", arg_value)
                env[name] = moved(setting)
    return env


def exec_form(instructions, kind) -> list[str]:
    """The last ENTRYPOINT or CMD, in its JSON (exec) form."""
    return [json.loads(value) for instruction, value in instructions if instruction == kind][-1]


def requirement_files(instructions):
    """The context files that `pip install -r` reads, found through the COPYs that put them."""
    copied = {}
    for kind, value in instructions:
        if kind == "COPY" and not value.startswith("--from"):
            *sources, destination = value.split()
            for source in sources:
                copied[destination.rstrip("/") + "/" + Path(source).name] = ROOT / source
    files = []
    for kind, value in instructions:
        if kind == "RUN" and "pip install" in value:
            words = value.split()
            files += [copied[words[i + 1]] for i, word in enumerate(words) if word == "-r"]
    return files


@dataclass
class Layout:
    task_root: Path
    env: dict[str, str]  # the function's environment, less what Lambda adds itself
    command: list[str]  # ENTRYPOINT + CMD, paths moved under the root


def lay_out(instructions, image_root: Path, model_dir: Path, engine: str) -> Layout:
    def moved(path: str) -> str:
        path = path.replace("${LAMBDA_TASK_ROOT}", LAMBDA_TASK_ROOT)
        return str(image_root) + path if path.startswith(("/opt/", "/var/")) else path

    task_root = Path(moved(LAMBDA_TASK_ROOT))
    task_root.mkdir(parents=True)
    for kind, value in instructions:
        if kind != "COPY" or "/build/" in value:  # /build: the requirements, installed apart
            continue
        *sources, destination = value.split()
        if sources[0] == "--from=model":  # the converted model: here, the given one
            shutil.copytree(model_dir, moved(destination))
            continue
        for source in sources:
            target = Path(moved(destination))
            if source == "zappa_settings.py":  # scripts/deploy.sh writes it before the build
                save_python_settings(ROOT, "dev", task_root)
            elif (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                assert (ROOT / source).is_file(), f"COPY {source}: not in the repository"
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target / source)
    env = {
        **image_env(instructions, moved, {"ENGINE": engine}),
        **{name: moved(value)
           for name, value in SETTINGS["dev"]["aws_environment_variables"].items()},
    }
    command = [moved(word) for word in
               exec_form(instructions, "ENTRYPOINT") + exec_form(instructions, "CMD")]
    return Layout(task_root, env, command)
