"""One DPO measurement in a process of its own (so its peak RSS is that setting's): the CPU recipe, one pair a step.

    python scripts/dpo_step_probe.py dpo.jsonl OUT_DIR                       # the recipe (share_prompt)
    python scripts/dpo_step_probe.py dpo.jsonl OUT_DIR --share_prompt false  # TRL's concatenated forward
    python scripts/dpo_step_probe.py dpo.jsonl OUT_DIR --share_prompt false --activation_checkpointing true
    python scripts/dpo_step_probe.py dpo.jsonl OUT_DIR --recipe tiny-cpu                # another recipe

Runs ``training.dpo.main`` on the ``smollm2-135m-cpu`` recipe (or ``--recipe NAME``) for 4 steps (gradient
accumulation 1, any further arguments passed on to the parser) and prints one JSON line: seconds per step and tokens/s after
the first step, wall time, peak RSS, and the logged losses, margins and chosen log-probs (which must
agree across settings). docs/measured/dpo-shared-prompt-2026-12-05.txt was made with it.
"""

import contextlib
import io
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_training import _clock  # noqa: E402
from training import dpo, hardware  # noqa: E402
from training.recipe import load_recipe, parse_stage  # noqa: E402


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    data, out, extra = argv[0], argv[1], argv[2:]
    name = "smollm2-135m-cpu"
    if "--recipe" in extra:
        at = extra.index("--recipe")
        name, extra = extra[at + 1], extra[:at] + extra[at + 2:]
    recipe = load_recipe(name)
    precision = hardware.resolve_precision("auto", hardware.detect_hardware())
    args = parse_stage(dpo.make_parser(), recipe, "dpo", precision,
                       ["--train_file", data, "--output_dir", out, "--max_steps", "4", "--gradient_accumulation_steps", "1",
                        "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", *extra])
    args[1].disable_tqdm = True
    clock = _clock()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = dpo.main(*args, callbacks=[clock])
    wall = time.perf_counter() - started
    (t0, n0), (t1, n1) = clock.marks[0], clock.marks[-1]
    logs = [h for h in trainer.state.log_history if "loss" in h]
    print(json.dumps({
        "extra": " ".join(extra), "share": args[1].share_prompt, "ckpt": bool(args[1].gradient_checkpointing),
        "tok_s_after_step1": round((n1 - n0) / (t1 - t0), 1),
        "s_per_step_after_step1": round((t1 - t0) / (len(clock.marks) - 1), 1),
        "wall_s": round(wall, 1), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "losses": [round(h["loss"], 5) for h in logs], "margins": [round(h["rewards/margins"], 5) for h in logs],
        "logps_chosen": [round(h["logps/chosen"], 3) for h in logs],
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
