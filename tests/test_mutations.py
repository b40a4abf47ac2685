"""Mutation operators: each induces exactly its own mistake, deterministically, without touching its input."""

from __future__ import annotations

import random
import re

import pytest

from fixtures_eerd import FIXTURES
from r2ta.checker import check
from r2ta.eerd import CATEGORIES, CATEGORY_EVIDENCE, EERD, diagram_from_json, diagram_to_json
from r2ta.errors import DatasetError
from r2ta.mutations import OPERATORS, Mutation, Operator, get_operator, operators_for
from r2ta.records import load_base_schemas


def _diagrams() -> dict[str, EERD]:
    out = {name: make() for name, make in sorted(FIXTURES.items())}
    try:
        for s in load_base_schemas():
            out[s.id] = s.diagram
    except DatasetError:  # no base schemas written yet: the fixtures still exercise every operator
        pass
    return out


DIAGRAMS = _diagrams()
SEEDS = (0, 1, 2)


def _matches(finding, truth) -> bool:
    return finding.category == truth.category and bool(set(finding.elements) & set(truth.elements))


def _assert_sound(op: Operator, original: EERD, m: Mutation) -> None:
    d = m.diagram
    # the output is a valid diagram and survives the canonical round trip
    text = diagram_to_json(d)
    assert diagram_to_json(diagram_from_json(text)) == text
    assert text != diagram_to_json(original), "the mutation changed nothing"
    # the ground truth
    t = m.mistake
    assert t.category == op.category and t.operator == op.name
    assert t.elements and len(t.explanation) > 30 and t.explanation.endswith(".")
    ids = set(d.element_ids())
    assert set(t.elements) <= ids, f"ground-truth ids missing from the mutated diagram: {set(t.elements) - ids}"
    assert set(t.elements) <= m.touched
    # explanations name elements by their display names: ids that differ from names never show
    hidden = {e.id for e in [*original.entities, *original.relationships] if e.id != e.name}
    assert not any(re.search(rf"(?<![\w.]){re.escape(h)}(?![\w.])", t.explanation) for h in hidden), t.explanation
    # the checker sees exactly this mistake, or (requirements evidence) nothing at all
    findings = check(d)
    if op.structural:
        assert findings, f"{op.name} made a structural mistake the checker does not see"
        assert all(_matches(f, t) for f in findings), [(f.category, f.elements) for f in findings]
    else:
        assert findings == [], [(f.category, f.elements, f.explanation) for f in findings]


CASES = [(op, name) for op in OPERATORS for name in DIAGRAMS]


@pytest.mark.parametrize("op,name", CASES, ids=[f"{op.name}-{name}" for op, name in CASES])
def test_operator_on_diagram(op: Operator, name: str):
    original = DIAGRAMS[name]
    before = diagram_to_json(original)
    results = []
    for seed in SEEDS:
        m = op.apply(original, random.Random(seed), frozenset())
        assert diagram_to_json(original) == before, "the input diagram was modified"
        if m is not None:
            _assert_sound(op, original, m)
        results.append(m)
    # determinism: the same seed gives the same diagram and ground truth
    again = op.apply(original, random.Random(SEEDS[0]), frozenset())
    if results[0] is None:
        assert again is None
    else:
        assert diagram_to_json(again.diagram) == diagram_to_json(results[0].diagram)
        assert again.mistake == results[0].mistake and again.touched == results[0].touched


def test_every_operator_applies_somewhere_and_every_category_has_operators():
    for op in OPERATORS:
        assert any(op.apply(d, random.Random(0)) for d in DIAGRAMS.values()), f"{op.name} never applies"
    for cat in CATEGORIES:
        assert operators_for(cat), cat
    assert len({op.name for op in OPERATORS}) == len(OPERATORS)


def test_every_operator_applies_to_the_company_fixture():
    """The fixture has one of everything; an operator that stops applying has become too picky."""
    d = DIAGRAMS["company_fixture"]
    assert [op.name for op in OPERATORS if op.apply(d, random.Random(0)) is None] == []


def test_most_categories_have_two_or_more_operators():
    counts = {cat: len(operators_for(cat)) for cat in CATEGORIES}
    single = [c for c, n in counts.items() if n < 2]
    assert len(single) <= 3, counts


def test_structural_flags_follow_the_category_evidence():
    for op in OPERATORS:
        evidence = CATEGORY_EVIDENCE[op.category]
        if evidence == "structural":
            assert op.structural, op.name
        if evidence == "requirements" and op.category != "missing_element":  # duplicates are structural
            assert not op.structural, op.name


