"""Drawing a diagram in Elmasri & Navathe (Chen) EER notation with graphviz.

:func:`to_dot` turns an :class:`~r2ta.eerd.EERD` into DOT source; :func:`render`
runs the graphviz ``dot`` binary on it to get SVG or PNG. The same DOT source is
what the app hands to ``st.graphviz_chart`` (drawn in the browser by its own
graphviz build), so everything the drawing needs is in the source, the layout
engine included (``layout=neato``).

Glyphs (DESIGN.md §3): entity ``box`` (weak: double box); relationship
``diamond`` (identifying: double diamond); attributes are ellipses around their
owner (key underlined, partial key with a dashed underline, multivalued a
double ellipse, derived dashed, composite parts around their parent); total
participation is a double line; specializations and categories are small
circles (``d``, ``o``, ``?`` when unstated, ``∪``) with the subset mark on the
subclass side; attribute-defined specializations carry the defining attribute
and values on their lines.

Layout: neato, which places attributes around their owner the way Chen
diagrams are drawn by hand. Each (min,max) is a small text node *on* the
relationship line right next to its entity (with the role, for recursive
relationships), so it can never be read as belonging to another line. When a
local graphviz is available, :func:`to_dot` lays the diagram out once, moves
each text exactly onto its straight line clear of other nodes, and pins every
node (``pos="x,y!"``), so the CLI and the browser draw the same picture.
``layout="dot"`` gives a layered drawing with (min,max) as head/tail labels.

Safety: DOT node names are internal (``n0``, ``n1``, ...) and every piece of
user text (names, roles, defining values) goes through :func:`escape_html`
before it enters an HTML-like label, or :func:`_quote` before it enters a
quoted attribute. No user text ever becomes DOT syntax, an attribute name or a
file path. This module must not import streamlit.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterable, Mapping

from r2ta.eerd import EERD, MANY, Attribute, Participation
from r2ta.errors import RenderError

log = logging.getLogger(__name__)

LAYOUTS = ("neato", "dot")
DEFAULT_LAYOUT = "neato"
FORMATS = ("svg", "png", "dot")
# What :func:`run_dot` may ask graphviz for (``json``/``plain`` are for tests and tools).
DOT_OUTPUT_FORMATS = ("svg", "png", "pdf", "json", "plain")
DOT_TIMEOUT_S = 120.0  # spline routing of a 60-element diagram takes ~1-2 s; allow for a loaded machine

INSTALL_HINT = (
    "install graphviz (Debian/Ubuntu: `sudo apt-get install graphviz`, macOS: `brew install graphviz`, "
    "or `make system-deps` in the project) so that the `dot` command is on PATH; "
    "`r2ta render -o FILE.dot` writes the DOT source without it"
)

FONT = "Helvetica"
HIGHLIGHT_COLOR = "#d62728"
HIGHLIGHT_FILL = "#fde3e1"
HIGHLIGHT_PENWIDTH = "2.6"

# Display limits: a label wider or taller than this is wrapped, then cut with an
# ellipsis; the whole name stays in the tooltip.
WRAP_ENTITY = 20
WRAP_ATTRIBUTE = 18
MAX_LINES = 3
MAX_TOOLTIP_CHARS = 1000

# Characters removed from names before display: C0/C1 controls (newline is kept
# and becomes a line break), lone surrogates (cannot be encoded), and the bidi
# overrides that could make a label read differently from its text.
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def clean_text(text: str) -> str:
    """Drop control characters (keeping newlines), lone surrogates and bidi overrides."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return "".join(
        ch
        for ch in text
        if ch == "\n" or (unicodedata.category(ch) not in ("Cc", "Cs") and ch not in _BIDI)
    )


def escape_html(text: str) -> str:
    """Escape text for a graphviz HTML-like label.

    ``& < > " '`` become entities and newlines ``<BR/>``; control characters are
    dropped. Backslashes are doubled: graphviz expands ``\\N``, ``\\G`` ... (node
    and graph names) even inside HTML-like labels, and ``\\\\`` is its literal
    backslash there.
    """
    text = clean_text(text)
    text = (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
        .replace("\\", "\\\\")
    )
    return text.replace("\n", "<BR/>")


def _quote(text: str) -> str:
    """A DOT double-quoted string for a tooltip holding user text (meant for SVG).

    Quotes are escaped and newlines kept as ``\\n``. Backslashes become the look-alike
    U+FF3C: graphviz runs tooltips through its ``\\N``/``\\G`` expansion twice, so no
    escaping of a real backslash survives every version. ``&`` is written as
    ``&amp;`` (and ``<>`` as ``&lt;&gt;``): graphviz copies text that already looks
    like an entity into SVG unchanged, so a name such as ``&nbsp;`` would otherwise
    make the SVG invalid XML; a tooltip shows the decoded text.
    """
    text = clean_text(text)[:MAX_TOOLTIP_CHARS]
    text = text.replace("\\", "\uff3c").replace('"', '\\"')
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return '"' + text.replace("\n", "\\n") + '"'


