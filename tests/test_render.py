"""Rendering in Chen/EER notation: glyphs, (min,max) placement, highlighting, hostile names, the CLI.

Tests that draw use the real graphviz ``dot`` binary (Debian ``graphviz``); they
are skipped, loudly, where it is missing. Everything about the DOT source is
checked without it.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from r2ta import render as R
from r2ta.cli import main
from r2ta.eerd import EERD, diagram_to_json, parse_diagram
from r2ta.errors import DatasetError, RenderError
from r2ta.records import load_base_schemas

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` is not installed")

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"

# One diagram with every construct the renderer draws.
ALL_CONSTRUCTS = {
    "format_version": 1,
    "id": "all_constructs",
    "name": "Every construct",
    "entities": [
        {"id": "PERSON", "name": "PERSON", "attributes": [
            {"id": "PERSON.Ssn", "name": "Ssn", "key": True},
            {"id": "PERSON.Name", "name": "Name", "components": [
                {"id": "PERSON.Name.Fname", "name": "Fname"},
                {"id": "PERSON.Name.Lname", "name": "Lname"}]},
            {"id": "PERSON.Phone", "name": "Phone", "multivalued": True},
            {"id": "PERSON.Birth_date", "name": "Birth_date"},
            {"id": "PERSON.Age", "name": "Age", "derived": True}]},
        {"id": "EMPLOYEE", "name": "EMPLOYEE", "attributes": [
            {"id": "EMPLOYEE.Salary", "name": "Salary"},
            {"id": "EMPLOYEE.Job_type", "name": "Job_type"}]},
        {"id": "STUDENT", "name": "STUDENT", "attributes": [{"id": "STUDENT.Gpa", "name": "Gpa"}]},
        {"id": "ENGINEER", "name": "ENGINEER", "attributes": [{"id": "ENGINEER.Eng_type", "name": "Eng_type"}]},
        {"id": "SECRETARY", "name": "SECRETARY", "attributes": [
            {"id": "SECRETARY.Typing_speed", "name": "Typing_speed"}]},
        {"id": "GRAD", "name": "GRAD_STUDENT", "attributes": [
            {"id": "GRAD.Degree_program", "name": "Degree_program"}]},
        {"id": "UNDERGRAD", "name": "UNDERGRAD", "attributes": [{"id": "UNDERGRAD.Class", "name": "Class"}]},
        {"id": "DEPARTMENT", "name": "DEPARTMENT", "attributes": [
            {"id": "DEPARTMENT.Dnumber", "name": "Dnumber", "key": True},
            {"id": "DEPARTMENT.Dname", "name": "Dname"},
            {"id": "DEPARTMENT.Locations", "name": "Locations", "multivalued": True}]},
        {"id": "PROJECT", "name": "PROJECT", "attributes": [
            {"id": "PROJECT.Pnumber", "name": "Pnumber", "key": True},
            {"id": "PROJECT.Pname", "name": "Pname"}]},
        {"id": "DEPENDENT", "name": "DEPENDENT", "weak": True, "attributes": [
            {"id": "DEPENDENT.Dependent_name", "name": "Dependent_name", "partial_key": True},
            {"id": "DEPENDENT.Relationship", "name": "Relationship"}]},
        {"id": "SUPPLIER", "name": "SUPPLIER", "attributes": [{"id": "SUPPLIER.Sname", "name": "Sname", "key": True}]},
        {"id": "PART", "name": "PART", "attributes": [{"id": "PART.Part_no", "name": "Part_no", "key": True}]},
        {"id": "SPONSOR", "name": "SPONSOR", "attributes": [{"id": "SPONSOR.Budget", "name": "Budget"}]},
    ],
    "relationships": [
        {"id": "WORKS_FOR", "name": "WORKS_FOR", "participants": [
            {"entity": "EMPLOYEE", "min": 1, "max": 1},
            {"entity": "DEPARTMENT", "min": 1, "max": "N"}],
         "attributes": [{"id": "WORKS_FOR.Start_date", "name": "Start_date"}]},
        {"id": "MANAGES", "name": "MANAGES", "participants": [
            {"entity": "EMPLOYEE", "min": 0, "max": 1},
            {"entity": "DEPARTMENT", "min": 1, "max": 1}]},
        {"id": "SUPERVISION", "name": "SUPERVISION", "participants": [
            {"entity": "EMPLOYEE", "min": 0, "max": "N", "role": "supervisor"},
            {"entity": "EMPLOYEE", "min": 0, "max": 1, "role": "supervisee"}]},
        {"id": "WORKS_ON", "name": "WORKS_ON", "participants": [
            {"entity": "EMPLOYEE", "min": 1, "max": "N"},
            {"entity": "PROJECT", "min": 1, "max": "N"}],
         "attributes": [{"id": "WORKS_ON.Hours", "name": "Hours"}]},
        {"id": "DEPENDENTS_OF", "name": "DEPENDENTS_OF", "identifying": True, "participants": [
            {"entity": "EMPLOYEE", "min": 0, "max": "N"},
            {"entity": "DEPENDENT", "min": 1, "max": 1}]},
        {"id": "SUPPLY", "name": "SUPPLY", "participants": [
            {"entity": "SUPPLIER", "min": 0, "max": "N"},
            {"entity": "PROJECT", "min": 0, "max": "N"},
            {"entity": "PART", "min": 1, "max": "N"}],
         "attributes": [{"id": "SUPPLY.Quantity", "name": "Quantity"}]},
    ],
    "specializations": [
        {"id": "SPEC_PERSON", "superclass": "PERSON", "subclasses": ["EMPLOYEE", "STUDENT"],
         "disjointness": "o", "completeness": "partial"},
        {"id": "SPEC_EMPLOYEE", "superclass": "EMPLOYEE", "subclasses": ["ENGINEER", "SECRETARY"],
         "disjointness": "d", "completeness": "total", "defining_attribute": "EMPLOYEE.Job_type",
         "defining_values": {"ENGINEER": "Engineer", "SECRETARY": "Secretary"}},
        {"id": "SPEC_STUDENT", "superclass": "STUDENT", "subclasses": ["GRAD", "UNDERGRAD"],
         "disjointness": None, "completeness": "total"},
    ],
    "categories": [
        {"id": "CAT_SPONSOR", "subclass": "SPONSOR", "superclasses": ["SUPPLIER", "DEPARTMENT"],
         "completeness": "partial"},
    ],
}  # fmt: skip


@pytest.fixture
def diagram() -> EERD:
    return parse_diagram(ALL_CONSTRUCTS)


# -- reading the DOT back ------------------------------------------------------------

_NODE = re.compile(r"^\s*(n\d+) \[(.*)\];$")
_EDGE = re.compile(r"^\s*(n\d+) -> (n\d+) \[(.*)\];$")


class Dot:
    """The statements of our DOT source, indexed by element id."""

    def __init__(self, source: str):
        self.source = source
        self.nodes: dict[str, str] = {}  # DOT node name -> attribute text
        self.element: dict[str, str] = {}  # element id -> DOT node name
        self.edges: list[tuple[str, str, str]] = []
        for line in source.splitlines():
            if m := _NODE.match(line):
                self.nodes[m[1]] = m[2]
                if el := re.search(r'id="el-([^"]+)"', m[2]):
                    self.element[el[1]] = m[1]
            elif m := _EDGE.match(line):
                self.edges.append((m[1], m[2], m[3]))

    def node(self, element_id: str) -> str:
        return self.nodes[self.element[element_id]]

    def lines_between(self, a: str, b: str) -> list[list[tuple[str, str, str]]]:
        """The visible lines joining two elements, listed from a's side to b's: each a list of edges.

        A line is one edge, or (neato) two edges through a text node sitting on it.
        """
        na, nb = self.element[a], self.element[b]
        elements = set(self.element.values())
        visible = [e for e in self.edges if "style=invis" not in e[2]]
        out = [[e] for e in visible if (e[0], e[1]) in ((na, nb), (nb, na))]
        for first in visible:
            if na in first[:2] and (via := first[1] if first[0] == na else first[0]) not in elements:
                out += [[first, e] for e in visible if {e[0], e[1]} == {via, nb}]
        return out

    def line(self, a: str, b: str) -> list[tuple[str, str, str]]:
        found = self.lines_between(a, b)
        assert len(found) == 1, f"expected one line {a} -- {b}, found {found}"
        return found[0]

    def edge(self, a: str, b: str) -> str:
        """Everything drawn on the single line a -- b: edge attributes and the label of a text node on it."""
        return " ".join(attrs + " " + self.nodes.get(h, "") for _, h, attrs in self.line(a, b))


def quick_dot(diagram: EERD, **kw) -> str:
    """DOT source without the settling run of neato: the same statements, no positions, no binary needed."""
    return R.to_dot(diagram, settle=False, **kw)


def dot_of(diagram: EERD, **kw) -> Dot:
    return Dot(quick_dot(diagram, **kw))


DOUBLE = 'color="black:invis:black"'


# -- glyphs ------------------------------------------------------------------------------


def test_entities_and_relationships_use_chen_shapes(diagram):
    d = dot_of(diagram)
    assert "shape=box" in d.node("PERSON") and "peripheries" not in d.node("PERSON")
    assert "shape=box" in d.node("DEPENDENT") and "peripheries=2" in d.node("DEPENDENT")
    assert "shape=diamond" in d.node("WORKS_FOR") and "peripheries" not in d.node("WORKS_FOR")
    assert "shape=diamond" in d.node("DEPENDENTS_OF") and "peripheries=2" in d.node("DEPENDENTS_OF")


def test_attribute_kinds_have_their_glyphs(diagram):
    d = dot_of(diagram)
    assert "label=<<U>Ssn</U>>" in d.node("PERSON.Ssn")
    partial = d.node("DEPENDENT.Dependent_name")
    assert 'SIDES="B" STYLE="dashed">Dependent_name<' in partial and "<U>" not in partial
    assert "peripheries=2" in d.node("PERSON.Phone")
    assert "dashed" in d.node("PERSON.Age") and "peripheries" not in d.node("PERSON.Age")
    plain = d.node("PERSON.Birth_date")
    assert "<U>" not in plain and "dashed" not in plain and "peripheries" not in plain
    # every attribute is an ellipse hanging off its owner; composite parts off their parent
    for owner, attr in [("PERSON", "PERSON.Ssn"), ("WORKS_ON", "WORKS_ON.Hours"), ("SUPPLY", "SUPPLY.Quantity")]:
        assert "shape=ellipse" in d.node(attr)
        d.edge(owner, attr)
    d.edge("PERSON.Name", "PERSON.Name.Fname")
    d.edge("PERSON.Name", "PERSON.Name.Lname")
    assert not d.lines_between("PERSON", "PERSON.Name.Fname")


PARTICIPATIONS = [
    ("WORKS_FOR", "EMPLOYEE", "(1,1)", True),
    ("WORKS_FOR", "DEPARTMENT", "(1,N)", True),
    ("MANAGES", "EMPLOYEE", "(0,1)", False),
    ("MANAGES", "DEPARTMENT", "(1,1)", True),
    ("DEPENDENTS_OF", "DEPENDENT", "(1,1)", True),
    ("SUPPLY", "PART", "(1,N)", True),
    ("SUPPLY", "SUPPLIER", "(0,N)", False),
]


@pytest.mark.parametrize("rel, ent, text, total", PARTICIPATIONS)
def test_neato_puts_min_max_on_the_line_next_to_the_entity(diagram, rel, ent, text, total):
    d = dot_of(diagram, layout="neato")
    far, near = d.line(rel, ent)
    via = far[1]
    assert near[:2] == (via, d.element[ent])  # the text is the last stop before the entity
    assert f">{text}<" in d.nodes[via] and "shape=plaintext" in d.nodes[via]
    near_len, far_len = (float(re.search(r"len=([\d.]+)", e[2])[1]) for e in (near, far))
    assert near_len == R.TEXT_NEAR_END and near_len < far_len / 2
    assert (DOUBLE in near[2]) == total and (DOUBLE in far[2]) == total


@pytest.mark.parametrize("rel, ent, text, total", PARTICIPATIONS)
def test_dot_puts_min_max_at_the_entity_end(diagram, rel, ent, text, total):
    d = dot_of(diagram, layout="dot")
    [(tail, head, attrs)] = d.line(rel, ent)
    end = "headlabel" if head == d.element[ent] else "taillabel"
    assert re.search(end + r"=<[^>]*>" + re.escape(text), attrs), attrs
    assert (DOUBLE in attrs) == total


def _boxes(source: str) -> dict[str, tuple[float, float, float, float]]:
    """Node name -> (x, y, half width, half height) in points, as graphviz lays the source out."""
    out, warnings = R.run_dot(source, "json")
    assert warnings == []
    return {
        o["name"]: (*map(float, o["pos"].split(",")), float(o["width"]) * 36, float(o["height"]) * 36)
        for o in json.loads(out)["objects"]
        if "pos" in o
    }


@pytest.fixture(scope="module")
def settled():
    """The settled DOT of the fixture and where graphviz draws its nodes (computed once: it runs neato)."""
    source = R.to_dot(parse_diagram(ALL_CONSTRUCTS))
    return source, Dot(source), _boxes(source)


@needs_dot
def test_settled_layout_pins_every_node_where_graphviz_keeps_it(settled):
    source, d, boxes = settled
    pins = {n: re.search(r'pos="([\d.\-]+),([\d.\-]+)!"', a) for n, a in d.nodes.items()}
    assert all(pins.values()), [n for n, m in pins.items() if not m]
    assert "overlap=true" in source and "mode=major" not in source  # nothing left to lay out
    dx = {round(boxes[n][0] - float(m[1]) * 72, 1) for n, m in pins.items()}
    dy = {round(boxes[n][1] - float(m[2]) * 72, 1) for n, m in pins.items()}
    assert len(dx) == 1 and len(dy) == 1  # drawn where pinned (up to one shift of the whole drawing)


@needs_dot
@pytest.mark.parametrize("rel, ent, text, total", PARTICIPATIONS)
def test_settled_min_max_sits_on_the_straight_line_beside_the_entity(settled, rel, ent, text, total):
    _, d, boxes = settled
    (r, via, _), (_, e, _) = d.line(rel, ent)
    (rx, ry, *_), (tx, ty, thw, thh), (ex, ey, ehw, ehh) = boxes[r], boxes[via], boxes[e]
    length = ((rx - ex) ** 2 + (ry - ey) ** 2) ** 0.5
    off_line = abs((rx - ex) * (ty - ey) - (ry - ey) * (tx - ex)) / length
    assert off_line < 1.0  # points: the line runs straight through the text
    from_entity = ((tx - ex) ** 2 + (ty - ey) ** 2) ** 0.5
    assert from_entity < length / 2  # nearer the entity than the diamond
    for name, (x, y, hw, hh) in boxes.items():  # and clear of every other node
        if name != via:
            assert abs(x - tx) >= hw + thw or abs(y - ty) >= hh + thh, (text, d.nodes[name])


def test_without_graphviz_the_layout_is_left_to_the_viewer(diagram, monkeypatch):
    monkeypatch.setattr(R.shutil, "which", lambda name: None)
    source = R.to_dot(diagram, legend=True)
    assert "pos=" not in Dot(source).source.split("cluster_legend")[0]
    assert "mode=major" in source and "overlap=prism" in source
    assert Dot(source).element == Dot(quick_dot(diagram, legend=True)).element


@pytest.mark.parametrize("layout", R.LAYOUTS)
def test_recursive_relationship_shows_both_roles_and_both_lines(diagram, layout):
    d = dot_of(diagram, layout=layout)
    lines = d.lines_between("SUPERVISION", "EMPLOYEE")
    assert len(lines) == 2
    texts = sorted(" ".join(a + " " + d.nodes.get(h, "") for _, h, a in line) for line in lines)
    # each line carries its own role with its own (min,max)
    assert "supervisee" in texts[0] and "(0,1)" in texts[0] and "supervisor" not in texts[0]
    assert "supervisor" in texts[1] and "(0,N)" in texts[1] and "supervisee" not in texts[1]


def test_specialization_circles_and_subset_marks(diagram):
    d = dot_of(diagram)
    for spec, mark in [("SPEC_PERSON", "o"), ("SPEC_EMPLOYEE", "d"), ("SPEC_STUDENT", "?")]:
        node = d.node(spec)
        assert "shape=circle" in node and "fixedsize=true" in node and f'label="{mark}"' in node
    # total: double line from the superclass; partial: single
    assert DOUBLE in d.edge("EMPLOYEE", "SPEC_EMPLOYEE")
    assert DOUBLE not in d.edge("PERSON", "SPEC_PERSON")
    # the subset mark on every circle -> subclass line, at the subclass end
    for spec, sub in [("SPEC_PERSON", "EMPLOYEE"), ("SPEC_PERSON", "STUDENT"), ("SPEC_EMPLOYEE", "ENGINEER"),
                      ("SPEC_STUDENT", "UNDERGRAD")]:  # fmt: skip
        *_, (tail, head, attrs) = d.line(spec, sub)
        assert head == d.element[sub] and "arrowhead=nonenonecurve" in attrs and "dir=forward" in attrs
    # no subset mark on the superclass side
    assert "arrowhead" not in d.edge("PERSON", "SPEC_PERSON")
    # attribute-defined: the attribute on the superclass line, the values on the subclass lines
    assert "Job_type" in d.edge("EMPLOYEE", "SPEC_EMPLOYEE")
    assert ">Engineer<" in d.edge("SPEC_EMPLOYEE", "ENGINEER")
    assert ">Secretary<" in d.edge("SPEC_EMPLOYEE", "SECRETARY")


def test_category_is_a_union_circle_with_subset_mark(diagram):
    d = dot_of(diagram)
    assert 'label="\u222a"' in d.node("CAT_SPONSOR") and "shape=circle" in d.node("CAT_SPONSOR")
    d.edge("SUPPLIER", "CAT_SPONSOR")
    d.edge("DEPARTMENT", "CAT_SPONSOR")
    to_sub = d.edge("CAT_SPONSOR", "SPONSOR")
    assert "arrowhead=nonenonecurve" in to_sub and DOUBLE not in to_sub
    total = diagram.model_copy(
        update={"categories": [diagram.categories[0].model_copy(update={"completeness": "total"})]}
    )
    assert DOUBLE in dot_of(total).edge("CAT_SPONSOR", "SPONSOR")


def test_node_names_are_internal_and_every_element_is_drawn_once(diagram):
    source = quick_dot(diagram)
    d = Dot(source)
    assert set(d.element) == set(diagram.element_ids())
    assert all(re.fullmatch(r"n\d+", n) for n in d.nodes)
    assert "EMPLOYEE ->" not in source and "-> EMPLOYEE" not in source


def test_layout_is_written_into_the_source(diagram):
    assert "layout=neato" in quick_dot(diagram)
    assert "layout=dot" in quick_dot(diagram, layout="dot")
    with pytest.raises(RenderError, match="unknown layout"):
        R.to_dot(diagram, layout="circo; evil")


def test_legend_explains_the_glyphs(diagram):
    plain, with_legend = quick_dot(diagram), quick_dot(diagram, legend=True)
    assert "cluster_legend" not in plain
    assert "cluster_legend" in with_legend
    for words in ["weak entity", "identifying relationship", "key attribute", "multivalued", "derived",
                  "total participation", "(min,max)", "disjoint", "overlapping", "category"]:  # fmt: skip
        assert words in with_legend
    assert Dot(with_legend).element == Dot(plain).element  # legend nodes are not elements


# -- highlighting ------------------------------------------------------------------------


def test_highlight_marks_exactly_the_given_elements(diagram):
    marks = {
        "EMPLOYEE": "no key",
        "WORKS_FOR": "wrong max",
        "PERSON.Ssn": "",
        "SPEC_EMPLOYEE": "should be overlapping",
        "CAT_SPONSOR": "",
        "NO_SUCH_ID": "ignored",
    }
    d = dot_of(diagram, highlight=marks)
    red = {el for el, n in d.element.items() if R.HIGHLIGHT_COLOR in d.nodes[n]}
    assert red == set(marks) - {"NO_SUCH_ID"}
    for el in red:
        assert f'fillcolor="{R.HIGHLIGHT_FILL}"' in d.node(el) and f"penwidth={R.HIGHLIGHT_PENWIDTH}" in d.node(el)
    assert 'tooltip="EMPLOYEE: no key"' in d.node("EMPLOYEE")
    assert "dashed" in dot_of(diagram, highlight=["PERSON.Age"]).node("PERSON.Age")  # derived stays dashed
    # a plain list of ids works too, and nothing is red without a highlight
    assert sum(R.HIGHLIGHT_COLOR in a for a in dot_of(diagram, highlight=["PROJECT"]).nodes.values()) == 1
    assert R.HIGHLIGHT_COLOR not in quick_dot(diagram)


# -- escaping ----------------------------------------------------------------------------

HOSTILE = [
    'A" -> B [color=red]; x',
    "<script>alert(1)</script>",
    "{}|[]",
    "a\nb",
    '"]; evil [',
    "it's & <b>bold</b>",
    "&nbsp; &foo; &amp;",
    "back\\slash \\N \\G",
    "ctl\x00\x1b\x7fend",
    "subgraph cluster_x { a -> b }",
    "x" * 500,
]


def _rename(diagram: EERD, names: list[str]) -> EERD:
    """The same diagram with every name, role and defining value replaced (model_copy skips the length limit)."""
    pool = iter(names * 50)

    def attr(a):
        return a.model_copy(update={"name": next(pool), "components": [attr(c) for c in a.components]})

    ents = [e.model_copy(update={"name": next(pool), "attributes": [attr(a) for a in e.attributes]})
            for e in diagram.entities]  # fmt: skip
    rels = [
        r.model_copy(update={
            "name": next(pool),
            "attributes": [attr(a) for a in r.attributes],
            "participants": [p.model_copy(update={"role": next(pool) if p.role else None}) for p in r.participants],
        })
        for r in diagram.relationships
    ]  # fmt: skip
    specs = [s.model_copy(update={"defining_values": {k: next(pool) for k in s.defining_values}})
             for s in diagram.specializations]  # fmt: skip
    return diagram.model_copy(update={"entities": ents, "relationships": rels, "specializations": specs})


def test_escape_html_neutralises_markup_and_dot_syntax():
    assert R.escape_html('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    assert R.escape_html("a\nb") == "a<BR/>b"
    assert R.escape_html("a\x00b\x1b\u202ec") == "abc"
    assert R.escape_html("\\N") == "\\\\N"


def test_long_names_are_wrapped_and_cut_but_whole_in_the_tooltip(diagram):
    long = "Very_long_attribute_name_" * 20  # 500 characters
    lines = R.display_lines(long, R.WRAP_ATTRIBUTE)
    assert len(lines) == R.MAX_LINES and lines[-1].endswith("\u2026")
    assert all(len(line) <= R.WRAP_ATTRIBUTE for line in lines)
    assert R.display_lines("ENGINEERING_MANAGER", 12) == ["ENGINEERING_", "MANAGER"]
    assert R.display_lines("a\nb", 10) == ["a", "b"]
    d = dot_of(_rename(diagram, [long]))
    assert f'tooltip="{long}"' in d.node("PERSON")


def test_hostile_names_do_not_change_the_dot_structure(diagram):
    plain, hostile = Dot(quick_dot(diagram)), Dot(quick_dot(_rename(diagram, HOSTILE)))
    assert len(hostile.nodes) == len(plain.nodes)
    assert [(t, h) for t, h, _ in hostile.edges] == [(t, h) for t, h, _ in plain.edges]
    assert hostile.element == plain.element
    # every line is still one of our statements, and no name leaked out unescaped
    assert len(hostile.source.splitlines()) == len(plain.source.splitlines())
    assert "<script>" not in hostile.source
    assert not re.search(r'(?<!\\)"\]; evil \[', hostile.source)  # only ever as \"]; evil [


@needs_dot
def test_hostile_names_render_as_text_with_the_same_graph(diagram):
    bad = _rename(diagram, HOSTILE)
    counts = []
    for d in (diagram, bad):
        out, warnings = R.run_dot(R.to_dot(d), "json")
        layout = json.loads(out)
        counts.append((len(layout["objects"]), len(layout["edges"])))
        assert warnings == []
    assert counts[0] == counts[1]

    svg = R.render(bad, "svg")
    root = ET.fromstring(svg)  # well-formed XML even with "&nbsp;" and "&foo;" in names
    assert not list(root.iter(f"{SVG}script"))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    for expected in ['A" -> B', "[color=red]; x", '"]; evil [', "it's & <b>bold</b>", "&nbsp; &foo; &amp;",
                     "back\\slash \\N \\G", "ctlend", "a", "b", "{}|[]"]:  # fmt: skip
        assert expected in texts, expected
    assert any(t.startswith("<script>alert(1)") for t in texts)
    titles = [a.get(f"{XLINK}title") or "" for a in root.iter(f"{SVG}a")]
    assert "<script>alert(1)</script>" in titles
    assert "x" * 500 in titles


# -- drawing with graphviz -----------------------------------------------------------------


def _base_schemas():
    try:
        return load_base_schemas()
    except DatasetError:  # the schemas are being written; the fixture still covers every construct
        return []


BASE = _base_schemas()


@needs_dot
@pytest.mark.parametrize("layout", R.LAYOUTS)
def test_every_construct_draws_cleanly(diagram, layout):
    _draws_cleanly(diagram, layout=layout, legend=True)


@needs_dot
@pytest.mark.parametrize("schema", BASE, ids=[s.id for s in BASE])
def test_every_base_schema_draws_cleanly(schema):
    _draws_cleanly(schema.diagram)


def _draws_cleanly(diagram: EERD, **kw) -> None:
    source = R.to_dot(diagram, **kw)
    svg, warnings = R.run_dot(source, "svg")
    assert warnings == [], warnings
    root = ET.fromstring(svg)
    drawn = {g.get("id") for g in root.iter(f"{SVG}g") if (g.get("class") or "").startswith("node")}
    assert {f"el-{i}" for i in diagram.element_ids()} <= drawn
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for p in (p for r in diagram.relationships for p in r.participants):
        assert R.min_max(p) in texts
    if kw.get("layout", R.DEFAULT_LAYOUT) == "neato":
        _min_max_on_straight_lines_beside_entities(diagram, Dot(source))


def _min_max_on_straight_lines_beside_entities(diagram: EERD, d: Dot) -> None:
    """Every (min,max) of a non-recursive line sits on that line (or, where the line is crowded,
    just beside it) in the half next to its entity."""

    def at(node: str) -> tuple[float, float]:
        x, y = re.search(r'pos="([\d.\-]+),([\d.\-]+)!"', d.nodes[node]).groups()
        return float(x) * 72, float(y) * 72

    for r in diagram.relationships:
        for p in r.participants:
            lines = d.lines_between(r.id, p.entity)
            if len(lines) != 1:  # recursive: its lines fan out from the entity on purpose
                continue
            (rn, via, _), (_, en, _) = lines[0]
            (rx, ry), (tx, ty), (ex, ey) = at(rn), at(via), at(en)
            length = ((rx - ex) ** 2 + (ry - ey) ** 2) ** 0.5
            off_line = abs((rx - ex) * (ty - ey) - (ry - ey) * (tx - ex)) / length
            along = ((tx - ex) * (rx - ex) + (ty - ey) * (ry - ey)) / length
            assert off_line <= 20, (r.id, p.entity, off_line)  # points
            assert 0 < along < 0.6 * length, (r.id, p.entity, along, length)


@needs_dot
def test_highlighting_does_not_move_anything(diagram):
    plain = re.findall(r'pos="[^"]+"', R.to_dot(diagram))
    marked = re.findall(r'pos="[^"]+"', R.to_dot(diagram, highlight=["EMPLOYEE", "WORKS_FOR", "PERSON.Ssn"]))
    assert plain and plain == marked  # a reviewer flipping between views sees the same picture


@needs_dot
def test_render_png_and_dot(diagram):
    assert R.render(diagram, "png").startswith(b"\x89PNG\r\n\x1a\n")
    assert R.render(diagram, "dot").decode().startswith("digraph eerd {")
    with pytest.raises(RenderError, match="unknown render format"):
        R.render(diagram, "gif")


def test_dot_source_needs_no_graphviz_but_pictures_do(diagram, monkeypatch):
    monkeypatch.setattr(R.shutil, "which", lambda name: None)
    assert b"digraph" in R.render(diagram, "dot")
    with pytest.raises(RenderError, match="apt-get install graphviz"):
        R.render(diagram, "svg")


@needs_dot
def test_graphviz_failure_is_a_render_error():
    with pytest.raises(RenderError, match="could not draw"):
        R.run_dot("digraph { a -> }", "svg")


# -- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def diagram_file(tmp_path, diagram):
    path = tmp_path / "d.json"
    path.write_text(diagram_to_json(diagram), encoding="utf-8")
    return path


@needs_dot
@pytest.mark.parametrize("ext, magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("dot", b"digraph")])
def test_cli_writes_the_format_of_the_extension(diagram_file, tmp_path, ext, magic, capsys):
    out = tmp_path / f"out.{ext}"
    assert main(["render", str(diagram_file), "-o", str(out), "--highlight", "EMPLOYEE", "--legend"]) == 0
    assert out.read_bytes().startswith(magic)
    assert "wrote" in capsys.readouterr().out
    if ext == "svg":
        assert R.HIGHLIGHT_COLOR.encode() in out.read_bytes() and b"Legend" in out.read_bytes()


def test_cli_refuses_an_unknown_extension(diagram_file, tmp_path, capsys):
    out = tmp_path / "out.gif"
    assert main(["render", str(diagram_file), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "out.gif" in err and ".svg" in err
    assert not out.exists()


def test_cli_notes_unknown_highlight_ids(diagram_file, tmp_path, capsys):
    out = tmp_path / "out.dot"
    assert main(["render", str(diagram_file), "-o", str(out), "--highlight", "NOPE", "PERSON"]) == 0
    assert "NOPE" in capsys.readouterr().out
    assert Dot(out.read_text()).node("PERSON").count(R.HIGHLIGHT_COLOR) >= 1
