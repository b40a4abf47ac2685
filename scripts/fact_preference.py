"""Teacher-forced: at a construct whose facts show a planted defect, does a model read the line or recall the schema?

    R2TA_DATA_DIR=DATA python scripts/fact_preference.py [--split test] [--limit 50] BASE_MODEL_DIR [ADAPTER_DIR ...]

For each of the first ``--limit`` variants of the split, the evidence walk of its true verdict
(:func:`r2ta.audit.walk_steps` with ``evidence=True``) is fed after the variant's prompt up to a step
whose construct's facts (:func:`r2ta.audit.construct_evidence`) differ from the same construct's facts in
the variant's *base schema* — the correct diagram the mistake was planted in (``key none`` here,
``key Airport_code`` there). At the first token where the two fact strings part, the model's
probability of the diagram's token is compared with that of the base schema's: a model that reads the
line prefers the first, one that recites the schema the second. Prints, for the base model and each
LoRA adapter, how many constructs prefer the diagram's token and the mean of each probability, split into
constructs whose line *lacks* something the schema has (``key none``, ``1 end``) and the others.
``--no-requirements`` gives every prompt "(not given)" for requirements: the narrative describes the
correct design, so a fact the model takes from it rather than from the diagram line moves when it is gone.
``--disguised``: the data folder was built with ``r2ta dataset build --disguise``; each base schema is
compared under the row's own renaming (r2ta.disguise.renaming_for).
``--sound``: the mirror — at constructs whose facts *are* the base schema's and state a key, an end or
role names, the diagram's fact against the same facts with that removed (``key Ssn`` vs ``key none``): a
model that reads prefers the diagram's in both probes; one that learnt to write defects everywhere
(run64m, dense rows) loses here (one forward pass per variant).
No generation: one forward pass per construct. Used for docs/measured/loop-run64e-evidence-2026-12-06.txt
and loop-run64n-disguised-2026-12-06.txt.

``--decisions``: the other half — given the *right* facts, does the decision follow them? The evidence walk
that finds nothing (every construct's true facts, ``-> ok``) is fed whole (one forward pass per variant);
right after each step's facts the model chooses between ``.`` (an explanation follows: a mistake) and
`` ->`` (``-> ok``). P(flag) = P(.) / (P(.) + P( ->)).
Prints the AUC of P(flag) between constructs a real mistake is anchored on and the others, and between
constructs whose facts show a defect (:func:`r2ta.audit.shows_defect`) and the others.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import torch
from peft import PeftModel
from sqlmodel import Session, select
from transformers import AutoModelForCausalLM, AutoTokenizer

from db.engine import get_engine
from db.models import VariantRow
from r2ta.audit import anchor, construct_evidence, constructs, shows_defect, walk_steps
from r2ta.pipeline import _diagram, _truth
from r2ta.prompting import build_messages, render_step, render_trace
from r2ta.records import load_base_schemas
from r2ta.walk_probe import auc


NO_REQUIREMENTS = "(not given)"


def same_but_order(mine: str, theirs: str) -> bool:
    """'subclass of B, A' vs 'subclass of A, B': a disguised row's shuffled constructs reorder names, nothing else."""
    parts = lambda facts: sorted(p.strip().removeprefix("subclass of ") for p in re.split(r"[,;]", facts))  # noqa: E731
    return parts(mine) == parts(theirs)


def lacks(mine: str, theirs: str) -> bool:
    """The diagram's facts lack something the base schema's have (a key, an end, role names, a superclass,
    a stated constraint) rather than saying something else (a flag, a keyword, another name)."""
    if "none" in mine and "none" not in theirs:
        return True
    if mine.startswith(("1 end", "1 superclass")) or "no roles" in mine or "not stated" in mine:
        return True
    sup = lambda facts: len(facts.split(";")[0].split(","))  # noqa: E731  "subclass of A, B; ..."
    return mine.startswith("subclass of") and theirs.startswith("subclass of") and sup(mine) < sup(theirs)


