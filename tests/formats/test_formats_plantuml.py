"""PlantUML Chen import and export: hand-worked look-across values and round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from r2ta.eerd import diagram_to_json, parse_diagram
from r2ta.errors import ImportFormatError
from r2ta.formats import import_file, import_text
from r2ta.formats.plantuml import decode_display, encode_display, export_plantuml, to_plantuml
from r2ta.records import SCHEMAS_DIR, load_base_schema

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"


def chen(body: str, head: str = "t") -> str:
    return f"@startchen {head}\n{body}\n@endchen\n"


def parts(d, rel_id):
    return [(p.entity, p.min, p.max) for p in d.relationship(rel_id).participants]


def flags(d, attr_id):
    for _, a, _ in d.iter_attributes():
        if a.id == attr_id:
            return {k for k in ("key", "partial_key", "multivalued", "derived") if getattr(a, k)}
    raise AssertionError(attr_id)


WORKS_FOR_HEAD = "entity EMPLOYEE {\n}\nentity DEPARTMENT {\n}\nrelationship WORKS_FOR {\n}\n"


def test_chen_words_are_look_across_and_double_lines_are_look_here():
    # "Each employee works for exactly one department; a department has any number of employees."
    # Chen writes N on EMPLOYEE's line and 1 on DEPARTMENT's; the double line is EMPLOYEE's total participation.
    d = import_text(chen(WORKS_FOR_HEAD + "WORKS_FOR =N= EMPLOYEE\nWORKS_FOR -1- DEPARTMENT")).diagram
    assert parts(d, "WORKS_FOR") == [("EMPLOYEE", 1, 1), ("DEPARTMENT", 0, "N")]


def test_min_max_labels_are_look_here_and_give_the_same_diagram():
    words = import_text(chen(WORKS_FOR_HEAD + "WORKS_FOR =N= EMPLOYEE\nWORKS_FOR -1- DEPARTMENT")).diagram
    pairs = import_text(chen(WORKS_FOR_HEAD + "WORKS_FOR =(1,1)= EMPLOYEE\nWORKS_FOR -(0,N)- DEPARTMENT")).diagram
    assert diagram_to_json(words) == diagram_to_json(pairs)


def test_a_min_max_disagreeing_with_the_word_across_wins_with_a_warning():
    r = import_text(chen(WORKS_FOR_HEAD + "WORKS_FOR =(1,N)= EMPLOYEE\nWORKS_FOR -1- DEPARTMENT"))
    assert parts(r.diagram, "WORKS_FOR") == [("EMPLOYEE", 1, "N"), ("DEPARTMENT", 0, "N")]
    assert any("disagrees" in w for w in r.warnings)


def test_words_on_a_ternary_have_no_look_here_meaning():
    body = "entity A {\n}\nentity B {\n}\nentity C {\n}\nrelationship R {\n}\nR -1- A\nR =N= B\nR -M- C"
    r = import_text(chen(body))
    assert parts(r.diagram, "R") == [("A", 0, "N"), ("B", 1, "N"), ("C", 0, "N")]
    assert any("degree 3" in w for w in r.warnings)


def test_fixture_every_construct():
    r = import_file(FIXTURES / "plantuml_company.puml")
    d = r.diagram
    assert (d.id, d.name) == ("company", 'Company with "quotes" & <angles>')
    assert d.entity("EMPLOYEE").name == "Employee"
    assert flags(d, "EMPLOYEE.Ssn") == {"key"}
    assert [c.id for c in d.entity("EMPLOYEE").attributes[1].components] == [
        "EMPLOYEE.Name.Fname", "EMPLOYEE.Name.Minit", "EMPLOYEE.Name.Lname"]
    assert d.entity("EMPLOYEE").attributes[2].name == "Birth date"  # "Birth date" as Bdate : DATE
    assert flags(d, "EMPLOYEE.Age") == {"derived"}
    assert flags(d, "EMPLOYEE.Phones") == {"multivalued"}
    assert d.entity("DEPENDENT").weak and d.entity("PROJECT_PHASE").weak
    assert flags(d, "DEPENDENT.Dependent_name") == {"partial_key"}  # <<key>> on a weak entity
    assert flags(d, "PROJECT_PHASE.Phase_no") == {"partial_key"}  # <<partial key>>
    assert d.relationship("DEPENDENTS_OF").identifying and d.relationship("DEPENDENTS_OF").name == "dependents of"
    assert [a.id for a in d.relationship("WORKS_FOR").attributes] == ["WORKS_FOR.Start_date"]
    # hand-worked: (max from the word across, min from the own line)
    assert parts(d, "WORKS_FOR") == [("EMPLOYEE", 1, 1), ("DEPARTMENT", 0, "N")]
    assert parts(d, "MANAGES") == [("EMPLOYEE", 0, 1), ("DEPARTMENT", 1, 1)]
    assert parts(d, "WORKS_ON") == [("EMPLOYEE", 1, "N"), ("PROJECT", 1, "N")]
    assert parts(d, "DEPENDENTS_OF") == [("EMPLOYEE", 0, "N"), ("DEPENDENT", 1, 1)]
    assert parts(d, "HAS_PHASE") == [("PROJECT", 0, "N"), ("PROJECT_PHASE", 1, 1)]  # entity written first
    # "1" on the supervisor's line: a supervisor supervises N, a supervisee has 1 supervisor
    assert parts(d, "SUPERVISION") == [("EMPLOYEE", 0, "N"), ("EMPLOYEE", 0, 1)]
    assert parts(d, "SUPPLY") == [("SUPPLIER", 0, "N"), ("PROJECT", 0, "N"), ("PART", 1, "N")]
    assert parts(d, "SPONSORS") == [("SPONSOR", 0, "N"), ("PROJECT", 0, "N")]
    specs = [(s.id, s.superclass, s.subclasses, s.disjointness, s.completeness) for s in d.specializations]
    assert specs == [
        ("SPEC_EMPLOYEE", "EMPLOYEE", ["HOURLY_EMPLOYEE", "SALARIED_EMPLOYEE"], "d", "total"),
        ("SPEC_EMPLOYEE_2", "EMPLOYEE", ["ENGINEER", "SECRETARY"], "o", "partial"),
        ("SPEC_EMPLOYEE_3", "EMPLOYEE", ["MANAGER"], "d", "partial"),
        ("SPEC_EMPLOYEE_4", "EMPLOYEE", ["TRAINEE"], "d", "partial"),
    ]
    cats = [(c.id, c.subclass, c.superclasses, c.completeness) for c in d.categories]
    assert cats == [("CAT_SPONSOR", "SPONSOR", ["DEPARTMENT", "SUPPLIER"], "total")]
    text = "\n".join(r.warnings)
    assert "domain 'DATE'" in text and "<<red>>" in text


def test_partial_key_conventions():
    body = (
        "entity OWNER {\n  Code <<key>>\n  Twin <<partial key>>\n}\n"
        "entity ITEM <<weak>> {\n  No <<key>>\n  Serial <<key>><<full>>\n  Tag <<discriminator>>\n}\n"
    )
    d = import_text(chen(body)).diagram
    assert flags(d, "OWNER.Code") == {"key"}
    assert flags(d, "OWNER.Twin") == {"partial_key"}
    assert flags(d, "ITEM.No") == {"partial_key"}
    assert flags(d, "ITEM.Serial") == {"key"}
    assert flags(d, "ITEM.Tag") == {"partial_key"}


def test_entity_without_block_and_redeclaration_add_up():
    body = 'entity A <<weak>>\nentity "Alpha" as A {\n  x\n}\nentity A {\n  y\n}\n'
    d = import_text(chen(body)).diagram
    a = d.entity("A")
    assert a.weak and a.name == "Alpha" and [x.id for x in a.attributes] == ["A.x", "A.y"]


HOSTILE = [
    'Say "hi" & <b>bold</b>',
    "two\nlines",
    "back\\slash and \\n literal",
    "<U+0041> literal escape",
    "  padded  ",
    "tab\there",
    "“curly” «guillemets»",
    "} @enduml\n@endchen",
    "名前 🙂",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_survive_export_and_import(name):
    assert decode_display(encode_display(name)) == name
    d = parse_diagram(
        {
            "id": "h",
            "name": name,
            "entities": [
                {"id": "E", "name": name, "attributes": [{"id": "E.A", "name": name, "key": True}]},
                {"id": "F", "name": "F"},
            ],
            "relationships": [
                {"id": "R", "name": name, "participants": [{"entity": "E", "min": 1, "max": 1}, {"entity": "F"}]}
            ],
        }
    )
    back = import_text(to_plantuml(d)).diagram
    assert diagram_to_json(back) == diagram_to_json(d)


def everything():
    """A diagram using every construct PlantUML Chen can carry, mistakes included."""
    return parse_diagram(
        {
            "id": "every_construct",
            "name": "Every construct",
            "entities": [
                {"id": "PERSON", "name": "Person", "attributes": [
                    {"id": "PERSON.Ssn", "name": "Ssn", "key": True},
                    {"id": "PERSON.Name", "name": "Name", "components": [
                        {"id": "PERSON.Name.First", "name": "First"},
                        {"id": "PERSON.Name.Last", "name": "Last name", "components": [
                            {"id": "PERSON.Name.Last.Prefix", "name": "Prefix"}]}]},
                    {"id": "PERSON.Phones", "name": "Phones", "multivalued": True},
                    {"id": "PERSON.Age", "name": "Age", "derived": True},
                    {"id": "PERSON.Odd", "name": "Odd", "key": True, "multivalued": True, "derived": True},
                    {"id": "PERSON.Title", "name": "Title"},
                    {"id": "PERSON.Twin", "name": "Twin", "partial_key": True},
                ]},
                {"id": "CHILD", "name": "CHILD", "weak": True, "attributes": [
                    {"id": "CHILD.Name", "name": "Name", "partial_key": True},
                    {"id": "CHILD.Passport", "name": "Passport", "key": True},
                    {"id": "CHILD.Both", "name": "Both", "key": True, "partial_key": True}]},
                {"id": "STUDENT", "name": "STUDENT"},
                {"id": "EMPLOYEE", "name": "EMPLOYEE"},
                {"id": "ALUMNUS", "name": "ALUMNUS"},
                {"id": "BANK", "name": "BANK", "attributes": [{"id": "BANK.Code", "name": "Code", "key": True}]},
                {"id": "OWNER", "name": "OWNER"},
                {"id": "CLIENT", "name": "CLIENT"},
                {"id": "LONER", "name": "LONER"},
            ],
            "relationships": [
                {"id": "PARENT_OF", "name": "parent of", "identifying": True, "participants": [
                    {"entity": "PERSON", "min": 0, "max": "N"}, {"entity": "CHILD", "min": 1, "max": 1}]},
                {"id": "BANKS_WITH", "name": "BANKS_WITH", "participants": [
                    {"entity": "PERSON", "min": 2, "max": 5}, {"entity": "BANK", "min": 0, "max": 3}],
                 "attributes": [{"id": "BANKS_WITH.Since", "name": "Since"},
                                {"id": "BANKS_WITH.Where", "name": "Where", "components": [
                                    {"id": "BANKS_WITH.Where.City", "name": "City"}]}]},
                {"id": "TERNARY", "name": "TERNARY", "participants": [
                    {"entity": "PERSON"}, {"entity": "BANK", "min": 1}, {"entity": "OWNER", "min": 1, "max": 1}]},
                {"id": "NESTED", "name": "NESTED", "participants": [{"entity": "PARENT_OF"}, {"entity": "BANK"}]},
                {"id": "LONELY", "name": "LONELY", "participants": [{"entity": "LONER", "min": 1}]},
                {"id": "EMPTY", "name": "EMPTY"},
            ],
            "specializations": [
                {"id": "SPEC_PERSON", "superclass": "PERSON", "subclasses": ["STUDENT", "EMPLOYEE"],
                 "disjointness": "o", "completeness": "total"},
                {"id": "SPEC_PERSON_2", "superclass": "PERSON", "subclasses": ["ALUMNUS"], "disjointness": "d",
                 "completeness": "partial"},
                {"id": "SPEC_STUDENT", "superclass": "STUDENT", "subclasses": ["ALUMNUS"], "disjointness": "o",
                 "completeness": "total"},
                {"id": "SPEC_EMPLOYEE", "superclass": "EMPLOYEE", "subclasses": ["ALUMNUS", "CLIENT"],
                 "disjointness": "d", "completeness": "partial"},
            ],
            "categories": [
                {"id": "CAT_OWNER", "subclass": "OWNER", "superclasses": ["PERSON", "BANK"], "completeness": "total"},
                {"id": "CAT_CLIENT", "subclass": "CLIENT", "superclasses": ["BANK"], "completeness": "partial"},
            ],
        }
    )


def test_round_trip_preserves_every_construct_plantuml_can_express():
    d = everything()
    result = export_plantuml(d)
    assert result.warnings == []
    back = import_text(result.text)
    assert diagram_to_json(back.diagram) == diagram_to_json(d)
    assert back.warnings == []
    # and the fixture written by hand survives import -> export -> import
    first = import_file(FIXTURES / "plantuml_company.puml").diagram
    assert diagram_to_json(import_text(to_plantuml(first)).diagram) == diagram_to_json(first)


def test_export_text_is_plain_chen_with_look_here_pairs():
    text = to_plantuml(everything())
    assert text.startswith("@startchen every_construct\ntitle Every construct\n")
    assert 'entity "Person" as PERSON {' in text
    assert "entity CHILD <<weak>> {" in text
    assert "  Name <<key>>" in text  # partial key on a weak entity, PlantUML's own convention
    assert "  Passport <<key>><<full>>" in text
    assert '  "Title" as Title' in text  # a PlantUML keyword is never written bare
    assert "BANKS_WITH =(2,5)= PERSON" in text and "BANKS_WITH -(0,3)- BANK" in text
    assert "PERSON =>= o { STUDENT, EMPLOYEE }" in text
    assert "PERSON ->- ALUMNUS" in text
    assert "OWNER =>= U { PERSON, BANK }" in text
    assert text.rstrip().endswith("@endchen")


def test_export_reports_what_plantuml_cannot_express():
    d = parse_diagram(
        {
            "id": "lossy",
            "name": "lossy",
            "entities": [
                {"id": "EMP-1", "name": "EMP", "attributes": [{"id": "EMP-1.Kind", "name": "Kind"}]},
                {"id": "A", "name": "A"},
                {"id": "B", "name": "B"},
            ],
            "relationships": [{"id": "SUPERVISES", "name": "SUPERVISES", "participants": [
                {"entity": "EMP-1", "role": "boss"}, {"entity": "EMP-1", "role": "worker"}]}],
            "specializations": [
                {"id": "SPEC_KIND", "superclass": "EMP-1", "subclasses": ["A", "B"], "defining_attribute": "EMP-1.Kind",
                 "defining_values": {"A": "a", "B": "b"}},
                {"id": "SPEC_LOOSE", "superclass": None, "subclasses": ["A"]},
                {"id": "SPEC_UNSTATED", "superclass": "A", "subclasses": ["B"], "disjointness": None},
            ],
        }
    )
    result = export_plantuml(d)
    text = "\n".join(result.warnings)
    assert "role name 'boss'" in text and "role name 'worker'" in text
    assert "SPEC_KIND: the defining attribute and values" in text
    assert "SPEC_LOOSE: a specialization without a superclass" in text
    assert "SPEC_UNSTATED: disjoint/overlapping is not stated" in text
    assert "'EMP-1' comes back as 'EMP_1'" in text
    back = import_text(result.text).diagram  # what is left still reads back
    assert back.entity("EMP_1").name == "EMP"


def test_base_schemas_round_trip_except_for_the_reported_losses():
    paths = sorted(SCHEMAS_DIR.glob("*.json"))
    assert paths, "no base schemas found"
    for path in paths:
        d = load_base_schema(path).diagram
        result = export_plantuml(d)
        back = import_text(result.text).diagram
        expected = d.model_copy(deep=True)
        for r in expected.relationships:
            for p in r.participants:
                p.role = None
        for s in expected.specializations:
            s.defining_attribute, s.defining_values = None, {}
        spec_ids = [s.id for s in back.specializations]
        for s, new_id in zip(expected.specializations, spec_ids):
            s.id = new_id
        assert diagram_to_json(back) == diagram_to_json(expected), path.name
        lost_roles = any(p.role for r in d.relationships for p in r.participants)
        assert any("role name" in w for w in result.warnings) == lost_roles, path.name


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("@startchen x\nentity A {\n}\n", "line 1", "never closed by @endchen"),
        (chen("entity A {\n  x\n"), "line 2", "never closed"),
        (chen("}"), "line 2, column 1", "closes nothing"),
        (chen("entity A {\n}\nthis is not chen"), "line 4, column 1", "cannot read 'this is not chen'"),
        (chen("entity A {\n}\nrelationship R {\n}\nR -1- B"), "line 6, column 7", "'B'"),
        (chen("entity A {\n}\nentity B {\n}\nA -1- B"), "line 6", "two entities"),
        (chen("!include other.puml"), "line 2", "preprocessor"),
        (chen(WORKS_FOR_HEAD + "WORKS_FOR -0- EMPLOYEE\nWORKS_FOR -1- DEPARTMENT"), "line 8", "maximum of 0"),
        (chen(WORKS_FOR_HEAD + "WORKS_FOR -(2,1)- EMPLOYEE"), "line 8", "greater than the maximum"),
        (chen("entity A {\n  x\n  x\n}"), "line 4", "already exists"),
        (chen("entity A {\nentity B {\n}\n}"), "line 3", "inside the block opened at line 2"),
        (chen("entity A {\n}\nrelationship A {\n}"), "line 4", "declared as entity"),
        ("just some text", "", "no @startchen"),
    ],
)
def test_bad_plantuml_says_what_and_where(text, where, what):
    with pytest.raises(ImportFormatError) as info:
        import_text(text, "plantuml")
    assert where in str(info.value) and what in str(info.value), str(info.value)
