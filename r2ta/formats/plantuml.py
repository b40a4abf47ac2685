"""PlantUML Chen notation (``@startchen ... @endchen``): import and export.

The grammar follows PlantUML's own ``cheneer`` commands:

* ``entity ["Display" as] CODE [<<weak>>] [#color] {`` ... ``}`` and
  ``relationship ["Display" as] CODE [<<identifying>>] {`` ... ``}``; the block
  may be left out (``entity A <<weak>>``) and a code may be declared again to add
  attributes.
* Inside a block, one attribute a line: ``["Display" as] Code [<<key>>]
  [<<multi>>] [<<derived>>] [{]``; a trailing ``{`` opens a composite whose
  components follow until ``}``. ``Born : DATE`` (no alias) is the attribute
  ``Born``; the domain is dropped with a warning.
* Links ``REL -N- ENTITY``: ``-`` single line (partial), ``=`` double line
  (total participation); the label is a cardinality word (``1``, ``N``, ``M``,
  a number) or a ``(min,max)`` pair.
* ``SUPER ->- d { A, B }`` / ``=>=`` (double line = total), symbol ``d`` or
  ``o``; ``SUPER ->- SUB`` and ``SUB -<- SUPER`` (one subclass, no circle: imported
  as a specialization with that one subclass, disjointness ``d``, which is
  vacuous for a single subclass);
  ``CAT ->- U { S1, S2 }`` is a category (union type): PlantUML draws the subset
  mark on the first entity's line, which in E&N marks the category, so ``CAT`` is
  the union type and ``S1``, ``S2`` its superclasses.

Look-here and look-across
-------------------------
In Chen's notation the ratio ``1`` / ``N`` is written on the line of the entity
*across*: for "each employee works for one department, a department has many
employees" Chen writes ``N`` on EMPLOYEE's line and ``1`` on DEPARTMENT's::

    WORKS_FOR =N= EMPLOYEE      ' double line: every employee works for one
    WORKS_FOR -1- DEPARTMENT

So in a binary relationship an entity's look-here ``max`` is the word on the
*other* link (EMPLOYEE: 1, DEPARTMENT: N), while its ``min`` comes from its own
line (double = 1): EMPLOYEE (1,1), DEPARTMENT (0,N). A ``(min,max)`` label is
E&N's notation, written beside the entity it constrains: look-here, taken as
it is (``WORKS_FOR =(1,1)= EMPLOYEE`` is EMPLOYEE (1,1)). Where both are given
the ``(min,max)`` wins and a disagreement is reported. For relationships of
degree 3 or more Chen's words mean "per combination of the others", which has
no look-here equivalent: such a max is imported as N with a warning.

Partial keys
------------
Standard PlantUML has no partial-key marker; its documentation underlines a weak
entity's partial key with ``<<key>>``. So ``<<key>>`` on an attribute of a weak
entity is read as a partial key; ``<<partial key>>`` / ``<<discriminator>>`` (the
compact notation's name) mark one anywhere, and ``<<key>> <<full>>`` marks a full
key on a weak entity (a modelling mistake worth preserving for the checker).

Export
------
:func:`to_plantuml` writes every participation as ``(min,max)`` (look-here, with
``=`` when min >= 1) so nothing is lost in conversion, names as ``"Display" as
CODE`` with ``\\n``, ``\\\\`` and ``<U+XXXX>`` escapes, and partial keys with the
convention above. ``import_text(to_plantuml(d))`` gives back ``d`` for every
construct PlantUML can express; :func:`export_plantuml` lists what it cannot:
role names, attribute-defined specializations (defining attribute and values), a
specialization without a superclass, subclasses or a stated disjointness, and
ids that are not valid PlantUML codes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from r2ta.eerd import EERD, MANY, Attribute
from r2ta.errors import ImportFormatError
from r2ta.formats._common import (
    IdAllocator,
    Warnings,
    check_count,
    check_name,
    code_token,
    decode_text,
    finish,
    split_lines,
)

_Q = '"\u201c\u201d\u00ab\u00bb'  # PlantUML's %g: the quote characters a display cannot hold
_DISPLAY = rf"[{_Q}](?P<display>[^{_Q}]+)[{_Q}]\s+as\s+"
_HEADER = re.compile(
    rf"^(?P<kind>entity|relationship)\s+(?:{_DISPLAY})?(?P<code>[\w.]+)\s*(?P<stereo><<.*>>)?\s*"
    r"(?P<color>#[^\s{]*)?\s*(?P<brace>\{\s*(?P<close>\})?)?\s*$",
    re.IGNORECASE,
)
_ATTR = re.compile(
    rf"^(?:{_DISPLAY})?(?P<code>[\w.:]+(?:[ \t]+[\w.:]+)*)\s*(?P<stereo><<.*>>)?\s*"
    r"(?P<color>#[^\s{]*)?\s*(?P<brace>\{)?\s*$"
)
# PlantUML also allows "-" in link names, but entity and relationship codes cannot hold one,
# so such a link could never resolve; leaving "-" out keeps these patterns linear.
_NAME = r"[\w.]+"
_LINK = re.compile(
    rf"^(?P<a>{_NAME})\s*(?P<p1>[-=])(?P<card>[^\W_]+|\(\s*[^\W_]+\s*,\s*[^\W_]+\s*\))?(?P<p2>[-=])\s*"
    rf"(?P<b>{_NAME})\s*(?P<color>#\S*)?\s*$"
)
_SPEC = re.compile(
    rf"^(?P<sup>{_NAME})\s*(?P<p1>[-=])>(?P<p2>[-=])\s*(?P<sym>[dDoOuU])\s*\{{(?P<subs>[^{{}}]*)\}}\s*(?P<color>#\S*)?\s*$"
)
_SIMPLE = re.compile(rf"^(?P<a>{_NAME})\s*(?P<p1>[-=])(?P<dir>[<>])(?P<p2>[-=])\s*(?P<b>{_NAME})\s*(?P<color>#\S*)?\s*$")
_IGNORED = re.compile(
    r"^(skinparam|left\s+to\s+right\s+direction|top\s+to\s+bottom\s+direction|notation\s+compact|scale|caption|"
    r"hide|show|!theme|allowmixing|mainframe)\b",
    re.IGNORECASE,
)
_MULTILINE = {"legend": ("endlegend", "end legend"), "header": ("endheader", "end header"),
              "footer": ("endfooter", "end footer"), "title": ("endtitle", "end title")}
# Words PlantUML reads as commands at the start of a line: attributes so named are written quoted.
_KEYWORDS = {"title", "legend", "header", "footer", "caption", "scale", "hide", "show", "skinparam", "skin",
             "note", "end", "entity", "relationship", "left", "top", "notation", "allowmixing", "mainframe",
             "endlegend", "endheader", "endfooter", "endtitle"}
_ESCAPE = re.compile(r"\\\\|\\n|\\t|<U\+([0-9A-Fa-f]{4,6})>")


def decode_display(text: str) -> str:
    """Undo :func:`encode_display`: ``\\n`` newline, ``\\\\`` backslash, ``<U+XXXX>`` any character."""

    def sub(m: re.Match) -> str:
        tok = m.group(0)
        if tok == "\\\\":
            return "\\"
        if tok == "\\n":
            return "\n"
        if tok == "\\t":
            return "\t"
        cp = int(m.group(1), 16)
        if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
            return tok
        return chr(cp)

    return _ESCAPE.sub(sub, text)


def encode_display(text: str) -> str:
    """A name as PlantUML display text: quotes, ``<`` (creole/HTML), ``&`` and control characters escaped."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch in _Q or ch in "<&" or (ch != " " and (ch.isspace() or not ch.isprintable())):
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)
    return "".join(out)


