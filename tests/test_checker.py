"""The structural checker: every rule fires on a minimal broken twin and stays silent on the correct one."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures_eerd import FIXTURES, airline_dict, company_dict
from r2ta.checker import RULES, check, check_with_rules
from r2ta.cli import main
from r2ta.eerd import CATEGORIES, EERD, diagram_to_json, parse_diagram
from r2ta.errors import DatasetError
from r2ta.records import load_base_schemas


def _base_schemas():
    try:
        return load_base_schemas()
    except DatasetError:  # the schema authors have not written any yet
        return []


BASE_SCHEMAS = _base_schemas()


# -- helpers that edit the fixture dicts -------------------------------------------------


def _entity(d: dict, eid: str) -> dict:
    return next(e for e in d["entities"] if e["id"] == eid)


def _rel(d: dict, rid: str) -> dict:
    return next(r for r in d["relationships"] if r["id"] == rid)


def _attr(d: dict, aid: str) -> dict:
    owner = aid.split(".")[0]
    holder = next(o for o in d["entities"] + d["relationships"] if o["id"] == owner)
    for a in holder["attributes"]:
        if a["id"] == aid:
            return a
    raise KeyError(aid)


def _spec(d: dict, sid: str) -> dict:
    return next(s for s in d["specializations"] if s["id"] == sid)


def _add_attr(d: dict, owner: str, name: str, **flags) -> None:
    holder = next(o for o in d["entities"] + d["relationships"] if o["id"] == owner)
    holder["attributes"].append({"id": f"{owner}.{name.replace(' ', '_')}_x", "name": name, **flags})


def _set(obj: dict, **values) -> dict:
    obj.update(values)
    return obj


# Each case: (rule, fixture dict factory, edit, element ids the finding must include).
CASES = [
    ("strong_entity_without_key", company_dict, lambda d: _set(_attr(d, "PROJECT.Pnumber"), key=False), ["PROJECT"]),
    (
        "key_multivalued_or_derived",
        company_dict,
        lambda d: _set(_attr(d, "DEPARTMENT.Dnumber"), multivalued=True),
        ["DEPARTMENT", "DEPARTMENT.Dnumber"],
    ),
    (
        "key_multivalued_or_derived",
        company_dict,
        lambda d: _set(_attr(d, "EMPLOYEE.Ssn"), derived=True),
        ["EMPLOYEE", "EMPLOYEE.Ssn"],
    ),
    (
        "weak_without_identifying_relationship",
        company_dict,
        lambda d: _set(_rel(d, "DEPENDENTS_OF"), identifying=False),
        ["DEPENDENT"],
    ),
    (
        "weak_without_identifying_relationship",  # the top of a weak chain loses its owner
        airline_dict,
        lambda d: _set(_rel(d, "LEGS"), identifying=False),
        ["FLIGHT_LEG"],
    ),
    (
        "identifying_relationship_without_owner",
        company_dict,
        lambda d: _set(
            _rel(d, "DEPENDENTS_OF"),
            participants=[{"entity": "DEPENDENT", "min": 1, "max": 1}, {"entity": "WORKS_FOR", "min": 0, "max": "N"}],
        ),
        ["DEPENDENTS_OF", "DEPENDENT"],
    ),
    (
        "identifying_relationship_without_owner",  # two weak entities owning each other
        airline_dict,
        lambda d: _set(
            _rel(d, "LEGS"),
            participants=[
                {"entity": "LEG_INSTANCE", "min": 0, "max": "N"},
                {"entity": "FLIGHT_LEG", "min": 1, "max": 1},
            ],
        ),
        ["LEGS", "FLIGHT_LEG"],
    ),
    (
        "weak_participation_not_one_one",
        company_dict,
        lambda d: _set(_rel(d, "DEPENDENTS_OF")["participants"][1], min=0),
        ["DEPENDENT", "DEPENDENTS_OF"],
    ),
    (
        "weak_participation_not_one_one",
        airline_dict,
        lambda d: _set(_rel(d, "INSTANCE_OF")["participants"][1], max="N"),
        ["LEG_INSTANCE", "INSTANCE_OF"],
    ),
    (
        "weak_without_partial_key",
        company_dict,
        lambda d: _set(_attr(d, "DEPENDENT.Dependent_name"), partial_key=False),
        ["DEPENDENT"],
    ),
    (
        "weak_with_full_key",
        company_dict,
        lambda d: _set(_attr(d, "DEPENDENT.Dependent_name"), partial_key=False, key=True),
        ["DEPENDENT", "DEPENDENT.Dependent_name"],
    ),
    (
        "identifying_relationship_without_weak_entity",
        company_dict,
        lambda d: _set(_rel(d, "CONTROLS"), identifying=True),
        ["CONTROLS"],
    ),
    (
        "foreign_key_attribute",
        company_dict,
        lambda d: _add_attr(d, "EMPLOYEE", "Dnumber"),
        ["EMPLOYEE.Dnumber_x", "WORKS_FOR", "MANAGES"],
    ),
    (
        "foreign_key_attribute",
        company_dict,
        lambda d: _add_attr(d, "PROJECT", "Department_id"),
        ["PROJECT.Department_id_x", "CONTROLS"],
    ),
    ("foreign_key_attribute", company_dict, lambda d: _add_attr(d, "PROJECT", "department dnumber"), ["CONTROLS"]),
    (
        "foreign_key_attribute",  # a key DEPENDENT's owner already gives it
        company_dict,
        lambda d: _add_attr(d, "DEPENDENT", "Ssn"),
        ["DEPENDENT.Ssn_x", "DEPENDENTS_OF"],
    ),
    (
        "foreign_key_attribute",  # PILOT's key is inherited from PERSON
        airline_dict,
        lambda d: _add_attr(d, "LEG_INSTANCE", "Passport_no"),
        ["LEG_INSTANCE.Passport_no_x", "FLIES"],
    ),
    (
        "relationship_too_few_participants",
        company_dict,
        lambda d: _set(_rel(d, "CONTROLS"), participants=[{"entity": "DEPARTMENT"}]),
        ["CONTROLS"],
    ),
    (
        "relationship_too_few_participants",
        company_dict,
        lambda d: _set(_rel(d, "CONTROLS"), participants=[]),
        ["CONTROLS"],
    ),
    (
        "relationship_linked_to_relationship",
        company_dict,
        lambda d: _set(_rel(d, "CONTROLS")["participants"][1], entity="WORKS_ON"),
        ["CONTROLS", "WORKS_ON"],
    ),
    (
        "recursive_relationship_without_roles",
        company_dict,
        lambda d: [p.pop("role") for p in _rel(d, "SUPERVISION")["participants"]],
        ["SUPERVISION", "EMPLOYEE"],
    ),
    (
        "recursive_relationship_without_roles",
        company_dict,
        lambda d: [p.update(role="Boss") for p in _rel(d, "SUPERVISION")["participants"]],
        ["SUPERVISION", "EMPLOYEE"],
    ),
    (
        "duplicate_attribute",
        company_dict,
        lambda d: _add_attr(d, "EMPLOYEE", "SALARY"),
        ["EMPLOYEE", "EMPLOYEE.Salary", "EMPLOYEE.SALARY_x"],
    ),
    (
        "duplicate_attribute",  # inside a composite
        company_dict,
        lambda d: _attr(d, "EMPLOYEE.Name")["components"].append({"id": "EMPLOYEE.Name.F_name", "name": "F-name"}),
        ["EMPLOYEE.Name.Fname", "EMPLOYEE.Name.F_name"],
    ),
    ("duplicate_entity_name", company_dict, lambda d: _set(_entity(d, "PART"), name="Project"), ["PART", "PROJECT"]),
    (
        "duplicate_relationship_name",
        company_dict,
        lambda d: _set(_rel(d, "CONTROLS"), name="Works-On"),
        ["CONTROLS", "WORKS_ON"],
    ),
    (
        "disjointness_not_stated",
        company_dict,
        lambda d: _set(_spec(d, "SPEC_EMPLOYEE"), disjointness=None),
        ["SPEC_EMPLOYEE"],
    ),
    (
        "completeness_not_stated",
        company_dict,
        lambda d: _set(_spec(d, "SPEC_EMPLOYEE_ROLE"), completeness=None),
        ["SPEC_EMPLOYEE_ROLE"],
    ),
    (
        "subclass_with_own_key",
        company_dict,
        lambda d: _set(_attr(d, "ENGINEER.Eng_type"), key=True),
        ["ENGINEER", "ENGINEER.Eng_type"],
    ),
    (
        "subclass_with_own_key",  # a category has no key of its own either
        company_dict,
        lambda d: _set(_attr(d, "PAYEE.Bank_account"), key=True),
        ["PAYEE", "PAYEE.Bank_account"],
    ),
    (
        "subclass_repeats_inherited_attribute",
        company_dict,
        lambda d: _add_attr(d, "SECRETARY", "Salary"),
        ["SECRETARY.Salary_x", "EMPLOYEE.Salary"],
    ),
    (
        "subclass_repeats_inherited_attribute",  # from a grandparent, through a lattice
        airline_dict,
        lambda d: _add_attr(d, "PILOT_CUSTOMER", "phones"),
        ["PILOT_CUSTOMER.phones_x", "PERSON.Phones"],
    ),
    (
        "subclass_repeats_inherited_attribute",  # a category inherits from its superclasses
        company_dict,
        lambda d: _add_attr(d, "PAYEE", "Sname"),
        ["PAYEE.Sname_x", "SUPPLIER.Sname"],
    ),
    (
        "specialization_without_superclass",
        company_dict,
        lambda d: _set(_spec(d, "SPEC_EMPLOYEE"), superclass=None, defining_attribute=None, defining_values={}),
        ["SPEC_EMPLOYEE", "SECRETARY", "ENGINEER"],
    ),
    (
        "specialization_without_subclasses",
        company_dict,
        lambda d: d["specializations"].append({"id": "SPEC_PROJECT", "superclass": "PROJECT", "subclasses": []}),
        ["SPEC_PROJECT", "PROJECT"],
    ),
    (
        "isa_cycle",
        company_dict,
        lambda d: d["specializations"].append(
            {"id": "SPEC_BACK", "superclass": "SECRETARY", "subclasses": ["EMPLOYEE"]}
        ),
        ["EMPLOYEE", "SECRETARY", "SPEC_BACK", "SPEC_EMPLOYEE"],
    ),
    (
        "isa_cycle",  # an entity that is its own subclass
        company_dict,
        lambda d: _spec(d, "SPEC_EMPLOYEE_ROLE")["subclasses"].append("EMPLOYEE"),
        ["EMPLOYEE", "SPEC_EMPLOYEE_ROLE"],
    ),
    (
        "category_too_few_superclasses",
        company_dict,
        lambda d: _set(d["categories"][0], superclasses=["EMPLOYEE"]),
        ["CAT_PAYEE", "PAYEE", "EMPLOYEE"],
    ),
]


def _broken(factory, edit) -> EERD:
    d = factory()
    edit(d)
    return parse_diagram(d)


def test_every_rule_has_a_case_and_a_category():
    assert {rule for rule, *_ in CASES} == set(RULES)
    assert set(RULES.values()) <= set(CATEGORIES)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_correct_fixture_has_no_findings(name):
    assert check(FIXTURES[name]()) == []


@pytest.mark.parametrize(
    "rule,factory,edit,elements", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_fires_on_broken_twin(rule, factory, edit, elements):
    assert check(parse_diagram(factory())) == []  # the corrected twin is clean
    found = check_with_rules(_broken(factory, edit))
    hits = [m for r, m in found if r == rule]
    assert hits, f"{rule} did not fire; found {[(r, m.elements) for r, m in found]}"
    assert all(m.category == RULES[rule] for m in hits)
    assert any(set(elements) <= set(m.elements) for m in hits), [m.elements for m in hits]
    assert all(m.explanation.endswith(".") and len(m.explanation) > 30 for m in hits)


def test_one_finding_per_problem_for_simple_mistakes():
    """A single edit gives exactly one finding (no echo from a second rule)."""
    singles = [c for c in CASES if c[0] not in {"identifying_relationship_without_owner", "isa_cycle"}]
    for rule, factory, edit, _ in singles:
        found = check_with_rules(_broken(factory, edit))
        assert [r for r, _ in found] == [rule], (rule, [(r, m.elements) for r, m in found])


def test_explanations_name_elements_by_name_not_id():
    # MANAGER_ROLE is displayed as SENIOR: a teacher never sees the id
    d = company_dict()
    _set(_attr(d, "MANAGER_ROLE.Seniority_level"), key=True)
    _add_attr(d, "MANAGER_ROLE", "Salary")
    found = check(parse_diagram(d))
    assert len(found) == 2
    for m in found:
        assert "SENIOR" in m.explanation and "MANAGER_ROLE" not in m.explanation


def test_near_misses_are_not_reported():
    d = company_dict()
    _add_attr(d, "PROJECT", "Dname")  # DEPARTMENT's name, not its key
    _add_attr(d, "PART", "Ssn")  # PART is not related to EMPLOYEE
    _add_attr(d, "WORKS_ON", "Name")  # same name as EMPLOYEE.Name, different owner
    _add_attr(d, "SECRETARY", "Typing speed rank")
    assert check(parse_diagram(d)) == []


def test_attribute_named_like_its_own_inherited_key_is_a_repeat_not_a_foreign_key():
    d = company_dict()
    d["relationships"].append(
        {"id": "HELPS", "name": "HELPS", "participants": [{"entity": "SECRETARY"}, {"entity": "ENGINEER"}]}
    )
    _add_attr(d, "SECRETARY", "Ssn")
    found = check_with_rules(parse_diagram(d))
    assert [r for r, _ in found] == ["subclass_repeats_inherited_attribute"]


def test_weak_chain_with_owner_side_drawn_one_is_still_read_right():
    """FLIGHT_LEG drawn (0,1) in INSTANCE_OF: LEG_INSTANCE is still the dependent (it has no other owner)."""
    d = airline_dict()
    _set(_rel(d, "INSTANCE_OF")["participants"][0], max=1)
    assert check(parse_diagram(d)) == []


def test_findings_are_sorted_by_category_then_elements():
    d = company_dict()
    _set(_spec(d, "SPEC_EMPLOYEE"), disjointness=None)
    _set(_attr(d, "PROJECT.Pnumber"), key=False)
    _add_attr(d, "EMPLOYEE", "Dnumber")
    _set(_attr(d, "DEPARTMENT.Dnumber"), derived=True)
    found = check(parse_diagram(d))
    order = [(CATEGORIES.index(m.category), m.elements) for m in found]
    assert order == sorted(order)
    assert [m.category for m in found] == [
        "missing_key",
        "missing_key",
        "foreign_key_attribute",
        "specialization_constraint",
    ]


@pytest.mark.parametrize("schema", BASE_SCHEMAS, ids=[s.id for s in BASE_SCHEMAS])
def test_base_schema_is_clean(schema):
    assert [(m.category, m.elements, m.explanation) for m in check(schema.diagram)] == []


def test_base_schemas_present_or_skipped():
    if not BASE_SCHEMAS:
        pytest.skip("no base schemas in assets/schemas yet")
    assert len({s.id for s in BASE_SCHEMAS}) == len(BASE_SCHEMAS)


# -- robustness on odd diagrams ------------------------------------------------------------

ODD = {
    "empty": {"id": "x", "name": "x"},
    "lonely_relationships": {
        "id": "x",
        "name": "x",
        "entities": [{"id": "A", "name": "A"}],
        "relationships": [
            {"id": "R", "name": "R", "participants": [{"entity": "R"}, {"entity": "S"}]},
            {"id": "S", "name": "S", "identifying": True, "participants": [{"entity": "R"}]},
            {"id": "T", "name": "R", "participants": []},
        ],
    },
    "weak_alone_twice": {
        "id": "x",
        "name": "x",
        "entities": [{"id": "W", "name": "W", "weak": True}],
        "relationships": [
            {"id": "R", "name": "R", "identifying": True, "participants": [{"entity": "W"}, {"entity": "W"}]}
        ],
    },
    "specializations_and_categories_gone_wrong": {
        "id": "x",
        "name": "x",
        "entities": [{"id": "A", "name": "A"}, {"id": "B", "name": "B"}, {"id": "C", "name": "C"}],
        "specializations": [
            {"id": "S1", "superclass": None, "subclasses": [], "disjointness": None, "completeness": None},
            {"id": "S2", "superclass": "A", "subclasses": ["A", "B"]},
            {"id": "S3", "superclass": "B", "subclasses": ["C"]},
        ],
        "categories": [
            {"id": "K1", "subclass": "A", "superclasses": ["C"]},
            {"id": "K2", "subclass": "B", "superclasses": []},
        ],
    },
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_odd_diagrams_do_not_crash(name):
    d = parse_diagram(ODD[name])
    found = check(d)
    assert found == check(d)  # deterministic
    assert bool(found) == (name != "empty")
    ids = set(d.element_ids())
    assert all(set(m.elements) <= ids for m in found)


def test_odd_specializations_are_all_reported():
    rules = {r for r, _ in check_with_rules(parse_diagram(ODD["specializations_and_categories_gone_wrong"]))}
    assert {
        "specialization_without_superclass",
        "specialization_without_subclasses",
        "completeness_not_stated",
        "isa_cycle",
        "category_too_few_superclasses",
    } <= rules


def _spec_diagram(subclasses: list[str], disjointness):
    return parse_diagram(
        {
            "id": "s",
            "name": "S",
            "entities": [{"id": "P", "name": "P", "attributes": [{"id": "P.k", "name": "k", "key": True}]}]
            + [{"id": c, "name": c} for c in subclasses],
            "specializations": [
                {"id": "SP", "superclass": "P", "subclasses": subclasses, "disjointness": disjointness}
            ],
        }
    )


def test_disjointness_is_required_only_where_it_distinguishes_something():
    """With one subclass d/o means nothing (a plain subset); with two it must be stated."""
    assert "disjointness_not_stated" in {r for r, _ in check_with_rules(_spec_diagram(["A", "B"], None))}
    assert check(_spec_diagram(["A"], None)) == []
    assert check(_spec_diagram(["A", "B"], "o")) == []


_names = st.sampled_from(["A", "B", "C", "Ssn", "ssn", "A_id", "Aid", "B key", "X"])


@st.composite
def _random_diagrams(draw):
    n_ent = draw(st.integers(0, 5))
    ents = [f"E{i}" for i in range(n_ent)]
    n_rel = draw(st.integers(0, 4))
    rels = [f"R{i}" for i in range(n_rel)]
    entities = []
    for eid in ents:
        attrs = []
        for j in range(draw(st.integers(0, 3))):
            attrs.append(
                {
                    "id": f"{eid}.a{j}",
                    "name": draw(_names),
                    "key": draw(st.booleans()),
                    "partial_key": draw(st.booleans()),
                    "multivalued": draw(st.booleans()),
                    "derived": draw(st.booleans()),
                    "components": [{"id": f"{eid}.a{j}.c", "name": draw(_names)}] if draw(st.booleans()) else [],
                }
            )
        entities.append({"id": eid, "name": draw(_names), "weak": draw(st.booleans()), "attributes": attrs})
    relationships = []
    targets = ents + rels
    for rid in rels:
        parts = []
        if targets:
            for _ in range(draw(st.integers(0, 3))):
                lo = draw(st.integers(0, 1))
                parts.append(
                    {
                        "entity": draw(st.sampled_from(targets)),
                        "min": lo,
                        "max": draw(st.sampled_from([1, "N"])),
                        "role": draw(st.sampled_from([None, "r", "s"])),
                    }
                )
        relationships.append(
            {"id": rid, "name": draw(_names), "identifying": draw(st.booleans()), "participants": parts,
             "attributes": [{"id": f"{rid}.x", "name": draw(_names)}]}
        )
    specs, cats = [], []
    if ents:
        for i in range(draw(st.integers(0, 2))):
            specs.append(
                {
                    "id": f"S{i}",
                    "superclass": draw(st.sampled_from([None, *ents])),
                    "subclasses": draw(st.lists(st.sampled_from(ents), max_size=3)),
                    "disjointness": draw(st.sampled_from([None, "d", "o"])),
                    "completeness": draw(st.sampled_from([None, "total", "partial"])),
                }
            )
        for i in range(draw(st.integers(0, 2))):
            cats.append(
                {"id": f"K{i}", "subclass": draw(st.sampled_from(ents)),
                 "superclasses": draw(st.lists(st.sampled_from(ents), max_size=3))}
            )
    return {"id": "rnd", "name": "rnd", "entities": entities, "relationships": relationships,
            "specializations": specs, "categories": cats}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_random_diagrams())
def test_checker_never_crashes_and_points_at_real_elements(data):
    d = parse_diagram(data)
    found = check(d)
    ids = set(d.element_ids())
    for m in found:
        assert m.category in CATEGORIES
        assert m.elements and set(m.elements) <= ids
        assert m.explanation
    order = [(CATEGORIES.index(m.category), m.elements, m.explanation) for m in found]
    assert order == sorted(order)


# -- the CLI -------------------------------------------------------------------------------


def _write(tmp_path, diagram: EERD, name="d.json"):
    path = tmp_path / name
    path.write_text(diagram_to_json(diagram), encoding="utf-8")
    return str(path)


def test_cli_check_clean_diagram_exits_0(tmp_path, capsys):
    assert main(["check", _write(tmp_path, FIXTURES["company_fixture"]())]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no structural mistakes" in captured.err


def test_cli_check_reports_mistakes_and_exits_1(tmp_path, capsys):
    d = company_dict()
    _add_attr(d, "EMPLOYEE", "Dnumber")
    _set(_spec(d, "SPEC_EMPLOYEE"), disjointness=None)
    path = _write(tmp_path, parse_diagram(d))
    assert main(["check", path]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("foreign_key_attribute") and "EMPLOYEE.Dnumber_x" in lines[0]
    assert lines[1].startswith("specialization_constraint") and "SPEC_EMPLOYEE" in lines[1]

    assert main(["check", path, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [m["category"] for m in data] == ["foreign_key_attribute", "specialization_constraint"]
    assert data[0]["elements"][0] == "EMPLOYEE.Dnumber_x"


def test_cli_check_json_on_clean_diagram_is_empty_list(tmp_path, capsys):
    assert main(["check", _write(tmp_path, FIXTURES["airline_fixture"]()), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_cli_check_reads_a_base_schema_file(tmp_path, capsys):
    wrapped = {"id": "t", "domain": "d", "title": "T", "requirements": "r", "diagram": company_dict()}
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(wrapped), encoding="utf-8")
    assert main(["check", str(path)]) == 0


@pytest.mark.parametrize(
    "content,fragment",
    [
        ("{", "not valid JSON"),
        (
            '{"id": "x", "name": "x", "relationships": '
            '[{"id": "R", "name": "R", "participants": [{"entity": "NOPE"}]}]}',
            "NOPE",
        ),
        ("[1, 2]", "bad.json"),
    ],
)
def test_cli_check_bad_file_exits_2_with_message(tmp_path, capsys, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and fragment in err


def test_cli_check_missing_file_and_unknown_format_exit_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    path = _write(tmp_path, FIXTURES["company_fixture"]())
    assert main(["check", path, "--format", "no-such-format"]) == 2
    assert "no-such-format" in capsys.readouterr().err


def test_hostile_names_give_valid_one_line_findings():
    """Names are free text up to 200 characters with newlines and markup; findings must stay valid Mistakes."""
    long = "N\n<b>&\"'" + "x" * 190
    d = company_dict()
    for i, e in enumerate(d["entities"]):
        e["name"] = f"{i}{long}"[:200]
    for i, r in enumerate(d["relationships"]):
        r["name"] = f"R{i}{long}"[:200]
    d["specializations"][0]["subclasses"] += ["PART", "OFFICE", "SUPPLIER", "PROJECT", "DEPARTMENT"]
    d["specializations"][0]["defining_values"] = {}
    for s in d["specializations"]:
        s["disjointness"] = s["completeness"] = None
    found = check(parse_diagram(d))
    assert found
    for m in found:
        assert "\n" not in m.explanation and len(m.explanation) <= 2000
