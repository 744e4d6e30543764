"""The quality check's two Korean sets, written for this project (bench/quality.py).

lm-evaluation-harness calls these through `custom_dataset: !function ...` in the task YAMLs
beside this file: the data is read from here whatever the working directory, and nothing is
fetched (a `dataset_path: json` with `data_files` would resolve them against the caller's
working directory instead).
"""

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def _read(name: str) -> datasets.DatasetDict:
    lines = (HERE / name).read_text(encoding="utf-8").splitlines()
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([json.loads(line)
                                                                     for line in lines])})


def text_set(**_metadata) -> datasets.DatasetDict:
    """Seven short Korean passages (`title`, `text`), 446 words: rolling log-likelihood."""
    return _read("ko_text.jsonl")


def choice_set(**_metadata) -> datasets.DatasetDict:
    """Twenty everyday-sense items (`question`, four `choices`, `answer` index)."""
    return _read("ko_choice.jsonl")
