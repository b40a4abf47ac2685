"""Dense rows: more planted mistakes per train row, every one still the checker's, the test split untouched."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from r2ta.audit import walk_steps
from r2ta.checker import check
from r2ta.cli import main
from r2ta.dataset import BuildConfig, build_variants, findings_explained
from r2ta.densify import MAX_PER_OPERATOR, REMOVAL_OPERATORS, densify_variant, densify_variants
from r2ta.eerd import CATEGORIES
from r2ta.errors import DatasetError
from r2ta.mutations import OPERATORS_BY_NAME
from r2ta.records import load_base_schemas, read_variants

pytestmark = pytest.mark.xdist_group("dataset")

SMALL = dict(seed=0, n_variants=48, n_test=12, min_per_category=1)


@pytest.fixture(scope="module")
def plain():
    return build_variants(load_base_schemas(), BuildConfig(**SMALL))[0]


@pytest.fixture(scope="module")
def dense():
    return build_variants(load_base_schemas(), BuildConfig(**SMALL, densify="train", dense_mistakes=8))[0]


def test_train_rows_get_more_mistakes_and_the_test_split_is_left_as_built(plain, dense):
    by_id = {v.id: v for v in plain}
    assert [v.id for v in dense] == [v.id for v in plain]
    for v in dense:
        before = by_id[v.id]
        assert v.split == before.split
        if v.split == "test":
            assert v.model_dump() == before.model_dump()
        else:
            assert v.mistakes[: len(before.mistakes)] == before.mistakes  # drawn mistakes kept, in order
            assert len(v.mistakes) >= len(before.mistakes)
    per_row = Counter(len(v.mistakes) for v in dense if v.split == "train")
    assert per_row[8] >= 0.8 * sum(per_row.values()), per_row
    assert max(per_row) == 8


def test_every_dense_row_is_explained_by_its_ground_truth_and_stays_valid(dense):
    for v in dense:
        assert findings_explained(check(v.diagram), v.mistakes), v.id
        assert all(m.category in CATEGORIES for m in v.mistakes)
        ids = set(v.diagram.element_ids())
        assert all(e in ids or m.category == "missing_element" for m in v.mistakes for e in m.elements), v.id


def test_categories_repeat_within_a_row(dense):
    """The first draw gives each row distinct categories; the dense rows are where a kind repeats."""
    assert any(max(Counter(m.category for m in v.mistakes).values()) > 1 for v in dense if v.split == "train")


def test_the_walk_flags_more_constructs_on_a_dense_row(plain, dense):
    def flagged(row):
        return sum(1 for s in walk_steps(row.diagram, row.mistakes, evidence=True) if s.finding != "ok")

    by_id = {v.id: v for v in plain}
    more = 0
    for v in [v for v in dense if v.split == "train"][:12]:
        more += flagged(v) > flagged(by_id[v.id])
    assert more >= 10


def test_removals_are_favoured_and_capped_per_operator(plain):
    rows = densify_variants(plain, "train", 10, seed=0, favour=REMOVAL_OPERATORS)
    added = Counter()
    for v, before in zip(rows, plain):
        if v.split != "train":
            continue
        ops = Counter(m.operator for m in v.mistakes)
        assert max(ops.values()) <= MAX_PER_OPERATOR
        added.update(m.operator for m in v.mistakes[len(before.mistakes):])
    removals = sum(n for op, n in added.items() if op in REMOVAL_OPERATORS)
    assert removals > 0.4 * sum(added.values()), added  # about half: a row runs out of places to remove
    assert added["drop_key"] > 0


def test_densify_is_deterministic_and_the_seed_matters(plain):
    row = next(v for v in plain if v.split == "train")
    a, b = densify_variant(row, 8, seed=1), densify_variant(row, 8, seed=1)
    assert a.model_dump() == b.model_dump()
    others = [densify_variant(row, 8, seed=s).model_dump() for s in range(2, 6)]
    assert any(o != a.model_dump() for o in others)


def test_a_row_that_already_holds_enough_mistakes_is_returned_unchanged(plain):
    row = plain[0]
    assert densify_variant(row, len(row.mistakes), seed=0) is row


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(split="valid", total=8), "unknown split"),
        (dict(split="train", total=0), "between 1 and 20"),
        (dict(split="train", total=21), "between 1 and 20"),
        (dict(split="train", total=8, favour=frozenset({"drop_everything"})), "drop_everything"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_error(plain, kwargs, message):
    with pytest.raises(DatasetError, match=message):
        densify_variants(plain, seed=0, **kwargs)


def test_removal_operators_are_real_operators():
    assert REMOVAL_OPERATORS <= set(OPERATORS_BY_NAME)


def test_dense_rows_can_be_disguised_and_keep_their_findings():
    rows = build_variants(
        load_base_schemas(), BuildConfig(**SMALL, densify="train", dense_mistakes=6, disguise="train")
    )[0]
    for v in rows:
        assert findings_explained(check(v.diagram), v.mistakes), v.id


def test_cli_builds_dense_train_rows_and_records_it(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["dataset", "build", "--variants", "48", "--test", "12", "--min-per-category", "1",
               "--densify", "train", "--dense-mistakes", "6", "--dense-removals", "--no-db", "--out", str(out)])
    assert rc == 0
    assert "densified (train): mistakes per row" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["densify"], manifest["dense_mistakes"], manifest["dense_removals"]) == ("train", 6, True)
    assert sum(manifest["category_counts"].values()) == sum(
        len(v.mistakes) for split in ("train", "test") for v in read_variants(out / f"{split}.jsonl")
    )
    assert max(len(v.mistakes) for v in read_variants(out / "test.jsonl")) <= 3


def test_cli_refuses_an_out_of_range_count(tmp_path, capsys):
    rc = main(["dataset", "build", "--variants", "48", "--test", "12", "--min-per-category", "1",
               "--densify", "train", "--dense-mistakes", "50", "--no-db", "--out", str(tmp_path / "ds")])
    assert rc != 0
    assert "between 1 and 20" in capsys.readouterr().err
    assert not (tmp_path / "ds" / "manifest.json").exists()