_BREAK_AFTER = re.compile(r"(?<=[ _\-/.,;:])")


def _wrap_paragraph(text: str, width: int) -> list[str]:
    """Greedy wrap that may break after spaces, ``_``, ``-`` and punctuation, and inside over-long words."""
    lines: list[str] = []
    current = ""
    for token in _BREAK_AFTER.split(text):
        while len(token) > width:  # a word longer than a line: cut it
            room = width - len(current)
            if current and room < 3:
                lines.append(current.rstrip())
                current, room = "", width
            current += token[:room]
            token = token[room:]
            lines.append(current.rstrip())
            current = ""
        if len(current) + len(token.rstrip()) > width and current:
            lines.append(current.rstrip())
            current = ""
        current += token if current or not token.isspace() else ""
    if current.strip() or not lines:
        lines.append(current.rstrip())
    return lines


def display_lines(text: str, width: int, max_lines: int = MAX_LINES) -> list[str]:
    """Wrap ``text`` (raw, unescaped) into at most ``max_lines`` lines of about ``width`` characters.

    Explicit newlines are kept; a cut is marked with an ellipsis.
    """
    lines: list[str] = []
    for part in clean_text(text).split("\n"):
        lines.extend(_wrap_paragraph(part.strip(), width))
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, width - 1)].rstrip() + "\u2026"
    return lines or [""]


def _label(text: str, width: int, underline: str | None = None) -> str:
    """An HTML-like label (without the outer ``<>``) for a name; ``underline`` is ``solid`` or ``dashed``."""
    lines = [escape_html(line) or "&#160;" for line in display_lines(text, width)]
    if underline == "solid":
        return "<BR/>".join(f"<U>{line}</U>" for line in lines)
    if underline == "dashed":
        # HTML-like labels have no dashed underline; a table cell with only a
        # dashed bottom border reads as one (graphviz >= 2.40 draws STYLE="dashed").
        body = "<BR/>".join(lines)
        return (
            '<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
            f'<TR><TD BORDER="1" SIDES="B" STYLE="dashed">{body}</TD></TR></TABLE>'
        )
    return "<BR/>".join(lines)


def _bound(value: int | str) -> str:
    return "N" if value == MANY else str(value)


def min_max(p: Participation) -> str:
    return f"({p.min},{_bound(p.max)})"


def _attrs(**kv: str | None) -> str:
    """Format DOT attributes; values are already quoted/escaped by the caller."""
    return ", ".join(f"{k}={v}" for k, v in kv.items() if v is not None)


def _html(inner: str) -> str:
    return f"<{inner}>"


