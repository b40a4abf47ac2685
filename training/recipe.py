"""Recipes: YAML files in ``training/recipes/`` that configure SFT and DPO through TRL's own config classes.

A recipe has four sections; each is parsed by its dataclass and an unknown key
is an error (a misspelt ``learning_rat`` must not be silently ignored)::

    run:    # RunConfig below: what the recipe is for, precision, merged weights
    model:  # trl.ModelConfig: base model, LoRA (use_peft, lora_r, ...)
    sft:    # trl.SFTConfig (and decision_token_weight, defect_fact_weight: training.weighting.R2taSFTConfig)
    dpo:    # trl.DPOConfig (and share_prompt, training.shared_prefix.R2taDPOConfig)

Precision is not set in the sections (``bf16``, ``fp16``, ``dtype`` and
``use_cpu`` are refused there): ``run.precision`` (``auto`` by default) or
``--precision`` choose it, and :mod:`training.hardware` turns that into config
values that work on the machine at hand.

``model_name_or_path`` may be a Hugging Face id, a local folder, or one of two
built-in names: ``builtin:tiny-llama`` (:mod:`training.tiny`, built in-process)
and ``embedded:<name>`` (a folder under the data folder's ``models/``, such as
the embedded SmolLM2-135M-Instruct).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from r2ta.jobs import TrainingError, recipe_file

SECTIONS = ("run", "model", "sft", "dpo")
PRECISION_KEYS = ("bf16", "fp16", "dtype", "use_cpu", "bf16_full_eval", "fp16_full_eval")
# Set per run by the runner or the stage scripts, never by a recipe.
RUN_KEYS = ("output_dir", "train_file", "init_adapter")


class RecipeError(TrainingError):
    """A recipe file is missing, malformed, or has keys its config classes do not know."""


@dataclass
class RunConfig:
    """This project's part of a recipe: what it is for and what the runner does around the trainers."""

    description: str = field(default="", metadata={"help": "One line: what this recipe trains, where."})
    hardware: str = field(
        default="cpu",
        metadata={"help": "What the recipe needs: cpu (runs anywhere) or gpu (refuses to start without one).",
                  "choices": ["cpu", "gpu"]},
    )
    precision: str = field(
        default="auto",
        metadata={"help": "auto (bf16 on a CPU that computes it natively and on a GPU that has it, else fp32), "
                          "fp32, bf16 or fp16.",
                  "choices": ["auto", "fp32", "bf16", "fp16"]},
    )
    save_merged: bool = field(
        default=True,
        metadata={"help": "With LoRA, also save the base with the final adapter merged in (standalone weights)."},
    )
    checkpoint_minutes: float = field(
        default=10.0,
        metadata={"help": "Save a resumable checkpoint (weights, optimizer, scheduler, RNG, step) at the first step "
                          "boundary after this many minutes, and when the run is cancelled; only the newest is kept. "
                          "r2ta train --resume / the Train page's Resume button continue a failed or cancelled "
                          "run from it. 0 turns checkpoints off."},
    )


