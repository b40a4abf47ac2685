"""Mermaid ``erDiagram`` import: lossy by nature, and says so.

The grammar follows Mermaid's ``erDiagram.jison``:

* ``NAME``, ``"quoted name"`` and ``NAME["Display name"]`` declare entities;
  ``NAME { type name PK, FK "comment" ... }`` gives attributes (type, name,
  optional ``PK`` / ``FK`` / ``UK`` keys, optional comment).
* ``A <left><line><right> B : label`` is a relationship. Marks: ``|o`` / ``o|``
  zero or one, ``||`` exactly one, ``}o`` / ``o{`` zero or more, ``}|`` / ``|{``
  one or more (also the word forms ``zero or one``, ``only one``, ``1``,
  ``zero or more``, ``0+``, ``one or more``, ``1+``, ``many(0)``, ...). Line:
  ``--`` (or ``to``) identifying, ``..`` / ``.-`` / ``-.`` (or ``optionally
  to``) non-identifying.
* ``direction``, ``title``, ``accTitle``, ``accDescr``, ``style``,
  ``classDef``, ``class``, ``:::class`` and ``%%`` comments are presentation:
  skipped (``title`` names the diagram). ``subgraph`` groups are flattened.

Look-across to look-here
------------------------
Crow's-foot marks sit at the entity they count: in ``CUSTOMER ||--o{ ORDER :
places`` the ``o{`` beside ORDER says "a customer places zero or more orders",
and ``||`` beside CUSTOMER says "an order is placed by exactly one customer".
So each entity's look-here (min,max) is the mark at the *other* end::

    CUSTOMER ||--o{ ORDER    ->  CUSTOMER (0,N), ORDER (1,1)
    EMPLOYEE }|--|| DEPARTMENT ->  EMPLOYEE (1,1), DEPARTMENT (1,N)

with ``|o`` = (0,1), ``||`` = (1,1), ``}o`` = (0,N), ``}|`` = (1,N).

What cannot be expressed (each reported as a warning)
-----------------------------------------------------
* Foreign keys are not ER attributes: ``FK`` attributes are left out (the
  relationship is the link). A ``PK, FK`` attribute also marks its entity as
  depending on another for its identity.
* Identifying lines: E&N's identifying relationship needs a weak entity. A
  ``--`` relationship becomes identifying when one side is the dependent one:
  its look-here is (1,1) and its primary key borrows a foreign key (``PK, FK``);
  that entity becomes weak and its own ``PK`` attributes its partial key. Any
  other ``--`` is imported as a regular relationship, with a warning (Mermaid
  uses ``--`` for most relationships, and an identifying relationship with no
  weak entity would be an error the student did not make).
* Junction tables: an entity whose primary key is made only of foreign keys and
  which is the dependent side of exactly two identifying relationships (and in
  nothing else) is what E&N draws as a many-to-many relationship: it becomes
  one, carrying its other attributes, each owner keeping its look-here
  (min,max). ``EMPLOYEE ||--o{ WORKS_ON``, ``PROJECT ||--|{ WORKS_ON`` with
  ``WORKS_ON { essn PK, FK; pno PK, FK; hours }`` -> WORKS_ON(EMPLOYEE (0,N),
  PROJECT (1,N)) with attribute hours.
* Attribute types and comments are dropped; several ``PK`` attributes become
  several key attributes (E&N would draw one composite key); ``UK`` is a key.
* There are no multivalued, derived or composite attributes, no relationship
  attributes, no role names (a recursive relationship is reported), no
  specializations or categories, and only binary relationships.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from r2ta.eerd import EERD, MANY
from r2ta.errors import ImportFormatError
from r2ta.formats._common import (
    IdAllocator,
    Warnings,
    attr_token,
    check_count,
    check_name,
    decode_text,
    diagram_id,
    finish,
    split_lines,
    upper_snake,
)

ZERO_OR_ONE, ONLY_ONE, ZERO_OR_MORE, ONE_OR_MORE = (0, 1), (1, 1), (0, MANY), (1, MANY)
_MARK_TEXT = {ZERO_OR_ONE: "zero or one", ONLY_ONE: "exactly one", ZERO_OR_MORE: "zero or more", ONE_OR_MORE: "one or more"}

# Order matters (as in Mermaid's lexer): longer word forms before their prefixes.
_CARDS = [
    (r"one or zero\b", ZERO_OR_ONE),
    (r"one or more\b", ONE_OR_MORE),
    (r"one or many\b", ONE_OR_MORE),
    (r"1\+", ONE_OR_MORE),
    (r"\|o", ZERO_OR_ONE),
    (r"zero or one\b", ZERO_OR_ONE),
    (r"zero or more\b", ZERO_OR_MORE),
    (r"zero or many\b", ZERO_OR_MORE),
    (r"0\+", ZERO_OR_MORE),
    (r"\}o", ZERO_OR_MORE),
    (r"many\(0\)", ZERO_OR_MORE),
    (r"many\(1\)", ONE_OR_MORE),
    (r"many\b", ZERO_OR_MORE),
    (r"\}\|", ONE_OR_MORE),
    (r"only one\b", ONLY_ONE),
    (r"one\b", ONLY_ONE),
    (r"1(?=\s+[A-Za-z_\"'0-9]|--|\.\.|\.-|-\.)", ONLY_ONE),
    (r"\|\|", ONLY_ONE),
    (r"o\|", ZERO_OR_ONE),
    (r"o\{", ZERO_OR_MORE),
    (r"\|\{", ONE_OR_MORE),
]
_CARD_RES = [(re.compile(p, re.IGNORECASE), k) for p, k in _CARDS]
_LINE = re.compile(r"(--|\.\.|\.-|-\.|optionally\s+to\b|to\b)", re.IGNORECASE)
_ENTITY = re.compile(r'"(?P<q>[^"%\r\n\v\b\\]+)"|(?P<u>(?:[^\x00-\x7F]|[\w\-*.])+)')
_LABEL = re.compile(r'"(?P<q>[^"\n]*)"|(?P<u>(?:[^\x00-\x7F]|[\w\-*.])+)')
_CLASSES = re.compile(r":::[\w\-, ]+")
_A_KEY = re.compile(r"(?:PK|FK|UK)\b", re.IGNORECASE)
_A_WORD = re.compile(r"[^\s~\"`{}]*~[^~\n]*~[^\s\"`{}]*|[*A-Za-z_\u00C0-\uFFFF][A-Za-z0-9\-_\[\]().,\u00C0-\uFFFF*]*")
_A_BQ = re.compile(r"`[^`]+`")
_A_COMMENT = re.compile(r'"[^"]*"')
_SKIP_LINE = re.compile(r"(direction\s+(TB|BT|RL|LR)|style\s|classDef\s|class\s|accTitle\s*:|accDescr\s*:)", re.IGNORECASE)


@dataclass
class _MAttr:
    name: str
    keys: set[str]
    line: int


@dataclass
class _MEntity:
    code: str
    alias: str | None
    line: int
    attrs: list[_MAttr] = field(default_factory=list)


@dataclass
class _MRel:
    left: str
    right: str
    left_mark: tuple
    right_mark: tuple
    identifying: bool
    label: str
    line: int


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(self, pos: int | None = None) -> tuple[int, int]:
        pos = self.pos if pos is None else pos
        i = bisect.bisect_right(self.starts, pos) - 1
        return i + 1, pos - self.starts[i] + 1

    def err(self, message: str, pos: int | None = None) -> ImportFormatError:
        line, col = self.where(pos)
        return ImportFormatError(f"line {line}, column {col}: {message}")

    def spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r":
            self.pos += 1

    def blank(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n;":
            self.pos += 1

    def eol(self) -> bool:
        self.spaces()
        return self.pos >= len(self.text) or self.text[self.pos] == "\n"

    def match(self, regex: re.Pattern) -> re.Match | None:
        m = regex.match(self.text, self.pos)
        if m:
            self.pos = m.end()
        return m

    def rest_of_line(self) -> str:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end
        out = self.text[self.pos : end]
        self.pos = end
        return out


def _prepare(text: str, w: Warnings) -> tuple[str, str | None]:
    """Blank out front matter and ``%%`` comments (keeping line numbers); return the title."""
    lines = split_lines(text)
    title = None
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is not None and lines[first].strip() == "---":
        close = next((j for j in range(first + 1, len(lines)) if lines[j].strip() == "---"), None)
        if close is None:
            raise ImportFormatError(f"line {first + 1}: front matter opened with '---' is never closed")
        for j in range(first, close + 1):
            m = re.match(r"\s*title\s*:\s*(.*?)\s*$", lines[j])
            if m and m.group(1):
                title = m.group(1).strip("\"'")
            lines[j] = ""
    for i, ln in enumerate(lines):
        if ln.lstrip().startswith("%%"):
            lines[i] = ""
    return "\n".join(lines), title


def _card(sc: _Scanner) -> tuple | None:
    for regex, kind in _CARD_RES:
        if sc.match(regex):
            return kind
    return None


def _parse(text: str, w: Warnings):
    body, title = _prepare(text, w)
    sc = _Scanner(body)
    sc.blank()
    if not sc.match(re.compile(r"erDiagram\b", re.IGNORECASE)):
        raise sc.err("expected 'erDiagram' as the first statement: this is not a Mermaid ER diagram")
    entities: dict[str, _MEntity] = {}
    rels: list[_MRel] = []

    def entity(code: str, line: int) -> _MEntity:
        if code not in entities:
            entities[code] = _MEntity(code, None, line)
        return entities[code]

    def name_token(what: str) -> str:
        m = sc.match(_ENTITY)
        if not m:
            raise sc.err(f"expected {what}")
        return m.group("q") if m.group("q") is not None else m.group("u")

    while True:
        sc.blank()
        if sc.pos >= len(sc.text):
            break
        line, _ = sc.where()
        start = sc.pos
        if sc.match(_SKIP_LINE):
            sc.rest_of_line()
            continue
        if sc.match(re.compile(r"accDescr\s*\{", re.IGNORECASE)):
            close = sc.text.find("}", sc.pos)
            if close < 0:
                raise sc.err("accDescr { is never closed", start)
            sc.pos = close + 1
            continue
        if sc.match(re.compile(r"title(?:[ \t]+|$)", re.IGNORECASE)):
            title = sc.rest_of_line().strip() or title
            continue
        if sc.match(re.compile(r"subgraph\b", re.IGNORECASE)):
            w.add(f"line {line}: subgraph groups have no EER meaning; their entities are kept, the grouping is not")
            sc.rest_of_line()
            continue
        if sc.match(re.compile(r"end\b", re.IGNORECASE)) and sc.eol():
            continue
        sc.pos = start
        code = name_token("an entity name or a relationship")
        ent = entity(code, line)
        sc.spaces()
        if sc.match(re.compile(r"\[")):
            sc.spaces()
            alias = name_token("a display name inside [ ]")
            sc.spaces()
            if not sc.match(re.compile(r"\]")):
                raise sc.err("expected ']' after the display name")
            ent.alias = alias
            sc.spaces()
        sc.match(_CLASSES)
        sc.spaces()
        if sc.match(re.compile(r"\{")):
            _attributes(sc, ent, w)
            if not sc.eol():
                raise sc.err("unexpected text after the attribute block")
            continue
        if sc.eol():
            continue
        left_mark = _card(sc)
        if left_mark is None:
            if sc.match(re.compile(r"u(?=[.\-|])")):
                raise sc.err("the 'u' (parent) marker has no EER meaning; use |o, ||, }o or }|", sc.pos - 1)
            raise sc.err(f"cannot read {sc.rest_of_line()[:40]!r} after {code!r}: expected a cardinality such as ||, |o, }}o or }}|")
        sc.spaces()
        m = sc.match(_LINE)
        if not m:
            raise sc.err("expected '--' (identifying) or '..' (non-identifying) between the cardinalities")
        identifying = m.group(0) in ("--",) or m.group(0).lower() == "to"
        sc.spaces()
        right_mark = _card(sc)
        if right_mark is None:
            raise sc.err("expected a cardinality such as ||, o|, o{ or |{ after the line")
        sc.spaces()
        right = name_token("the second entity of the relationship")
        entity(right, line)
        sc.spaces()
        sc.match(_CLASSES)
        sc.spaces()
        if not sc.match(re.compile(r":")):
            raise sc.err("expected ': label' after the relationship (Mermaid requires a label)")
        sc.spaces()
        lab = sc.match(_LABEL)
        if not lab:
            raise sc.err("expected the relationship label after ':'")
        label = lab.group("q") if lab.group("q") is not None else lab.group("u")
        if not sc.eol():
            raise sc.err("unexpected text after the relationship label (quote a label with spaces)")
        rels.append(_MRel(code, right, left_mark, right_mark, identifying, label, line))
    return entities, rels, title


def _attributes(sc: _Scanner, ent: _MEntity, w: Warnings) -> None:
    opened, _ = sc.where(sc.pos - 1)
    while True:
        sc.blank()
        if sc.pos >= len(sc.text):
            raise ImportFormatError(f"line {opened}: the attribute block of {ent.code!r} is never closed with '}}'")
        if sc.match(re.compile(r"\}")):
            return
        line, _ = sc.where()
        tm = sc.match(_A_BQ) or sc.match(_A_WORD)
        if not tm:
            raise sc.err(f"cannot read an attribute of {ent.code!r}: expected 'type name [PK|FK|UK] [\"comment\"]'")
        sc.spaces()
        sc.match(re.compile(r"\?"))
        sc.blank()
        nm = sc.match(_A_BQ) or sc.match(_A_WORD)
        if not nm:
            raise sc.err(f"attribute type {tm.group(0)!r} of {ent.code!r} has no name after it", tm.start())
        name = nm.group(0).strip("`")
        keys: set[str] = set()
        sc.spaces()
        while True:
            km = sc.match(_A_KEY)
            if not km:
                break
            keys.add(km.group(0).upper())
            sc.spaces()
            if not sc.match(re.compile(r",")):
                break
            sc.spaces()
        sc.spaces()
        if sc.match(_A_COMMENT):
            w.add(f"attribute comments are not part of an EER diagram; dropped (first on line {line})")
        ent.attrs.append(_MAttr(name, keys, line))


def read_mermaid(text: str | bytes, *, name: str | None = None) -> tuple[EERD, list[str]]:
    """Convert a Mermaid ``erDiagram`` into a validated diagram and the warnings."""
    text = decode_text(text)
    w = Warnings()
    entities, rels, title = _parse(text, w)
    check_count(len(entities) + len(rels) + sum(len(e.attrs) for e in entities.values()), "the Mermaid diagram")

    def depends(ent: _MEntity) -> bool:
        return any({"PK", "FK"} <= a.keys for a in ent.attrs)

    # 1. Identifying lines: which side (if any) is the dependent entity.
    dependent: list[str | None] = []
    demoted: list[str] = []
    for r in rels:
        here = {r.left: r.right_mark, r.right: r.left_mark}  # look-across -> look-here
        sides = [c for c in (r.left, r.right) if here[c] == ONLY_ONE and depends(entities[c])]
        ok = r.identifying and r.left != r.right and len(sides) == 1
        dependent.append(sides[0] if ok else None)
        if r.identifying and not ok:
            demoted.append(f"{r.label!r} (line {r.line})")
        if r.left == r.right:
            w.add(f"line {r.line}: recursive relationship {r.label!r}: Mermaid has no role names; add them in R2tA")
    if demoted:
        w.add(
            f"identifying line (--) on {', '.join(demoted[:10])}{' ...' if len(demoted) > 10 else ''}: no side is a "
            "dependent entity (look-here (1,1) and a PK, FK attribute), so imported as regular relationship(s)"
        )

    # 2. Junction tables: an entity whose whole primary key is foreign keys, dependent in exactly
    #    two identifying relationships and in nothing else, is an M:N relationship in E&N. Each
    #    owner keeps its look-here (min,max) from the relationship that joined it to the junction.
    junctions: dict[str, list[int]] = {}
    for code, ent in entities.items():
        pks = [a for a in ent.attrs if "PK" in a.keys]
        mine = [i for i, r in enumerate(rels) if code in (r.left, r.right)]
        if pks and all("FK" in a.keys for a in pks) and len(mine) == 2 and all(dependent[i] == code for i in mine):
            junctions[code] = mine
            labels = " and ".join(repr(rels[i].label) for i in mine)
            w.add(
                f"{code} only joins two entities by their keys (a junction table): imported as the many-to-many "
                f"relationship {ent.alias or code!r}, replacing {labels}"
            )
    weak = {c for c in dependent if c is not None and c not in junctions}

    ids = IdAllocator()
    eid = {code: ids.claim(upper_snake(code, "ENTITY")) for code in entities}

    def attributes(code: str, ent: _MEntity, owner_id: str) -> list[dict]:
        out = []
        for a in ent.attrs:
            if "FK" in a.keys:
                continue
            partial = code in weak and "PK" in a.keys
            out.append(
                {
                    "id": ids.claim(f"{owner_id}.{attr_token(a.name, 'Attr')}"),
                    "name": check_name(a.name, f"line {a.line}"),
                    "key": bool(a.keys & {"PK", "UK"}) and not partial,
                    "partial_key": partial,
                }
            )
        return out

    out_entities = []
    for code, ent in entities.items():
        dropped = [a.name for a in ent.attrs if "FK" in a.keys]
        if dropped and code not in junctions:
            w.add(
                f"{code}: foreign-key attribute(s) {', '.join(dropped)} left out: in an ER diagram the "
                "relationship is the link, not a copied key"
            )
        pks = [a.name for a in ent.attrs if "PK" in a.keys and "FK" not in a.keys]
        if len(pks) > 1:
            w.add(
                f"{code}: the primary key spans {', '.join(pks)}; E&N draws one composite key attribute, "
                "imported as separate key attributes"
            )
        if code in junctions:
            continue
        out_entities.append(
            {"id": eid[code], "name": check_name(ent.alias or code, f"line {ent.line}"), "weak": code in weak,
             "attributes": attributes(code, ent, eid[code])}
        )
    if any(ent.attrs for ent in entities.values()):
        w.add("attribute types (string, int, ...) are domains, not part of an EER diagram; dropped")

    out_rels = []
    done: set[str] = set()
    junction_of = {i: code for code, idx in junctions.items() for i in idx}
    for i, r in enumerate(rels):
        junction = junction_of.get(i)
        if junction is not None:
            if junction in done:
                continue
            done.add(junction)
            participants = []
            for j in junctions[junction]:
                rj = rels[j]
                owner, mark = (rj.left, rj.right_mark) if rj.right == junction else (rj.right, rj.left_mark)
                participants.append({"entity": eid[owner], "min": mark[0], "max": mark[1]})
            ent = entities[junction]
            out_rels.append(
                {"id": eid[junction], "name": check_name(ent.alias or junction, f"line {ent.line}"),
                 "participants": participants, "attributes": attributes(junction, ent, eid[junction])}
            )
            continue
        label = r.label.strip()
        if not label:
            label = f"{r.left} {r.right}"
            w.add(f"line {r.line}: a relationship without a label is called {label!r}")
        out_rels.append(
            {
                "id": ids.claim(upper_snake(label, "RELATIONSHIP")),
                "name": check_name(label, f"line {r.line}"),
                "identifying": dependent[i] is not None,
                "participants": [
                    {"entity": eid[r.left], "min": r.right_mark[0], "max": r.right_mark[1]},
                    {"entity": eid[r.right], "min": r.left_mark[0], "max": r.left_mark[1]},
                ],
            }
        )
    dname = title or name or "Imported Mermaid diagram"
    data = {
        "format_version": 1,
        "id": diagram_id(title or name),
        "name": check_name(dname, "the diagram title"),
        "entities": out_entities,
        "relationships": out_rels,
    }
    return finish(data, "Mermaid diagram"), list(w)
