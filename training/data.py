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

import json

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
    # DPO only: how many pairs reject the model's own trace ("model") or a planted error ("planted:<kind>").
    rejected_sources: dict[str, int] | None = None

    def as_dict(self) -> dict:
        out = {"stage": self.stage, "path": self.path, "rows": self.rows, "sha256": self.sha256}
        if self.rejected_sources is not None:
            out["rejected_sources"] = dict(self.rejected_sources)
        return out


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
    """Rows and checksum; for DPO also where the rejected traces came from (``provenance.rejected_source``;
    exports made before planted negatives existed do not say, and rejected the model's own trace)."""
    rows, sources = 0, {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            rows += 1
            if stage == "dpo":
                try:
                    source = (json.loads(line).get("provenance") or {}).get("rejected_source") or "model"
                except (json.JSONDecodeError, AttributeError):
                    source = "unreadable"
                sources[str(source)] = sources.get(str(source), 0) + 1
    return DataFile(stage, str(path), rows, file_sha256(path), dict(sorted(sources.items())) if stage == "dpo" else None)


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