@dataclass
class Recipe:
    """A recipe file read and checked: ``run`` parsed, the other sections kept as dicts until a stage parses them."""

    name: str
    path: Path
    text: str
    run: RunConfig
    model: dict
    sft: dict
    dpo: dict

    def section(self, stage: str) -> dict:
        return {"sft": self.sft, "dpo": self.dpo}[stage]


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def load_recipe(recipe: str | Path) -> Recipe:
    """Read a recipe by name or path and check every key against its config class (no model is loaded)."""
    import yaml
    from trl import ModelConfig, TrlParser

    from training.shared_prefix import R2taDPOConfig
    from training.weighting import R2taSFTConfig

    path = recipe_file(recipe)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise RecipeError(f"recipe {path}: unknown section(s) {unknown}; the sections are {', '.join(SECTIONS)}")
    sections = {}
    for name in SECTIONS:
        value = data.get(name) or {}
        if not isinstance(value, dict):
            raise RecipeError(f"recipe {path}: section {name!r} must be a mapping of settings")
        sections[name] = value

    for name, cls in (("model", ModelConfig), ("sft", R2taSFTConfig), ("dpo", R2taDPOConfig)):
        section = sections[name]
        bad = sorted(set(section) - _field_names(cls))
        if bad:
            raise RecipeError(
                f"recipe {path}: section {name!r} has unknown key(s) {bad}: they are not fields of "
                f"trl.{cls.__name__} {_installed_versions()}; fix the spelling or remove them"
            )
        for key in PRECISION_KEYS:
            if key in section:
                raise RecipeError(
                    f"recipe {path}: section {name!r} sets {key!r}; precision is chosen from the hardware, "
                    "set run.precision (auto, fp32, bf16, fp16) instead"
                )
        for key in RUN_KEYS:
            if key in section:
                raise RecipeError(f"recipe {path}: section {name!r} sets {key!r}, which each run sets itself")
    try:
        (run,) = TrlParser([RunConfig]).parse_dict(sections["run"], allow_extra_keys=False)
    except ValueError as err:
        raise RecipeError(f"recipe {path}: section 'run': {err}") from None
    for key, choices in (("hardware", ("cpu", "gpu")), ("precision", ("auto", "fp32", "bf16", "fp16"))):
        if getattr(run, key) not in choices:
            raise RecipeError(f"recipe {path}: run.{key} is {getattr(run, key)!r}, not one of {', '.join(choices)}")
    if not run.checkpoint_minutes >= 0:  # also refuses nan
        raise RecipeError(f"recipe {path}: run.checkpoint_minutes is {run.checkpoint_minutes!r}; use 0 (off) or more")
    return Recipe(path.stem, path, text, run, sections["model"], sections["sft"], sections["dpo"])


def _installed_versions() -> str:
    import transformers
    import trl

    return f"(trl {trl.__version__}, transformers {transformers.__version__})"


def parse_stage(parser, recipe: Recipe, stage: str, precision, args: list[str]) -> tuple:
    """Parse one stage's dataclasses the way ``TrlParser --config`` does: recipe values as defaults, ``args`` on top.

    ``parser`` is the stage script's :func:`make_parser` (script arguments, the
    stage's TRL config, ``ModelConfig``); ``precision`` a :class:`training.hardware.Precision`.
    """
    defaults = {**recipe.model, **recipe.section(stage), **precision.config_overrides(), "dtype": precision.dtype}
    unknown = parser.set_defaults_with_config(**defaults)
    if unknown:  # load_recipe checked the keys already; this catches a parser that drifted from it
        raise RecipeError(f"recipe {recipe.path}: {stage} stage: unknown arguments {unknown}")
    try:
        return tuple(parser.parse_args_into_dataclasses(args))
    except ValueError as err:
        raise RecipeError(f"recipe {recipe.path}: the {stage} settings are invalid: {err}") from None
    except SystemExit as err:  # argparse already printed why (a value of the wrong type, a bad choice)
        raise RecipeError(f"recipe {recipe.path}: the {stage} settings do not parse (see the message above)") from err


def resolve_model_path(name_or_path: str) -> str:
    """Turn ``builtin:``/``embedded:`` names into a folder (building the tiny model if needed); pass others through."""
    from r2ta.config import models_dir

    if name_or_path.startswith("builtin:"):
        from training.tiny import TINY_LLAMA, ensure_tiny_llama

        name = name_or_path.split(":", 1)[1]
        if name != TINY_LLAMA:
            raise RecipeError(f"unknown built-in model {name!r}; the only one is builtin:{TINY_LLAMA}")
        return str(ensure_tiny_llama(models_dir() / TINY_LLAMA))
    if name_or_path.startswith("embedded:"):
        name = name_or_path.split(":", 1)[1]
        folder = models_dir() / name
        if not (folder / "config.json").is_file():
            raise RecipeError(
                f"the embedded model {name} is not in {folder} yet; run `r2ta seed` (or `make run`) once to "
                "fetch and convert it, or point model_name_or_path at a local model folder"
            )
        return str(folder)
    return name_or_path
