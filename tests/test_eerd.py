"""The EERD model: round trips, the published JSON Schema, and refusal of malformed input."""

from __future__ import annotations

import json

import jsonschema
import pytest

from r2ta.cli import main
from r2ta.commands.schema import schema_text
from r2ta.config import ASSETS_DIR
from r2ta.eerd import (
    MAX_ELEMENTS,
    MAX_FILE_BYTES,
    EERD,
    diagram_from_json,
    diagram_to_json,
    parse_diagram,
    read_diagram,
)
from r2ta.errors import DiagramError
from r2ta.records import load_base_schemas

SCHEMAS = load_base_schemas()


def small() -> dict:
    return {
        "id": "small",
        "name": "Small",
        "entities": [
            {"id": "EMPLOYEE", "name": "EMPLOYEE", "attributes": [{"id": "EMPLOYEE.Ssn", "name": "Ssn", "key": True}]},
            {"id": "DEPARTMENT", "name": "DEPARTMENT", "attributes": [{"id": "DEPARTMENT.Dno", "name": "Dno", "key": True}]},
        ],
        "relationships": [
            {
                "id": "WORKS_FOR",
                "name": "WORKS_FOR",
                "participants": [
                    {"entity": "EMPLOYEE", "min": 1, "max": 1},
                    {"entity": "DEPARTMENT", "min": 1, "max": "N"},
                ],
            }
        ],
    }


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.id)
def test_base_schema_round_trips(schema):
    text = diagram_to_json(schema.diagram)
    again = diagram_from_json(text)
    assert again == schema.diagram
    assert diagram_to_json(again) == text


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.id)
def test_base_schema_validates_against_published_json_schema(schema):
    published = json.loads((ASSETS_DIR / "eerd.schema.json").read_text())
    jsonschema.validate(json.loads(diagram_to_json(schema.diagram)), published)


def test_published_json_schema_is_current():
    assert (ASSETS_DIR / "eerd.schema.json").read_text() == schema_text(), (
        "assets/eerd.schema.json is stale: run `r2ta schema -o assets/eerd.schema.json`"
    )


def test_published_schema_rejects_what_the_model_rejects():
    published = json.loads((ASSETS_DIR / "eerd.schema.json").read_text())
    bad = small()
    bad["entities"][0]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, published)


def test_look_here_bounds_and_total_participation():
    d = parse_diagram(small())
    emp, dept = d.relationships[0].participants
    assert (emp.min, emp.max, emp.total) == (1, 1, True)
    assert (dept.min, dept.max) == (1, "N")


@pytest.mark.parametrize(
    "mutate, fragments",
    [
        (lambda d: d["entities"][0]["attributes"][0].pop("name"), ["entities[0] ('EMPLOYEE')", "attributes[0]", "name", "required"]),
        (lambda d: d["relationships"][0]["participants"][1].update(entity="NOPE"), ["WORKS_FOR", "participants[1]", "'NOPE' is not an entity"]),
        (lambda d: d["entities"][1].update(id="EMPLOYEE"), ["entities[1]", "'EMPLOYEE' is already used"]),
        (lambda d: d["relationships"][0]["participants"][0].update(min=3), ["participants[0]", "min (3) is greater than max (1)"]),
        (lambda d: d["relationships"][0]["participants"][0].update(max="many"), ["participants[0]", "max"]),
        (lambda d: d["entities"][0].update(weak="yes please"), ["entities[0] ('EMPLOYEE').weak", "boolean"]),
        (lambda d: d["entities"][0].update(id="bad id with spaces"), ["entities[0]", "id", "pattern"]),
        (lambda d: d["entities"][0].update(colour="red"), ["entities[0] ('EMPLOYEE').colour", "Extra inputs"]),
        (lambda d: d.update(format_version=7), ["unsupported format_version 7"]),
        (lambda d: d.update(specializations=[{"id": "S", "superclass": "GHOST", "subclasses": []}]), ["specializations[0]", "'GHOST'"]),
    ],
)
def test_malformed_diagram_is_refused_naming_element_and_path(mutate, fragments):
    data = small()
    mutate(data)
    with pytest.raises(DiagramError) as info:
        parse_diagram(data)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('{"id": "x", "name": "X", "entities": [', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2, 3]", "must be a JSON object"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        ("[" * 100_000, "nests too deeply"),
    ],
)
def test_unreadable_text_is_refused(text, fragment):
    with pytest.raises(DiagramError, match=fragment):
        diagram_from_json(text)


def test_oversized_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text('{"id": "x", "name": "' + "a" * (MAX_FILE_BYTES + 10) + '"}')
    with pytest.raises(DiagramError, match="limit is"):
        read_diagram(path)


def test_too_many_elements_is_refused():
    data = {
        "id": "big",
        "name": "Big",
        "entities": [{"id": f"E{i}", "name": f"E{i}"} for i in range(MAX_ELEMENTS + 1)],
    }
    with pytest.raises(DiagramError, match=f"limit is {MAX_ELEMENTS}"):
        parse_diagram(data)


def test_deeply_nested_composite_is_refused():
    attr: dict = {"id": "E.a0", "name": "a0"}
    node = attr
    for depth in range(1, 12):
        child = {"id": f"E.a{depth}", "name": f"a{depth}"}
        node["components"] = [child]
        node = child
    data = {"id": "deep", "name": "Deep", "entities": [{"id": "E", "name": "E", "attributes": [attr]}]}
    with pytest.raises(DiagramError, match="nest deeper"):
        parse_diagram(data)


def test_hostile_names_survive_a_round_trip():
    data = small()
    hostile = 'A" -> B [color=red]; <script>alert(1)</script> {}\n&amp; \'q\''
    data["entities"][0]["name"] = hostile
    d = parse_diagram(data)
    assert diagram_from_json(diagram_to_json(d)).entities[0].name == hostile


def test_read_diagram_accepts_a_base_schema_file(tmp_path):
    path = next((ASSETS_DIR / "schemas").glob("*.json"))
    assert isinstance(read_diagram(path), EERD)


def test_schema_command_prints_the_schema(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "R2tA EERD diagram"
