"""The model card (README.md) written beside every artefact of a run: base model, data, recipe, metrics.

It is plain Markdown with the Hugging Face front matter (``base_model``,
``library_name``, ``tags``), so the folder is a standard model repository.
"""

from __future__ import annotations

import json


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return "" if value is None else str(value)


def render_model_card(
    *,
    title: str,
    artefact: str,
    base_model: str,
    base_model_path: str,
    recipe_name: str,
    recipe_text: str,
    data_files: list[dict],
    metrics: dict,
    hardware: dict,
    precision: str,
    use_peft: bool,
    reproduce: str,
    created_at: str,
    resumed: str | None = None,
    sft_from: str | None = None,
) -> str:
    """The card for one artefact (``sft``, ``dpo``, ``merged`` or the run as a whole)."""
    library = "peft" if use_peft and artefact in ("sft", "dpo") else "transformers"
    lines = [
        "---",
        f"base_model: {json.dumps(base_model_path)}",
        f"library_name: {library}",
        "pipeline_tag: text-generation",
        "tags: [r2ta, eerd, trl, sft, dpo" + (", lora" if use_peft else "") + "]",
        "---",
        "",
        f"# {title}",
        "",
        "An EER-diagram auditor trained by R2tA Studio (Reason-Refine-then-Align): supervised fine-tuning",
        "on educator-reviewed reasoning traces, then DPO on (reviewed trace, rejected trace) pairs,",
        "starting from the SFT result. " + _rejected_text(data_files),
        "",
        "## What this folder holds",
        "",
        _artefact_text(artefact, use_peft),
        "",
        "## Base model",
        "",
        f"- recipe name: `{base_model}`",
        f"- loaded from: `{base_model_path}`",
        "",
        "## Data",
        "",
        "| stage | rows | sha256 | file |",
        "| --- | ---: | --- | --- |",
    ]
    for item in data_files:
        lines.append(f"| {item['stage']} | {item['rows']} | `{item['sha256'][:16]}…` | `{item['path']}` |")
    lines += [
        "",
        "## Training",
        "",
        f"- recipe: `{recipe_name}` (below, as used)",
        f"- hardware: {hardware.get('description', '')}; precision {precision}",
        f"- created: {created_at}",
        *([f"- resumed: {resumed}; the Trainer restored weights, optimizer, scheduler, random state and step "
           "from the checkpoint, so the result is the uninterrupted run's. A resumed stage's wall time and "
           "tokens/s are this run's own steps; a stage carried over shows the earlier run's figures."]
          if resumed else []),
        *([f"- SFT: run {sft_from}'s SFT stage, carried over as it was saved (its data, adapter and figures); only "
           "DPO was trained in this run, from that adapter, with the recipe below"] if sft_from else []),
        "",
        "| stage | steps | final loss | mean loss | reward margin | reward accuracy | tokens/s | wall s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for stage in ("sft", "dpo"):
        m = metrics.get(stage)
        if not m:
            continue
        lines.append(
            "| " + " | ".join(
                [stage]
                + [_fmt(m.get(k)) for k in ("steps", "final_loss", "train_loss", "reward_margin",
                                            "reward_accuracy", "tokens_per_s", "wall_s", "peak_rss_mb")]
            ) + " |"
        )
    lines += [
        "",
        "Reproduce (same data, recipe and settings):",
        "",
        "```bash",
        reproduce,
        "```",
        "",
        "## Recipe",
        "",
        "```yaml",
        recipe_text.rstrip(),
        "```",
        "",
        "## Limits",
        "",
        "Trained on synthetic mutations of hand-written diagrams; scores on the held-out test split are",
        "reported by `r2ta eval`, not here. The model proposes mistakes for a teacher to confirm.",
        "",
    ]
    return "\n".join(lines)


def _rejected_text(data_files: list[dict]) -> str:
    """Where the DPO pairs' rejected traces came from: the model's own output or a planted error."""
    sources = next((d.get("rejected_sources") for d in data_files if d.get("stage") == "dpo"), None)
    if not sources:
        return "The rejected trace of each pair is the model's original output."
    parts = [f"{n} {_source_words(s)}"
             for s, n in sources.items()]
    return "Rejected traces: " + ", ".join(parts) + " (see r2ta.negatives)."


def _source_words(source: str) -> str:
    return "the model's original output" if source == "model" else source.replace("planted:", "a planted ")


def _artefact_text(artefact: str, use_peft: bool) -> str:
    if artefact == "run":
        if use_peft:
            return (
                "The whole run: `sft/` (LoRA adapter after SFT), `dpo/` (LoRA adapter after SFT + DPO, the final "
                "model), `merged/` (the base with the final adapter merged in, if saved), `progress.jsonl`, "
                "`status.json`, `train.log`."
            )
        return "The whole run: `sft/` (full weights after SFT), `dpo/` (full weights after DPO, the final model)."
    if artefact == "merged":
        return "Standalone weights: the base model with the final (SFT + DPO) LoRA adapter merged in."
    if not use_peft:
        return f"Full weights after the {artefact.upper()} stage."
    if artefact == "sft":
        return "A LoRA adapter for the base model after SFT. Load it with `peft.PeftModel.from_pretrained(base, path)`."
    return (
        "A LoRA adapter for the base model after SFT then DPO: DPO continued training the SFT adapter against a "
        "frozen copy of it (the reference policy), so this one adapter holds both stages. Load it with "
        "`peft.PeftModel.from_pretrained(base, path)`."
    )