# -- import -------------------------------------------------------------------------------


@dataclass
class _PAttr:
    code: str
    display: str | None
    labels: set[str]
    where: str
    components: list["_PAttr"] = field(default_factory=list)


@dataclass
class _PNode:
    code: str
    kind: str
    display: str | None
    labels: set[str]
    where: str
    attrs: list[_PAttr] = field(default_factory=list)


@dataclass
class _PLink:
    a: str
    b: str
    double: bool
    card: str | None
    line: int
    col_a: int
    col_b: int


def _labels(stereo: str | None) -> set[str]:
    if not stereo:
        return set()
    return {"".join(ch for ch in lab.lower() if ch.isalnum()) for lab in re.findall(r"<<\s*(.*?)\s*>>", stereo)}


def _err(line: int, col: int, message: str) -> ImportFormatError:
    return ImportFormatError(f"line {line}, column {col}: {message}")


_ENTITY_LABELS = {"weak"}
_REL_LABELS = {"identifying"}
_ATTR_LABELS = {"key", "full", "partialkey", "partial", "discriminator", "multi", "multivalued", "derived"}


def _card(text: str | None, line: int, col: int, w: Warnings):
    """A link label as ('word', max) or ('pair', min, max), or None."""
    if text is None:
        return None

    def as_max(tok: str) -> int | str:
        if tok.isdigit():
            value = int(tok)
            if value == 0:
                raise _err(line, col, f"cardinality {text} has a maximum of 0; a maximum must be at least 1")
            return value if value < 1_000_000 else MANY
        return 1 if tok.lower() == "one" else MANY

    if text.startswith("("):
        lo, hi = (t.strip() for t in text[1:-1].split(","))
        if lo.isdigit():
            mn = min(int(lo), 1_000_000)
        else:
            w.add(f"line {line}: minimum {lo!r} in {text} is not a number; 0 assumed")
            mn = 0
        mx = as_max(hi)
        if mx != MANY and mn > mx:
            raise _err(line, col, f"{text}: the minimum is greater than the maximum")
        return ("pair", mn, mx)
    return ("word", as_max(text))


