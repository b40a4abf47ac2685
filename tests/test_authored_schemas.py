"""The six hand-authored base schemas (university, hospital, vehicles, library, engineering, airline).

Mutations assume their input is correct, so a flaw here becomes a wrong ground
truth in every variant built from it. These tests hold each diagram to the
Elmasri & Navathe rules the checker enforces, check that the requirements name
every element (so a deleted element is detectable from the text), and check that
the six together give every mutation category something to work on.
"""

from __future__ import annotations

import json
import re

import pytest

from r2ta.eerd import EERD, diagram_to_dict
from r2ta.records import SCHEMAS_DIR, BaseSchema, load_base_schema

AUTHORED = [
    "airline_operations",
    "engineering_consultancy",
    "hospital_wards",
    "public_library",
    "university_registrar",
    "vehicle_registration",
]


@pytest.fixture(scope="module")
def schemas() -> dict[str, BaseSchema]:
    return {sid: load_base_schema(SCHEMAS_DIR / f"{sid}.json") for sid in AUTHORED}


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())


def _ancestors(d: EERD, entity_id: str) -> set[str]:
    seen: set[str] = set()
    todo = list(d.superclasses_of(entity_id))
    while todo:
        sup = todo.pop()
        if sup not in seen:
            seen.add(sup)
            todo.extend(d.superclasses_of(sup))
    return seen


@pytest.mark.parametrize("sid", AUTHORED)
def test_file_is_canonical_and_ids_match(sid, schemas):
    s = schemas[sid]
    on_disk = json.loads((SCHEMAS_DIR / f"{sid}.json").read_text(encoding="utf-8"))
    assert on_disk["diagram"] == diagram_to_dict(s.diagram), "diagram is not in canonical form"
    assert s.diagram.id == sid


@pytest.mark.parametrize("sid", AUTHORED)
def test_keys_and_weak_entities_follow_the_rules(sid, schemas):
    d = schemas[sid].diagram
    subclasses = d.subclass_ids()
    for e in d.entities:
        keys = [a for a in e.attributes if a.key]
        partial = [a for a in e.attributes if a.partial_key]
        if e.id in subclasses:
            assert not keys and not partial, f"subclass {e.id} declares its own key"
            assert not e.weak
            continue
        if not e.weak:
            assert keys, f"strong entity {e.id} has no key"
            assert not partial, f"strong entity {e.id} has a partial key"
            assert all(not a.multivalued and not a.derived for a in keys), f"{e.id}: bad key kind"
            continue
        assert partial and not keys, f"weak entity {e.id} needs a partial key and no full key"
        # A weak entity may own another weak entity (max N there); it is identified where its max is 1.
        identifying = [
            r for r in d.relationships_of(e.id)
            if r.identifying and any(p.entity == e.id and p.max == 1 for p in r.participants)
        ]
        assert len(identifying) == 1, f"weak entity {e.id} needs exactly one identifying relationship"
        (rel,) = identifying
        mine = [p for p in rel.participants if p.entity == e.id]
        owners = [p for p in rel.participants if p.entity != e.id]
        assert len(mine) == 1 and (mine[0].min, mine[0].max) == (1, 1), f"{rel.id}: {e.id} must be (1,1)"
        assert owners and all(d.entity(p.entity) for p in owners), f"{rel.id} has no owner entity"
    for r in d.relationships:
        if r.identifying:
            weak = [p for p in r.participants if (ent := d.entity(p.entity)) is not None and ent.weak]
            assert weak, f"identifying relationship {r.id} has no weak entity"


@pytest.mark.parametrize("sid", AUTHORED)
def test_relationships_are_well_formed(sid, schemas):
    d = schemas[sid].diagram
    for r in d.relationships:
        assert r.degree >= 2, f"{r.id} has fewer than two participants"
        assert all(d.entity(p.entity) for p in r.participants), f"{r.id} links to a non-entity"
        ids = [p.entity for p in r.participants]
        if len(set(ids)) < len(ids):
            roles = [p.role for p in r.participants]
            assert all(roles) and len(set(roles)) == len(roles), f"recursive {r.id} needs distinct roles"


@pytest.mark.parametrize("sid", AUTHORED)
def test_no_foreign_key_attributes(sid, schemas):
    """No entity repeats, as a plain attribute, the key of an entity it is related to."""
    d = schemas[sid].diagram
    for r in d.relationships:
        for p in r.participants:
            for q in r.participants:
                if p.entity == q.entity:
                    continue
                other_keys = {_norm(a.name) for a in d.entity(q.entity).attributes if a.key or a.partial_key}
                own = {_norm(a.name) for a in d.entity(p.entity).attributes}
                assert not own & other_keys, f"{p.entity} repeats the key of {q.entity} beside {r.id}"


