"""Disguised variants: same structure, mistakes and checker findings under made-up names and a shuffled order."""

from __future__ import annotations

import json
import re

import pytest

from r2ta.audit import construct_evidence, constructs, walk_steps
from r2ta.checker import check
from r2ta.cli import main
from r2ta.compact import to_compact
from r2ta.dataset import BuildConfig, build_variants
from r2ta.disguise import KEEP_WORDS, _name_words, _words, disguise_variant, disguise_variants
from r2ta.eerd import diagram_to_json
from r2ta.errors import DatasetError
from r2ta.records import Variant, load_base_schemas, read_variants

pytestmark = pytest.mark.xdist_group("dataset")


@pytest.fixture(scope="module")
def variants():
    return build_variants(load_base_schemas(), BuildConfig(seed=0, n_variants=120, n_test=30, min_per_category=1))[0]


def test_the_checker_finds_the_same_mistakes_on_the_same_constructs(variants):
    for v in variants:
        d = disguise_variant(v)
        before, after = check(v.diagram), check(d.diagram)
        assert sorted(f.category for f in before) == sorted(f.category for f in after), v.id
        assert [m.category for m in d.mistakes] == [m.category for m in v.mistakes]
        assert [len(m.elements) for m in d.mistakes] == [len(m.elements) for m in v.mistakes]
        ids = set(d.diagram.element_ids())
        assert all(e in ids for m in d.mistakes for e in m.elements)


def test_no_name_word_survives_anywhere_the_model_reads_and_constraint_words_do(variants):
    for v in variants[:24]:
        d = disguise_variant(v)
        seen = _words(d.requirements) | _words(to_compact(d.diagram)) | _words(" ".join(m.explanation for m in d.mistakes))
        assert not _name_words(v.diagram) & seen, v.id
        for keep in ("each", "exactly", "one", "identified", "unique"):
            if keep in _words(v.requirements):
                assert keep in _words(d.requirements)
    d = disguise_variant(variants[0])
    assert not re.search(r"\ban [bdfgklmnprtvz]", d.requirements)  # made-up words take "a"


def test_the_walk_flags_the_same_kinds_of_construct_with_the_same_facts_shape(variants):
    for v in variants[:40]:
        d = disguise_variant(v)
        a = walk_steps(v.diagram, v.mistakes, evidence=True)
        b = walk_steps(d.diagram, d.mistakes, evidence=True)
        assert len(a) == len(b)
        assert sorted(s.finding or "" for s in a) == sorted(s.finding or "" for s in b)
        # facts differ only in names: same multiset once every name is blanked out
        blank = lambda facts: re.sub(r"[A-Za-z_]+(?: [A-Za-z_]+)*", "w", facts)  # noqa: E731
        fa = sorted(blank(construct_evidence(v.diagram, c)) for c in constructs(v.diagram))
        fb = sorted(blank(construct_evidence(d.diagram, c)) for c in constructs(d.diagram))
        assert fa == fb


def test_a_plural_follows_its_singular_and_case_is_kept():
    built = build_variants(load_base_schemas(), BuildConfig(seed=0, n_variants=12, n_test=3, min_per_category=0))[0]
    v = next(v for v in built if v.base_id == "bank")
    d = disguise_variant(v)
    names = {e.name for e in d.diagram.entities}
    branch = next(n for n in names if _words(n) and n.isupper() and "_" not in n and n.lower() + "s" in _words(d.requirements))
    assert branch.lower() + "s" in _words(d.requirements)  # "branches" -> "<branch>s"
    assert any(a.name[0].isupper() for _, a, _ in d.diagram.iter_attributes())


def test_deterministic_per_seed_and_the_order_is_shuffled(variants):
    v = variants[3]
    assert disguise_variant(v, 0).model_dump() == disguise_variant(v, 0).model_dump()
    assert disguise_variant(v, 0).model_dump() != disguise_variant(v, 1).model_dump()
    orders = {tuple(len(e.attributes) for e in disguise_variant(v, s).diagram.entities) for s in range(6)}
    assert len(orders) > 1