def _parse(text: str, w: Warnings):
    lines = split_lines(text)
    start = next((i for i, ln in enumerate(lines) if ln.strip().lower().startswith("@startchen")), None)
    if start is None:
        raise ImportFormatError("no @startchen line: this is not a PlantUML Chen ER diagram")
    head = lines[start].strip()[len("@startchen") :].strip()
    nodes: dict[str, _PNode] = {}
    links: list[_PLink] = []
    # Specializations, categories and single subclass links, in file order:
    # (super or category, double line, symbol "d"/"o"/"U" or "single" for a link without circle, subclasses, line, col)
    specs: list[tuple[str, bool, str | None, list[str], int, int]] = []
    title: str | None = None
    stack: list[tuple[object, int]] = []  # (node or attribute, line opened)
    skip_until: tuple[str, ...] | None = None
    skip_depth = 0
    seen_attrs: set[tuple[int, str]] = set()
    count = 0
    end = None
    for idx in range(start + 1, len(lines)):
        n = idx + 1
        raw = lines[idx]
        line = raw.strip()
        col = len(raw) - len(raw.lstrip()) + 1
        if skip_until is not None:
            low = line.lower()
            if skip_until == ("}",):
                skip_depth += line.count("{") - line.count("}")
                if skip_depth <= 0:
                    skip_until = None
            elif skip_until == ("'/",):
                if "'/" in line:
                    skip_until = None
            elif low in skip_until or (skip_until == ("</style>",) and "</style>" in low):
                skip_until = None
            continue
        if not line or line.startswith("'"):
            continue
        if line.startswith("/'"):
            if "'/" not in line[2:]:
                skip_until = ("'/",)
            continue
        low = line.lower()
        if low.startswith("@endchen"):
            end = n
            break
        if low.startswith("@start") or low.startswith("@end"):
            raise _err(n, col, f"{line.split()[0]} inside a @startchen diagram")
        if line == "}":
            if not stack:
                raise _err(n, col, "'}' closes nothing (unbalanced brackets)")
            stack.pop()
            continue
        if not stack:
            if low.startswith("<style>"):
                if "</style>" not in low:
                    skip_until = ("</style>",)
                continue
            if low in _MULTILINE:
                skip_until = _MULTILINE[low]
                continue
            if low.startswith("title ") or low.startswith("title\t"):
                title = decode_display(line[6:].strip())
                continue
            if _IGNORED.match(line):
                if line.rstrip().endswith("{"):
                    skip_until, skip_depth = ("}",), 1
                continue
            if line.startswith("!"):
                raise _err(n, col, f"preprocessor directive {line.split()[0]!r} is not supported; inline the content")
        m = _HEADER.match(line)
        if m:
            if stack:
                raise _err(n, col, f"{m.group('kind').lower()} declared inside the block opened at line {stack[-1][1]}; close it with '}}' first")
            kind = m.group("kind").lower()
            code = m.group("code")
            display = m.group("display")
            node = nodes.get(code)
            if node is None:
                node = _PNode(code, kind, decode_display(display) if display else None, set(), f"line {n}")
                nodes[code] = node
                count += 1
                check_count(count, "the PlantUML diagram")
            elif node.kind != kind:
                raise _err(n, col, f"{code!r} was declared as {node.kind} at {node.where}; it cannot also be a {kind}")
            elif display:
                node.display = decode_display(display)
            node.labels |= _labels(m.group("stereo"))
            if m.group("brace") and not m.group("close"):
                stack.append((node, n))
            continue
        if stack:
            m = _ATTR.match(line)
            if m:
                display = m.group("display")
                code = m.group("code").strip()
                a = _PAttr(code, decode_display(display) if display else None, _labels(m.group("stereo")), f"line {n}")
                owner = stack[-1][0]
                siblings = owner.attrs if isinstance(owner, _PNode) else owner.components
                if (id(owner), code) in seen_attrs:
                    raise _err(n, col, f"attribute {code!r} already exists in this block")
                seen_attrs.add((id(owner), code))
                siblings.append(a)
                count += 1
                check_count(count, "the PlantUML diagram")
                if m.group("brace"):
                    stack.append((a, n))
                continue
        m = _SPEC.match(line)
        if m:
            subs = [s.strip() for s in m.group("subs").split(",")]
            if not all(re.fullmatch(_NAME, s) for s in subs):
                raise _err(n, col, f"cannot read the subclass list {{{m.group('subs')}}}; write entity codes separated by commas")
            sym = m.group("sym")
            specs.append((m.group("sup"), m.group("p1") == "=", "U" if sym in "uU" else sym.lower(), subs, n, col))
            continue
        m = _SIMPLE.match(line)
        if m:
            sup, sub = (m.group("a"), m.group("b")) if m.group("dir") == ">" else (m.group("b"), m.group("a"))
            specs.append((sup, m.group("p1") == "=", "single", [sub], n, col))
            continue
        m = _LINK.match(line)
        if m:
            links.append(
                _PLink(m.group("a"), m.group("b"), m.group("p1") == "=", m.group("card"), n,
                       col + m.start("a"), col + m.start("b"))
            )
            continue
        raise _err(n, col, f"cannot read {line[:60]!r}: expected an entity, relationship, attribute, link or specialization")
    if end is None:
        raise ImportFormatError(
            f"line {start + 1}: @startchen is never closed by @endchen (is the file truncated?)"
        )
    if stack:
        raise _err(stack[-1][1], 1, "this block is never closed with '}'")
    if skip_until is not None:
        raise ImportFormatError(f"a comment or style block is still open at @endchen (line {end})")
    if any(ln.strip().lower().startswith("@startchen") for ln in lines[end:]):
        w.add("the file holds more than one @startchen diagram; only the first was read")
    return head, title, nodes, links, specs