@pytest.mark.parametrize("sid", AUTHORED)
def test_specializations_and_categories_are_well_formed(sid, schemas):
    d = schemas[sid].diagram
    for s in d.specializations:
        assert s.superclass and s.subclasses, f"{s.id} lacks a superclass or subclasses"
        assert s.disjointness in ("d", "o") and s.completeness in ("total", "partial"), s.id
        if s.defining_attribute:
            assert set(s.defining_values) == set(s.subclasses), f"{s.id}: a subclass has no defining value"
    for c in d.categories:
        assert len(c.superclasses) >= 2, f"category {c.id} needs two superclasses"
    for e in d.entities:
        ancestors = _ancestors(d, e.id)
        assert e.id not in ancestors, f"{e.id} is in a specialization cycle"
        inherited = {_norm(a.name) for sup in ancestors for a in d.entity(sup).attributes}
        repeated = {_norm(a.name) for a in e.attributes} & inherited
        assert not repeated, f"{e.id} repeats inherited attribute(s) {sorted(repeated)}"


@pytest.mark.parametrize("sid", AUTHORED)
def test_every_entity_is_connected(sid, schemas):
    d = schemas[sid].diagram
    linked = {p.entity for r in d.relationships for p in r.participants} | d.subclass_ids()
    linked |= {s.superclass for s in d.specializations} | {x for c in d.categories for x in c.superclasses}
    assert {e.id for e in d.entities} <= linked


@pytest.mark.parametrize("sid", AUTHORED)
def test_requirements_name_every_element(sid, schemas):
    """A missing or mis-kinded element must be detectable from the text, so the text names each one."""
    s = schemas[sid]
    text = _norm(s.requirements)
    names = [e.name for e in s.diagram.owners()] + [a.name for _, a, _ in s.diagram.iter_attributes()]
    names += [p.role for r in s.diagram.relationships for p in r.participants if p.role]
    names += [v for sp in s.diagram.specializations for v in sp.defining_values.values()]
    missing = [n for n in names if not re.search(rf"\b{re.escape(_norm(n))}\b", text)]
    assert not missing, f"{sid}: requirements never mention {missing}"


def test_together_they_give_every_mutation_something_to_work_on(schemas):
    ds = [s.diagram for s in schemas.values()]
    attrs = [a for d in ds for _, a, _ in d.iter_attributes()]

    def one_to_many_with_attribute(d: EERD) -> bool:
        return any(
            r.attributes and r.degree == 2 and sorted(str(p.max) for p in r.participants) == ["1", "N"]
            for r in d.relationships
        )

    features = {
        "weak entity": any(e.weak for d in ds for e in d.entities),
        "weak entity owned by a weak entity": any(
            r.identifying and all(d.entity(p.entity).weak for p in r.participants)
            for d in ds for r in d.relationships
        ),
        "composite": any(a.composite for a in attrs),
        "multivalued": any(a.multivalued for a in attrs),
        "derived": any(a.derived for a in attrs),
        "recursive relationship": any(len({p.entity for p in r.participants}) < r.degree for d in ds for r in d.relationships),
        "ternary": any(r.degree == 3 for d in ds for r in d.relationships),
        "1:1": any(r.degree == 2 and all(p.max == 1 for p in r.participants) for d in ds for r in d.relationships),
        "1:N with attribute": any(one_to_many_with_attribute(d) for d in ds),
        "M:N with attribute": any(
            r.attributes and r.degree == 2 and all(p.max == "N" for p in r.participants) for d in ds for r in d.relationships
        ),
        "optional and mandatory ends": {p.min for d in ds for r in d.relationships for p in r.participants} >= {0, 1},
        "specialization kinds": {(s.disjointness, s.completeness) for d in ds for s in d.specializations}
        >= {("d", "total"), ("d", "partial"), ("o", "total"), ("o", "partial")},
        "attribute-defined specialization": any(s.defining_attribute for d in ds for s in d.specializations),
        "lattice (shared subclass)": any(
            len([s for s in d.specializations if e.id in s.subclasses]) >= 2 for d in ds for e in d.entities
        ),
        "category": any(d.categories for d in ds),
        "total and partial categories": {c.completeness for d in ds for c in d.categories} == {"total", "partial"},
    }
    assert all(features.values()), [k for k, v in features.items() if not v]
    assert sum(len(list(d.iter_attributes())) + len(d.entities) + len(d.relationships) for d in ds) > 250


@pytest.mark.parametrize("sid", AUTHORED)
def test_checker_finds_nothing_on_a_correct_base(sid, schemas):
    checker = pytest.importorskip("r2ta.checker")
    findings = checker.check(schemas[sid].diagram)
    assert findings == [], [(m.category, m.elements, m.explanation) for m in findings]
