"""Training throughput: tokens/s of SFT and DPO with the project's recipe versus TRL's defaults, in one run.

    python -m benchmarks.bench_training                      # tiny model on a CPU, embedded on a GPU
    python -m benchmarks.bench_training --model tiny --steps 5
    python -m benchmarks.bench_training --model embedded --steps 2 --defaults-batch 1   # CPU: ~1 h

Rows for the embedded model are realistic: variants built from the base schemas,
prompted exactly as the model is (system + requirements + compact diagram),
answered with the ground-truth trace (SFT, DPO chosen) or a trace naming a wrong
mistake (DPO rejected). The tiny model gets short rows (its byte-level tokenizer
would make a real prompt ~8,000 tokens long): a smoke test of the harness.

"project" is the recipe (``smollm2-135m-cpu`` for the embedded model,
``tiny-cpu`` for the tiny one): LoRA, no activation checkpointing on a CPU, the
recipe's batch and max_length. "trl-defaults" is ``SFTConfig()``/``DPOConfig()``
and ``ModelConfig()`` as shipped (full fine-tuning, batch 8, activation
checkpointing, learning rate...) except for two settings without which it does
not train at all: precision (TRL's bf16 default cannot start on a CPU; both use
the precision :mod:`training.hardware` picks) and max_length (TRL's 1024 keeps
the start of a 1.7-2.9k-token row, so every answer is cut and every row dropped;
both use the recipe's). "project+decisions" (SFT only) is the recipe with
``decision_token_weight`` (``--decision-weight``, 5 by default; :mod:`training.weighting`):
what weighting the answer's decision tokens costs, in the same run. "project-unshared"
(DPO only) is the recipe with ``share_prompt: false``: TRL's forward, chosen and rejected
encoded as two full rows, against the start they share encoded once (:mod:`training.shared_prefix`).
On a CPU that computes bf16 natively (Intel AMX or AVX512-BF16) "project" is the recipe in bf16
autocast with the frozen base held in bf16 (``auto``'s choice there), and "project-fp32" the same
recipe in fp32 beside it: what bf16 buys. "project-all-positions" (SFT, on a CPU;
"project-fp32-all-positions" beside "project-fp32") is the recipe with TRL's own fused LM head, which
on a CPU projects every position of the row instead of the answer's labelled ones (:mod:`training.lm_head`).
``--settings project,project-fp32`` measures only those (the embedded model's trl-defaults
alone is most of an hour on a CPU); an unknown name is refused with the known ones.
(Before 2026-12-06 ``auto`` was fp32 on every CPU, "project" was the fp32 recipe and bf16 was the
setting "project-bf16": the records of that time name it so.)

"loss 1" is the first step's logged loss (the same rows in every setting of a stage: a setting that
changes only speed gives the same figure, up to float rounding).
tokens/s counts the non-padding tokens the trainer consumed (prompt + answer;
DPO counts chosen and rejected), between the end of the first step and the end
of the last one (the first step pays for warm-up). Gradient accumulation is 1 in
both settings, so a step is one micro-batch of the setting's batch size. On a GPU it also
prints the model FLOPs utilisation: (6 N + 12 L d T) FLOPs per token, plus 2 N
for DPO's reference forward pass, against the device's dense bf16 peak.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

# Dense bf16 tensor-core peaks (FLOP/s) by device name fragment, from the vendors' data sheets.
PEAK_BF16 = {
    "H200": 989.4e12,
    "H100 SXM": 989.4e12,
    "H100 80GB HBM3": 989.4e12,
    "H100 NVL": 835.5e12,
    "H100 PCIe": 756.5e12,
    "H100": 756.5e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 125e12,
    "A10": 125e12,
    "RTX 4090": 165.2e12,
    "RTX 3090": 71e12,
}


def realistic_rows(n: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``n`` SFT rows and ``n`` DPO rows in the export format, built from real variants."""
    from r2ta.dataset import BuildConfig, build_variants
    from r2ta.pairs import dpo_row, sft_row
    from r2ta.prompting import make_step, render_trace
    from r2ta.records import load_base_schemas

    variants, _ = build_variants(load_base_schemas(), BuildConfig(seed=seed, n_variants=n, n_test=0,
                                                                  min_per_category=0))
    rng = random.Random(seed)
    sft, dpo = [], []
    for v in variants[:n]:
        truth = render_trace([make_step(i, m.elements, m.explanation, m.category)
                              for i, m in enumerate(v.mistakes, 1)], v.mistakes)
        # A plausible wrong answer: the first mistake's elements with a different category, no reasoning.
        wrong = v.mistakes[0].model_copy(update={"category": rng.choice(
            [c for c in ("missing_key", "cardinality", "participation") if c != v.mistakes[0].category])})
        rejected = render_trace([make_step(1, wrong.elements, "Looks wrong.", wrong.category)], [wrong])
        sft.append(sft_row(v.requirements, v.diagram, truth, {"variant_id": v.id}))
        dpo.append(dpo_row(v.requirements, v.diagram, truth, rejected, {"variant_id": v.id}))
    return sft, dpo