def read_plantuml(text: str | bytes, *, name: str | None = None) -> tuple[EERD, list[str]]:
    """Convert PlantUML Chen source into a validated diagram and the warnings."""
    text = decode_text(text)
    w = Warnings()
    head, title, nodes, links, specs = _parse(text, w)
    ids = IdAllocator()
    node_id: dict[str, str] = {}
    for code in nodes:
        node_id[code] = ids.claim(code_token(code, "ELEMENT"))

    weak = {c for c, nd in nodes.items() if nd.kind == "entity" and "weak" in nd.labels}

    def attr_dict(a: _PAttr, prefix: str, owner_weak: bool) -> dict:
        labels = a.labels
        for lab in labels - _ATTR_LABELS:
            w.add(f"{a.where}: stereotype <<{lab}>> on attribute {a.code!r} has no EER meaning; ignored")
        typed = re.match(r"^(.+?)(?:\s+:\s*|\s*:\s+)(.+)$", a.code)
        if a.display is not None and typed:
            aname = a.display
            token = code_token(typed.group(1), "Attr")
            w.add(f"{a.where}: attribute {aname!r}: the domain {typed.group(2)!r} is not part of an EER diagram; dropped")
        elif a.display is not None:
            aname = a.display
            token = code_token(a.code, "Attr", keep="_.:")
        elif ":" in a.code:
            aname, _, domain = a.code.partition(":")
            aname = aname.strip() or a.code
            w.add(f"{a.where}: attribute {aname!r}: the domain {domain.strip()!r} is not part of an EER diagram; dropped")
            token = code_token(aname, "Attr")
        else:
            aname = a.code
            token = code_token(a.code, "Attr")
        is_partial = bool(labels & {"partialkey", "partial", "discriminator"}) or (
            owner_weak and "key" in labels and "full" not in labels
        )
        is_key = "key" in labels and (not owner_weak or "full" in labels)
        aid = ids.claim(f"{prefix}.{token}")
        return {
            "id": aid,
            "name": check_name(aname, a.where),
            "key": is_key,
            "partial_key": is_partial,
            "multivalued": bool(labels & {"multi", "multivalued"}),
            "derived": "derived" in labels,
            "components": [attr_dict(c, aid, owner_weak) for c in a.components],
        }

    entities, rels = [], []
    for code, nd in nodes.items():
        allowed = _ENTITY_LABELS if nd.kind == "entity" else _REL_LABELS
        for lab in sorted(nd.labels - allowed):
            w.add(f"{nd.where}: stereotype <<{lab}>> on {nd.kind} {code!r} has no EER meaning; ignored")
        base = {
            "id": node_id[code],
            "name": check_name(nd.display if nd.display is not None else code, nd.where),
            "attributes": [attr_dict(a, node_id[code], code in weak) for a in nd.attrs],
        }
        if nd.kind == "entity":
            entities.append({**base, "weak": code in weak})
        else:
            rels.append({**base, "identifying": "identifying" in nd.labels, "participants": []})

    def lookup(code: str, line: int, col: int) -> _PNode:
        if code not in nodes:
            raise _err(line, col, f"no entity or relationship is declared as {code!r}")
        return nodes[code]

    by_rel: dict[str, list[tuple[str, _PLink]]] = {}
    for ln in links:
        na, nb = lookup(ln.a, ln.line, ln.col_a), lookup(ln.b, ln.line, ln.col_b)
        if na.kind == "entity" and nb.kind == "entity":
            raise _err(ln.line, ln.col_a, f"a link joins two entities ({ln.a}, {ln.b}); link a relationship to an entity")
        rel, part = (ln.a, ln.b) if na.kind == "relationship" else (ln.b, ln.a)
        by_rel.setdefault(rel, []).append((part, ln))
    rel_dicts = {r["id"]: r for r in rels}
    for rel_code, ends in by_rel.items():
        cards = [_card(ln.card, ln.line, ln.col_a, w) for _, ln in ends]
        n = len(ends)
        rname = nodes[rel_code].display or rel_code
        if all(c is None for c in cards):
            w.add(f"relationship {rname!r} states no cardinality on its links; (0,N) assumed for each participant")
        elif n != 2 and any(c is not None and c[0] == "word" for c in cards):
            w.add(
                f"relationship {rname!r} has degree {n}: Chen's cardinality words have no (min,max) "
                "equivalent beyond binary relationships; max N assumed where no (min,max) is given"
            )
        for i, ((part, ln), card) in enumerate(zip(ends, cards)):
            other = cards[1 - i] if n == 2 else None
            if card is not None and card[0] == "pair":
                mn, mx = card[1], card[2]
                if ln.double and mn == 0:
                    w.add(f"line {ln.line}: double (total) line but minimum 0 in {ln.card}; the (min,max) wins")
                if other is not None and other[0] == "word" and other[1] != mx:
                    w.add(
                        f"line {ln.line}: {ln.card} disagrees with the cardinality word "
                        f"on the other link of {rname!r}; the (min,max) wins"
                    )
            else:
                mn = 1 if ln.double else 0
                # Look-across: this participant's max is the word written on the *other* link.
                mx = other[1] if (other is not None and other[0] == "word") else MANY
                if other is not None and other[0] == "pair" and card is None:
                    w.add(f"line {ln.line}: no cardinality on this link of {rname!r}; max N assumed")
            rel_dicts[node_id[rel_code]]["participants"].append({"entity": node_id[part], "min": mn, "max": mx})

    specializations, categories = [], []
    for sup, double, sym, subs, line, col in specs:
        for code in (sup, *subs):
            if lookup(code, line, col).kind != "entity":
                raise _err(line, col, f"{code!r} is a relationship; specializations and categories join entities")
        completeness = "total" if double else "partial"
        if sym == "U":
            categories.append(
                {"id": ids.claim(f"CAT_{node_id[sup]}"), "subclass": node_id[sup],
                 "superclasses": [node_id[s] for s in subs], "completeness": completeness}
            )
        else:
            # A single subclass drawn without a circle has no disjointness to state; "d" (the
            # model's default) is vacuously true for one subclass and keeps the checker quiet.
            specializations.append(
                {"id": ids.claim(f"SPEC_{node_id[sup]}"), "superclass": node_id[sup],
                 "subclasses": [node_id[s] for s in subs], "disjointness": "d" if sym == "single" else sym,
                 "completeness": completeness}
            )

    did = code_token(head.split()[0], "imported", keep="_.:-") if head else code_token(name or "", "imported", keep="_.:-")
    dname = title or (head if head else None) or name or "Imported PlantUML diagram"
    data = {
        "format_version": 1,
        "id": did[:200],
        "name": check_name(dname, "the diagram title"),
        "entities": entities,
        "relationships": rels,
        "specializations": specializations,
        "categories": categories,
    }
    return finish(data, "PlantUML diagram"), list(w)


