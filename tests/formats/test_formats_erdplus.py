"""ERDPlus import, both file formats, checked against hand-worked look-here values.

The fixtures in tests/fixtures/formats/ were written by hand; the expected
(min,max) below were worked out from the requirement each relationship encodes,
not read back from the importer.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from r2ta.errors import DiagramError, ImportFormatError
from r2ta.formats import import_file, import_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"


def parts(diagram, rel_id):
    rel = diagram.relationship(rel_id)
    assert rel is not None, f"{rel_id} missing; have {[r.id for r in diagram.relationships]}"
    return [(p.entity, p.min, p.max, p.role) for p in rel.participants]


def attr(diagram, attr_id):
    for _, a, _ in diagram.iter_attributes():
        if a.id == attr_id:
            return a
    raise AssertionError(f"no attribute {attr_id}")


# -- the core of the issue: the two formats store cardinality from opposite ends ------------------

# "Each employee works in exactly one department; a department has any number of employees."
# Look-here: EMPLOYEE (1,1), DEPARTMENT (0,N).
OLD_WORKS_IN = {
    "shapes": [
        {"type": "Entity", "details": {"id": 1, "name": "EMPLOYEE", "type": "regular"}},
        {"type": "Entity", "details": {"id": 2, "name": "DEPARTMENT", "type": "regular"}},
        {"type": "Relationship", "details": {"id": 3, "name": "WORKS_IN", "slots": [
            # the entity's OWN participation and cardinality: look-here, no crossing
            {"slotIndex": 0, "entityId": 1, "participation": "mandatory", "cardinality": "one"},
            {"slotIndex": 1, "entityId": 2, "participation": "optional", "cardinality": "many"},
        ]}},
    ],
    "connectors": [
        {"type": "RelationshipConnector", "source": 1, "destination": 3},
        {"type": "RelationshipConnector", "source": 2, "destination": 3},
    ],
}
NEW_WORKS_IN = {
    "diagramType": 1,
    "name": "Works in",
    "data": {
        "nodes": [
            {"id": "e", "type": "Entity", "data": {"label": "EMPLOYEE", "type": "Regular"}},
            {"id": "d", "type": "Entity", "data": {"label": "DEPARTMENT", "type": "Regular"}},
            {"id": "r", "type": "Relationship", "data": {
                "label": "WORKS_IN",
                # crow's foot: the marks at the EMPLOYEE end count employees per department ...
                "sourceEntityDetails": {"id": "e", "minCardinality": "Optional", "maxCardinality": "Many"},
                # ... and the marks at the DEPARTMENT end count departments per employee.
                "targetEntityDetails": {"id": "d", "minCardinality": "Mandatory", "maxCardinality": "One"},
            }},
        ],
        "edges": [],
    },
}


def test_old_format_slot_is_the_entitys_own_look_here_constraint():
    d = import_text(json.dumps(OLD_WORKS_IN), name="works").diagram
    assert parts(d, "WORKS_IN") == [("EMPLOYEE", 1, 1, None), ("DEPARTMENT", 0, "N", None)]


def test_new_format_marks_are_read_across_to_the_other_entity():
    d = import_text(json.dumps(NEW_WORKS_IN)).diagram
    assert parts(d, "WORKS_IN") == [("EMPLOYEE", 1, 1, None), ("DEPARTMENT", 0, "N", None)]


def test_same_marks_on_the_same_entity_mean_opposite_things_in_the_two_formats():
    # Put "Mandatory/One" on EMPLOYEE in both formats: old reads EMPLOYEE (1,1), new reads DEPARTMENT (1,1).
    new = copy.deepcopy(NEW_WORKS_IN)
    rel = new["data"]["nodes"][2]["data"]
    rel["sourceEntityDetails"].update(minCardinality="Mandatory", maxCardinality="One")
    rel["targetEntityDetails"].update(minCardinality="Optional", maxCardinality="Many")
    d = import_text(json.dumps(new)).diagram
    assert parts(d, "WORKS_IN") == [("EMPLOYEE", 0, "N", None), ("DEPARTMENT", 1, 1, None)]


def test_new_format_exact_constraints_are_read_like_the_marks_beside_them():
    new = copy.deepcopy(NEW_WORKS_IN)
    rel = new["data"]["nodes"][2]["data"]
    # 2..5 employees per department, written at the EMPLOYEE end -> DEPARTMENT (2,5)
    rel["sourceEntityDetails"]["exactConstraints"] = {"role": "member", "min": 2, "max": 5}
    d = import_text(json.dumps(new)).diagram
    assert parts(d, "WORKS_IN") == [("EMPLOYEE", 1, 1, "member"), ("DEPARTMENT", 2, 5, None)]


def test_new_format_reads_ends_from_relationship_edges_when_the_node_has_none():
    new = copy.deepcopy(NEW_WORKS_IN)
    rel = new["data"]["nodes"][2]["data"]
    src, dst = rel.pop("sourceEntityDetails"), rel.pop("targetEntityDetails")
    new["data"]["edges"] = [
        {"id": "r->e", "type": "Relationship", "source": "r", "target": "e", "data": src},
        {"id": "r->d", "type": "Relationship", "source": "r", "target": "d", "data": dst},
    ]
    d = import_text(json.dumps(new)).diagram
    assert parts(d, "WORKS_IN") == [("EMPLOYEE", 1, 1, None), ("DEPARTMENT", 0, "N", None)]


def test_old_format_minimum_maximum_spelling():
    old = copy.deepcopy(OLD_WORKS_IN)
    old["shapes"][2]["details"]["slots"] = [
        {"entityId": 1, "minimum": 1, "maximum": 1},
        {"entityId": 2, "minimum": 0, "maximum": "many"},
    ]
    d = import_text(json.dumps(old)).diagram
    assert parts(d, "WORKS_IN") == [("EMPLOYEE", 1, 1, None), ("DEPARTMENT", 0, "N", None)]


# -- every construct of each fixture ------------------------------------------------------------


def test_old_fixture_every_construct():
    r = import_file(FIXTURES / "erdplus_old_company.erdplus")
    d = r.diagram
    assert r.format == "erdplus"
    assert [e.id for e in d.entities] == ["EMPLOYEE", "DEPARTMENT", "PROJECT", "DEPENDENT", "SUPPLIER", "PART", "CONTRACT"]
    assert d.entity("DEPENDENT").weak and not d.entity("EMPLOYEE").weak
    assert attr(d, "EMPLOYEE.Ssn").key
    assert [c.id for c in attr(d, "EMPLOYEE.Name").components] == ["EMPLOYEE.Name.Fname", "EMPLOYEE.Name.Lname"]
    assert attr(d, "EMPLOYEE.Birth_date").name == "Birth date"  # id sanitised, name kept
    assert attr(d, "EMPLOYEE.Age").derived
    assert attr(d, "EMPLOYEE.Phones").multivalued
    assert attr(d, "DEPARTMENT.Locations").multivalued
    # this file uses the partial-identifier flag, so the weak entity's partial key is explicit
    dep_name = attr(d, "DEPENDENT.Dependent_name")
    assert dep_name.partial_key and not dep_name.key
    # hand-worked look-here values (slots are the entity's own constraint)
    assert parts(d, "WORKS_IN") == [("EMPLOYEE", 1, 1, None), ("DEPARTMENT", 1, "N", None)]
    assert parts(d, "WORKS_ON") == [("EMPLOYEE", 0, "N", None), ("PROJECT", 1, "N", None)]
    assert parts(d, "DEPENDENTS_OF") == [("EMPLOYEE", 0, "N", None), ("DEPENDENT", 1, 1, None)]
    assert d.relationship("DEPENDENTS_OF").identifying
    assert parts(d, "SUPERVISION") == [("EMPLOYEE", 0, "N", "supervisor"), ("EMPLOYEE", 0, 1, "supervisee")]
    assert parts(d, "SUPPLY") == [("SUPPLIER", 0, "N", None), ("PROJECT", 0, "N", None), ("PART", 1, "N", None)]
    assert [a.id for a in d.relationship("WORKS_IN").attributes] == ["WORKS_IN.Start_date"]
    assert [a.id for a in d.relationship("WORKS_ON").attributes] == ["WORKS_ON.Hours"]
    text = "\n".join(r.warnings)
    assert "associative entity 'CONTRACT'" in text
    assert "free-text label" in text
    assert "'Phones' is optional" in text


def test_new_fixture_every_construct():
    r = import_file(FIXTURES / "erdplus_new_company.erdplus")
    d = r.diagram
    assert (d.id, d.name) == ("company_erdplus", "Company (ERDPlus)")
    assert d.entity("DEPENDENT").weak
    # no partial-identifier flag in this file: "Unique" on a weak entity is its partial key
    dep_name = attr(d, "DEPENDENT.Dependent_name")
    assert dep_name.partial_key and not dep_name.key
    assert attr(d, "EMPLOYEE.Ssn").key and attr(d, "EMPLOYEE.Age").derived and attr(d, "EMPLOYEE.Phones").multivalued
    assert [c.name for c in attr(d, "EMPLOYEE.Name").components] == ["First name", "Last name"]
    assert attr(d, "DEPARTMENT.Dname")  # placed through its Attribute edge (no parentId)
    assert [a.id for a in d.relationship("WORKS_ON").attributes] == ["WORKS_ON.Hours"]
    # hand-worked: each entity's look-here comes from the marks at the other end
    assert parts(d, "WORKS_IN") == [("EMPLOYEE", 1, 1, None), ("DEPARTMENT", 1, "N", None)]
    assert parts(d, "MANAGES") == [("EMPLOYEE", 0, 1, None), ("DEPARTMENT", 1, 1, None)]
    assert parts(d, "WORKS_ON") == [("EMPLOYEE", 0, "N", None), ("PROJECT", 1, "N", None)]
    assert parts(d, "DEPENDENTS_OF") == [("EMPLOYEE", 0, "N", None), ("DEPENDENT", 1, 1, None)]
    assert d.relationship("DEPENDENTS_OF").identifying
    assert parts(d, "SUPERVISION") == [("EMPLOYEE", 0, 1, "supervisee"), ("EMPLOYEE", 0, "N", "supervisor")]
    assert parts(d, "COVERS") == [("CONTRACT", 1, 1, None), ("PROJECT", 1, 3, None)]
    specs = {s.id: s for s in d.specializations}
    emp, proj = specs["SPEC_EMPLOYEE"], specs["SPEC_PROJECT"]
    assert (emp.superclass, emp.subclasses, emp.disjointness, emp.completeness) == (
        "EMPLOYEE", ["HOURLY_EMPLOYEE", "SALARIED_EMPLOYEE"], "d", "total")
    # CLIENT_PROJECT has no parentId: found through its Supertype edge
    assert (proj.subclasses, proj.disjointness, proj.completeness) == (["RESEARCH_PROJECT", "CLIENT_PROJECT"], "o", "partial")
    assert any("read as its partial key" in w for w in r.warnings)


def test_partial_flag_in_the_file_keeps_unique_on_a_weak_entity_a_full_key():
    doc = json.loads((FIXTURES / "erdplus_new_company.erdplus").read_text())
    nodes = doc["data"]["nodes"]
    nodes.append({"id": "a-kin", "parentId": "dep", "type": "Attribute",
                  "data": {"label": "Kin_no", "types": [{"Partially Unique": True}]}})
    d = import_text(json.dumps(doc)).diagram
    assert attr(d, "DEPENDENT.Kin_no").partial_key
    full = attr(d, "DEPENDENT.Dependent_name")
    assert full.key and not full.partial_key  # a modelling mistake the checker reports, kept as drawn


def test_hostile_names_survive_and_ids_stay_safe():
    old = copy.deepcopy(OLD_WORKS_IN)
    hostile = 'Em"ployee <b>&amp;</b>\n} -> DROP; \\ 名前'
    old["shapes"][0]["details"]["name"] = hostile
    old["shapes"][1]["details"]["name"] = hostile  # same name twice: ids get a suffix
    d = import_text(json.dumps(old)).diagram
    assert [e.name for e in d.entities] == [hostile, hostile]
    ids = [e.id for e in d.entities]
    assert ids[0] != ids[1] and ids[1] == ids[0] + "_2"
    assert all(ch.isalnum() or ch == "_" for ch in ids[0])


# -- bad files ---------------------------------------------------------------------------------------


def mutate(doc, fn):
    doc = copy.deepcopy(doc)
    fn(doc)
    return json.dumps(doc)


@pytest.mark.parametrize(
    "text, where, what",
    [
        (mutate(OLD_WORKS_IN, lambda d: d["shapes"].append({"type": "Cloud", "details": {"id": 9}})),
         "shapes[3]", "unknown shape type 'Cloud'"),
        (mutate(OLD_WORKS_IN, lambda d: d["shapes"][2]["details"]["slots"][0].update(entityId=42)),
         "shapes[2] (relationship id 3).slots[0]", "entity id 42"),
        (mutate(OLD_WORKS_IN, lambda d: d["connectors"].append({"type": "Connector", "source": 1, "destination": 77})),
         "connectors[2]", "id 77"),
        (mutate(OLD_WORKS_IN, lambda d: d["shapes"][1]["details"].update(id=1)),
         "shapes[1]", "already used"),
        (mutate(OLD_WORKS_IN, lambda d: d["shapes"][2]["details"]["slots"][0].update(cardinality="lots")),
         "slots[0]", "one or many"),
        (mutate(OLD_WORKS_IN, lambda d: d["connectors"].append({"type": "Wire", "source": 1, "destination": 2})),
         "connectors[2]", "unknown connector type"),
        (mutate(OLD_WORKS_IN, lambda d: d["shapes"][0]["details"].update(type="ghost")),
         "shapes[0]", "unknown entity type"),
        (mutate(NEW_WORKS_IN, lambda d: d.update(diagramType=2)), "diagramType", "relational schema"),
        (mutate(NEW_WORKS_IN, lambda d: d["data"]["nodes"].append({"id": "t", "type": "Table", "data": {}})),
         "data.nodes[3]", "relational schema"),
        (mutate(NEW_WORKS_IN, lambda d: d["data"]["nodes"][2]["data"]["sourceEntityDetails"].update(minCardinality="Sometimes")),
         "sourceEntityDetails", "Mandatory or Optional"),
        (mutate(NEW_WORKS_IN, lambda d: d["data"]["nodes"][2]["data"]["targetEntityDetails"].update(id="nope")),
         "targetEntityDetails", "'nope'"),
        (mutate(NEW_WORKS_IN, lambda d: d["data"]["edges"].append({"type": "Attribute", "source": "e", "target": "zz"})),
         "data.edges[0]", "'zz'"),
        (mutate(NEW_WORKS_IN, lambda d: d.update(diagramType="banana")), "diagramType", "unsupported"),
        (mutate(NEW_WORKS_IN, lambda d: d["data"].update(nodes={"a": 1})), "data.nodes", "expected a list"),
    ],
)
def test_bad_erdplus_files_say_what_and_where(text, where, what):
    with pytest.raises(ImportFormatError) as info:
        import_text(text, "erdplus")
    message = str(info.value)
    assert where in message and what in message, message
    assert isinstance(info.value, DiagramError)


def _attr_node(key, parent, label="A"):
    return {"id": key, "parentId": parent, "type": "Attribute", "data": {"label": label, "types": []}}


def test_composite_attributes_in_a_cycle_are_refused():
    doc = copy.deepcopy(NEW_WORKS_IN)
    doc["data"]["nodes"] += [_attr_node("x", "y", "X"), _attr_node("y", "x", "Y")]
    with pytest.raises(ImportFormatError, match=r"cycle \((X -> Y -> X|Y -> X -> Y)\)"):
        import_text(json.dumps(doc))


def test_composite_nesting_deeper_than_the_model_allows_is_refused():
    doc = copy.deepcopy(NEW_WORKS_IN)
    parent = "e"
    for i in range(9):
        doc["data"]["nodes"].append(_attr_node(f"a{i}", parent, f"Level{i}"))
        parent = f"a{i}"
    with pytest.raises(ImportFormatError, match="nest deeper"):
        import_text(json.dumps(doc))


def test_attribute_on_two_owners_is_refused_and_loose_attribute_left_out_with_warning():
    old = copy.deepcopy(OLD_WORKS_IN)
    old["shapes"].append({"type": "Attribute", "details": {"id": 8, "name": "Shared"}})
    old["connectors"] += [{"type": "Connector", "source": 8, "destination": 1},
                          {"type": "Connector", "source": 8, "destination": 2}]
    with pytest.raises(ImportFormatError, match="connected to 2 owners"):
        import_text(json.dumps(old))
    old["connectors"] = old["connectors"][:2]
    r = import_text(json.dumps(old))
    assert not any(a.name == "Shared" for _, a, _ in r.diagram.iter_attributes())
    assert any("'Shared' is not connected" in w for w in r.warnings)