def disguised_bases(variants) -> dict[str, object]:
    """Variant id -> its base schema under the variant's own renaming, for a dataset built with --disguise
    (rebuilt from the dataset's manifest: the word map is derived from the original row)."""
    import json

    from r2ta import config
    from r2ta.dataset import BuildConfig, build_variants
    from r2ta.disguise import rename_diagram, renaming_for

    manifest = json.loads((config.dataset_dir() / "manifest.json").read_text())
    if manifest.get("disguise", "none") == "none":
        sys.exit("--disguised: this data folder's dataset was built without --disguise")
    cfg = BuildConfig(seed=manifest["seed"], n_variants=manifest["variants"], n_test=manifest["splits"].get("test", 150),
                      split_by=manifest["split_by"], densify=manifest.get("densify", "none"),
                      dense_mistakes=manifest.get("dense_mistakes", 8),
                      dense_removals=manifest.get("dense_removals", False))
    originals = {v.id: v for v in build_variants(load_base_schemas(), cfg)[0]}
    bases = {b.id: b.diagram for b in load_base_schemas()}
    return {v.id: rename_diagram(bases[v.base_id], renaming_for(originals[v.id], cfg.seed)) for v in variants}


def first_steps(diagram, steps):
    """(index, construct) of each step that is the first to name a construct of the diagram first."""
    walk, seen = constructs(diagram), set()
    for n, step in enumerate(steps):
        first = step.element_ids[0] if step.element_ids else None
        k = next((c for c in walk if c.id == first), None)
        if k is not None and k.id not in seen:
            seen.add(k.id)
            yield n, k


def parting(tok, prompt: str, lines: list[str], n: int, mine: str, other: str):
    """Step ``n``'s header after the walk so far, continued with each fact string: both token lists and the
    index of the first token where they part (None when one is a prefix of the other)."""
    head = prompt + "\n".join(lines[:n] + [lines[n].split("]: ")[0] + "]:"])
    a = tok(head + " " + mine, add_special_tokens=False)["input_ids"]
    b = tok(head + " " + other, add_special_tokens=False)["input_ids"]
    return a, b, next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def cases(tok, variants, requirements: bool = True, disguised: bool = False) -> list[tuple[list[int], int, int, str, bool]]:
    """(context ids, the diagram's token, the base schema's token, a label, lacks?) per construct whose facts differ."""
    bases = {b.id: b.diagram for b in load_base_schemas()}
    renamed = disguised_bases(variants) if disguised else {}
    out = []
    for v in variants:
        diagram, base = _diagram(v), renamed.get(v.id) or bases.get(v.base_id)
        if base is None:
            continue
        base_facts = {k.id: construct_evidence(base, k) for k in constructs(base)}
        text = v.requirements if requirements else NO_REQUIREMENTS
        prompt = tok.apply_chat_template(build_messages(text, diagram), tokenize=False, add_generation_prompt=True)
        steps = walk_steps(diagram, _truth(v), evidence=True)
        lines = [render_step(s) for s in steps]
        for n, k in first_steps(diagram, steps):
            mine, theirs = construct_evidence(diagram, k), base_facts.get(k.id)
            if theirs is None or theirs == mine or same_but_order(mine, theirs):
                continue
            a, b, cut = parting(tok, prompt, lines, n, mine, theirs)
            if cut is None:  # one fact is a prefix of the other ("...; disjoint" vs "...; disjoint; total")
                continue
            out.append((a[:cut], a[cut], b[cut], f"{v.id} {k.id}: {mine!r} vs {theirs!r}", lacks(mine, theirs)))
    return out


def removed(facts: str) -> str | None:
    """The facts with the thing a removal mutation takes away gone: a key, a partial key, an end, role names."""
    for pattern, repl in ((r"^key (?!none\b)[^;.]+", "key none"), (r"partial key (?!none\b)[^;.]+", "partial key none"),
                          (r"roles [^;.]+", "no roles"), (r"^2 ends", "1 end")):
        if re.search(pattern, facts):
            return re.sub(pattern, repl, facts, count=1)
    return None


