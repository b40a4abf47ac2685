"""Fuzzing every parser: whatever the input, only R2tA's own errors escape.

Three kinds of input per parser: arbitrary text and bytes; text built from the
format's own tokens (so the parser gets deep, not just past line 1); and, for the
JSON formats, structured-but-wrong documents built from the format's own keys.
A real fixture with random edits completes each. Kept fast: 200 examples each.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r2ta.errors import R2taError
from r2ta.formats import import_text
from r2ta.formats.plantuml import export_plantuml

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "formats"
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMATS = [None, "json", "erdplus", "plantuml", "mermaid"]


def survives(data, fmt):
    """Import must either succeed with a diagram or raise an R2taError; anything else is a bug."""
    try:
        result = import_text(data, fmt)
    except R2taError:
        return None
    assert result.diagram is not None and result.format in ("json", "erdplus", "plantuml", "mermaid")
    return result


@FUZZ
@given(st.text(max_size=400), st.sampled_from(FORMATS))
def test_arbitrary_text(text, fmt):
    survives(text, fmt)


@FUZZ
@given(st.binary(max_size=400), st.sampled_from(FORMATS))
def test_arbitrary_bytes(data, fmt):
    survives(data, fmt)


PUML_TOKENS = [
    "@startchen x\n", "@endchen\n", "entity ", "relationship ", "A", "B", "R", " {\n", "}\n", "\n",
    "<<key>>", "<<weak>>", "<<identifying>>", "<<multi>>", "<<derived>>", "<<partial key>>", "<<full>>",
    " -1- ", " =N= ", " -(0,N)- ", " =(1,1)= ", " -(2,1)- ", " -0- ", " ->- ", " =>= ", " -<- ", " d ", " o ", " U ",
    "{ A, B }", '"Na\\nme" as ', "title T\n", "' c\n", "/' ", "'/", "skinparam x {\n", "<style>\n", "</style>\n",
    "x : DATE", "#red", "!include f\n", "  ", ",", "(", ")",
]
MMD_TOKENS = [
    "erDiagram\n", "---\n", "title: t\n", "%% c\n", "A", "B", '"C D"', " ", "\n", "{", "}", "[", "]", '"alias"',
    "string ", "name", " PK", " FK", " UK", ",", '"comment"', "||", "|o", "o|", "}o", "o{", "}|", "|{", "--", "..",
    " to ", " optionally to ", "one or more", "zero or one", "1", "u", " : ", "label", ":::cls", "direction LR\n",
    "style A fill:#fff\n", "subgraph s\n", "end\n", "accDescr {\n", "`bq name`", "type~T~ ",
]


@FUZZ
@given(st.lists(st.sampled_from(PUML_TOKENS), max_size=60))
def test_plantuml_token_soup(tokens):
    survives("@startchen f\n" + "".join(tokens) + "\n@endchen\n", "plantuml")
    survives("".join(tokens), None)


@FUZZ
@given(st.lists(st.sampled_from(MMD_TOKENS), max_size=60))
def test_mermaid_token_soup(tokens):
    survives("erDiagram\n" + "".join(tokens), "mermaid")
    survives("".join(tokens), None)


ERDPLUS_KEYS = [
    "shapes", "connectors", "type", "details", "id", "name", "slots", "entityId", "participation", "cardinality",
    "minimum", "maximum", "source", "destination", "target", "isUnique", "isPartiallyUnique", "isComposite",
    "isIdentifying", "diagramType", "data", "nodes", "edges", "label", "types", "parentId", "sourceEntityDetails",
    "targetEntityDetails", "minCardinality", "maxCardinality", "exactConstraints", "min", "max", "role",
    "supertypeDefinition", "totalSpecialization", "entities", "relationships", "participants", "format_version",
    "attributes", "components", "entity", "diagram",
]
ERDPLUS_VALUES = [
    "Entity", "Relationship", "Attribute", "Label", "Connector", "RelationshipConnector", "regular", "weak",
    "associative", "Regular", "Weak", "Supertype", "Associative", "Mandatory", "Optional", "One", "Many", "mandatory",
    "optional", "one", "many", "Disjointed", "Overlapping", "Unique", "Partially Unique", "Table", 1, 2, 3, 0, -1,
    "1", "2", "a", "b", True, False, None, "", "N", 10**20,
]
json_leaf = st.sampled_from(ERDPLUS_VALUES) | st.integers(-3, 5) | st.text(max_size=8)
json_docs = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(ERDPLUS_KEYS), inner, max_size=6),
    max_leaves=40,
)


@FUZZ
@given(json_docs, st.sampled_from(FORMATS))
def test_structured_but_wrong_json(doc, fmt):
    survives(json.dumps(doc), fmt)


# ERDPlus-shaped documents: right skeleton, wrong or dangling details (ids from a tiny pool so they collide).
small_id = st.sampled_from([1, 2, 3, 4, "1", "x", True, None, 2.5])
anyval = st.sampled_from(ERDPLUS_VALUES) | st.lists(st.sampled_from(ERDPLUS_VALUES), max_size=2)
slot = st.fixed_dictionaries(
    {"entityId": small_id},
    optional={"participation": anyval, "cardinality": anyval, "minimum": anyval, "maximum": anyval, "role": anyval},
)
old_details = st.fixed_dictionaries(
    {"id": small_id},
    optional={"name": st.text(max_size=5) | anyval, "type": anyval, "isUnique": anyval, "isComposite": anyval,
              "isPartiallyUnique": anyval, "isIdentifying": anyval, "slots": st.lists(slot, max_size=3) | anyval},
)
old_docs = st.fixed_dictionaries(
    {
        "shapes": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["Entity", "Relationship", "Attribute", "Label", "Blob"]),
                                                  "details": old_details}), max_size=6),
        "connectors": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["Connector", "RelationshipConnector", "X"]),
                                                      "source": small_id, "destination": small_id}), max_size=6),
    }
)
end = st.fixed_dictionaries(
    {"id": small_id},
    optional={"minCardinality": anyval, "maxCardinality": anyval,
              "exactConstraints": st.fixed_dictionaries({}, optional={"role": anyval, "min": anyval, "max": anyval})},
)
node_data = st.fixed_dictionaries(
    {},
    optional={"label": st.text(max_size=5) | anyval, "type": anyval, "parentId": small_id, "isIdentifying": anyval,
              "types": st.lists(st.dictionaries(st.sampled_from(["Unique", "Partially Unique", "Composite", "Derived",
                                                                   "Multivalued", "Optional", "Odd"]), anyval, max_size=2),
                                max_size=3) | anyval,
              "sourceEntityDetails": end, "targetEntityDetails": end},
)
new_docs = st.fixed_dictionaries(
    {
        "diagramType": st.sampled_from([1, 1, 1, 2, "er", None, "x"]),
        "data": st.fixed_dictionaries(
            {
                "nodes": st.lists(
                    st.fixed_dictionaries(
                        {"id": small_id, "type": st.sampled_from(["Entity", "Relationship", "Attribute", "Label", "Table", "Q"]),
                         "data": node_data},
                        optional={"parentId": small_id, "supertypeDefinition": anyval, "totalSpecialization": anyval},
                    ),
                    max_size=7,
                ),
                "edges": st.lists(
                    st.fixed_dictionaries({"type": st.sampled_from(["Attribute", "Relationship", "SelfRelationship", "Supertype", "Z"]),
                                           "source": small_id, "target": small_id}),
                    max_size=5,
                ),
            }
        ),
    }
)


@FUZZ
@given(old_docs | new_docs)
def test_erdplus_shaped_but_wrong(doc):
    survives(json.dumps(doc), None)
    survives(json.dumps(doc), "erdplus")


# Line-level PlantUML and Mermaid built from the grammar, so that parsing gets past the first line.
names = st.sampled_from(["A", "B", "R", "S", "A.b", "a-b", "ünï", "9"])
stereo = st.sampled_from(["", " <<key>>", " <<weak>>", " <<identifying>>", " <<multi>><<derived>>", " <<partial key>>",
                          " <<key>><<full>>", " <<odd>>", " #red"])
card = st.sampled_from(["", "1", "N", "M", "0", "7", "(0,N)", "(1,1)", "(2,1)", "(N,M)", "(0, 3)"])
line_kind = st.sampled_from(["-", "="])
puml_line = st.one_of(
    st.builds(lambda k, n, s, b: f"{k} {n}{s}{b}", st.sampled_from(["entity", "relationship"]), names, stereo,
              st.sampled_from([" {", "", " {}"])),
    st.builds(lambda n, s, b: f"  {n}{s}{b}", names, stereo, st.sampled_from(["", " {", " : DATE"])),
    st.just("}"),
    st.builds(lambda a, p, c, q, b: f"{a} {p}{c}{q} {b}", names, line_kind, card, line_kind, names),
    st.builds(lambda a, p, sym, subs: f"{a} {p}>{p} {sym} {{ {subs} }}", names, line_kind, st.sampled_from("doUx"),
              st.lists(names, min_size=1, max_size=3).map(", ".join)),
    st.builds(lambda a, p, d, b: f"{a} {p}{d}{p} {b}", names, line_kind, st.sampled_from("<>"), names),
    st.sampled_from(["title T", "' comment", "/' open", "'/", "left to right direction", "skinparam a {", "@enduml"]),
)
marks = st.sampled_from(["||", "|o", "o|", "}o", "o{", "}|", "|{", "one", "zero or more", "1", "u", "??"])
mmd_line = st.one_of(
    st.builds(lambda n, alias, attrs: f"{n}{alias} {{ {attrs} }}", names, st.sampled_from(["", '["Alias"]', "[x"]),
              st.lists(st.builds(lambda t, n, k: f"{t} {n}{k}", st.sampled_from(["string", "int", "x~T~"]), names,
                                 st.sampled_from(["", " PK", " FK", " PK, FK", " UK", ' "c"'])), max_size=3).map(" ".join)),
    st.builds(lambda a, l, ln, r, b, lab: f"{a} {l}{ln}{r} {b} : {lab}", names, marks,
              st.sampled_from(["--", "..", " to ", " optionally to ", "=="]), marks, names,
              st.sampled_from(["r", '"two words"', '""', ""])),
    st.sampled_from(["direction LR", "title T", "%% c", "style A fill:#fff", "subgraph g", "end", "accDescr {", "}"]),
)


@FUZZ
@given(st.lists(puml_line, max_size=25))
def test_plantuml_from_the_grammar(lines):
    survives("@startchen g\n" + "\n".join(lines) + "\n@endchen\n", None)


@FUZZ
@given(st.lists(mmd_line, max_size=25))
def test_mermaid_from_the_grammar(lines):
    survives("erDiagram\n" + "\n".join(lines) + "\n", None)


def _mutations(text: str):
    return st.lists(
        st.tuples(st.integers(0, max(len(text) - 1, 0)), st.integers(0, 40), st.text(max_size=6)), min_size=1, max_size=4
    )


def _apply(text: str, edits) -> str:
    for pos, cut, insert in edits:
        text = text[:pos] + insert + text[pos + cut :]
    return text


FIXTURE_TEXTS = {p.name: p.read_text() for p in sorted(FIXTURES.iterdir())}


@FUZZ
@given(st.sampled_from(sorted(FIXTURE_TEXTS)), st.data())
def test_edited_fixtures(name, data):
    text = FIXTURE_TEXTS[name]
    survives(_apply(text, data.draw(_mutations(text))), None)


def test_structured_old_erdplus_json_reaches_deep_code():
    # A sanity check that the structured strategy can produce valid imports, i.e. it is not all rejected early.
    doc = {"shapes": [{"type": "Entity", "details": {"id": 1, "name": "A"}}], "connectors": []}
    assert survives(json.dumps(doc), None) is not None


@FUZZ
@given(json_docs)
def test_exporting_whatever_imports_never_breaks(doc):
    result = survives(json.dumps(doc), None)
    if result is not None:
        back = import_text(export_plantuml(result.diagram).text, "plantuml")
        assert len(back.diagram.entities) == len(result.diagram.entities)
