"""Loading a built dataset: idempotent, updates what changed, never drops reviewed work."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from db.loading import load_dataset
from db.models import BaseSchemaRow, VariantMistakeRow, VariantRow
from db.queries import categories_of, list_variants
from r2ta.errors import DatasetError
from store_samples import base_dict, variant_dict


def _build():
    bases = [base_dict("company"), base_dict("library")]
    variants = [
        variant_dict("company-1", "company", "train", ["missing_key", "cardinality"], seed=1),
        variant_dict("company-2", "company", "test", ["participation"], seed=2),
        variant_dict("library-1", "library", "train", ["weak_entity"], seed=3),
    ]
    return bases, variants


def _snapshot(session):
    variants = {v.id: (v.model_dump()) for v in session.exec(select(VariantRow))}
    mistakes = sorted((m.variant_id, m.position, m.category) for m in session.exec(select(VariantMistakeRow)))
    bases = {b.id: b.model_dump() for b in session.exec(select(BaseSchemaRow))}
    return bases, variants, mistakes


def test_load_twice_adds_nothing_the_second_time(engine):
    bases, variants = _build()
    with Session(engine) as session:
        first = load_dataset(bases, variants, session=session)
    with Session(engine) as session:
        before = _snapshot(session)
        second = load_dataset(bases, variants, session=session)
    with Session(engine) as session:
        after = _snapshot(session)
    assert (first.base_inserted, first.variants_inserted) == (2, 3)
    assert (second.base_inserted, second.variants_inserted, second.variants_updated) == (0, 0, 0)
    assert second.variants_unchanged == 3
    assert after == before  # not even updated_at moved
    assert len(after[1]) == 3 and len(after[2]) == 4
    assert after[2][0] == ("company-1", 0, "missing_key")


def test_a_changed_variant_is_updated_and_its_categories_rewritten(engine):
    bases, variants = _build()
    with Session(engine) as session:
        load_dataset(bases, variants, session=session)
    variants[0] = variant_dict("company-1", "company", "train", ["foreign_key_attribute"], seed=1)
    bases[1]["title"] = "Library (revised)"
    rebuilt = [variants[0], variant_dict("company-3", "company", "test", ["missing_element"], seed=4)]
    with Session(engine) as session:
        summary = load_dataset(bases, rebuilt, session=session)
    assert (summary.variants_updated, summary.variants_inserted, summary.variants_not_in_build) == (1, 1, 2)
    assert summary.base_updated == 1
    with Session(engine) as session:
        assert session.get(BaseSchemaRow, "library").title == "Library (revised)"
        stored = session.get(VariantRow, "company-1")
        assert [m["category"] for m in stored.mistakes] == ["foreign_key_attribute"]
        assert categories_of(["company-1", "company-2", "company-3"], session=session) == {
            "company-1": ["foreign_key_attribute"],
            "company-2": ["participation"],  # absent from the rebuild, kept
            "company-3": ["missing_element"],
        }
        assert [v.id for v in list_variants(session=session, category="missing_key")] == []
        assert [v.id for v in list_variants(session=session, split="test")] == ["company-2", "company-3"]


def test_records_from_r2ta_records_load_as_they_are(engine):
    from r2ta.eerd import parse_diagram
    from r2ta.records import BaseSchema, Variant

    base = BaseSchema(
        id="company",
        domain="business",
        title="Company",
        requirements="Every employee has an Ssn.",
        diagram=parse_diagram(base_dict("company")["diagram"]),
    )
    variant = Variant(
        id="company-0001",
        base_id="company",
        seed=5,
        split="train",
        requirements=base.requirements,
        diagram=base.diagram,
        mistakes=[{"category": "missing_key", "elements": ["EMPLOYEE"], "explanation": "x"}],
    )
    with Session(engine) as session:
        load_dataset([base.model_dump(mode="json")], [variant.model_dump(mode="json")], session=session)
    with Session(engine) as session:
        stored = session.get(VariantRow, "company-0001")
        assert Variant.model_validate(stored.model_dump(include=set(Variant.model_fields))) == variant


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b, v: v.append(variant_dict("x-1", "nowhere", "train", ["missing_key"])), "neither in this build"),
        (lambda b, v: v.append(dict(v[0])), "more than once"),
        (lambda b, v: v[0].update(split="validation"), "split 'validation'"),
        (lambda b, v: v[0].pop("mistakes"), "has no 'mistakes'"),
        (lambda b, v: v[0].update(mistakes=[{"elements": []}]), "with a 'category'"),
    ],
)
def test_a_bad_build_is_refused_and_writes_nothing(sqlite_engine, change, message):
    bases, variants = _build()
    change(bases, variants)
    with Session(sqlite_engine) as session, pytest.raises(DatasetError, match=message):
        load_dataset(bases, variants, session=session)
    with Session(sqlite_engine) as session:
        assert session.exec(select(VariantRow)).all() == []
        assert session.exec(select(BaseSchemaRow)).all() == []
