"""Mermaid erDiagram import: crow's-foot (look-across) to look-here, and the warnings of a lossy format."""

from __future__ import annotations

from pathlib import Path

import pytest

from r2ta.errors import ImportFormatError
from r2ta.formats import import_file, import_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"


def parts(d, rel_id):
    return [(p.entity, p.min, p.max) for p in d.relationship(rel_id).participants]


def er(body: str) -> str:
    return "erDiagram\n" + body + "\n"


def test_worked_example_customer_places_orders():
    # "A customer places zero or more orders; each order is placed by exactly one customer."
    d = import_text(er("CUSTOMER ||--o{ ORDER : places")).diagram
    assert parts(d, "PLACES") == [("CUSTOMER", 0, "N"), ("ORDER", 1, 1)]


# Each mark, written beside B, is B's count per A: it becomes A's look-here (min,max).
MARKS = [
    ("|o", "o|", (0, 1)),
    ("||", "||", (1, 1)),
    ("}o", "o{", (0, "N")),
    ("}|", "|{", (1, "N")),
]


@pytest.mark.parametrize("left, right, expected", MARKS)
def test_every_mark_on_either_side(left, right, expected):
    d = import_text(er(f"A ||..{right} B : r")).diagram
    assert parts(d, "R")[0] == ("A", *expected)  # mark beside B -> A's look-here
    assert parts(d, "R")[1] == ("B", 1, 1)
    d = import_text(er(f"A {left}..|| B : r")).diagram
    assert parts(d, "R")[1] == ("B", *expected)  # mark beside A -> B's look-here


@pytest.mark.parametrize(
    "words, expected",
    [
        ("zero or one", (0, 1)), ("one or zero", (0, 1)), ("only one", (1, 1)), ("one", (1, 1)), ("1", (1, 1)),
        ("zero or more", (0, "N")), ("zero or many", (0, "N")), ("0+", (0, "N")), ("many(0)", (0, "N")),
        ("many", (0, "N")), ("one or more", (1, "N")), ("one or many", (1, "N")), ("1+", (1, "N")),
        ("many(1)", (1, "N")),
    ],
)
def test_word_forms(words, expected):
    d = import_text(er(f"A only one optionally to {words} B : r")).diagram
    assert parts(d, "R") == [("A", *expected), ("B", 1, 1)]


def test_fixture_every_construct():
    r = import_file(FIXTURES / "mermaid_company.mmd")
    d = r.diagram
    assert (d.id, d.name) == ("company_mermaid", "Company (Mermaid)")
    assert [e.id for e in d.entities] == ["EMPLOYEE", "DEPARTMENT", "PROJECT", "DEPENDENT", "OFFICE_SITE"]
    emp = d.entity("EMPLOYEE")
    assert emp.name == "Employee"  # EMPLOYEE["Employee"]
    assert [(a.name, a.key) for a in emp.attributes] == [("ssn", True), ("name", False), ("birth_date", False)]
    assert [(a.name, a.key) for a in d.entity("DEPARTMENT").attributes] == [("dnumber", True), ("dname", True)]  # UK
    assert d.entity("OFFICE_SITE").name == "OFFICE SITE"
    # DEPENDENT: identifying line, (1,1) side with a PK, FK attribute -> weak, own PK -> partial key
    dep = d.entity("DEPENDENT")
    assert dep.weak and [(a.name, a.key, a.partial_key) for a in dep.attributes] == [
        ("dependent_name", False, True), ("kinship", False, False)]
    assert d.relationship("HAS").identifying and parts(d, "HAS") == [("EMPLOYEE", 0, "N"), ("DEPENDENT", 1, 1)]
    # WORKS_ON: a junction table -> the M:N relationship with its attribute
    works_on = d.relationship("WORKS_ON")
    assert parts(d, "WORKS_ON") == [("EMPLOYEE", 0, "N"), ("PROJECT", 1, "N")]
    assert [a.name for a in works_on.attributes] == ["hours"] and not works_on.identifying
    # hand-worked look-here values
    assert parts(d, "WORKS_FOR") == [("EMPLOYEE", 1, 1), ("DEPARTMENT", 1, "N")]
    assert parts(d, "MANAGES") == [("EMPLOYEE", 0, 1), ("DEPARTMENT", 0, 1)]
    assert parts(d, "SUPERVISES") == [("EMPLOYEE", 0, "N"), ("EMPLOYEE", 0, 1)]
    assert parts(d, "OCCUPIES") == [("DEPARTMENT", 0, "N"), ("OFFICE_SITE", 1, "N")]
    assert parts(d, "CONTROLS") == [("DEPARTMENT", 1, "N"), ("PROJECT", 1, 1)]
    assert not d.relationship("CONTROLS").identifying  # "--" but PROJECT has its own key
    text = "\n".join(r.warnings)
    for expected in (
        "foreign-key attribute(s) dno, super_ssn left out",
        "attribute types",
        "attribute comments",
        "recursive relationship 'supervises'",
        "identifying line (--) on 'controls'",
        "junction table",
    ):
        assert expected in text, expected


def test_composite_primary_key_is_reported():
    r = import_text(er("FLIGHT {\n  string airline PK\n  int number PK\n}"))
    assert [a.key for a in r.diagram.entity("FLIGHT").attributes] == [True, True]
    assert any("primary key spans airline, number" in w for w in r.warnings)


def test_one_line_blocks_aliases_and_quotes():
    r = import_text(er('"Line Item"["Order line"] { int no PK "first" string `odd name` }\nc["Client"]'))
    d = r.diagram
    assert d.entity("LINE_ITEM").name == "Order line"
    assert [a.name for a in d.entity("LINE_ITEM").attributes] == ["no", "odd name"]
    assert d.entity("C").name == "Client"


def test_hostile_labels_survive_as_names():
    label = 'drops "; DROP TABLE x; <script>'
    d = import_text(er(f'A ||--o{{ B : "{label.replace(chr(34), chr(39))}"')).diagram
    assert d.relationships[0].name == label.replace('"', "'")
    assert all(ch.isalnum() or ch == "_" for ch in d.relationships[0].id)


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("graph TD\nA-->B", "line 1, column 1", "expected 'erDiagram'"),
        (er("A ||--o{ B"), "line 2", "': label'"),
        (er("A ||==o{ B : r"), "line 2, column 5", "'--'"),
        (er("A ||--x B : r"), "line 2, column 7", "cardinality"),
        (er("A {\n  string name\n"), "line 2", "never closed"),
        (er("A }o--u B : r"), "line 2", "cardinality"),
        (er("A u--|| B : r"), "line 2", "'u' (parent) marker"),
        ("---\ntitle: x\nerDiagram\nA ||--|| B : r", "line 1", "never closed"),
        (er("A {\n  string\n}"), "line 3", "no name"),
        (er("A ||--|| B : r extra words"), "line 2", "unexpected text"),
    ],
)
def test_bad_mermaid_says_what_and_where(text, where, what):
    with pytest.raises(ImportFormatError) as info:
        import_text(text, "mermaid")
    assert where in str(info.value) and what in str(info.value), str(info.value)
