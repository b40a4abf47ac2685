"""Denser training rows: more planted mistakes per variant, so that the usual fact is not usual.

Why: run64n (``docs/measured/loop-run64n-disguised-2026-12-06.txt``) showed that SFT on
evidence walks teaches the *usual* fact per construct kind — "an entity has a key",
"a relationship has 2 ends" — because in the drawn rows (1-3 mistakes among ~25
constructs) a construct's facts are the usual ones ~96 % of the time. The trained model
then reads lines that *lack* a key, an end or role names worse than the untrained one.
A row with many mistakes, several of one kind (two entities without a key, a relationship
with one end and another without roles), makes "copy what the line says" the only way to
predict the walk's facts.

:func:`densify_variants` adds mutations to the rows of one split until each has
``total`` mistakes (or no operator applies any more). Unlike the first draw, a category
may repeat. Each added mutation avoids the elements earlier mistakes named and must
introduce only its own finding without changing any earlier one (the operators' own
``_introduces_only`` check), and the finished row passes the same check the build uses:
every checker finding is explained by the ground truth. The other split is left
byte-for-byte as built, so a dense training set is evaluated on the usual test rows.

Measured (run64m, docs/measured/loop-run64m-dense-rows-2026-12-06.txt; 10 mistakes per train
row, removals first): teacher-forced, the model trained on dense rows reads 10 of 18 lines
that lack something (run64e 3, the untrained model 7) and keeps 92 % of sound facts; but
generating, it flags about half of the constructs it walks to, wrong and right alike — the
rate of its rows (half their steps find a mistake). No shipped recipe or default uses it.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Literal

from r2ta.checker import check
from r2ta.errors import DatasetError
from r2ta.mutations import OPERATORS, Operator
from r2ta.records import Variant

DenseSplit = Literal["train", "test", "all"]
MAX_TOTAL_MISTAKES = 20
MAX_PER_OPERATOR = 3  # so that a favoured removal does not make "key none" the new usual fact

# Operators whose mistake *removes* a fact a construct's line usually states: a key, a partial key,
# an end, role names, a superclass, a stated constraint. These are the absences run64n's model
# overwrote with the usual fact ("lacks" in scripts/fact_preference.py).
REMOVAL_OPERATORS = frozenset(
    {
        "drop_key",
        "weak_without_partial_key",
        "drop_participant",
        "recursive_roles_dropped",
        "category_single_superclass",
        "specialization_superclass_removed",
        "drop_completeness",
        "drop_disjointness",
    }
)


def _findings_explained(diagram, mistakes) -> bool:
    from r2ta.dataset import findings_explained

    return findings_explained(check(diagram), mistakes)


def densify_variant(variant: Variant, total: int, seed: int, favour: frozenset[str] = frozenset()) -> Variant:
    """``variant`` with mutations added until it holds ``total`` mistakes (fewer if none applies).

    The order of operators is random but favours operators this row has not used yet, so a
    dense row mixes kinds before it repeats one; operators named in ``favour`` are tried before
    all others (up to :data:`MAX_PER_OPERATOR` times each). Deterministic for a given
    (variant id, seed, favour).
    """
    if len(variant.mistakes) >= total:
        return variant
    rng = random.Random(f"densify:{seed}:{variant.id}")
    diagram = variant.diagram
    mistakes = list(variant.mistakes)
    avoid: frozenset[str] = frozenset(e for m in mistakes for e in m.elements)
    used: Counter = Counter(m.operator or "?" for m in mistakes)
    exhausted: set[str] = set()
    while len(mistakes) < total:
        ops: list[Operator] = [
            o for o in OPERATORS if o.name not in exhausted and used[o.name] < MAX_PER_OPERATOR
        ]
        if not ops:
            break
        rng.shuffle(ops)
        ops.sort(key=lambda o: (o.name not in favour, used[o.name]))  # stable: random within a rank
        for op in ops:
            m = op.apply(diagram, random.Random(rng.getrandbits(64)), avoid)
            if m is None:
                exhausted.add(op.name)
                continue
            trial = [*mistakes, m.mistake]
            if not _findings_explained(m.diagram, trial):
                exhausted.add(op.name)
                continue
            diagram, mistakes = m.diagram, trial
            avoid = avoid | m.touched | frozenset(m.mistake.elements)
            used[op.name] += 1
            break
        else:
            break  # no operator applies any more: the row keeps what it has
    return variant.model_copy(update={"diagram": diagram, "mistakes": mistakes})


def densify_variants(
    variants: list[Variant], split: DenseSplit, total: int, seed: int, favour: frozenset[str] = frozenset()
) -> list[Variant]:
    """Densify the rows of ``split`` ("train", "test" or "all") to ``total`` mistakes each."""
    if split not in ("train", "test", "all"):
        raise DatasetError(f"unknown split to densify {split!r}; use train, test or all")
    if not 1 <= total <= MAX_TOTAL_MISTAKES:
        raise DatasetError(f"mistakes per row must be between 1 and {MAX_TOTAL_MISTAKES}, got {total}")
    from r2ta.mutations import OPERATORS_BY_NAME

    unknown = sorted(set(favour) - set(OPERATORS_BY_NAME))
    if unknown:
        raise DatasetError(f"unknown mutation operators to favour: {', '.join(unknown)}")
    out = []
    for v in variants:
        if split == "all" or v.split == split:
            v = densify_variant(v, total, seed, favour)
        out.append(v)
    return out