def sound_cases(tok, variants) -> list[tuple[list[int], list[tuple[int, int, int, str]]]]:
    """The mirror of :func:`cases`: per variant, its prompt and true evidence walk's ids (one forward pass), and
    per construct whose facts are the base schema's and state a key, an end or role names, (position, the
    diagram's token, the token of the same facts with that thing removed, a label). A model that prefers
    ``key none`` at lines that lack a key only because it now writes ``key none`` everywhere loses here."""
    bases = {b.id: b.diagram for b in load_base_schemas()}
    out = []
    for v in variants:
        diagram, base = _diagram(v), bases.get(v.base_id)
        if base is None:
            continue
        base_facts = {k.id: construct_evidence(base, k) for k in constructs(base)}
        prompt = tok.apply_chat_template(build_messages(v.requirements, diagram), tokenize=False, add_generation_prompt=True)
        steps = walk_steps(diagram, _truth(v), evidence=True)
        lines = [render_step(s) for s in steps]
        full = tok(prompt + "\n".join(lines), add_special_tokens=False)["input_ids"]
        points = []
        for n, k in first_steps(diagram, steps):
            mine = construct_evidence(diagram, k)
            alt = removed(mine)
            if alt is None or base_facts.get(k.id) != mine:
                continue
            a, b, cut = parting(tok, prompt, lines, n, mine, alt)
            if cut is None or full[: cut + 1] != a[: cut + 1]:  # the one pass must see the same tokens
                continue
            points.append((cut, a[cut], b[cut], f"{v.id} {k.id}: {mine!r} vs {alt!r}"))
        out.append((full, points))
    return out


def sound(model, cases, show: bool) -> str:
    keeps, n = 0, 0
    for ids, points in cases:
        if not points:
            continue
        with torch.inference_mode():
            logits = model(torch.tensor([ids])).logits[0].float()
        for cut, mine, alt, label in points:
            p = torch.softmax(logits[cut - 1], -1)
            keeps += p[mine].item() > p[alt].item()
            n += 1
            if show:
                print(f"  {label}: {p[mine].item():.3f} vs {p[alt].item():.3f}")
    return f"keeps the diagram's fact at {keeps} of {n} sound constructs"


def decision_cases(tok, variants) -> list[tuple[list[int], list[tuple[int, int, bool, bool]]]]:
    """Per variant: the prompt and all-ok evidence walk's ids, and per construct step (index of the token right
    after its facts, the token written there, wrong construct?, facts show a defect?)."""
    dot, arrow = (tok(x, add_special_tokens=False)["input_ids"][-1] for x in ("key none.", "key none ->"))
    out = []
    for v in variants:
        diagram, truth = _diagram(v), _truth(v)
        walk = constructs(diagram)
        wrong = {anchor(m, walk) for m in truth} - {None}
        # the all-ok evidence walk (as r2ta.walk_probe feeds the all-ok walk): a mistake step's header would
        # name the mistake's other elements too and give the decision away
        steps = walk_steps(diagram, [], evidence=True)
        prompt = tok.apply_chat_template(build_messages(v.requirements, diagram), tokenize=False, add_generation_prompt=True)
        answer = render_trace(steps, [])
        enc = tok(prompt + answer, add_special_tokens=False, return_offsets_mapping=True)
        starts = {s: i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s}
        points, at = [], len(prompt)
        for step in steps:
            k = next((i for i, c in enumerate(walk) if step.element_ids and c.id == step.element_ids[0]), None)
            line = render_step(step)
            begin = answer.index(line, at - len(prompt)) + len(prompt)
            at = begin + len(line)
            if k is None:
                continue
            facts = construct_evidence(diagram, walk[k])
            i = starts.get(line.index("]: ") + 3 + len(facts) + begin)
            if i is None or enc["input_ids"][i] not in (dot, arrow):
                continue
            points.append((i, enc["input_ids"][i], k in wrong, shows_defect(facts)))
        out.append((enc["input_ids"], points))
    return out


def decisions(model, cases, dot: int, arrow: int) -> str:
    flag = {True: [], False: []}
    defect = {True: [], False: []}
    for ids, points in cases:
        with torch.inference_mode():
            logits = model(torch.tensor([ids])).logits[0].float()
        for i, _, is_wrong, shows in points:
            p = torch.softmax(logits[i - 1], -1)
            f = (p[dot] / (p[dot] + p[arrow])).item()
            flag[is_wrong].append(f)
            defect[shows].append(f)
    mean = lambda xs: sum(xs) / max(len(xs), 1)  # noqa: E731
    return (f"P(flag) at wrong constructs {mean(flag[True]):.3f} (n {len(flag[True])}), right {mean(flag[False]):.3f} "
            f"(n {len(flag[False])}), AUC {auc(flag[True], flag[False]):.3f}; facts showing a defect "
            f"{mean(defect[True]):.3f} (n {len(defect[True])}), others {mean(defect[False]):.3f}, "
            f"AUC {auc(defect[True], defect[False]):.3f}")


