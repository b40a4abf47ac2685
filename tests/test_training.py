"""SFT then DPO on a tiny in-process Llama, through the same entry points the Train page uses.

The model (two layers, byte-level tokenizer) is built in-process by
``training/tiny.py``: nothing is downloaded. What a user would notice: the run
succeeds and says so; the LoRA weights moved while the base model did not; DPO
really starts from the SFT adapter, with the SFT model as its reference; the run
folder holds adapters, merged weights, model cards that name base, data and
recipe, and a progress log with losses and reward margins.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from r2ta import jobs, timing
from r2ta.config import models_dir
from r2ta.pairs import write_rows
from training.tiny import smoke_rows

pytestmark = pytest.mark.slow

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture()
def data_files(tmp_path) -> tuple[Path, Path]:
    sft, dpo = smoke_rows(6)
    write_rows(sft, tmp_path / "sft.jsonl")
    write_rows(dpo, tmp_path / "dpo.jsonl")
    return tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_training_job_trains_lora_and_leaves_the_base_untouched(tmp_path, data_files):
    import torch

    from training.data import file_sha256
    from training.tiny import TINY_LLAMA, ensure_tiny_llama

    base_dir = ensure_tiny_llama(models_dir() / TINY_LLAMA)
    base_hash = file_sha256(base_dir / "model.safetensors")
    base = _tensors(base_dir / "model.safetensors")

    run_dir = jobs.start_training(*data_files, recipe="tiny-cpu", run_dir=tmp_path / "run")
    progress = jobs.wait_for(run_dir, timeout_s=600)
    assert progress.state == "succeeded", jobs.read_log(run_dir)
    assert progress.fraction == 1.0 and progress.stage == "done"

    # LoRA weights changed: B starts at zero, SFT moved it; DPO moved it further.
    sft_adapter = _tensors(run_dir / "sft" / "adapter_model.safetensors")
    dpo_adapter = _tensors(run_dir / "dpo" / "adapter_model.safetensors")
    lora_b = [k for k in sft_adapter if "lora_B" in k]
    assert len(lora_b) == 2 * len(LORA_TARGETS)  # two layers, every projection
    assert all(sft_adapter[k].abs().max() > 0 for k in lora_b)
    assert set(dpo_adapter) == set(sft_adapter)  # one adapter holding SFT + DPO, no "ref" copy saved
    assert any(not torch.equal(sft_adapter[k], dpo_adapter[k]) for k in lora_b)
    adapter_config = json.loads((run_dir / "dpo" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(base_dir)  # applies to the base model directly

    # The base did not change: not on disk, and merging touched only the LoRA-targeted projections.
    assert file_sha256(base_dir / "model.safetensors") == base_hash
    merged = _tensors(run_dir / "merged" / "model.safetensors")
    assert set(merged) == set(base)
    for name, weight in base.items():
        targeted = any(f".{t}." in name for t in LORA_TARGETS)
        assert torch.equal(merged[name], weight) != targeted, name

    # progress.jsonl: finite losses for both stages, reward margins for DPO; DPO starts at ln 2.
    again = jobs.read_progress(run_dir)
    sft_loss, dpo_loss = again.series("loss", "sft"), again.series("loss", "dpo")
    assert [s for s, _ in sft_loss] == list(range(1, 7)) and [s for s, _ in dpo_loss] == list(range(1, 7))
    assert all(math.isfinite(v) for _, v in sft_loss + dpo_loss)
    assert dpo_loss[0][1] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at step 1
    margins = again.series("reward_margin", "dpo")
    assert len(margins) == 6 and margins[-1][1] > 0  # the preferred answer pulled ahead
    assert all(p.get("tokens_per_s", 0) > 0 and p.get("learning_rate") for p in again.points)

    # Model cards name base model, data (counts and hashes), recipe and metrics.
    card = (run_dir / "README.md").read_text()
    assert str(base_dir) in card and "tiny-cpu" in card and "builtin:tiny-llama" in card
    for path in data_files:
        assert file_sha256(path)[:16] in card
    assert "| sft | 6 |" in card and "| dpo | 6 |" in card
    assert "Rejected traces: 6 the model's original output" in card  # no planted negatives in this data
    for name in ("sft", "dpo", "merged"):
        assert "library_name" in (run_dir / name / "README.md").read_text()
    status = progress.status
    assert status["metrics"]["dpo"]["steps"] == 6 and status["metrics"]["sft"]["final_loss"] > 0
    assert status["hardware"]["kind"] == "cpu" and status["precision"] == "fp32"
    # the runner ran on tcmalloc where the system has it (launch preloads it), else on glibc's malloc
    assert status["allocator"] == ("tcmalloc" if jobs.allocator_env() else "glibc malloc")
    assert status["speed_revision"] == timing.SPEED_REVISION  # an estimate from this run knows its code's speed
    assert set(status["artefacts"]) == {"sft", "dpo", "merged"}
    assert "run" in jobs.read_log(run_dir) and "succeeded" in jobs.read_log(run_dir)


def test_dpo_continues_the_sft_adapter_against_a_frozen_sft_reference(tmp_path, data_files):
    """The stage entry points in-process: at DPO's first step the trained adapter *is* the SFT adapter."""
    import torch
    from transformers import TrainerCallback

    from training import dpo, hardware, sft
    from training.recipe import load_recipe, parse_stage

    recipe = load_recipe("tiny-cpu")
    precision = hardware.resolve_precision("fp32", hardware.detect_hardware())
    sft_dir, dpo_dir = tmp_path / "sft", tmp_path / "dpo"
    sft_file, dpo_file = data_files
    sft.main(*parse_stage(sft.make_parser(), recipe, "sft", precision,
                          ["--train_file", str(sft_file), "--output_dir", str(sft_dir), "--max_steps", "3"]))
    saved = _tensors(sft_dir / "adapter_model.safetensors")

    seen: dict[str, dict] = {}

    class Snapshot(TrainerCallback):
        def _take(self, when, model):
            seen[when] = {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self._take("begin", model)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self._take("end", model)

    dpo.main(
        *parse_stage(dpo.make_parser(), recipe, "dpo", precision,
                     ["--train_file", str(dpo_file), "--output_dir", str(dpo_dir), "--max_steps", "3",
                      "--init_adapter", str(sft_dir)]),
        callbacks=[Snapshot()],
    )

    def adapter(when: str, name: str) -> dict:
        return {k.replace(f".{name}.", "."): v for k, v in seen[when].items() if f".{name}." in k}

    assert adapter("begin", "default").keys() == saved.keys()
    for key, value in saved.items():
        assert torch.equal(adapter("begin", "default")[key], value)  # DPO starts from the SFT adapter
        assert torch.equal(adapter("end", "ref")[key], value)  # the reference stays the SFT model
    assert any(not torch.equal(adapter("end", "default")[k], saved[k]) for k in saved)
    assert "ref" not in {p.name for p in dpo_dir.iterdir()}  # the reference copy is not saved


def test_training_benchmark_measures_the_settings_asked_for_and_refuses_unknown_ones(capsys):
    """benchmarks/bench_training.py's plumbing on the tiny model (its figures need the embedded one): the settings
    asked for run and are compared; a name it does not know (project-bf16, the pre-auto-bf16 name) is refused, not
    measured as TRL's defaults."""
    import benchmarks.bench_training as bench

    bench.main(["--model", "tiny", "--steps", "2", "--only", "sft", "--settings", "project,trl-defaults"])
    out = capsys.readouterr().out
    measured = [line.split()[1] for line in out.splitlines() if line.startswith("sft ")]
    assert measured == ["project", "trl-defaults"] and "the project's recipe runs at" in out
    with pytest.raises(SystemExit, match="unknown setting.*project-bf16.*known: .*project-fp32"):
        bench.main(["--model", "tiny", "--settings", "project,project-bf16"])
    with pytest.raises(ValueError, match="unknown setting 'project-bf16'"):
        bench._configs("sft", "project-bf16", None, None, [])


def test_a_run_whose_prompts_fill_max_length_fails_saying_so(tmp_path, data_files):
    # Every SFT row's prompt is longer than max_length: TRL drops each one (nothing left to learn from) and its
    # sampler then failed with "num_samples=0". The run fails with what to change instead, and the log keeps it.
    run_dir = jobs.start_training(*data_files, recipe="tiny-cpu", run_dir=tmp_path / "run",
                                  overrides=["sft.max_length=16"])
    progress = jobs.wait_for(run_dir, timeout_s=600)
    assert progress.state == "failed"
    error = progress.status.get("error") or ""
    assert "max_length=16" in error and "Raise max_length" in error, error
    assert "num_samples" not in error
    assert not (run_dir / "sft" / "adapter_model.safetensors").exists()
