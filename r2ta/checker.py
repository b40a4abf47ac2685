"""The structural checker: mistakes that the diagram alone proves, without the requirements.

``check(diagram)`` returns one :class:`~r2ta.eerd.Mistake` per problem, each
naming the elements involved (ids) and explaining it in a sentence a teacher
would write in the margin (elements named by their display names). It reports
nothing on a correct diagram. Mistakes that need the requirements to be seen (a
wrong cardinality, a missing attribute, overlapping drawn where the text says
disjoint) are out of its reach: it never guesses.

The order is deterministic: by category (in the order of
:data:`r2ta.eerd.CATEGORIES`), then by the element ids, then by the text.

Every rule tolerates odd diagrams that the model accepts: a relationship whose
participant is another relationship, empty lists, a specialization without a
superclass, is-a cycles, self-references.

This module must not import streamlit, torch or the database layer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Callable, Iterable

from r2ta.eerd import CATEGORIES, EERD, Attribute, Entity, Mistake, Relationship

# Rule name -> the category of the mistakes it reports.
RULES: dict[str, str] = {
    "strong_entity_without_key": "missing_key",
    "key_multivalued_or_derived": "missing_key",
    "weak_without_identifying_relationship": "weak_entity",
    "identifying_relationship_without_owner": "weak_entity",
    "weak_participation_not_one_one": "weak_entity",
    "weak_without_partial_key": "weak_entity",
    "weak_with_full_key": "weak_entity",
    "identifying_relationship_without_weak_entity": "weak_entity",
    "foreign_key_attribute": "foreign_key_attribute",
    "relationship_too_few_participants": "relationship_structure",
    "relationship_linked_to_relationship": "relationship_structure",
    "recursive_relationship_without_roles": "relationship_structure",
    "duplicate_attribute": "missing_element",
    "duplicate_entity_name": "missing_element",
    "duplicate_relationship_name": "missing_element",
    "disjointness_not_stated": "specialization_constraint",
    "completeness_not_stated": "specialization_constraint",
    "subclass_with_own_key": "specialization_structure",
    "subclass_repeats_inherited_attribute": "specialization_structure",
    "specialization_without_superclass": "specialization_structure",
    "specialization_without_subclasses": "specialization_structure",
    "isa_cycle": "specialization_structure",
    "category_too_few_superclasses": "specialization_structure",
}

_NORM_DROP = re.compile(r"[_\s\-]+")


def normalise(name: str) -> str:
    """Compare names the way a reader does: case-insensitive, ignoring ``_``, spaces and ``-``."""
    return _NORM_DROP.sub("", name).lower()


MAX_EXPLANATION_CHARS = 2_000  # Mistake.explanation's limit; names are free text up to 200 characters each


def clip_explanation(text: str) -> str:
    """One line that fits a Mistake: names may hold newlines and be long, the sentence must stay valid."""
    text = " ".join(text.split())
    if len(text) <= MAX_EXPLANATION_CHARS:
        return text
    return text[: MAX_EXPLANATION_CHARS - 1].rstrip() + "…"


def _join(names: Iterable[str]) -> str:
    names = list(names)
    if not names:
        return "nothing"
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]


class _Index:
    """Look-ups shared by the rules, built once per diagram."""

    def __init__(self, d: EERD) -> None:
        self.d = d
        self.entities: dict[str, Entity] = {e.id: e for e in d.entities}
        self.relationships: dict[str, Relationship] = {r.id: r for r in d.relationships}
        self.subclasses: set[str] = d.subclass_ids()
        self.weak: set[str] = {e.id for e in d.entities if e.weak}
        # is-a edges: subclass -> superclasses (specializations and categories)
        self.parents: dict[str, list[str]] = defaultdict(list)
        for sp in d.specializations:
            if sp.superclass is not None:
                for sub in sp.subclasses:
                    self.parents[sub].append(sp.superclass)
        for cat in d.categories:
            self.parents[cat.subclass].extend(cat.superclasses)
        self.cycles = _isa_cycles(d, self.parents)
        self.in_cycle: set[str] = {e for members, _ in self.cycles for e in members}
        self.identifying_of: dict[str, list[Relationship]] = defaultdict(list)
        for r in d.relationships:
            if r.identifying:
                for eid in dict.fromkeys(p.entity for p in r.participants):
                    if eid in self.weak:
                        self.identifying_of[eid].append(r)
        self.levels = _levels(d, self.weak)
        self._dependents: dict[str, list[str]] = {}

    def name(self, element_id: str | None) -> str:
        if element_id is None:
            return "?"
        return self.d.element_name(element_id) or element_id

    def ancestors(self, entity_id: str) -> list[str]:
        """Every (indirect) superclass, nearest first, never the entity itself, cycle-safe."""
        seen = {entity_id}
        order: list[str] = []
        frontier = list(self.parents.get(entity_id, []))
        while frontier:
            nxt: list[str] = []
            for p in frontier:
                if p not in seen:
                    seen.add(p)
                    order.append(p)
                    nxt.extend(self.parents.get(p, []))
            frontier = nxt
        return order

    def keys(self, entity_id: str) -> list[Attribute]:
        e = self.entities.get(entity_id)
        return [a for a in e.attributes if a.key] if e else []

    def keys_with_inherited(self, entity_id: str) -> list[Attribute]:
        out = list(self.keys(entity_id))
        for anc in self.ancestors(entity_id):
            out.extend(self.keys(anc))
        return out

    def dependents(self, r: Relationship) -> list[str]:
        """The weak participants that ``r`` identifies, as opposed to weak *owners* in it.

        In FLIGHT -> FLIGHT_LEG -> LEG_INSTANCE both ends of INSTANCE_OF are
        weak; LEG_INSTANCE is the one it identifies. The diagram says so first
        through the (1,1) drawn on the dependent's end; when that does not
        decide (both or neither drawn with max 1), a weak entity that has no
        other identifying relationship is the dependent, failing that the one
        farther from a strong entity along identifying relationships.
        """
        cached = self._dependents.get(r.id)
        if cached is not None:
            return cached
        weak_parts = sorted({p.entity for p in r.participants if p.entity in self.weak})
        out = weak_parts
        if len(weak_parts) > 1:
            ones = sorted({p.entity for p in r.participants if p.entity in self.weak and p.max == 1})
            only_here = [w for w in weak_parts if [x.id for x in self.identifying_of[w]] == [r.id]]
            levels = {w: self.levels.get(w) for w in weak_parts}
            finite = [lv for lv in levels.values() if lv is not None]
            deepest = [w for w, lv in levels.items() if lv is None or (finite and lv == max(finite))]
            for choice in (ones, only_here, deepest):
                if choice and len(choice) < len(weak_parts):
                    out = choice
                    break
        self._dependents[r.id] = out
        return out


def _levels(d: EERD, weak: set[str]) -> dict[str, int]:
    """Distance of each entity from a strong entity along identifying relationships (strong = 0)."""
    level = {e.id: 0 for e in d.entities if e.id not in weak}
    frontier = set(level)
    n = 0
    while frontier:
        n += 1
        nxt: set[str] = set()
        for r in d.relationships:
            if not r.identifying:
                continue
            ends = {p.entity for p in r.participants}
            if ends & frontier:
                for w in ends & weak:
                    if w not in level:
                        level[w] = n
                        nxt.add(w)
        frontier = nxt
    return level


def _isa_cycles(d: EERD, parents: dict[str, list[str]]) -> list[tuple[list[str], list[str]]]:
    """Strongly connected parts of the is-a graph that hold a cycle: (entity ids, spec/category ids)."""
    nodes = sorted(set(parents) | {p for ps in parents.values() for p in ps})

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        stack = list(parents.get(start, []))
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(parents.get(n, []))
        return seen

    reachable = {n: reach(n) for n in nodes}
    on_cycle = [n for n in nodes if n in reachable[n]]
    groups: list[list[str]] = []
    placed: set[str] = set()
    for n in on_cycle:
        if n in placed:
            continue
        group = sorted(m for m in on_cycle if m == n or (m in reachable[n] and n in reachable[m]))
        placed.update(group)
        groups.append(group)
    out = []
    for group in groups:
        members = set(group)
        links = [sp.id for sp in d.specializations if sp.superclass in members and members & set(sp.subclasses)]
        links += [c.id for c in d.categories if c.subclass in members and members & set(c.superclasses)]
        out.append((group, sorted(set(links))))
    return out


# -- rules ---------------------------------------------------------------------------
# Each rule yields (rule name, elements, explanation).

Finding = tuple[str, list[str], str]


def _missing_key(ix: _Index) -> Iterable[Finding]:
    for e in ix.d.entities:
        if e.weak or e.id in ix.subclasses:
            continue
        keys = ix.keys(e.id)
        if not keys:
            yield (
                "strong_entity_without_key",
                [e.id],
                f"{e.name} has no key attribute: every strong entity needs a key that tells its instances apart.",
            )
            continue
        for k in keys:
            if k.multivalued or k.derived:
                kind = "multivalued" if k.multivalued else "derived"
                why = (
                    "a key must hold exactly one value per instance"
                    if k.multivalued
                    else "a key must be stored, not computed from other attributes"
                )
                yield (
                    "key_multivalued_or_derived",
                    [e.id, k.id],
                    f"The key {k.name} of {e.name} is drawn {kind}; {why}.",
                )


def _weak_entity(ix: _Index) -> Iterable[Finding]:
    d = ix.d
    idents = [r for r in d.relationships if r.identifying]
    deps = {r.id: ix.dependents(r) for r in idents}

    def owners(r: Relationship, w: str) -> list[str]:
        return [
            p.entity
            for p in r.participants
            if p.entity != w and p.entity in ix.entities and p.entity not in deps[r.id]
        ]

    # w depends on o: edges of the ownership graph, and who is anchored to a strong entity.
    depends_on: dict[str, set[str]] = defaultdict(set)
    for r in idents:
        for w in deps[r.id]:
            depends_on[w].update(owners(r, w))
    anchored = {e.id for e in d.entities if not e.weak}
    changed = True
    while changed:
        changed = False
        for w, os in depends_on.items():
            if w not in anchored and os & anchored:
                anchored.add(w)
                changed = True

    def depends_indirectly(start: str, target: str) -> bool:
        seen: set[str] = set()
        stack = [start]
        while stack:
            n = stack.pop()
            if n == target:
                return True
            if n not in seen:
                seen.add(n)
                stack.extend(depends_on.get(n, ()))
        return False

    for e in d.entities:
        if not e.weak:
            continue
        mine = [r for r in idents if e.id in deps[r.id]]
        if not mine:
            yield (
                "weak_without_identifying_relationship",
                [e.id],
                f"{e.name} is a weak entity but is identified through no identifying relationship, "
                "so the diagram does not say which owner it depends on.",
            )
        for r in mine:
            bad = [p for p in r.participants if p.entity == e.id and (p.min < 1 or p.max != 1)]
            if bad:
                p = bad[0]
                yield (
                    "weak_participation_not_one_one",
                    [e.id, r.id],
                    f"{e.name} participates ({p.min},{p.max}) in its identifying relationship {r.name}; "
                    "a weak entity must participate (1,1): each one belongs to exactly one owner.",
                )
            os = owners(r, e.id)
            # An owner that lacks an owner of its own is reported on that owner, not again here;
            # only an ownership cycle (the owner depends back on this entity) is reported here.
            if not os or (
                not set(os) & anchored and any(depends_indirectly(o, e.id) for o in os)
            ):
                yield (
                    "identifying_relationship_without_owner",
                    [r.id, e.id],
                    f"{r.name} is drawn as the identifying relationship of {e.name} but links it to no owner "
                    "(a strong entity, or a weak entity that has an owner itself).",
                )
        keys = [a for a in e.attributes if a.key]
        partials = [a for a in e.attributes if a.partial_key]
        if keys:
            yield (
                "weak_with_full_key",
                [e.id, *[a.id for a in keys]],
                f"{e.name} is a weak entity yet {_join(a.name for a in keys)} is drawn as a full key; "
                "a weak entity is identified by a partial key together with its owner.",
            )
        elif not partials:
            yield (
                "weak_without_partial_key",
                [e.id],
                f"{e.name} is a weak entity without a partial key (dashed underline), so nothing tells "
                "apart the instances that belong to the same owner.",
            )
    for r in idents:
        if not deps[r.id]:
            yield (
                "identifying_relationship_without_weak_entity",
                [r.id],
                f"{r.name} is drawn as an identifying relationship (double diamond) but none of its "
                "participants is a weak entity.",
            )


def _foreign_keys(ix: _Index) -> Iterable[Finding]:
    d = ix.d
    hits: dict[str, list[str]] = {}  # attribute id -> relationship ids
    about: dict[str, tuple[Entity, Attribute, list[str]]] = {}
    for r in d.relationships:
        ends = list(dict.fromkeys(p.entity for p in r.participants if p.entity in ix.entities))
        for eid in ends:
            e = ix.entities[eid]
            # An attribute named like the entity's own (inherited) key repeats that key; it is no reference.
            own = {normalise(k.name) for k in ix.keys_with_inherited(eid)}
            for other_id in ends:
                if other_id == eid:
                    continue
                other = ix.entities[other_id]
                oname = normalise(other.name)
                forbidden = {oname + "id"}
                for k in ix.keys_with_inherited(other_id):
                    forbidden.add(normalise(k.name))
                    forbidden.add(oname + normalise(k.name))
                for a in e.attributes:
                    if a.key or normalise(a.name) not in forbidden - own:
                        continue
                    rels = hits.setdefault(a.id, [])
                    if r.id not in rels:
                        rels.append(r.id)
                    entry = about.setdefault(a.id, (e, a, []))
                    if other.name not in entry[2]:
                        entry[2].append(other.name)
    for aid, rels in hits.items():
        e, a, others = about[aid]
        rel_names = _join(ix.name(x) for x in rels)
        yield (
            "foreign_key_attribute",
            [aid, *sorted(rels)],
            f"{e.name} carries {a.name}, which duplicates the {rel_names} relationship to {_join(others)}: "
            "in an ER diagram the link is the relationship, not a foreign-key attribute.",
        )


def _relationship_structure(ix: _Index) -> Iterable[Finding]:
    for r in ix.d.relationships:
        ends = [p.entity for p in r.participants]
        if len(ends) < 2:
            what = f"connects only {ix.name(ends[0])}" if ends else "connects nothing"
            yield (
                "relationship_too_few_participants",
                [r.id, *dict.fromkeys(ends)],
                f"{r.name} {what}; a relationship needs at least two participants.",
            )
        for x in dict.fromkeys(ends):
            if x not in ix.entities:
                yield (
                    "relationship_linked_to_relationship",
                    [r.id, x],
                    f"{r.name} is connected to {ix.name(x)}, which is a relationship; "
                    "relationships connect entities, not other relationships.",
                )
        for eid in dict.fromkeys(ends):
            if eid not in ix.entities or ends.count(eid) < 2:
                continue
            roles = [p.role for p in r.participants if p.entity == eid]
            clean = [normalise(x) for x in roles if x and x.strip()]
            if len(clean) < len(roles) or len(set(clean)) < len(clean):
                yield (
                    "recursive_relationship_without_roles",
                    [r.id, eid],
                    f"{r.name} links {ix.name(eid)} to itself without distinct role names on its ends, "
                    "so a reader cannot tell which instance plays which part.",
                )


def _duplicates(ix: _Index) -> Iterable[Finding]:
    d = ix.d

    def groups(items: list, key: Callable) -> list[list]:
        by: dict[str, list] = defaultdict(list)
        for it in items:
            by[key(it)].append(it)
        return [g for g in by.values() if len(g) > 1]

    def walk(owner, attrs: list[Attribute], where: str):
        for g in groups(attrs, lambda a: normalise(a.name)):
            names = _join(sorted({a.name for a in g}))
            yield (
                "duplicate_attribute",
                [owner.id, *[a.id for a in g]],
                f"{where} has {len(g)} attributes named {names}; one of them is redundant.",
            )
        for a in attrs:
            if a.components:
                yield from walk(owner, a.components, f"The composite {a.name} of {owner.name}")

    for owner in d.owners():
        yield from walk(owner, owner.attributes, owner.name)
    for g in groups(d.entities, lambda e: normalise(e.name)):
        yield (
            "duplicate_entity_name",
            [e.id for e in g],
            f"The diagram has {len(g)} entities named {g[0].name}; one concept should be drawn once.",
        )
    for g in groups(d.relationships, lambda r: normalise(r.name)):
        yield (
            "duplicate_relationship_name",
            [r.id for r in g],
            f"The diagram has {len(g)} relationships named {g[0].name}; a relationship should be drawn once.",
        )


def _describe_spec(ix: _Index, sp) -> str:
    subs = _join(ix.name(s) for s in sp.subclasses)
    if sp.superclass is None:
        return f"The specialization {sp.id} (into {subs})"
    return f"The specialization of {ix.name(sp.superclass)} into {subs}"


def _specialization_constraints(ix: _Index) -> Iterable[Finding]:
    for sp in ix.d.specializations:
        # A single subclass is a plain subset: d/o has nothing to distinguish (E&N draw no circle).
        if sp.disjointness is None and len(sp.subclasses) >= 2:
            yield (
                "disjointness_not_stated",
                [sp.id],
                f"{_describe_spec(ix, sp)} does not say whether it is disjoint (d) or overlapping (o).",
            )
        if sp.completeness is None:
            yield (
                "completeness_not_stated",
                [sp.id],
                f"{_describe_spec(ix, sp)} does not say whether it is total (double line) or partial.",
            )


def _specialization_structure(ix: _Index) -> Iterable[Finding]:
    d = ix.d
    for eid in sorted(ix.subclasses):
        e = ix.entities.get(eid)
        if e is None or eid in ix.in_cycle:
            continue
        sups = _join(ix.name(s) for s in dict.fromkeys(ix.parents.get(eid, []))) or "its superclass"
        if not e.weak:
            own = [a for a in e.attributes if a.key or a.partial_key]
            if own:
                yield (
                    "subclass_with_own_key",
                    [eid, *[a.id for a in own]],
                    f"{e.name} is a subclass of {sups} but declares its own key {_join(a.name for a in own)}; "
                    "a subclass is identified by the key it inherits.",
                )
        inherited: dict[str, list[tuple[str, Attribute]]] = defaultdict(list)
        for anc in ix.ancestors(eid):
            for a in ix.entities[anc].attributes:
                inherited[normalise(a.name)].append((anc, a))
        for a in e.attributes:
            found = inherited.get(normalise(a.name))
            if found:
                yield (
                    "subclass_repeats_inherited_attribute",
                    [a.id, *sorted({x.id for _, x in found})],
                    f"{e.name} repeats the attribute {a.name} that it already inherits from "
                    f"{_join(dict.fromkeys(ix.name(anc) for anc, _ in found))}.",
                )
    for sp in d.specializations:
        if sp.superclass is None:
            yield (
                "specialization_without_superclass",
                [sp.id, *dict.fromkeys(sp.subclasses)],
                f"{_describe_spec(ix, sp)} is not attached to any superclass, so its subclasses "
                "specialize nothing.",
            )
        if not sp.subclasses:
            yield (
                "specialization_without_subclasses",
                [sp.id, *([sp.superclass] if sp.superclass else [])],
                f"The specialization {sp.id} of {ix.name(sp.superclass)} has no subclasses.",
            )
    for members, links in ix.cycles:
        names = _join(ix.name(m) for m in members)
        what = f"{names} is its own superclass" if len(members) == 1 else f"the is-a links among {names} form a cycle"
        yield (
            "isa_cycle",
            [*members, *links],
            f"In the diagram {what}: an entity cannot be a (direct or indirect) superclass of itself.",
        )
    for c in d.categories:
        if len(set(c.superclasses)) < 2:
            sups = _join(ix.name(s) for s in dict.fromkeys(c.superclasses)) or "none"
            yield (
                "category_too_few_superclasses",
                [c.id, c.subclass, *dict.fromkeys(c.superclasses)],
                f"The category {ix.name(c.subclass)} has fewer than two superclasses ({sups}); "
                "a category (union type) is a subset of the union of at least two entity types.",
            )


_RULE_GROUPS = (
    _missing_key,
    _weak_entity,
    _foreign_keys,
    _relationship_structure,
    _duplicates,
    _specialization_constraints,
    _specialization_structure,
)

_CATEGORY_ORDER = {c: i for i, c in enumerate(CATEGORIES)}


def check_with_rules(diagram: EERD) -> list[tuple[str, Mistake]]:
    """Every finding with the name of the rule that made it, in the order of :func:`check`."""
    ix = _Index(diagram)
    out: list[tuple[str, Mistake]] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for group in _RULE_GROUPS:
        for rule, elements, explanation in group(ix):
            key = (rule, tuple(elements))
            if key in seen:
                continue
            seen.add(key)
            out.append((rule, Mistake(category=RULES[rule], elements=elements, explanation=clip_explanation(explanation))))
    out.sort(key=lambda rm: (_CATEGORY_ORDER[rm[1].category], rm[1].elements, rm[1].explanation))
    return out


def check(diagram: EERD) -> list[Mistake]:
    """Structural mistakes in ``diagram``, one per problem; empty on a correct diagram."""
    return [m for _, m in check_with_rules(diagram)]


def weak_dependents(diagram: EERD) -> dict[str, list[str]]:
    """For each identifying relationship, the weak entities it identifies (not the weak owners in it)."""
    ix = _Index(diagram)
    return {r.id: ix.dependents(r) for r in diagram.relationships if r.identifying}


def ancestors(diagram: EERD, entity_id: str) -> list[str]:
    """Every direct or indirect superclass of ``entity_id`` (specializations and categories), cycle-safe."""
    return _Index(diagram).ancestors(entity_id)
