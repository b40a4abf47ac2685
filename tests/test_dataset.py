"""The 600-variant dataset: counts, coverage, splits, ground truth consistency, byte determinism."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from r2ta.checker import check
from r2ta.cli import main
from r2ta.dataset import BuildConfig, build_dataset, findings_explained
from r2ta.eerd import CATEGORIES, Mistake, diagram_from_json, diagram_to_json
from r2ta.errors import DatasetError
from r2ta.records import load_base_schemas, read_variants

pytestmark = pytest.mark.xdist_group("dataset")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    variants, report = build_dataset(load_base_schemas(), out, BuildConfig(seed=0))
    return out, variants, report


def test_counts_and_split_sizes(built):
    out, variants, report = built
    assert len(variants) == 600
    assert len(read_variants(out / "train.jsonl")) == 450
    assert len(read_variants(out / "test.jsonl")) == 150
    assert all(1 <= len(v.mistakes) <= 3 for v in variants)
    assert len({v.id for v in variants}) == 600


def test_every_category_at_least_40_times_and_in_both_splits(built):
    _, variants, report = built
    counts = Counter(m.category for v in variants for m in v.mistakes)
    assert set(counts) == set(CATEGORIES)
    assert min(counts.values()) >= 40, counts
    for split in ("train", "test"):
        in_split = {m.category for v in variants if v.split == split for m in v.mistakes}
        assert in_split == set(CATEGORIES), f"{split} lacks {set(CATEGORIES) - in_split}"


def test_split_is_stratified_by_category(built):
    """Each category's share in test stays near the overall 25%."""
    _, variants, _ = built
    total = Counter(m.category for v in variants for m in v.mistakes)
    test = Counter(m.category for v in variants if v.split == "test" for m in v.mistakes)
    for cat in CATEGORIES:
        assert 0.12 <= test[cat] / total[cat] <= 0.40, (cat, test[cat], total[cat])


def test_no_two_variants_identical_and_none_equals_its_base(built):
    _, variants, _ = built
    bodies = [diagram_to_json(v.diagram.model_copy(update={"id": "x"}), indent=None) for v in variants]
    assert len(set(bodies)) == len(bodies)
    bases = {s.id: diagram_to_json(s.diagram.model_copy(update={"id": "x"}), indent=None) for s in load_base_schemas()}
    assert all(body != bases[v.base_id] for body, v in zip(bodies, variants))


def test_ground_truth_explains_every_checker_finding(built):
    _, variants, _ = built
    for v in variants:
        assert findings_explained(check(v.diagram), v.mistakes), v.id


def test_ground_truth_elements_exist_or_point_at_neighbours(built):
    _, variants, _ = built
    for v in variants:
        ids = set(v.diagram.element_ids())
        for m in v.mistakes:
            assert set(m.elements) & ids, (v.id, m)
            assert m.explanation and m.operator


def test_variants_round_trip(built):
    _, variants, _ = built
    for v in variants:
        assert diagram_from_json(diagram_to_json(v.diagram)) == v.diagram


def test_same_seed_same_bytes_other_seed_other_bytes(built, tmp_path):
    out, _, _ = built
    main(["dataset", "build", "--seed", "0", "--out", str(tmp_path / "again"), "--no-db"])
    for name in ("train.jsonl", "test.jsonl", "manifest.json"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name
    main(["dataset", "build", "--seed", "1", "--out", str(tmp_path / "other"), "--no-db"])
    assert (tmp_path / "other" / "train.jsonl").read_bytes() != (out / "train.jsonl").read_bytes()


def test_unseen_schema_split_keeps_whole_schemas_out_of_training(tmp_path):
    variants, report = build_dataset(load_base_schemas(), tmp_path, BuildConfig(seed=0, split_by="schema"))
    train_bases = {v.base_id for v in variants if v.split == "train"}
    test_bases = {v.base_id for v in variants if v.split == "test"}
    assert test_bases and not (train_bases & test_bases)
    assert test_bases == set(report.test_schemas)
    n_test = sum(v.split == "test" for v in variants)
    assert 120 <= n_test <= 180
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["split_by"] == "schema" and manifest["test_schemas"] == report.test_schemas


def test_impossible_request_is_refused_with_advice(tmp_path):
    with pytest.raises(DatasetError, match="below 400"):
        build_dataset(load_base_schemas(), tmp_path, BuildConfig(n_variants=60, n_test=15, min_per_category=400))


def test_findings_explained_requires_category_and_overlap():
    truth = [Mistake(category="missing_key", elements=["A"], explanation="x")]
    assert findings_explained([Mistake(category="missing_key", elements=["A", "B"])], truth)
    assert not findings_explained([Mistake(category="weak_entity", elements=["A"])], truth)
    assert not findings_explained([Mistake(category="missing_key", elements=["C"])], truth)
