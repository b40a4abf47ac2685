"""Load the exported training files (TRL's conversational format) into ``datasets.Dataset``.

SFT rows are ``{"messages": [...], "provenance": {...}}``; DPO rows are
``{"prompt": [...], "chosen": [...], "rejected": [...], "provenance": {...}}``
(:mod:`r2ta.pairs` builds them at export and validates them again here, naming
the line that breaks). Training drops ``provenance``.

SFT rows are split into TRL's conversational *prompt-completion* form: the last
(assistant) message is the completion, everything before it the prompt. TRL then
computes the loss on the answer only, with any chat template; the alternative,
``assistant_only_loss``, needs ``{% generation %}`` markers that SmolLM2's
template lacks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from r2ta.jobs import TrainingError


@dataclass(frozen=True)
class DataFile:
    """What the model card says about a training file."""

    stage: str
    path: str
    rows: int
    sha256: str

    def as_dict(self) -> dict:
        return {"stage": self.stage, "path": self.path, "rows": self.rows, "sha256": self.sha256}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_training_rows(stage: str, path: str | Path) -> list[dict]:
    """The rows a stage trains on: validated by :mod:`r2ta.pairs`, provenance dropped, SFT split into prompt/completion."""
    from r2ta.pairs import read_rows, to_trl

    rows = to_trl(read_rows(path, stage))
    if not rows:
        raise TrainingError(f"{path} holds no {stage.upper()} rows; review and export some data first")
    if stage == "sft":
        return [{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in rows]
    return rows


def load_dataset_for(stage: str, path: str | Path):
    """The ``datasets.Dataset`` a stage trains on."""
    from datasets import Dataset

    return Dataset.from_list(read_training_rows(stage, path))


def describe_file(stage: str, path: str | Path) -> DataFile:
    with open(path, encoding="utf-8") as handle:
        rows = sum(1 for line in handle if line.strip())
    return DataFile(stage, str(path), rows, file_sha256(path))


def count_over_length(dataset, tokenizer, max_length: int | None) -> tuple[int, int]:
    """How many rows exceed ``max_length`` tokens (TRL keeps the start and cuts the answer), and the longest row."""
    if max_length is None:
        return 0, 0
    over, longest = 0, 0
    for row in dataset:
        answer_key = "completion" if "completion" in row else "chosen"
        answers = [row[answer_key]] + ([row["rejected"]] if "rejected" in row else [])
        for answer in answers:
            ids = tokenizer.apply_chat_template(row["prompt"] + answer, tokenize=True, return_dict=False)
            longest = max(longest, len(ids))
            if len(ids) > max_length:
                over += 1
                break
    return over, longest