def _normalise_highlight(highlight: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    if not highlight:
        return {}
    if isinstance(highlight, str):
        return {highlight: ""}
    if isinstance(highlight, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in highlight.items()}
    return {str(k): "" for k in highlight}


class _DotWriter:
    """Collects nodes and edges (in order) with their DOT attributes; hands out internal node names."""

    def __init__(self, highlight: dict[str, str]):
        self.highlight = highlight
        self.statements: list[tuple[str, ...]] = []  # ("node", name) or ("edge", tail, head)
        self.node_attrs: dict[str, dict[str, str | None]] = {}
        self.edge_attrs: list[dict[str, str | None]] = []
        self.node_of: dict[str, str] = {}
        # text node -> (node at one end of its line, node at the other, beside the second
        # end?, subset mark at the second end?)
        self.texts: dict[str, tuple[str, str, bool, bool]] = {}
        self.bent: set[str] = set()  # text nodes where a line is meant to bend (recursive relationships)
        self._count = 0
        self.bbox = (0.0, 0.0, 0.0, 0.0)  # of the settled layout, points

    def new_name(self) -> str:
        name = f"n{self._count}"
        self._count += 1
        return name

    def raw_node(self, **attrs: str | None) -> str:
        name = self.new_name()
        self.statements.append(("node", name))
        self.node_attrs[name] = attrs
        return name

    def node(self, element_id: str | None, tooltip: str, **attrs: str | None) -> str:
        if element_id is not None:
            attrs["id"] = _quote(f"el-{element_id}")
            if element_id in self.highlight:
                note = self.highlight[element_id]
                tooltip = f"{tooltip}: {note}" if note else tooltip
                attrs["color"] = f'"{HIGHLIGHT_COLOR}"'
                attrs["fontcolor"] = f'"{HIGHLIGHT_COLOR}"'
                attrs["penwidth"] = HIGHLIGHT_PENWIDTH
                attrs["fillcolor"] = f'"{HIGHLIGHT_FILL}"'
                attrs["class"] = '"highlight"'
        attrs["tooltip"] = _quote(tooltip)
        name = self.raw_node(**attrs)
        if element_id is not None:
            self.node_of[element_id] = name
        return name

    def edge(self, a: str, b: str, **attrs: str | None) -> None:
        self.statements.append(("edge", a, b))
        self.edge_attrs.append(attrs)

    def body(self) -> list[str]:
        out, edges = [], iter(self.edge_attrs)
        for st in self.statements:
            if st[0] == "node":
                out.append(f"  {st[1]} [{_attrs(**self.node_attrs[st[1]])}];")
            else:
                attrs = _attrs(**next(edges))
                out.append(f"  {st[1]} -> {st[2]} [{attrs}];" if attrs else f"  {st[1]} -> {st[2]};")
        return out


# The subset mark of E&N (a cup on the line, open towards the superclass): graphviz's
# "curve" arrow, pushed two arrow lengths away from the subclass by two "none"
# shapes so that the line runs through it instead of it hiding in the box border.
_SUBSET_MARK = {"dir": "forward", "arrowhead": "nonenonecurve", "arrowsize": "1.4"}


# neato's target line lengths (inches, centre to centre): attributes close to
# their owner; relationships long enough that the diamond, the (min,max) text and
# the attributes around an entity all find room.
EDGE_LENGTHS: dict[str, float] = {
    "attribute": 1.0,
    "relationship": 2.3,
    "recursive": 2.0,  # each line of a recursive relationship ...
    "recursive_axis": 1.6,  # ... and the invisible spring that fans them out (shorter)
    "superclass": 1.4,
    "subclass": 1.4,
}
TEXT_NEAR_END = 0.7  # inches from the entity's centre to the (min,max) on its line
DOUBLE = '"black:invis:black"'  # a double line: total participation / specialization


def _graph_attrs(layout: str, pinned: bool = False) -> list[str]:
    common = [f"layout={layout}", 'charset="UTF-8"', f'fontname="{FONT}"', "bgcolor=white", "pad=0.3"]
    if layout == "dot":
        return common + ["rankdir=TB", "nodesep=0.3", "ranksep=0.5", "splines=true", "newrank=true"]
    if pinned:  # every node has its place (pos="x,y!"): only draw the lines
        return common + ["overlap=true", "splines=true", 'esep="+2"']
    # neato: stress majorization keeps attributes around their owner like a
    # hand-drawn Chen diagram; prism removes node overlaps; the extra separation
    # leaves room for the texts on the lines; pack keeps separate parts (and the
    # legend) side by side instead of on top of each other.
    return common + [
        "mode=major",
        "overlap=prism",
        "overlap_scaling=-4",
        'sep="+12"',
        "splines=true",
        "pack=24",
    ]


def to_dot(
    diagram: EERD,
    highlight: Mapping[str, str] | Iterable[str] = (),
    legend: bool = False,
    layout: str = DEFAULT_LAYOUT,
    *,
    settle: bool = True,
) -> str:
    """DOT source for ``diagram`` in Chen/EER notation.

    ``highlight`` maps element ids to a note (or is a plain list of ids): those
    elements get a red outline, a red-tinted fill and the note as tooltip.
    Unknown ids are ignored. ``legend`` adds a key to the glyphs. ``layout`` is
    the graphviz engine written into the source (one of :data:`LAYOUTS`).

    With neato and ``settle`` (the default), the layout is computed here with
    the local graphviz and written into the source as fixed positions, after
    moving every text that sits on a line (the (min,max), defining attribute
    and values) onto the straight line between its two ends, clear of other
    nodes: whoever draws the source (``dot``, the browser) draws exactly this.
    Without a local graphviz, or with ``settle=False``, neato lays it out where
    it is drawn, texts where its stress model puts them (now and then off the line).
    """
    if layout not in LAYOUTS:
        raise RenderError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    w = _DotWriter(_normalise_highlight(highlight))
    neato = layout == "neato"

    def line(
        a: str,
        b: str,
        kind: str,
        *,
        text: str | None = None,
        near_b: bool = False,
        color: str | None = None,
        mark: bool = False,
        tooltip: str = "",
        dot_attrs: Mapping[str, str | None] | None = None,
    ) -> str | None:
        """Draw the line a -- b with an optional HTML ``text`` on it: beside b (``near_b``) or midway.

        neato gets the text as a small node on the line, which its overlap
        removal keeps clear of every other node and text, so nothing piles up
        at a busy entity; the line runs through it. dot gets an edge label
        (head label when ``near_b``). ``mark`` puts the subset mark at b.
        """
        style: dict[str, str | None] = {"color": color, **(_SUBSET_MARK if mark else {})}
        if not neato:
            attrs = dict(style)
            if text is not None:
                attrs["headlabel" if near_b else "label"] = _html(text)
            attrs.update(dot_attrs or {})
            if kind == "attribute":
                attrs["weight"] = "2"  # keep attributes right under their owner
            w.edge(a, b, **attrs)
            return None
        length = EDGE_LENGTHS[kind]
        if text is None:
            w.edge(a, b, len=f"{length:g}", **style)
            return None
        near = TEXT_NEAR_END if near_b else length / 2
        via = w.raw_node(shape="plaintext", margin="0.01", width="0", height="0", label=_html(text),
                         tooltip=_quote(tooltip))
        w.texts[via] = (a, b, near_b, mark)
        w.edge(a, via, len=f"{length - near:g}", color=color)
        w.edge(via, b, len=f"{near:g}", **style)
        return via

    # -- entities, relationships and their attributes ------------------------------
    for e in diagram.entities:
        w.node(
            e.id,
            e.name,
            shape="box",
            peripheries="2" if e.weak else None,
            label=_html(_label(e.name, WRAP_ENTITY)),
            style="filled",
            fillcolor="white",
            margin='"0.12,0.06"',
        )
    for r in diagram.relationships:
        w.node(
            r.id,
            r.name,
            shape="diamond",
            peripheries="2" if r.identifying else None,
            label=_html(_label(r.name, WRAP_ENTITY)),
            style="filled",
            fillcolor="white",
            margin='"0.02,0.02"',
        )

    def attribute(owner_node: str, a: Attribute) -> None:
        underline = "solid" if a.key else "dashed" if a.partial_key else None
        node = w.node(
            a.id,
            a.name,
            shape="ellipse",
            peripheries="2" if a.multivalued else None,
            style='"filled,dashed"' if a.derived else "filled",
            fillcolor="white",
            label=_html(_label(a.name, WRAP_ATTRIBUTE, underline)),
            margin='"0.04,0.02"',
        )
        line(owner_node, node, "attribute")
        for c in a.components:
            attribute(node, c)

    for owner in diagram.owners():
        for a in owner.attributes:
            attribute(w.node_of[owner.id], a)

    # -- relationship lines, with (min,max) beside the entity ------------------------
    lines_into: dict[str, int] = {}  # entity id -> relationship lines drawn into it so far (dot)
    for r in diagram.relationships:
        rnode = w.node_of[r.id]
        repeated = {p.entity for p in r.participants if sum(q.entity == p.entity for q in r.participants) > 1}
        seen: dict[str, int] = {}
        for i, p in enumerate(r.participants):
            enode = w.node_of.get(p.entity)
            if enode is None:  # cannot happen for a validated EERD; defensive for model_construct
                continue
            nth = seen[p.entity] = seen.get(p.entity, 0) + 1
            k = lines_into[p.entity] = lines_into.get(p.entity, 0) + 1
            # The role (recursive relationships) goes with the (min,max), so each
            # pair stays with its own line.
            text = f'<FONT POINT-SIZE="10">{min_max(p)}</FONT>'
            if p.role:
                text = f'<FONT POINT-SIZE="9"><I>{_label(p.role, WRAP_ATTRIBUTE)}</I></FONT><BR/>' + text
            recursive = p.entity in repeated
            if recursive and neato and nth == 1:
                # neato would lay the lines of a recursive relationship on top of
                # each other: an invisible spring, shorter than the way along a
                # line, pulls the diamond in so the lines fan out to the entity.
                w.edge(rnode, enode, style="invis", len=f"{EDGE_LENGTHS['recursive_axis']:g}")
            entity_name = diagram.element_name(p.entity) or p.entity
            tip = f"{entity_name}{f' as {p.role}' if p.role else ''} {min_max(p)} in {r.name}"
            dot_attrs = {
                # dot: alternate the side and stagger the distance, so texts of
                # lines that reach an entity from one direction do not pile up.
                "labeldistance": "1.7" if k % 2 else "2.7",
                "labelangle": "-28" if nth % 2 else "28",
            }
            total = DOUBLE if p.total else None
            if i == 0 and not neato:
                # dot ranks along edge direction: entering the diamond from its
                # first participant puts it between its entities, not above all of them.
                w.edge(enode, rnode, color=total, taillabel=_html(text), **dot_attrs)
                continue
            kind = "recursive" if recursive else "relationship"
            via = line(rnode, enode, kind, text=text, near_b=True, color=total, tooltip=tip, dot_attrs=dot_attrs)
            if recursive and via:
                w.bent.add(via)

    # -- specializations and categories -------------------------------------------
    def circle(element_id: str, text: str, tooltip: str) -> str:
        return w.node(
            element_id,
            tooltip,
            shape="circle",
            fixedsize="true",
            width="0.34",
            label=_quote(text),
            fontsize="12",
            style="filled",
            fillcolor="white",
        )

    def italic(text: str | None) -> str | None:
        return f"<I>{_label(text, WRAP_ATTRIBUTE)}</I>" if text else None

    for s in diagram.specializations:
        words = {"d": "disjoint", "o": "overlapping"}.get(s.disjointness or "", "disjointness not stated")
        sup_name = diagram.element_name(s.superclass) if s.superclass else None
        tip = f"specialization of {sup_name or '(no superclass)'}: {words}, {s.completeness or 'completeness not stated'}"
        defining = diagram.element_name(s.defining_attribute) if s.defining_attribute else None
        if defining:
            tip += f", defined by {defining}"
        if len(s.subclasses) == 1:
            # One subclass is a plain subset (E&N draw no d/o circle): a line with the subset mark.
            cnode = w.node(s.id, tip, shape="point", width="0.05", fixedsize="true")
        else:
            cnode = circle(s.id, s.disjointness or "?", tip)
        if s.superclass and s.superclass in w.node_of:
            total = DOUBLE if s.completeness == "total" else None
            line(w.node_of[s.superclass], cnode, "superclass", text=italic(defining), color=total, tooltip=tip)
        for sub in s.subclasses:
            if sub in w.node_of:
                value = s.defining_values.get(sub)
                line(cnode, w.node_of[sub], "subclass", text=italic(value), mark=True, tooltip=value or "")

    for c in diagram.categories:
        sub_name = diagram.element_name(c.subclass) or c.subclass
        cnode = circle(c.id, "\u222a", f"category {sub_name}: a subset of the union of its superclasses, {c.completeness}")
        for sup in c.superclasses:
            if sup in w.node_of:
                line(w.node_of[sup], cnode, "superclass")
        if c.subclass in w.node_of:
            total = DOUBLE if c.completeness == "total" else None
            line(cnode, w.node_of[c.subclass], "subclass", color=total, mark=True)

    # -- assemble -----------------------------------------------------------------
    pinned = neato and settle and _settle(w)
    origin = (0.0, 0.0)
    if pinned and legend:
        origin = _legend_origin(w)
    out = [
        "digraph eerd {",
        "  graph [" + ", ".join(_graph_attrs(layout, pinned)) + "];",
        *_defaults(),
        *w.body(),
    ]
    if legend:
        out.extend(_legend(layout, origin))
    out.append("}")
    return "\n".join(out) + "\n"


# -- settling the layout: texts exactly on their lines ----------------------------

_TEXT_GAP = 5.0  # points kept free around a text on a line
_TEXT_STEP = 3.0  # points between positions tried along a line
_MARK_ROOM = 30.0  # points kept free at the end of a line that carries the subset mark
_FAN_ANGLE = 32.0  # degrees each line of a recursive relationship turns off the axis


def _settle(w: _DotWriter) -> bool:
    """Lay the diagram out with the local neato, put each text node on the straight
    segment between its two ends (beside the entity, or midway), and pin every node.

    Returns False, leaving ``w`` untouched, when graphviz is missing or fails.
    """
    # Only positions are needed here: routing the lines (most of neato's time) waits for the drawing.
    attrs = [a for a in _graph_attrs("neato") if not a.startswith("splines")] + ["splines=false"]
    source = "\n".join(["digraph eerd {", "  graph [" + ", ".join(attrs) + "];", *_defaults(), *w.body(), "}"])
    try:
        out, _ = run_dot(source, "json")
        objects = json.loads(out).get("objects", [])
    except (RenderError, ValueError) as err:
        log.info("laying the diagram out here failed, leaving it to the viewer: %s", err)
        return False
    # name -> [x, y, half width, half height], points
    box: dict[str, list[float]] = {}
    for o in objects:
        if "pos" in o and "width" in o:
            x, y = (float(v) for v in o["pos"].split(","))
            box[o["name"]] = [x, y, float(o["width"]) * 36, float(o["height"]) * 36]
    if set(box) != set(w.node_attrs):
        return False
    fans: dict[tuple[str, str], list[str]] = {}
    for text, (a, b, near_b, mark_b) in w.texts.items():
        if text in w.bent:
            fans.setdefault((a, b), []).append(text)
        else:
            _place_on_line(box, text, a, b, near_b, mark_b)
    for (a, b), texts in fans.items():
        _place_fan(box, texts, a, b)
    xs = [v for x, _, hw, _ in box.values() for v in (x - hw, x + hw)]
    ys = [v for _, y, _, hh in box.values() for v in (y - hh, y + hh)]
    w.bbox = (min(xs), min(ys), max(xs), max(ys))
    for name, (x, y, _, _) in box.items():
        w.node_attrs[name]["pos"] = f'"{x / 72:.4f},{y / 72:.4f}!"'
    return True


def _clearance(hw: float, hh: float, ux: float, uy: float) -> float:
    """How far along (ux, uy) a box's centre must move from another's to clear it by the gap.

    ``hw``/``hh`` are the two boxes' half widths/heights added up.
    """
    inf = float("inf")
    return min((hw + _TEXT_GAP) / abs(ux) if ux else inf, (hh + _TEXT_GAP) / abs(uy) if uy else inf)


def _place_on_line(box: dict[str, list[float]], text: str, a: str, b: str, near_b: bool, mark_b: bool) -> None:
    """Move ``text`` onto the segment a -- b: as near b as it fits (``near_b``), else as near the middle.

    Each position tried must clear every other node by the gap; a line that ends
    in the subset mark at b keeps the text off the mark.
    """
    ax, ay, ahw, ahh = box[a]
    bx, by, bhw, bhh = box[b]
    length = ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5
    if length < 1:
        return
    ux, uy = (ax - bx) / length, (ay - by) / length  # from b towards a
    _, _, thw, thh = box[text]
    lo = _clearance(bhw + thw, bhh + thh, ux, uy) + (_MARK_ROOM if mark_b else 0)  # just clear of b
    hi = length - _clearance(ahw + thw, ahh + thh, ux, uy)  # just clear of a
    if hi < lo:
        return  # no room on the line: leave it where neato put it
    if near_b:  # beside b, moving out along the line until it is clear
        tries = [lo + k * _TEXT_STEP for k in range(int((min(hi, lo + length * 0.4) - lo) / _TEXT_STEP) + 1)]
    else:  # midway, moving either way until clear
        mid, span = (lo + hi) / 2, (hi - lo) / 2
        tries = [mid + sign * k * _TEXT_STEP for k in range(int(span / _TEXT_STEP) + 1) for sign in (1, -1)]
    _first_clear(box, text, (a, b), [(bx + ux * d, by + uy * d) for d in tries], (-uy, ux))


def _place_fan(box: dict[str, list[float]], texts: list[str], a: str, b: str) -> None:
    """The lines of a recursive relationship (diamond a, entity b) leave b fanned out, each through its text.

    Each text goes beside b, turned ``_FAN_ANGLE`` off the b -> a axis, on the side neato chose for it.
    """
    ax, ay, *_ = box[a]
    bx, by, bhw, bhh = box[b]
    length = ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5
    if length < 1:
        return
    ux, uy = (ax - bx) / length, (ay - by) / length
    sides = [1.0 if ux * (box[t][1] - by) - uy * (box[t][0] - bx) >= 0 else -1.0 for t in texts]
    if len(set(sides)) < len(sides) or len(texts) != 2:
        sides = [(-1.0) ** i for i in range(len(texts))]
    for text, side in zip(texts, sides):
        _, _, thw, thh = box[text]
        spots = []
        for turn in (_FAN_ANGLE, _FAN_ANGLE + 14, _FAN_ANGLE - 12, _FAN_ANGLE + 28):
            angle = math.radians(turn) * side * (1 + (len(texts) > 2))
            vx, vy = ux * math.cos(angle) - uy * math.sin(angle), ux * math.sin(angle) + uy * math.cos(angle)
            lo = _clearance(bhw + thw, bhh + thh, vx, vy)
            spots += [(bx + vx * (lo + k * _TEXT_STEP), by + vy * (lo + k * _TEXT_STEP)) for k in range(12)]
        _first_clear(box, text, (a, b), spots, (-uy, ux))


def _first_clear(
    box: dict[str, list[float]], text: str, ends: tuple[str, str], spots: list, across: tuple[float, float]
) -> None:
    """Put ``text`` on the first of ``spots`` where it clears every node but the ends of its line.

    If none does, try the spots again shifted a little ``across`` the line (the
    line then bends slightly through the text), and failing that take the spot
    where it overlaps least.
    """
    _, _, thw, thh = box[text]
    others = [v for n, v in box.items() if n != text and n not in ends]

    def overlap(x: float, y: float) -> float:
        total = 0.0
        for ox, oy, ohw, ohh in others:
            w = thw + ohw + _TEXT_GAP - abs(x - ox)
            h = thh + ohh + _TEXT_GAP - abs(y - oy)
            if w > 0 and h > 0:
                total += w * h
        return total

    best, best_overlap = None, float("inf")
    shifted = [(x + across[0] * k, y + across[1] * k) for k in (6, -6, 12, -12, 18, -18) for x, y in spots]
    for spot in [*spots, *shifted]:
        o = overlap(*spot)
        if o < best_overlap:
            best, best_overlap = spot, o
            if o == 0:
                break
    if best is not None:
        box[text][0], box[text][1] = best


def _legend_origin(w: _DotWriter) -> tuple[float, float]:
    """Where the legend's first row goes (inches): left of the settled diagram, level with its top."""
    x0, _, _, y1 = w.bbox
    return (x0 / 72 - _LEGEND_WIDTH - 0.3, y1 / 72 - 0.45)


def _defaults() -> list[str]:
    return [
        f'  node [fontname="{FONT}", fontsize=11, penwidth=1.1];',
        f'  edge [fontname="{FONT}", fontsize=10, dir=none, penwidth=1.1, arrowsize=0.9];',
    ]


# Legend rows: a sample glyph (node attributes; "edge:" + edge attributes, drawn
# between two points; "minmax", a line into an entity with its (min,max)) and what
# it means ("|" breaks lines). Our own text, never user text.
_BOX = "fixedsize=true, width=0.95, height=0.4"
_DIAMOND = "fixedsize=true, width=0.95, height=0.5"
_LEGEND_ROWS: list[tuple[str, str]] = [
    (f'shape=box, label="ENTITY", {_BOX}', "entity"),
    (f'shape=box, peripheries=2, label="WEAK", {_BOX}', "weak entity"),
    (f'shape=diamond, label="REL", {_DIAMOND}', "relationship"),
    (f'shape=diamond, peripheries=2, label="ID", {_DIAMOND}', "identifying relationship"),
    (f"shape=ellipse, label=<<U>Key</U>>, {_BOX}", "key attribute"),
    (f"shape=ellipse, label=<{_label('Partial', WRAP_ATTRIBUTE, 'dashed')}>, {_BOX}", "partial key (of a weak entity)"),
    (f'shape=ellipse, peripheries=2, label="Values", {_BOX}', "multivalued attribute"),
    (f'shape=ellipse, style=dashed, label="Derived", {_BOX}', "derived attribute"),
    ('edge:color="black:invis:black"', "total participation (min \u2265 1)"),
    ("minmax", "(min,max) beside an entity: how often|each instance takes part (N = many)"),
    ('shape=circle, fixedsize=true, width=0.34, label="d"', "specialization, disjoint"),
    ('shape=circle, fixedsize=true, width=0.34, label="o"', "specialization, overlapping"),
    ('shape=circle, fixedsize=true, width=0.34, label="\u222a"', "category (union type)"),
    ("edge:dir=forward, arrowhead=nonenonecurve, arrowsize=1.2", "subset mark, on the subclass side|(double line: total)"),
    (
        f'shape=box, label="ELEMENT", color="{HIGHLIGHT_COLOR}", fontcolor="{HIGHLIGHT_COLOR}", '
        f'penwidth={HIGHLIGHT_PENWIDTH}, style=filled, fillcolor="{HIGHLIGHT_FILL}", {_BOX}',
        "named in a mistake",
    ),
]
_LEGEND_STEP = 0.65  # inches between rows
_LEGEND_TEXT_X = 2.15  # centre of the (left-justified, fixed-width) description


_LEGEND_WIDTH = 4.0  # inches from the glyphs' left edge to the end of the descriptions


def _legend(layout: str, origin: tuple[float, float] = (0.0, 0.0)) -> list[str]:
    """A small cluster explaining the glyphs; its nodes carry no element id.

    neato keeps the rows in place through pinned positions (``pos="x,y!"``),
    starting at ``origin`` (inches): left of a settled diagram, or anywhere when
    neato still lays the diagram out (``pack`` then sets the block beside it).
    dot, which ignores ``pos``, stacks the rows with ``rank=same`` pairs and an
    invisible chain.
    """
    pinned = layout != "dot"
    out = ["  subgraph cluster_legend {", '    label="Legend"; fontsize=12; color="#999999"; style=rounded;']
    if pinned:  # room for the cluster's title, which neato does not reserve
        top = f"{origin[0] + 0.45:g},{origin[1] + _LEGEND_STEP * 0.8:g}"
        out.append(f'    legend_top [shape=point, width=0.01, style=invis, label="", pos="{top}!"];')
    chain: list[str] = []
    for i, (glyph, text) in enumerate(_LEGEND_ROWS):
        y = -i * _LEGEND_STEP

        def pos(x: float) -> str:
            return f', pos="{x + origin[0] + 0.45:g},{y + origin[1]:g}!"' if pinned else ""

        text_node = f"legend{i}_text"
        lines = text.split("|")  # "|" separates the lines of a description
        label = "".join(line + "\\l" for line in lines)  # \l: left-justified line
        out.append(
            f"    {text_node} [shape=plaintext, fixedsize=true, width=2.7, height=0.4, fontsize=10, "
            f'label="{label}", tooltip="{" ".join(lines)}"{pos(_LEGEND_TEXT_X)}];'
        )
        if glyph.startswith("edge:") or glyph == "minmax":
            left, right = f"legend{i}_a", f"legend{i}_b"
            out.append(f'    {left} [shape=point, width=0.02, style=invis, label=""{pos(-0.45)}];')
            if glyph == "minmax":  # drawn the way the diagram draws it, for each layout
                out.append(f'    {right} [shape=box, label="E", fontsize=9, width=0.3, height=0.25{pos(0.45)}];')
                minmax = '<<FONT POINT-SIZE="10">(1,N)</FONT>>'
                if pinned:
                    mid = f"legend{i}_m"
                    out.append(f"    {mid} [shape=plaintext, margin=0.01, width=0, height=0, label={minmax}{pos(-0.05)}];")
                    out.append(f"    {left} -> {mid}; {mid} -> {right};")
                else:
                    out.append(f"    {left} -> {right} [headlabel={minmax}, labeldistance=1.7, labelangle=-28];")
            else:
                out.append(f'    {right} [shape=point, width=0.02, style=invis, label=""{pos(0.45)}];')
                out.append(f"    {left} -> {right} [{glyph[len('edge:'):]}];")
            first = left
            row = [left, right, text_node]
        else:
            first = f"legend{i}"
            out.append(f"    {first} [{glyph}, fontsize=10{pos(0)}];")
            row = [first, text_node]
        if not pinned:
            out.append("    { rank=same; " + "; ".join(row) + "; }")
            out.append(f"    {row[-2]} -> {text_node} [style=invis];")
        chain.append(first)
    if not pinned:
        out.extend(f"    {a} -> {b} [style=invis];" for a, b in zip(chain, chain[1:]))
    out.append("  }")
    return out


# -- running graphviz ------------------------------------------------------------


def _dot_binary() -> str:
    exe = shutil.which("dot")
    if exe is None:
        raise RenderError(f"the graphviz `dot` command was not found; {INSTALL_HINT}")
    return exe


_WARNING = re.compile(r"^(Warning|Error):", re.MULTILINE)


def run_dot(source: str, fmt: str = "svg", timeout: float = DOT_TIMEOUT_S) -> tuple[bytes, list[str]]:
    """Run graphviz ``dot`` on DOT ``source``; return the output and the warnings it printed.

    The layout engine is the one the source names (``layout=...``). Raises
    :class:`RenderError` if ``dot`` is missing, fails or runs past ``timeout``.
    """
    if fmt not in DOT_OUTPUT_FORMATS:
        raise RenderError(f"graphviz output format {fmt!r} is not supported; use one of {', '.join(DOT_OUTPUT_FORMATS)}")
    cmd = [_dot_binary(), f"-T{fmt}", "-Gcharset=utf-8"]
    try:
        proc = subprocess.run(cmd, input=source.encode("utf-8"), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(
            f"graphviz `dot` took longer than {timeout:g} s and was stopped; the diagram may be too large to draw"
        ) from None
    except OSError as err:
        raise RenderError(f"could not run graphviz `dot`: {err.strerror}; {INSTALL_HINT}") from None
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0 or not proc.stdout:
        detail = stderr[-800:] or f"exit status {proc.returncode}"
        raise RenderError(f"graphviz `dot` could not draw the diagram: {detail}")
    warnings = [line for line in stderr.splitlines() if line.strip()]
    for line in warnings:
        log.warning("graphviz: %s", line)
    return proc.stdout, warnings


def render(diagram: EERD, fmt: str = "svg", **to_dot_kwargs) -> bytes:
    """The drawing of ``diagram`` as ``svg``/``png`` bytes, or its DOT source (``dot``, no binary needed)."""
    if fmt not in FORMATS:
        raise RenderError(f"unknown render format {fmt!r}; choose one of {', '.join(FORMATS)}")
    source = to_dot(diagram, **to_dot_kwargs)
    if fmt == "dot":
        return source.encode("utf-8")
    output, _ = run_dot(source, fmt)
    return output