def models(base_dir: str, adapters: list[str]):
    """("base", the base model), then (adapter, base + that LoRA adapter) for each, fp32, in eval mode."""
    for adapter in [None, *adapters]:
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        yield adapter or "base", (PeftModel.from_pretrained(model, adapter) if adapter else model).eval()


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base_dir")
    ap.add_argument("adapters", nargs="*")
    ap.add_argument("--split", default="test", choices=("train", "test"))
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--show", action="store_true", help="print each construct's two probabilities")
    ap.add_argument("--no-requirements", action="store_true",
                    help=f"replace each prompt's requirements with {NO_REQUIREMENTS!r}: is a fact read off the "
                    "narrative (which describes the correct design) rather than the diagram line?")
    ap.add_argument("--disguised", action="store_true",
                    help="the data folder's dataset was built with --disguise: compare with each base schema "
                    "under the row's own renaming")
    ap.add_argument("--sound", action="store_true",
                    help="instead: at constructs whose facts are the base schema's, the diagram's fact vs the same "
                    "with its key, end or role names removed (does the model now write the defect everywhere?)")
    ap.add_argument("--decisions", action="store_true",
                    help="instead: P(flag) right after each construct's true facts, wrong vs right constructs")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(args.base_dir)
    with Session(get_engine()) as session:
        variants = list(session.exec(select(VariantRow).where(VariantRow.split == args.split)
                                     .order_by(VariantRow.id).limit(args.limit)))
    if not variants:
        sys.exit(f"no {args.split} variants in this database (R2TA_DATA_DIR / R2TA_DATABASE_URL)")
    if args.sound:
        todo_s = sound_cases(tok, variants)
        print(f"{sum(len(p) for _, p in todo_s)} sound constructs stating a key, an end or roles in "
              f"{len(variants)} {args.split} variants")
        for name, model in models(args.base_dir, args.adapters):
            t0 = time.time()
            print(f"{name}: {sound(model, todo_s, args.show)}; {time.time() - t0:.0f} s", flush=True)
        return
    if args.decisions:
        dot, arrow = (tok(x, add_special_tokens=False)["input_ids"][-1] for x in ("key none.", "key none ->"))
        todo_d = decision_cases(tok, variants)
        print(f"{sum(len(p) for _, p in todo_d)} construct decisions in {len(variants)} {args.split} variants")
        for name, model in models(args.base_dir, args.adapters):
            t0 = time.time()
            print(f"{name}: {decisions(model, todo_d, dot, arrow)}; {time.time() - t0:.0f} s", flush=True)
        return
    todo = cases(tok, variants, requirements=not args.no_requirements, disguised=args.disguised)
    print(f"{len(todo)} constructs whose facts differ from the base schema's, in {len(variants)} {args.split} variants")
    for name, model in models(args.base_dir, args.adapters):
        t0, reads, p_mine, p_theirs, by_kind = time.time(), 0, [], [], {True: [0, 0], False: [0, 0]}
        for context, mine, theirs, label, lacking in todo:
            with torch.inference_mode():
                logits = model(torch.tensor([context]), logits_to_keep=1).logits[0, -1].float()
            p = torch.softmax(logits, -1)
            p_mine.append(p[mine].item())
            p_theirs.append(p[theirs].item())
            reads += p_mine[-1] > p_theirs[-1]
            by_kind[lacking][0] += p_mine[-1] > p_theirs[-1]
            by_kind[lacking][1] += 1
            if args.show:
                print(f"  {label}: {p_mine[-1]:.3f} vs {p_theirs[-1]:.3f}")
        n = max(len(todo), 1)
        print(f"{name}: prefers the diagram's fact in {reads} of {len(todo)}; mean P diagram's {sum(p_mine) / n:.3f}, "
              f"base schema's {sum(p_theirs) / n:.3f}; where the line lacks something {by_kind[True][0]} of "
              f"{by_kind[True][1]}, where it says something else {by_kind[False][0]} of {by_kind[False][1]}; "
              f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
