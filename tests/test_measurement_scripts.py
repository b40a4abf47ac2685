"""scripts/fact_preference.py, the teacher-forced probe behind the run64e/run64n/run64m records: its fact
comparisons and the token positions it reads, on real dataset rows with the tiny byte-level tokenizer (no model)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from r2ta.audit import construct_evidence, constructs, walk_steps
from r2ta.dataset import BuildConfig, build_variants
from r2ta.records import load_base_schemas
from reasoning_fixtures import DIAGRAM
from scripts import fact_preference
from training.tiny import build_tiny_tokenizer


@pytest.fixture(scope="module")
def rows():
    """The first 40 test variants of the default build, shaped as the script reads database rows."""
    variants = [v for v in build_variants(load_base_schemas(), BuildConfig(seed=0))[0] if v.split == "test"][:40]
    return [SimpleNamespace(**{**v.model_dump(mode="json"), "diagram": v.diagram.model_dump(mode="json")})
            for v in variants]


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def test_a_fact_that_lacks_something_is_told_from_one_that_says_something_else():
    lacks, same = fact_preference.lacks, fact_preference.same_but_order
    assert lacks("key none", "key Ssn") and lacks("1 end", "2 ends") and lacks("no roles", "roles boss, worker")
    assert lacks("subclass of A; disjoint", "subclass of A, B; disjoint")
    assert not lacks("key Code", "key Ssn") and not lacks("2 ends", "2 ends; identifying")
    assert same("subclass of B, A", "subclass of A, B") and not same("subclass of B", "subclass of A, B")


def test_removed_takes_away_one_key_end_or_role_list_and_nothing_else():
    removed = fact_preference.removed
    assert removed("key Ssn") == "key none" and removed("key Ssn; weak") == "key none; weak"
    assert removed("weak; partial key Dname") == "weak; partial key none"
    assert removed("2 ends") == "1 end" and removed("roles supervisor, supervisee; 2 ends") == "no roles; 2 ends"
    assert removed("key none") is None and removed("1 end") is None and removed("") is None


def test_first_steps_names_each_construct_once_in_walk_order():
    steps = walk_steps(DIAGRAM, [], evidence=True)
    again = [*steps, steps[1]]  # a later step on a construct already walked is not a first step
    found = list(fact_preference.first_steps(DIAGRAM, again))
    assert [(n, k.id) for n, k in found] == [(n, k.id) for n, k in enumerate(constructs(DIAGRAM))]


def test_parting_finds_the_first_token_where_two_fact_strings_differ(tok):
    lines = ["Step 1 [EMPLOYEE]: key Ssn -> ok", "Step 2 [PROJECT]: key Pnumber -> ok"]
    a, b, cut = fact_preference.parting(tok, "PROMPT\n", lines, 1, "key Pnumber", "key none")
    assert a[:cut] == b[:cut] and a[cut] != b[cut]
    assert tok.decode(a[:cut]).endswith("Step 2 [PROJECT]: key ") and tok.decode([a[cut]]) == "P"
    assert fact_preference.parting(tok, "PROMPT\n", lines, 1, "2 ends", "2 ends; total")[2] is None  # a prefix


def test_the_probe_compares_each_changed_construct_at_the_token_where_the_facts_part(rows, tok):
    cases = fact_preference.cases(tok, rows)
    assert cases, "40 test variants plant mistakes that change some construct's facts"
    for context, mine, theirs, label, lacking in cases:
        facts = label.split(": ", 1)[1]
        assert mine != theirs and " vs " in facts
        assert tok.decode(context).endswith("]: " + _common_prefix(*_facts(facts)))
        assert lacking == fact_preference.lacks(*_facts(facts))
    assert any(lacking for *_, lacking in cases) and not all(lacking for *_, lacking in cases)


def test_the_mirror_probe_reads_sound_facts_in_one_pass_at_the_right_positions(rows, tok):
    bases = {b.id: b.diagram for b in load_base_schemas()}
    found = 0
    for full, points in fact_preference.sound_cases(tok, rows):
        for cut, mine, alt, label in points:
            found += 1
            facts, removed = _facts(label.split(": ", 1)[1])
            assert full[cut] == mine != alt and fact_preference.removed(facts) == removed
            assert tok.decode(full[:cut]).endswith("]: " + _common_prefix(facts, removed))
    assert found > 40  # keys and ends of sound constructs: several per variant
    # only constructs whose facts are the base schema's count: a planted defect is the other probe's
    row = rows[0]
    diagram = fact_preference._diagram(row)
    sound = {construct_evidence(diagram, k) for k in constructs(diagram)
             if construct_evidence(bases[row.base_id], k) == construct_evidence(diagram, k)}
    first = fact_preference.sound_cases(tok, [row])[0][1]
    assert {_facts(label.split(": ", 1)[1])[0] for *_, label in first} <= sound


def _facts(text: str) -> tuple[str, str]:
    mine, theirs = text.split(" vs ")
    return mine.strip("'\""), theirs.strip("'\"")


def _common_prefix(a: str, b: str) -> str:
    n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[:n]