# -- export -------------------------------------------------------------------------------


@dataclass
class ExportResult:
    text: str
    warnings: list[str]


_CODE_OK = re.compile(r"^[\w.]+$")
_ATTR_CODE_OK = re.compile(r"^[\w.:]+$")


def _title(name: str) -> str:
    text = encode_display(name)
    # ``title`` text is stripped when read back: keep outer spaces as escapes.
    lead = len(text) - len(text.lstrip(" "))
    trail = len(text) - len(text.rstrip(" "))
    core = text.strip(" ")
    return "<U+0020>" * lead + core + "<U+0020>" * trail


def _ordered_ids(d: EERD) -> dict[str, list[str]]:
    def walk(attrs: list[Attribute]) -> list[str]:
        out = []
        for a in attrs:
            out.append(a.id)
            out += walk(a.components)
        return out

    return {
        "entity/relationship": [e.id for e in d.entities] + [r.id for r in d.relationships],
        "attribute": [i for owner in d.owners() for i in walk(owner.attributes)],
        "specialization": [s.id for s in d.specializations],
        "category": [c.id for c in d.categories],
        "diagram": [d.id],
    }


def export_plantuml(diagram: EERD) -> ExportResult:
    """PlantUML Chen source for ``diagram`` and the list of what it could not express."""
    w = Warnings()
    codes = IdAllocator()
    code: dict[str, str] = {}
    for el in [*diagram.entities, *diagram.relationships]:
        c = el.id if _CODE_OK.match(el.id) else code_token(el.id, "X")
        code[el.id] = codes.claim(c)

    def label(name: str, c: str) -> str:
        return c if name == c else f'"{encode_display(name)}" as {c}'

    def attr_lines(attrs: list[Attribute], prefix: str, weak: bool, indent: str) -> list[str]:
        out: list[str] = []
        taken = IdAllocator()  # PlantUML refuses two attributes with one code in a block
        for a in attrs:
            tail = a.id[len(prefix) + 1 :] if a.id.startswith(prefix + ".") else ""
            if not tail or not _ATTR_CODE_OK.match(tail):
                tail = code_token(tail or a.name, "Attr", keep="_.:")
            tail = taken.claim(tail)
            labels = []
            if a.key:
                labels += ["key", "full"] if weak else ["key"]
            if a.partial_key:
                labels += ["key"] if (weak and not a.key) else ["partial key"]
            if a.multivalued:
                labels.append("multi")
            if a.derived:
                labels.append("derived")
            bare = a.name == tail and ":" not in tail and tail.split(".")[0].lower() not in _KEYWORDS
            show = tail if bare else f'"{encode_display(a.name)}" as {tail}'
            stereo = "".join(f"<<{lab}>>" for lab in labels)
            head = f"{indent}{show}" + (f" {stereo}" if stereo else "")
            if a.components:
                out.append(head + " {")
                out += attr_lines(a.components, a.id, weak, indent + "  ")
                out.append(indent + "}")
            else:
                out.append(head)
        return out

    lines = [f"@startchen {diagram.id}"]
    if diagram.name != diagram.id:
        lines.append(f"title {_title(diagram.name)}")
    lines.append("")
    for e in diagram.entities:
        lines.append(f"entity {label(e.name, code[e.id])}{' <<weak>>' if e.weak else ''} {{")
        lines += attr_lines(e.attributes, e.id, e.weak, "  ")
        lines.append("}")
    for r in diagram.relationships:
        lines.append(f"relationship {label(r.name, code[r.id])}{' <<identifying>>' if r.identifying else ''} {{")
        lines += attr_lines(r.attributes, r.id, False, "  ")
        lines.append("}")
    lines.append("")
    for r in diagram.relationships:
        for p in r.participants:
            # Always (min,max), look-here: exact, and read back without crossing over.
            line = "=" if p.min >= 1 else "-"
            lines.append(f"{code[r.id]} {line}({p.min},{p.max}){line} {code[p.entity]}")
            if p.role:
                w.add(f"{r.id}: role name {p.role!r} of {p.entity} cannot be written in PlantUML Chen; left out")
    for s in diagram.specializations:
        if s.superclass is None or not s.subclasses:
            w.add(f"{s.id}: a specialization without a superclass or subclasses cannot be drawn in PlantUML; left out")
            continue
        if s.completeness is None:
            w.add(f"{s.id}: total/partial is not stated; PlantUML draws a single (partial) line")
        if s.defining_attribute or s.defining_values:
            w.add(
                f"{s.id}: the defining attribute and values of an attribute-defined specialization "
                "cannot be written in PlantUML; left out"
            )
        line = "=" if s.completeness == "total" else "-"
        if s.disjointness is None or (s.disjointness == "d" and len(s.subclasses) == 1):
            if s.disjointness is None:
                w.add(
                    f"{s.id}: disjoint/overlapping is not stated; written as subclass links without a circle "
                    "(each comes back as a specialization of its own with one subclass)"
                )
            for sub in s.subclasses:
                lines.append(f"{code[s.superclass]} {line}>{line} {code[sub]}")
        else:
            subs = ", ".join(code[x] for x in s.subclasses)
            lines.append(f"{code[s.superclass]} {line}>{line} {s.disjointness} {{ {subs} }}")
    for c in diagram.categories:
        if not c.superclasses:
            w.add(f"{c.id}: a category without superclasses cannot be drawn in PlantUML; left out")
            continue
        line = "=" if c.completeness == "total" else "-"
        lines.append(f"{code[c.subclass]} {line}>{line} U {{ {', '.join(code[x] for x in c.superclasses)} }}")
    lines.append("@endchen")
    text = "\n".join(lines) + "\n"

    # Ids are derived from PlantUML codes on the way back; say which ones will differ.
    back, _ = read_plantuml(text)
    before, after = _ordered_ids(diagram), _ordered_ids(back)
    for kind, old in before.items():
        new = after[kind]
        if len(old) != len(new):
            continue  # already reported above (split or dropped specializations)
        for a, b in zip(old, new):
            if a != b:
                w.add(f"{kind} id {a!r} comes back as {b!r} (PlantUML Chen cannot carry that id)")
    return ExportResult(text, list(w))


def to_plantuml(diagram: EERD) -> str:
    """PlantUML Chen source for ``diagram`` (see :func:`export_plantuml` for what is lost)."""
    return export_plantuml(diagram).text