def _clock():
    """A TrainerCallback that records (time, tokens consumed) and the loss at every log."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks: list[tuple[float, float]] = []
            self.losses: list[float] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                self.marks.append((time.perf_counter(), float(logs["num_tokens"])))
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return Clock()


def _configs(stage: str, setting: str, recipe, precision, common: list[str], defaults_batch: int | None = None):
    from training import dpo, sft
    from training.recipe import parse_stage

    module = {"sft": sft, "dpo": dpo}[stage]
    if setting in ("project", "project-fp32", "project-all-positions", "project-fp32-all-positions"):
        # the same recipe; the precision passed in, or the LM head (_lm_head), differs
        return module, parse_stage(module.make_parser(), recipe, stage, precision, common)
    if setting == "project-unshared":  # DPO: the recipe with TRL's concatenated forward (training.shared_prefix off)
        return module, parse_stage(module.make_parser(), recipe, stage, precision, [*common, "--share_prompt", "false"])
    if setting.startswith("project+decisions"):
        weight = setting.split(":", 1)[1]
        return module, parse_stage(module.make_parser(), recipe, stage, precision,
                                   [*common, "--decision_token_weight", weight])
    if setting != "trl-defaults":  # a name this function does not know must not measure TRL's defaults instead
        raise ValueError(f"unknown setting {setting!r}")
    parser = module.make_parser()
    # Two departures from the defaults: precision (bf16 cannot start on a CPU) and max_length, since
    # TRL's 1024 keeps the start of a 1.7-2.9k-token row and cuts the answer: every row is dropped.
    args = [*common, "--model_name_or_path", recipe.model["model_name_or_path"],
            "--bf16", str(precision.bf16), "--fp16", str(precision.fp16), "--dtype", precision.dtype,
            "--max_length", str(recipe.section(stage).get("max_length", 1024))]
    if defaults_batch:
        args += ["--per_device_train_batch_size", str(defaults_batch)]
    return module, tuple(parser.parse_args_into_dataclasses(args))


@contextlib.contextmanager
def _lm_head(setting: str):
    """"project[-bf16]-all-positions": the stage runs with TRL's own LM head on a CPU (every position projected)
    instead of the labelled positions only (training.lm_head), which the stage scripts switch on."""
    if not setting.endswith("all-positions"):
        yield
        return
    from training import lm_head

    switch = lm_head.score_labelled_positions_only
    lm_head.score_all_positions()
    lm_head.score_labelled_positions_only = lambda: False
    try:
        yield
    finally:
        lm_head.score_labelled_positions_only = switch


def _measure(stage, setting, recipe, precision, data_file, steps, out_dir, defaults_batch=None,
             extra: tuple[str, ...] = ()) -> dict:
    import torch

    from transformers import AutoTokenizer

    from training.data import count_over_length, load_dataset_for
    from training.recipe import resolve_model_path

    # Gradient accumulation only sets how often the optimizer steps (cheap next to forward and backward):
    # 1 in both settings, so that a measurement is a few micro-batches of the setting's own batch size.
    common = ["--train_file", str(data_file), "--output_dir", str(out_dir / f"{stage}-{setting}"),
              "--max_steps", str(steps), "--gradient_accumulation_steps", "1",
              "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", *extra]
    module, (script_args, training_args, model_args) = _configs(stage, setting, recipe, precision, common,
                                                                defaults_batch)
    training_args.disable_tqdm = True
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model_args.model_name_or_path))
    dataset = load_dataset_for(stage, data_file)
    over, longest = count_over_length(dataset, tokenizer, training_args.max_length)
    cut_at_default, _ = count_over_length(dataset, tokenizer, 1024)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    clock = _clock()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), _lm_head(setting):  # the Trainer prints every log line
        trainer = module.main(script_args, training_args, model_args, callbacks=[clock])
    wall = time.perf_counter() - started
    (t0, n0), (t1, n1) = clock.marks[0], clock.marks[-1]
    config = trainer.model.config
    n_params = sum(p.numel() for name, p in trainer.model.named_parameters() if "lora_" not in name)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    result = {
        "stage": stage,
        "setting": setting.split(":", 1)[0],
        "rows_per_step": training_args.per_device_train_batch_size,
        "max_length": training_args.max_length,
        "lora": bool(model_args.use_peft),
        "act_ckpt": bool(training_args.gradient_checkpointing),
        "lr": training_args.learning_rate,
        "tokens_per_s": (n1 - n0) / (t1 - t0) if len(clock.marks) > 1 and t1 > t0 else n1 / wall,
        "s_per_step": wall / max(1, trainer.state.global_step),
        "first_loss": clock.losses[0] if clock.losses else None,
        "truncated_rows": over,
        "cut_at_default": cut_at_default,
        "rows": len(dataset),
        "longest": longest,
        "trainable": trainable,
        "params": n_params,
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "mean_tokens": n1 / (trainer.state.global_step * training_args.per_device_train_batch_size
                             * (2 if stage == "dpo" else 1)),
        "gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _mfu(result: dict, device_name: str) -> float | None:
    peak = next((v for k, v in PEAK_BF16.items() if k in device_name), None)
    if peak is None:
        return None
    n, layers, hidden, seq = result["params"], result["layers"], result["hidden"], result["mean_tokens"]
    per_token = 6 * n + 12 * layers * hidden * seq + (2 * n if result["stage"] == "dpo" else 0)
    return per_token * result["tokens_per_s"] / peak


def _compare(results: list[dict], stage: str, setting: str, against: str, what: str) -> None:
    """Print ``setting``'s tokens/s as a ratio of ``against``'s, both measured in this run (s/step beside;
    tokens/s counts DPO's two rows either way, and s/step includes dataset preparation)."""
    pair = {r["setting"]: r for r in results if r["stage"] == stage}
    if {setting, against} <= pair.keys():
        a, b = pair[setting], pair[against]
        print(f"{stage}: {what} runs at {a['tokens_per_s'] / b['tokens_per_s']:.2f}x the tokens/s of {against} "
              f"(s/step {a['s_per_step']:.2f} vs {b['s_per_step']:.2f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="auto",
                        help="auto (embedded on a GPU, tiny on a CPU), tiny, or embedded")
    parser.add_argument("--defaults-batch", type=int, default=None,
                        help="batch for trl-defaults instead of TRL's 8: on a CPU, 8 real rows of the embedded "
                             "model need far more memory than a laptop has (a project batch of 1 peaks at ~9 GB)")
    parser.add_argument("--steps", type=int, default=None, help="micro-batches per measurement (>= 2)")
    parser.add_argument("--rows", type=int, default=None, help="rows generated (default: enough for the steps)")
    parser.add_argument("--only", choices=("sft", "dpo"), default=None, help="measure one stage only")
    parser.add_argument("--decision-weight", type=float, default=5.0,
                        help="decision_token_weight of the project+decisions SFT setting")
    parser.add_argument("--settings", default=None,
                        help="comma-separated settings to measure (default: all that apply), e.g. project,project-fp32")
    parser.add_argument("--trl-arg", action="append", default=[], metavar="--FLAG=VALUE",
                        help="a TRL config flag for every setting, e.g. --trl-arg=--activation_checkpointing=false "
                             "(repeatable); the peak RSS printed is the whole process's, so measure one setting a run")
    parser.add_argument("--write-rows", type=Path, default=None, help="also keep the generated sft/dpo JSONL here")
    args = parser.parse_args(argv)

    from r2ta.config import models_dir
    from r2ta.pairs import write_rows
    from training import hardware
    from training.recipe import load_recipe
    from training.tiny import smoke_rows

    embedded = models_dir() / "smollm2-135m-instruct"
    model = args.model
    hw = hardware.detect_hardware()
    if model == "auto":  # the embedded model with real rows takes an hour and tens of GB on a CPU
        model = "embedded" if hw.kind != "cpu" and (embedded / "config.json").is_file() else "tiny"
    if model == "embedded" and not (embedded / "config.json").is_file():
        print(f"the embedded model is not in {embedded}; run `r2ta seed` first, or use --model tiny")
        sys.exit(0)
    recipe = load_recipe("smollm2-135m-cpu" if model == "embedded" else "tiny-cpu")
    precision = hardware.resolve_precision(recipe.run.precision, hw)  # the recipe's: the tiny one stays fp32
    known = {"project", "project-fp32", "project-all-positions", "project-fp32-all-positions", "project+decisions",
             "project-unshared", "trl-defaults"}
    wanted = {name.strip() for name in (args.settings or "").split(",") if name.strip()}
    if wanted - known:
        sys.exit(f"unknown setting(s) {', '.join(sorted(wanted - known))}; known: {', '.join(sorted(known))} "
                 "(project-fp32 only on a CPU whose auto precision is bf16)")
    steps = max(2, args.steps or (2 if model == "embedded" and hw.kind == "cpu" else 6))
    rows = args.rows or steps * 8

    print(f"device: {hw.describe()}; precision {precision.name}; model {recipe.model['model_name_or_path']}; "
          f"{steps} steps per measurement; {rows} {'realistic' if model == 'embedded' else 'smoke'} rows")
    started = time.perf_counter()
    sft_rows, dpo_rows = realistic_rows(rows) if model == "embedded" else smoke_rows(rows)
    with tempfile.TemporaryDirectory(prefix="r2ta-bench-") as tmp:
        folder = args.write_rows or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        write_rows(sft_rows, folder / "sft.jsonl")
        write_rows(dpo_rows, folder / "dpo.jsonl")
        results = []
        for stage in ("sft", "dpo"):
            if args.only and stage != args.only:
                continue
            settings = ["project", "trl-defaults"]
            if stage == "sft":
                settings.insert(1, f"project+decisions:{args.decision_weight:g}")
            else:
                settings.insert(1, "project-unshared")
            if hw.kind == "cpu" and precision.name == "bf16":  # auto's bf16 on a native-bf16 CPU, against fp32
                settings.insert(1, "project-fp32")
            if hw.kind == "cpu" and stage == "sft":
                settings.insert(1, "project-all-positions")
                if "project-fp32" in settings:
                    settings.insert(settings.index("project-fp32") + 1, "project-fp32-all-positions")
            if args.settings:
                settings = [s for s in settings if s.split(":", 1)[0] in wanted]
            for setting in settings:
                used = hardware.resolve_precision("fp32", hw) if setting.startswith("project-fp32") else precision
                result = _measure(stage, setting, recipe, used, folder / f"{stage}.jsonl", steps, Path(tmp),
                                  args.defaults_batch, tuple(args.trl_arg))
                results.append(result)
                print(f"  measured {stage} {result['setting']}: {result['tokens_per_s']:,.0f} tok/s", flush=True)

    header = (f"{'stage':5} {'setting':26} {'batch':>9} {'max_len':>7} {'LoRA':>5} {'ckpt':>5} "
              f"{'trainable':>11} {'tok/s':>9} {'s/step':>8} {'cut rows':>8} {'loss 1':>8}")
    gpu = hw.kind != "cpu"
    if gpu:
        header += f" {'MFU':>6} {'mem GB':>7}"
    print(header)
    for r in results:
        line = (f"{r['stage']:5} {r['setting']:26} {r['rows_per_step']:>9} {r['max_length']:>7} "
                f"{'yes' if r['lora'] else 'no':>5} {'yes' if r['act_ckpt'] else 'no':>5} {r['trainable']:>11,} "
                f"{r['tokens_per_s']:>9,.0f} {r['s_per_step']:>8.2f} {r['truncated_rows']:>8} "
                f"{'n/a' if r['first_loss'] is None else format(r['first_loss'], '.5f'):>8}")
        if gpu:
            mfu = _mfu(r, hw.device_name)
            line += f" {mfu:>6.1%}" if mfu is not None else f" {'n/a':>6}"
            line += f" {r['gpu_mem_gb']:>7.1f}"
        print(line)
    for stage in ("sft", "dpo"):
        _compare(results, stage, "project", "trl-defaults", "the project's recipe")
        _compare(results, stage, "project", "project-fp32", "the recipe in bf16 (auto's choice on this CPU)")
        _compare(results, stage, "project", "project-all-positions",
                 "the recipe (LM head on the labelled positions only)")
        _compare(results, stage, "project-fp32", "project-fp32-all-positions",
                 "the recipe in fp32 (LM head on the labelled positions only)")
    project_dpo = next((r for r in results if r["stage"] == "dpo" and r["setting"] == "project"), None)
    if project_dpo is not None and (project_dpo["rows_per_step"] != 1 or project_dpo["act_ckpt"]):
        print("dpo: share_prompt works on one pair a step without activation checkpointing; this recipe trains "
              f"{project_dpo['rows_per_step']} a step, so project and project-unshared ran the same forward")
    else:
        _compare(results, "dpo", "project", "project-unshared", "the shared start encoded once (share_prompt)")
    _compare(results, "sft", "project+decisions", "project", f"decision_token_weight {args.decision_weight:g}")
    if gpu and not any(k in hw.device_name for k in PEAK_BF16):
        print(f"MFU: no peak FLOP/s known for {hw.device_name}")
    print(f"longest row {max((r['longest'] for r in results), default=0)} tokens; TRL's default max_length 1024 "
          f"would cut the answer of {max((r['cut_at_default'] for r in results), default=0)} of "
          f"{max((r['rows'] for r in results), default=0)} rows, so trl-defaults runs with the recipe's max_length")
    if args.defaults_batch:
        print(f"trl-defaults batch set to {args.defaults_batch} by --defaults-batch (TRL's default is 8)")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_rss:,.0f} MB; wall {time.perf_counter() - started:,.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
