"""The compact text form of a diagram used in model prompts, and name resolution back to ids.

One line per entity, relationship, specialization and category, naming elements
the way a student or teacher would write them::

    ENTITY EMPLOYEE: Ssn [key], Name [composite: Fname, Lname], Age [derived]
    WEAK ENTITY DEPENDENT: Dependent_name [partial key], Birth_date
    RELATIONSHIP WORKS_FOR: EMPLOYEE (1,1) -- DEPARTMENT (1,N)
    IDENTIFYING RELATIONSHIP DEPENDENTS_OF: EMPLOYEE (0,N) -- DEPENDENT (1,1)
    RELATIONSHIP SUPERVISION: EMPLOYEE as supervisee (0,1) -- EMPLOYEE as supervisor (0,N)
    RELATIONSHIP WORKS_ON: EMPLOYEE (1,N) -- PROJECT (1,N); attributes: Hours
    SPECIALIZATION of EMPLOYEE (disjoint, partial, on Job_type): SECRETARY, ENGINEER
    CATEGORY OWNER (partial) = union of PERSON, BANK, COMPANY

(min,max) are look-here, as everywhere in R2tA: the pair beside EMPLOYEE says how
many times *each employee* takes part. It costs roughly a third of the tokens of
the JSON form (see ``benchmarks/bench_core.py``).

Models answer with element *references*: an id (``EMPLOYEE.Ssn``), a name
(``Ssn``, ``EMPLOYEE``) or a dotted name path (``EMPLOYEE.Ssn``).
:class:`ElementIndex` resolves such references to ids; the grounding metric,
the output parser and the auditor all use it.
"""

from __future__ import annotations

import re

from r2ta.eerd import EERD, MANY, Attribute, Participation

_WS = re.compile(r"\s+")

HEADER = (
    "Notation: (min,max) beside an entity is look-here: how many times each instance of that "
    "entity takes part in the relationship; N means many."
)


def _clean(name: str) -> str:
    """Names go into a line-oriented prompt: collapse newlines and runs of whitespace."""
    return _WS.sub(" ", name).strip()


def _bound(value: int | str) -> str:
    return "N" if value == MANY else str(value)


def _attr(a: Attribute) -> str:
    flags = []
    if a.key:
        flags.append("key")
    if a.partial_key:
        flags.append("partial key")
    if a.multivalued:
        flags.append("multivalued")
    if a.derived:
        flags.append("derived")
    if a.components:
        flags.append("composite: " + ", ".join(_attr(c) for c in a.components))
    return _clean(a.name) + (f" [{'; '.join(flags)}]" if flags else "")


def _participant(diagram: EERD, p: Participation) -> str:
    target = diagram.element_name(p.entity) or p.entity
    role = f" as {_clean(p.role)}" if p.role else ""
    return f"{_clean(target)}{role} ({p.min},{_bound(p.max)})"


def to_compact(diagram: EERD, header: bool = False) -> str:
    """The prompt form of ``diagram``: deterministic, one construct per line."""
    lines: list[str] = [HEADER] if header else []
    for e in diagram.entities:
        kind = "WEAK ENTITY" if e.weak else "ENTITY"
        attrs = ", ".join(_attr(a) for a in e.attributes)
        lines.append(f"{kind} {_clean(e.name)}" + (f": {attrs}" if attrs else ""))
    for r in diagram.relationships:
        kind = "IDENTIFYING RELATIONSHIP" if r.identifying else "RELATIONSHIP"
        ends = " -- ".join(_participant(diagram, p) for p in r.participants) or "(no participants)"
        line = f"{kind} {_clean(r.name)}: {ends}"
        if r.attributes:
            line += "; attributes: " + ", ".join(_attr(a) for a in r.attributes)
        lines.append(line)
    for s in diagram.specializations:
        sup = _clean(diagram.element_name(s.superclass) or s.superclass) if s.superclass else "(no superclass)"
        constraints = [
            {"d": "disjoint", "o": "overlapping", None: "disjointness not stated"}[s.disjointness],
            s.completeness or "completeness not stated",
        ]
        if s.defining_attribute:
            constraints.append(f"on {_clean(diagram.element_name(s.defining_attribute) or s.defining_attribute)}")
        subs = []
        for sub in s.subclasses:
            text = _clean(diagram.element_name(sub) or sub)
            if sub in s.defining_values:
                text += f" = {_clean(s.defining_values[sub])}"
            subs.append(text)
        lines.append(f"SPECIALIZATION of {sup} ({', '.join(constraints)}): {', '.join(subs) or '(no subclasses)'}")
    for c in diagram.categories:
        sups = ", ".join(_clean(diagram.element_name(s) or s) for s in c.superclasses)
        lines.append(
            f"CATEGORY {_clean(diagram.element_name(c.subclass) or c.subclass)} ({c.completeness}) = union of {sups}"
        )
    return "\n".join(lines)