@pytest.mark.parametrize("name", ['<b>Hangar</b>', 'A "quoted" -> name', "E1 [label=x]; }"])
def test_hostile_names_stay_valid_after_renaming(variants, name):
    v = variants[0]
    data = json.loads(diagram_to_json(v.diagram))
    data["entities"][0]["name"] = name
    hostile = Variant.model_validate({**v.model_dump(mode="json"), "diagram": data})
    d = disguise_variant(hostile)  # parses again: ids unique, references intact
    shape = lambda n: re.sub(r"[A-Za-z]+", "w", n)  # noqa: E731  only words change, punctuation stays
    assert shape(name) in {shape(e.name) for e in d.diagram.entities}
    assert name not in {e.name for e in d.diagram.entities}
    assert sorted(f.category for f in check(d.diagram)) == sorted(f.category for f in check(hostile.diagram))


def test_only_the_asked_split_is_disguised_and_an_unknown_split_is_refused(variants):
    out = disguise_variants(variants, "train")
    for before, after in zip(variants, out):
        assert (before.requirements == after.requirements) == (before.split == "test")
    with pytest.raises(DatasetError, match="unknown split"):
        disguise_variants(variants, "dev")
    assert "each" in KEEP_WORDS and "id" in KEEP_WORDS  # the checker's "<entity>_id" rule needs "id"


def test_cli_builds_a_dataset_with_disguised_train_rows(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["dataset", "build", "--variants", "60", "--test", "15", "--min-per-category", "1",
               "--disguise", "train", "--no-db", "--out", str(out)])
    assert rc == 0
    assert "disguised (train)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["disguise"] == "train"
    schema_words = {s.id: _name_words(s.diagram) for s in load_base_schemas()}
    train, test = read_variants(out / "train.jsonl"), read_variants(out / "test.jsonl")
    assert all(not (_words(to_compact(v.diagram)) & schema_words[v.base_id]) for v in train)
    assert all(_words(to_compact(v.diagram)) & schema_words[v.base_id] for v in test)


def test_the_key_is_no_longer_always_the_first_attribute(variants):
    """In the base schemas the key comes first; a model learnt that instead of reading [key] (run64n)."""
    def key_first(vs):
        firsts = [e.attributes[0].key for v in vs for e in v.diagram.entities if any(a.key for a in e.attributes)]
        return sum(firsts) / len(firsts)

    assert key_first(variants) > 0.9
    assert key_first([disguise_variant(v) for v in variants]) < 0.7
    kept = disguise_variant(variants[0], shuffle_attributes=False)
    by_count = lambda d: sorted(tuple(a.key for a in e.attributes) for e in d.entities)  # noqa: E731
    assert by_count(kept.diagram) == by_count(variants[0].diagram)


def test_a_base_schema_under_its_variants_renaming_names_the_same_constructs(variants):
    """scripts/fact_preference.py --disguised compares a disguised row with its base schema renamed the same way."""
    from r2ta.disguise import rename_diagram, renaming_for

    bases = {s.id: s.diagram for s in load_base_schemas()}
    for v in variants[:24]:
        renamed_base = rename_diagram(bases[v.base_id], renaming_for(v))
        disguised = disguise_variant(v)
        shared = {c.id for c in constructs(v.diagram)} & {c.id for c in constructs(bases[v.base_id])}
        ids = {c.id for c in constructs(disguised.diagram)} & {c.id for c in constructs(renamed_base)}
        assert len(ids) == len(shared), v.id
        assert [e.id for e in renamed_base.entities] == [renaming_for(v).text(e.id) for e in bases[v.base_id].entities]


def test_cli_keeps_the_attribute_order_when_asked(tmp_path):
    out = tmp_path / "ds"
    assert main(["dataset", "build", "--variants", "60", "--test", "15", "--min-per-category", "1",
                 "--disguise", "all", "--keep-attribute-order", "--no-db", "--out", str(out)]) == 0
    assert json.loads((out / "manifest.json").read_text())["disguise_attribute_order"] is False
    rows = read_variants(out / "train.jsonl") + read_variants(out / "test.jsonl")
    firsts = [e.attributes[0].key for v in rows for e in v.diagram.entities if any(a.key for a in e.attributes)]
    assert sum(firsts) / len(firsts) > 0.9
