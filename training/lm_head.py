"""On a CPU, TRL's fused LM head projects only the positions that carry a label.

TRL's SFT and DPO trainers call ``model(..., labels=..., fused_lm_head=True)``
(``trl.trainer.utils.add_fused_lm_head``): the backbone runs, then the LM head and the
log-softmax over the vocabulary run in tiles, without the full logits. On CUDA/XPU
with Triton the tiles hold only the positions whose next token has a label; anywhere
else TRL scores *every* position and zeroes the unlabelled ones afterwards, because a
compiled backend (Neuron) would recompile for each new count of labelled positions.

A CPU runs eagerly and never recompiles, so that reason does not hold there, and the
cost is large for R2tA's rows: an SFT row is a 1,200-2,100-token prompt (system
message, requirements, compact diagram) and a 200-450-token answer, and only the
answer carries labels. The head (576 x 49,152 on the embedded model) and its
log-softmax are a fifth of the model's FLOPs per position, so ~4 in 5 of that work
was thrown away.

:func:`score_labelled_positions_only` makes TRL take its own compact path on a CPU:
the same ``ChunkedLogProbFunction`` over ``hidden_states[mask]``, the same torch tiles
(the kernels' own choice of Triton is untouched). The log-probabilities and
gradients are the full path's at the labelled positions and zero elsewhere
(tests/test_lm_head.py compares both in float64). DPO's shared-prompt forward
(:mod:`training.shared_prefix`) already scores labelled positions only; this covers
SFT, the decision-weighted SFT and DPO batches that forward does not take.

``python -m benchmarks.bench_training --settings project,project-all-positions`` measures
both in one run.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("r2ta.training")

_MARK = "_r2ta_compact_on_cpu"


def _trl_utils():
    import trl.trainer.utils as trl_utils

    return trl_utils


def score_labelled_positions_only() -> bool:
    """Make TRL's fused LM head score only labelled positions on a CPU (idempotent). Returns whether it is in
    effect: False when this TRL has no such switch (then TRL's own behaviour stands, and a warning says so)."""
    trl_utils = _trl_utils()
    original = getattr(trl_utils, "_use_triton", None)
    if original is None or not callable(original):
        logger.warning("this TRL has no trl.trainer.utils._use_triton: its fused LM head scores every position "
                       "on a CPU (slower, same result)")
        return False
    if getattr(original, _MARK, False):
        return True

    def compact(device) -> bool:
        return device.type == "cpu" or original(device)

    setattr(compact, _MARK, True)
    compact.original = original
    trl_utils._use_triton = compact
    return True


def score_all_positions() -> None:
    """Undo :func:`score_labelled_positions_only` (TRL's own behaviour; the benchmark's comparison)."""
    trl_utils = _trl_utils()
    current = getattr(trl_utils, "_use_triton", None)
    if getattr(current, _MARK, False):
        trl_utils._use_triton = current.original