def _norm(text: str) -> str:
    return _WS.sub("_", text.strip().lower())


class ElementIndex:
    """Resolve a model's element references (id, name or ``OWNER.attribute``) to element ids.

    Resolution is case-insensitive and treats spaces and underscores alike. A bare
    attribute name that several owners share is ambiguous and resolves to nothing
    rather than to a guess.
    """

    def __init__(self, diagram: EERD):
        self.diagram = diagram
        self.kinds = diagram.element_ids()
        self._by_key: dict[str, set[str]] = {}
        for element_id in self.kinds:
            self._add(element_id, element_id)
        for owner in diagram.owners():
            self._add(owner.name, owner.id)

            def walk(attrs, prefix):
                for a in attrs:
                    self._add(a.name, a.id)
                    self._add(f"{prefix}.{a.name}", a.id)
                    walk(a.components, f"{prefix}.{a.name}")

            walk(owner.attributes, owner.name)
        for s in diagram.specializations:
            of = f"specialization of {diagram.element_name(s.superclass)}" if s.superclass else "specialization"
            if s.superclass:
                self._add(of, s.id)
            if s.defining_attribute:
                self._add(f"{of} on {diagram.element_name(s.defining_attribute)}", s.id)
            for sub in s.subclasses:
                self._add(f"{of} into {diagram.element_name(sub)}", s.id)
        for c in diagram.categories:
            self._add(f"category {diagram.element_name(c.subclass)}", c.id)

    def _add(self, key: str, element_id: str) -> None:
        self._by_key.setdefault(_norm(key), set()).add(element_id)

    def resolve(self, reference: str) -> str | None:
        ids = self._by_key.get(_norm(reference))
        if ids and len(ids) == 1:
            return next(iter(ids))
        if ids and reference in ids:
            return reference
        return None

    def __contains__(self, reference: str) -> bool:
        return self.resolve(reference) is not None


_REFERENCE_BREAKERS = re.compile(r"[,\[\]|\n]")


def construct_reference(diagram: EERD, element_id: str, index: "ElementIndex | None" = None) -> str:
    """How an answer names a construct so that :class:`ElementIndex` resolves it back to ``element_id``.

    An entity or relationship by its name; a specialization,
    which the prompt shows as ``SPECIALIZATION of EMPLOYEE (...)``, as ``specialization of EMPLOYEE``,
    else ``... on Job_type`` or ``... into SECRETARY`` when the superclass has several; a category as
    ``category OWNER``. The id when no such name resolves uniquely or the name would break the answer
    format (a comma, bracket or ``|`` in it).
    """
    index = index or ElementIndex(diagram)
    candidates: list[str] = []
    name = diagram.element_name(element_id)
    if index.kinds.get(element_id) in ("entity", "relationship") and name:
        candidates.append(_clean(name))
    for s in diagram.specializations:
        if s.id == element_id:
            of = f"specialization of {_clean(diagram.element_name(s.superclass) or '')}" if s.superclass else "specialization"
            if s.superclass:
                candidates.append(of)
            if s.defining_attribute:
                candidates.append(f"{of} on {_clean(diagram.element_name(s.defining_attribute) or '')}")
            candidates += [f"{of} into {_clean(diagram.element_name(sub) or '')}" for sub in s.subclasses]
    for c in diagram.categories:
        if c.id == element_id:
            candidates.append(f"category {_clean(diagram.element_name(c.subclass) or '')}")
    for ref in candidates:
        if not _REFERENCE_BREAKERS.search(ref) and index.resolve(ref) == element_id:
            return ref
    return element_id