def test_operators_for_and_get_operator():
    assert [o.name for o in operators_for("foreign_key_attribute")] == ["add_fk_attribute"]
    assert get_operator("flip_max").category == "cardinality"
    with pytest.raises(DatasetError, match="unknown mistake category"):
        operators_for("nonsense")
    with pytest.raises(DatasetError, match="unknown mutation operator"):
        get_operator("nonsense")


def test_avoid_is_honoured():
    d = FIXTURES["company_fixture"]()
    everything = frozenset(d.element_ids())
    assert all(op.apply(d, random.Random(0), everything) is None for op in OPERATORS)


def test_operators_are_honest_when_nothing_fits():
    bare = diagram_from_json(
        '{"id": "bare", "name": "bare", "entities": [{"id": "A", "name": "A", '
        '"attributes": [{"id": "A.K", "name": "K", "key": true}]}]}'
    )
    applicable = {op.name for op in OPERATORS if op.apply(bare, random.Random(0)) is not None}
    # a lone entity with one key: only key and duplication mistakes can be made on it
    assert applicable == {
        "drop_key",
        "key_made_multivalued",
        "key_made_derived",
        "duplicate_attribute",
        "duplicate_entity",
    }


def test_different_seeds_reach_different_targets():
    d = DIAGRAMS["company_fixture"]
    for name in ("flip_max", "drop_attribute", "add_fk_attribute", "simple_made_multivalued"):
        op = get_operator(name)
        targets = {tuple(op.apply(d, random.Random(s)).mistake.elements) for s in range(12)}
        assert len(targets) >= 3, (name, targets)


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_stacked_mutations_stay_explained(name):
    """The dataset builder stacks mutations on disjoint elements; the checker still sees only their mistakes."""
    rng = random.Random(7)
    for trial in range(12):
        d = DIAGRAMS[name]
        touched: frozenset[str] = frozenset()
        truths = []
        ops = rng.sample(OPERATORS, 3)
        for op in ops:
            m = op.apply(d, random.Random(rng.getrandbits(32)), touched)
            if m is None:
                continue
            assert not (m.touched & touched), (op.name, m.touched & touched)
            d, touched = m.diagram, touched | m.touched
            truths.append((op, m.mistake))
        findings = check(d)
        for f in findings:
            assert any(op.structural and _matches(f, t) for op, t in truths), (f.category, f.elements, truths)
        for op, t in truths:
            if op.structural:
                assert any(_matches(f, t) for f in findings), (op.name, t.elements)
        ids = set(d.element_ids())
        for _, t in truths:
            assert set(t.elements) <= ids, (t.operator, t.elements)


def test_requirements_explanations_state_what_the_text_says():
    d = DIAGRAMS["company_fixture"]
    m = get_operator("flip_max").apply(d, random.Random(0))
    assert m.mistake.explanation.startswith("The requirements say each ")
    r = m.diagram.relationship(m.mistake.elements[0])
    drawn = next(p for p in r.participants if p.entity == m.mistake.elements[1])
    assert f"drawn ({drawn.min},{drawn.max})" in m.mistake.explanation
    weak = get_operator("weak_drawn_strong").apply(d, random.Random(0))
    assert "DEPENDENT" in weak.mistake.explanation and "EMPLOYEE" in weak.mistake.explanation
    assert not weak.diagram.entity("DEPENDENT").weak


def test_example_fk_mutation_reads_like_a_margin_note():
    d = DIAGRAMS["company_fixture"]
    seen = set()
    for s in range(40):
        m = get_operator("add_fk_attribute").apply(d, random.Random(s))
        seen.add(m.mistake.explanation)
    assert (
        "EMPLOYEE carries Dnumber, which duplicates the WORKS_FOR relationship to DEPARTMENT: in an ER diagram "
        "the link is the relationship, not a foreign-key attribute."
    ) in seen


def test_mutations_survive_hostile_names():
    from fixtures_eerd import company_dict

    d = company_dict()
    long = "N\n<b>&\"'" + "y" * 190
    for i, e in enumerate(d["entities"] + d["relationships"]):
        e["name"] = f"{i}{long}"[:200]
    diagram = diagram_from_json(__import__("json").dumps(d))
    assert check(diagram) == []
    for op in OPERATORS:
        m = op.apply(diagram, random.Random(0))
        assert m is not None, op.name
        assert "\n" not in m.mistake.explanation and len(m.mistake.explanation) <= 2000
