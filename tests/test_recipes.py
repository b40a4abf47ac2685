"""Every training recipe parses through TRL's real config classes, and a wrong key is refused, not ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from r2ta import jobs
from training import dpo, hardware, sft
from training.recipe import RecipeError, load_recipe, parse_stage

RECIPES = jobs.list_recipes()
CPU = hardware.Hardware("cpu", 0, "cpu", False, 2, None)
AMX_CPU = hardware.Hardware("cpu", 0, "cpu", True, 2, None)  # computes bf16 natively
GPU = hardware.Hardware("gpu", 1, "NVIDIA H100", True, 16, 80.0)
OLD_GPU = hardware.Hardware("gpu", 1, "Tesla T4", False, 8, 16.0)
RUN_ARGS = ["--train_file", "rows.jsonl", "--output_dir", "out"]


def _parse(recipe, stage, precision="fp32", args=RUN_ARGS):
    module = {"sft": sft, "dpo": dpo}[stage]
    return parse_stage(module.make_parser(), recipe, stage, hardware.resolve_precision(precision, CPU), list(args))


def test_the_three_recipes_and_the_default_are_shipped():
    assert {"tiny-cpu", "smollm2-135m-cpu", "qwen2.5-0.5b-gpu"} <= set(RECIPES)
    assert jobs.DEFAULT_RECIPE in RECIPES


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_parses_for_both_stages(name):
    from trl import ModelConfig

    from training.shared_prefix import R2taDPOConfig
    from training.weighting import R2taSFTConfig

    recipe = load_recipe(name)
    assert recipe.run.description
    for stage, config_class in (("sft", R2taSFTConfig), ("dpo", R2taDPOConfig)):
        # GPU recipes are parsed in fp32 here: this machine has no GPU to check bf16 against.
        script_args, config, model_args = _parse(recipe, stage)
        assert type(config) is config_class and isinstance(model_args, ModelConfig)
        assert config.output_dir == "out" and script_args.train_file == "rows.jsonl"
        assert config.bf16 is False and config.fp16 is False  # never TRL's bf16 default on a CPU
        for key, value in recipe.section(stage).items():  # every value in the recipe reaches the config
            actual = getattr(config, key)
            actual = getattr(actual, "value", actual)  # enums such as lr_scheduler_type
            expected = [] if key == "report_to" and value == "none" else value
            assert actual == pytest.approx(expected) if isinstance(value, float) else actual == expected, key
        assert model_args.model_name_or_path == recipe.model["model_name_or_path"]
        assert model_args.use_peft is True  # LoRA by default in every shipped recipe


def test_recipe_values_are_typed_and_command_line_flags_override_them():
    recipe = load_recipe("smollm2-135m-cpu")
    _, config, model_args = _parse(recipe, "sft")
    assert config.learning_rate == 2e-4 and config.max_length == 3072 and model_args.lora_r == 16
    _, config, _ = _parse(recipe, "dpo", args=[*RUN_ARGS, "--max_steps", "3", "--beta", "0.5"])
    assert config.max_steps == 3 and config.beta == 0.5 and config.learning_rate == 5e-5


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.yaml"
    path.write_text(text)
    return path


BASE = "model:\n  model_name_or_path: builtin:tiny-llama\n"


@pytest.mark.parametrize(
    "text, words",
    [
        (BASE + "sft:\n  learning_rat: 0.1\n", ["'sft'", "learning_rat", "SFTConfig"]),
        (BASE + "dpo:\n  betta: 0.1\n", ["'dpo'", "betta", "DPOConfig"]),
        (BASE + "  lora_rank: 8\n", ["'model'", "lora_rank", "ModelConfig"]),
        (BASE + "run:\n  precison: fp32\n", ["'run'", "precison"]),
        (BASE + "training:\n  epochs: 1\n", ["unknown section", "training"]),
        (BASE + "sft:\n  bf16: true\n", ["bf16", "run.precision"]),
        (BASE + "dpo:\n  output_dir: elsewhere\n", ["output_dir", "each run sets"]),
        (BASE + "run:\n  hardware: tpu\n", ["run.hardware", "tpu"]),
        ("- a list\n", ["mapping"]),
        ("sft: [oops\n", ["not valid YAML"]),
    ],
)
def test_a_wrong_recipe_is_refused_with_the_key_named(tmp_path, text, words):
    with pytest.raises(RecipeError) as err:
        load_recipe(_write(tmp_path, text))
    for word in words:
        assert word in str(err.value)


def test_an_unknown_recipe_name_lists_the_known_ones():
    with pytest.raises(jobs.TrainingError, match="tiny-cpu"):
        load_recipe("no-such-recipe")


def test_precision_follows_the_hardware():
    assert hardware.resolve_precision("auto", CPU).name == "fp32"
    bf16 = hardware.resolve_precision("auto", GPU)
    assert (bf16.bf16, bf16.fp16, bf16.dtype) == (True, False, "bfloat16")
    fp16 = hardware.resolve_precision("auto", OLD_GPU)
    assert (fp16.bf16, fp16.fp16, fp16.dtype) == (False, True, "float32")
    with pytest.raises(jobs.TrainingError, match="natively"):
        hardware.resolve_precision("bf16", CPU)
    for cpu in (CPU, AMX_CPU):
        with pytest.raises(jobs.TrainingError, match="fp16 needs a GPU"):
            hardware.resolve_precision("fp16", cpu)
    with pytest.raises(jobs.TrainingError, match="no bf16"):
        hardware.resolve_precision("bf16", OLD_GPU)
    assert load_recipe("qwen2.5-0.5b-gpu").run.precision == "bf16"
    assert load_recipe("qwen2.5-0.5b-gpu").run.hardware == "gpu"


def test_a_cpu_that_computes_bf16_natively_trains_in_bf16_under_auto_and_in_fp32_when_asked():
    assert hardware.resolve_precision("auto", AMX_CPU) == hardware.resolve_precision("bf16", AMX_CPU)
    assert hardware.resolve_precision("fp32", AMX_CPU).name == "fp32"
    assert hardware.precision_choices(AMX_CPU) == ["bf16", "fp32"] and hardware.precision_choices(CPU) == ["fp32"]
    # the tiny recipe (tests, smoke runs) stays in fp32 everywhere: the same numbers on every machine
    assert load_recipe("tiny-cpu").run.precision == "fp32" and load_recipe("smollm2-135m-cpu").run.precision == "auto"
    bf16 = hardware.resolve_precision("bf16", AMX_CPU)
    assert (bf16.bf16, bf16.fp16, bf16.dtype) == (True, False, "bfloat16")
    # transformers refuses bf16 without a GPU unless use_cpu is said; a GPU run must not get it
    assert bf16.config_overrides() == {"bf16": True, "fp16": False, "use_cpu": True}
    assert "use_cpu" not in hardware.resolve_precision("bf16", GPU).config_overrides()
    for stage in ("sft", "dpo"):  # TrainingArguments accepts it (it refuses bf16 without a GPU unless use_cpu)
        module = {"sft": sft, "dpo": dpo}[stage]
        args = parse_stage(module.make_parser(), load_recipe("smollm2-135m-cpu"), stage, bf16, list(RUN_ARGS))
        assert args[1].bf16 and args[1].use_cpu and args[2].dtype == "bfloat16"
    assert "native bf16" in AMX_CPU.describe() and "native bf16" not in CPU.describe()


def test_native_bf16_is_read_from_the_cpu_flags():
    sapphire = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    zen4 = "flags\t\t: fpu sse2 avx512f avx512_bf16\n"
    older = "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    assert hardware.cpu_has_native_bf16(sapphire) and hardware.cpu_has_native_bf16(zen4)
    assert not hardware.cpu_has_native_bf16(older) and not hardware.cpu_has_native_bf16("")


def test_several_gpus_launch_through_accelerate():
    assert hardware.launch_command(["training.runner", "RUN"], 1)[1:] == ["-m", "training.runner", "RUN"]
    command = hardware.launch_command(["training.runner", "RUN"], 4)
    assert command[1:6] == ["launch", "--multi_gpu", "--num_processes", "4", "-m"]
    assert command[-2:] == ["training.runner", "RUN"]
