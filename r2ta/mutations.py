"""Mistake generators: operators that induce one known modelling mistake in a correct diagram.

Each :class:`Operator` belongs to one of the 11 categories (``r2ta.eerd.CATEGORIES``)
and returns a :class:`Mutation`: a new diagram (the input is never modified),
the ground-truth :class:`~r2ta.eerd.Mistake` (category, element ids, a teacher's
sentence, the operator's name) and the ids it touched, so that the dataset
builder can stack several mutations on disjoint elements.

Contracts every operator keeps:

* **Deterministic.** The target is drawn with the given ``random.Random`` from
  the candidates in sorted order: the same diagram and seed give the same result.
* **Honest.** ``None`` when nothing in the diagram fits (no ternary to split, no
  specialization to flip); never a fake mutation.
* **One mistake only.** A *structural* operator's mistake is one the checker
  sees from the diagram alone, and every new checker finding matches its ground
  truth (same category, overlapping elements). A non-structural operator's
  mistake needs the requirements to be seen and adds no checker finding at all.
  Each candidate is verified against :func:`r2ta.checker.check` before it is
  returned; a candidate that would bring a second, unrelated mistake (dropping
  a relationship that would also orphan a weak entity, an FK attribute whose
  name another attribute already has) is passed over for the next one.
* Ground-truth element ids exist in the mutated diagram; for a removed element
  they name the owner or neighbours a teacher would point at.

Explanations for requirements-evidence mistakes say what the requirements state;
they are derived from the original (correct) diagram.

This module must not import streamlit, torch or the database layer.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

from r2ta.checker import ancestors, check, clip_explanation, normalise, weak_dependents
from r2ta.eerd import CATEGORIES, EERD, MANY, Attribute, Entity, Mistake, Participation, Relationship, Specialization


@dataclass(frozen=True)
class Mutation:
    diagram: EERD
    mistake: Mistake
    touched: frozenset[str]


Apply = Callable[..., "Mutation | None"]


@dataclass(frozen=True)
class Operator:
    name: str
    category: str
    structural: bool
    apply: Apply  # (diagram, rng, avoid=frozenset()) -> Mutation | None
    description: str = ""


# -- small helpers ---------------------------------------------------------------------


@dataclass
class _Candidate:
    key: tuple[str, ...]  # sort key: candidates are ordered before the random draw
    touched: frozenset[str]  # every id changed, added, removed or named in the ground truth
    build: Callable[[EERD], tuple[list[str], str]]  # edits the copy in place; returns (elements, explanation)


_ID_UNSAFE = re.compile(r"[^\w.:\-]+")


def _safe(text: str) -> str:
    return _ID_UNSAFE.sub("_", text).strip("_")[:60] or "x"


def _unique(base: str, taken: set[str]) -> str:
    """An id built from ``base`` that is not in ``taken`` and fits the 200-character id limit."""
    base = base[:190]
    if base not in taken:
        return base
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def _fresh_id(d: EERD, base: str) -> str:
    return _unique(base, set(d.element_ids()))


def _reid(d: EERD, a: Attribute, new_id: str, taken: set[str] | None = None) -> Attribute:
    """A copy of ``a`` (with its components) under ``new_id``, component ids derived from it."""
    taken = set(d.element_ids()) if taken is None else taken
    out = a.model_copy(deep=True)

    def walk(node: Attribute, node_id: str) -> None:
        node.id = node_id
        taken.add(node_id)
        for c in node.components:
            walk(c, _unique(f"{node_id}.{_safe(c.name)}", taken))

    walk(out, new_id)
    return out


def _owner(d: EERD, owner_id: str) -> Entity | Relationship:
    found = d.entity(owner_id) or d.relationship(owner_id)
    if found is None:  # a candidate names an owner of the same diagram: this is a bug
        raise LookupError(f"no entity or relationship {owner_id!r}")
    return found


def _find_attr(d: EERD, attr_id: str) -> tuple[Entity | Relationship, list[Attribute], int]:
    def walk(attrs: list[Attribute]):
        for i, a in enumerate(attrs):
            if a.id == attr_id:
                return attrs, i
            hit = walk(a.components)
            if hit:
                return hit
        return None

    for o in d.owners():
        hit = walk(o.attributes)
        if hit:
            return o, hit[0], hit[1]
    raise LookupError(f"no attribute {attr_id!r}")


def _attr(d: EERD, attr_id: str) -> Attribute:
    _, lst, i = _find_attr(d, attr_id)
    return lst[i]


def _all_ids(a: Attribute) -> list[str]:
    out = [a.id]
    for c in a.components:
        out.extend(_all_ids(c))
    return out


def _cap(name: str) -> str:
    """``FLIGHT_LEG`` -> ``Flight_leg``: an attribute-style name built from an entity name."""
    s = re.sub(r"\s+", "_", name.strip())
    return s[:1].upper() + s[1:].lower()


def _an(name: str) -> str:
    """``a`` or ``an`` before a name, by its first letter (good enough for entity type names)."""
    return f"an {name}" if name[:1].upper() in "AEIOU" else f"a {name}"


def _join(names: Iterable[str]) -> str:
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _defining_attrs(d: EERD) -> set[str]:
    return {sp.defining_attribute for sp in d.specializations if sp.defining_attribute}


def _is_plain(a: Attribute) -> bool:
    return not (a.key or a.partial_key)


def _is_simple_stored(a: Attribute) -> bool:
    return _is_plain(a) and not (a.multivalued or a.derived or a.components)


def _bounds(lo: int, hi) -> str:
    if hi == 1:
        return "exactly one" if lo >= 1 else "at most one"
    if hi == MANY:
        return {0: "zero or more", 1: "at least one"}.get(lo, f"at least {lo}")
    if lo == hi:
        return f"exactly {lo}"
    return f"at most {hi}" if lo == 0 else f"between {lo} and {hi}"


def _end(d: EERD, p: Participation) -> str:
    name = d.element_name(p.entity) or p.entity
    return f"{name} (as {p.role})" if p.role else name


def _constraint(d: EERD, r: Relationship, i: int) -> str:
    """What (min,max) of participation ``i`` says, in words (look-here)."""
    p = r.participants[i]
    others = [_end(d, q) for j, q in enumerate(r.participants) if j != i]
    other = others[0] if len(others) == 1 else f"combination of {_join(others)}"
    return f"each {_end(d, p)} is linked through {r.name} to {_bounds(p.min, p.max)} {other}"


def _mm(p: Participation) -> str:
    return f"({p.min},{p.max})"


def _entity_ends(d: EERD, r: Relationship) -> list[str]:
    return list(dict.fromkeys(p.entity for p in r.participants if d.entity(p.entity) is not None))


def _finding_keys(mistakes: list[Mistake]) -> Counter:
    return Counter((m.category, tuple(m.elements)) for m in mistakes)


def _introduces_only(before: Counter, after: list[Mistake], truth: Mistake, structural: bool) -> bool:
    now = _finding_keys(after)
    if before - now:  # an earlier mistake vanished or changed: the mutations are not independent
        return False
    new = now - before
    if not structural:
        return not new
    want = set(truth.elements)
    return bool(new) and all(cat == truth.category and set(els) & want for cat, els in new)


def _run(op: "Operator", d: EERD, rng: random.Random, avoid: frozenset[str], candidates: Iterable[_Candidate | None]):
    pool = sorted((c for c in candidates if c is not None and not (c.touched & avoid)), key=lambda c: c.key)
    if not pool:
        return None
    rng.shuffle(pool)
    before = _finding_keys(check(d))
    for cand in pool:
        work = d.model_copy(deep=True)
        elements, explanation = cand.build(work)
        # Re-validate: the copy was edited in place, and a mutation must stay a well-formed diagram.
        mutated = EERD.model_validate(work.model_dump())
        mistake = Mistake(
            category=op.category, elements=elements, explanation=clip_explanation(explanation), operator=op.name
        )
        if _introduces_only(before, check(mutated), mistake, op.structural):
            return Mutation(mutated, mistake, frozenset(cand.touched | set(elements)))
    return None


OPERATORS_BY_NAME: dict[str, Operator] = {}


def _operator(name: str, category: str, structural: bool, description: str):
    """Register a candidate generator ``gen(d) -> Iterable[_Candidate]`` as an operator."""
    assert category in CATEGORIES, category

    def wrap(gen: Callable[[EERD], Iterable[_Candidate]]):
        def apply(diagram: EERD, rng: random.Random, avoid: frozenset[str] = frozenset()) -> Mutation | None:
            return _run(OPERATORS_BY_NAME[name], diagram, rng, frozenset(avoid), gen(diagram))

        apply.__name__ = name
        apply.__doc__ = description
        OPERATORS_BY_NAME[name] = Operator(name, category, structural, apply, description)
        return gen

    return wrap


def _strong_roots(d: EERD) -> list[Entity]:
    subs = d.subclass_ids()
    return [e for e in d.entities if not e.weak and e.id not in subs]


def _owner_names(d: EERD, weak_id: str) -> str:
    deps = weak_dependents(d)
    names = []
    for r in d.relationships:
        if r.identifying and weak_id in deps.get(r.id, []):
            names += [d.element_name(p.entity) or p.entity for p in r.participants if p.entity != weak_id]
    return _join(dict.fromkeys(names)) or "owner"


# -- missing_key -----------------------------------------------------------------------


@_operator("drop_key", "missing_key", True, "a strong entity's key is no longer marked as a key")
def _drop_key(d: EERD):
    for e in _strong_roots(d):
        keys = [a for a in e.attributes if a.key]
        if not keys:
            continue

        def build(c: EERD, eid=e.id, kids=[k.id for k in keys]):
            for k in kids:
                _attr(c, k).key = False
            e2 = c.entity(eid)
            names = _join(_attr(c, k).name for k in kids)
            return [eid, *kids], (
                f"{e2.name} has no key: {names} is drawn as an ordinary attribute (not underlined), "
                f"so nothing identifies each {e2.name}."
            )

        yield _Candidate((e.id,), frozenset([e.id, *[k.id for k in keys]]), build)


def _key_flag_operator(flag: str):
    def gen(d: EERD):
        for e in _strong_roots(d):
            for k in e.attributes:
                if not k.key or k.multivalued or k.derived:
                    continue

                def build(c: EERD, eid=e.id, kid=k.id):
                    setattr(_attr(c, kid), flag, True)
                    e2, k2 = c.entity(eid), _attr(c, kid)
                    if flag == "multivalued":
                        why = (
                            f"a key holds exactly one value per {e2.name}, so it cannot be multivalued "
                            "(double ellipse)"
                        )
                    else:
                        why = "a key must be stored, not derived (dashed ellipse) from other attributes"
                    return [eid, kid], f"The key {k2.name} of {e2.name} is drawn {flag}; {why}."

                yield _Candidate((e.id, k.id), frozenset([e.id, k.id]), build)

    return gen


_operator("key_made_multivalued", "missing_key", True, "a strong entity's key is drawn multivalued")(
    _key_flag_operator("multivalued")
)
_operator("key_made_derived", "missing_key", True, "a strong entity's key is drawn derived")(
    _key_flag_operator("derived")
)


# -- weak_entity -----------------------------------------------------------------------


def _sole_identifying(d: EERD) -> dict[str, str]:
    """Weak entity id -> its identifying relationship, for weak entities that have exactly one."""
    deps = weak_dependents(d)
    found: dict[str, list[str]] = {}
    for r in d.relationships:
        for w in deps.get(r.id, []):
            found.setdefault(w, []).append(r.id)
    return {w: rs[0] for w, rs in found.items() if len(rs) == 1}


@_operator("weak_without_partial_key", "weak_entity", True, "a weak entity loses its partial key marking")
def _weak_without_partial_key(d: EERD):
    for e in d.entities:
        pks = [a for a in e.attributes if a.partial_key]
        if not e.weak or not pks or any(a.key for a in e.attributes):
            continue

        def build(c: EERD, eid=e.id, ids=[a.id for a in pks]):
            owner = _owner_names(c, eid)
            for i in ids:
                _attr(c, i).partial_key = False
            names = _join(_attr(c, i).name for i in ids)
            name = c.entity(eid).name
            return [eid, *ids], (
                f"{name} is drawn weak but has no partial key: {names} is not marked with a dashed underline, "
                f"so nothing tells apart the {name} instances of one {owner}."
            )

        yield _Candidate((e.id,), frozenset([e.id, *[a.id for a in pks]]), build)


@_operator("weak_given_full_key", "weak_entity", True, "a weak entity's partial key is drawn as a full key")
def _weak_given_full_key(d: EERD):
    for e in d.entities:
        if not e.weak:
            continue
        for a in e.attributes:
            if not a.partial_key:
                continue

            def build(c: EERD, eid=e.id, aid=a.id):
                owner = _owner_names(c, eid)
                at = _attr(c, aid)
                at.partial_key, at.key = False, True
                name = c.entity(eid).name
                return [eid, aid], (
                    f"{name} is a weak entity yet {at.name} is drawn as a full key; {at.name} only identifies "
                    f"{_an(name)} together with its {owner}, so it is a partial key (dashed underline)."
                )

            yield _Candidate((e.id, a.id), frozenset([e.id, a.id]), build)


@_operator(
    "weak_partial_participation",
    "weak_entity",
    True,
    "a weak entity's participation in its identifying relationship is drawn partial",
)
def _weak_partial_participation(d: EERD):
    deps = weak_dependents(d)
    for r in d.relationships:
        for i, p in enumerate(r.participants):
            if p.entity not in deps.get(r.id, []) or p.min < 1:
                continue

            def build(c: EERD, rid=r.id, i=i):
                r2 = c.relationship(rid)
                p2 = r2.participants[i]
                p2.min = 0
                name = c.element_name(p2.entity)
                return [p2.entity, rid], (
                    f"{name} participates {_mm(p2)} in its identifying relationship {r2.name}; a weak entity "
                    f"cannot exist without its owner, so its participation must be total (1,1)."
                )

            yield _Candidate((r.id, str(i)), frozenset([r.id, p.entity]), build)


@_operator(
    "identifying_made_regular",
    "weak_entity",
    True,
    "a weak entity's identifying relationship is drawn as a regular relationship",
)
def _identifying_made_regular(d: EERD):
    sole = _sole_identifying(d)
    deps = weak_dependents(d)
    for r in d.relationships:
        ws = deps.get(r.id, [])
        if not r.identifying or not ws or any(sole.get(w) != r.id for w in ws):
            continue

        def build(c: EERD, rid=r.id, ws=tuple(ws)):
            r2 = c.relationship(rid)
            r2.identifying = False
            names = _join(c.element_name(w) for w in ws)
            return [rid, *ws], (
                f"{names} is drawn as a weak entity but {r2.name} is a regular relationship (single diamond), "
                f"so {names} has no identifying relationship to its owner."
            )

        yield _Candidate((r.id,), frozenset([r.id, *ws]), build)


@_operator(
    "weak_drawn_strong",
    "weak_entity",
    False,
    "an existence-dependent entity is drawn strong, its partial key promoted to a key",
)
def _weak_drawn_strong(d: EERD):
    sole = _sole_identifying(d)
    deps = weak_dependents(d)
    for e in d.entities:
        rid = sole.get(e.id)
        pks = [a for a in e.attributes if a.partial_key]
        if not e.weak or rid is None or deps.get(rid) != [e.id] or not pks or any(a.key for a in e.attributes):
            continue

        def build(c: EERD, eid=e.id, rid=rid, ids=tuple(a.id for a in pks)):
            owner = _owner_names(c, eid)
            e2, r2 = c.entity(eid), c.relationship(rid)
            e2.weak = False
            r2.identifying = False
            for i in ids:
                a = _attr(c, i)
                a.partial_key, a.key = False, True
            names = _join(_attr(c, i).name for i in ids)
            return [eid, rid], (
                f"The requirements say {_an(e2.name)} exists only for its {owner} and is identified by {names} "
                f"together with that {owner}, but {e2.name} is drawn as a strong entity with {names} as its "
                f"own key and {r2.name} as a regular relationship; it should be a weak entity."
            )

        yield _Candidate((e.id,), frozenset([e.id, rid, *[a.id for a in pks]]), build)


# -- cardinality and participation --------------------------------------------------------


def _constraint_candidates(d: EERD, flip: Callable[[Participation], tuple[int, object] | None]):
    deps = weak_dependents(d)
    for r in d.relationships:
        for i, p in enumerate(r.participants):
            if d.entity(p.entity) is None or p.entity in deps.get(r.id, []):
                continue  # a weak entity's (1,1) in its identifying relationship belongs to weak_entity
            new = flip(p)
            if new is None:
                continue

            def build(c: EERD, rid=r.id, i=i, new=new):
                said = _constraint(c, c.relationship(rid), i)
                r2 = c.relationship(rid)
                p2 = r2.participants[i]
                p2.min, p2.max = new
                return [rid, p2.entity], (
                    f"The requirements say {said}, but the {_end(c, p2)} end of {r2.name} is drawn {_mm(p2)}."
                )

            yield _Candidate((r.id, f"{i:03d}"), frozenset([r.id, p.entity]), build)


def _flip_max(p: Participation):
    if p.max == 1:
        return p.min, MANY
    return (p.min, 1) if p.min <= 1 else None


def _flip_min(p: Participation):
    return (1 if p.min == 0 else 0), p.max


@_operator("flip_max", "cardinality", False, "one participation's max swaps between 1 and N")
def _flip_max_op(d: EERD):
    return _constraint_candidates(d, _flip_max)


@_operator("flip_min", "participation", False, "one participation's min swaps between 0 and 1")
def _flip_min_op(d: EERD):
    return _constraint_candidates(d, _flip_min)


# -- attribute_placement -------------------------------------------------------------------


def _move_attr(c: EERD, aid: str, target_id: str) -> str:
    owner, lst, i = _find_attr(c, aid)
    a = lst.pop(i)
    target = _owner(c, target_id)
    new_id = _fresh_id(c, f"{target_id}.{_safe(a.name)}")
    target.attributes.append(_reid(c, a, new_id))
    return new_id


def _move_candidate(d: EERD, src: Entity | Relationship, a: Attribute, target: Entity, text):
    if normalise(a.name) in {normalise(x.name) for x in target.attributes}:
        return None  # the target already has one: that would be a duplicate, not a misplacement
    planned = _fresh_id(d, f"{target.id}.{_safe(a.name)}")

    def build(c: EERD, aid=a.id, sid=src.id, tid=target.id):
        said = text(c)
        new_id = _move_attr(c, aid, tid)
        return [new_id, sid, tid], said

    return _Candidate((src.id, a.id, target.id), frozenset([a.id, planned, src.id, target.id, *_all_ids(a)]), build)


@_operator(
    "rel_attr_to_entity",
    "attribute_placement",
    False,
    "an M:N relationship's attribute is moved onto one of its participants",
)
def _rel_attr_to_entity(d: EERD):
    for r in d.relationships:
        ends = _entity_ends(d, r)
        if r.identifying or len(ends) < 2 or any(p.max == 1 for p in r.participants):
            continue
        for a in r.attributes:
            if not _is_plain(a):
                continue
            for eid in ends:
                e = d.entity(eid)

                def text(c: EERD, rname=r.name, aname=a.name, ename=e.name, others=[x for x in ends if x != eid]):
                    other = _join(c.element_name(x) for x in others)
                    return (
                        f"The requirements record {aname} for each pairing of {ename} with {other} in {rname}, "
                        f"but {aname} is drawn on {ename}, where it can hold only one value per {ename} "
                        f"instead of one per {rname} link."
                    )

                yield _move_candidate(d, r, a, e, text)


@_operator(
    "one_n_attr_to_one_side",
    "attribute_placement",
    False,
    "a 1:N relationship's attribute is moved onto the entity on the 1 side",
)
def _one_n_attr_to_one_side(d: EERD):
    for r in d.relationships:
        ends = _entity_ends(d, r)
        if r.identifying or len(r.participants) != 2 or len(ends) != 2:
            continue
        ones = [p for p in r.participants if p.max == 1]
        manys = [p for p in r.participants if p.max != 1]
        if len(ones) != 1 or len(manys) != 1:
            continue
        # look-here: the N-side entity has max 1; the 1 side (in ratio terms) has max N
        n_side, one_side = d.entity(ones[0].entity), d.entity(manys[0].entity)
        for a in r.attributes:
            if not _is_plain(a):
                continue

            def text(c: EERD, rname=r.name, aname=a.name, n=n_side.name, one=one_side.name):
                return (
                    f"The requirements record {aname} for each {n} in {rname}; drawn on {one}, the 1 side of "
                    f"this 1:N relationship, it can hold only one value per {one} instead of one per {n}."
                )

            yield _move_candidate(d, r, a, one_side, text)


@_operator(
    "attr_to_neighbour",
    "attribute_placement",
    False,
    "an entity's attribute is moved onto an entity related to it",
)
def _attr_to_neighbour(d: EERD):
    defining = _defining_attrs(d)
    seen: set[tuple[str, str]] = set()
    for r in d.relationships:
        ends = _entity_ends(d, r)
        for eid in ends:
            for oid in ends:
                if oid == eid or (eid, oid) in seen:
                    continue
                seen.add((eid, oid))
                e, o = d.entity(eid), d.entity(oid)
                for a in e.attributes:
                    if not _is_plain(a) or a.id in defining:
                        continue

                    def text(c: EERD, aname=a.name, ename=e.name, oname=o.name):
                        return (
                            f"The requirements make {aname} a property of each {ename}, but it is drawn on "
                            f"{oname}."
                        )

                    yield _move_candidate(d, e, a, o, text)


# -- attribute_kind ---------------------------------------------------------------------


def _owner_phrase(o: Entity | Relationship) -> str:
    """How a sentence names an attribute's owner: an entity, or one link of a relationship."""
    return o.name if isinstance(o, Entity) else f"{o.name} link"


def _kind_operator(select: Callable[[Attribute], bool], edit: Callable[[Attribute], None], text, top_only=True):
    def gen(d: EERD):
        defining = _defining_attrs(d)
        for owner, a, depth in d.iter_attributes():
            if (top_only and depth) or a.id in defining or not select(a):
                continue

            def build(c: EERD, oid=owner.id, aid=a.id):
                at = _attr(c, aid)
                said = text(at.name, _owner_phrase(_owner(c, oid)), at)
                edit(at)
                return [aid, oid], said

            yield _Candidate((owner.id, a.id), frozenset([owner.id, a.id]), build)

    return gen


_operator("simple_made_multivalued", "attribute_kind", False, "a single-valued attribute is drawn multivalued")(
    _kind_operator(
        _is_simple_stored,
        lambda a: setattr(a, "multivalued", True),
        lambda a, o, _: f"The requirements give each {o} a single {a}, but {a} is drawn multivalued (double ellipse).",
    )
)
_operator("multivalued_made_single", "attribute_kind", False, "a multivalued attribute is drawn single-valued")(
    _kind_operator(
        lambda a: a.multivalued and _is_plain(a),
        lambda a: setattr(a, "multivalued", False),
        lambda a, o, _: (
            f"The requirements allow several {a} values for one {o}, but {a} is drawn as a single-valued "
            "attribute instead of a multivalued one (double ellipse)."
        ),
        top_only=False,
    )
)
_operator("derived_made_stored", "attribute_kind", False, "a derived attribute is drawn stored")(
    _kind_operator(
        lambda a: a.derived and _is_plain(a),
        lambda a: setattr(a, "derived", False),
        lambda a, o, _: (
            f"The requirements say {a} of each {o} is computed from other data, but it is drawn as a stored "
            "attribute instead of a derived one (dashed ellipse)."
        ),
        top_only=False,
    )
)
_operator("stored_made_derived", "attribute_kind", False, "a stored attribute is drawn derived")(
    _kind_operator(
        _is_simple_stored,
        lambda a: setattr(a, "derived", True),
        lambda a, o, _: (
            f"The requirements treat {a} of each {o} as a recorded fact, but it is drawn as derived (dashed ellipse), "
            "as if it could be computed from other attributes."
        ),
    )
)
_operator("composite_made_simple", "attribute_kind", False, "a composite attribute loses its components")(
    _kind_operator(
        lambda a: bool(a.components),
        lambda a: setattr(a, "components", []),
        lambda a, o, at: (
            f"The requirements describe {a} of each {o} as made of {_join(x.name for x in at.components)}, "
            "but it is drawn as a simple attribute."
        ),
    )
)


@_operator(
    "composite_flattened",
    "attribute_kind",
    False,
    "a composite attribute is replaced by its components as separate attributes",
)
def _composite_flattened(d: EERD):
    defining = _defining_attrs(d)
    for owner in d.owners():
        for a in owner.attributes:
            if not a.components or not _is_plain(a) or a.id in defining or a.multivalued:
                continue

            def build(c: EERD, oid=owner.id, aid=a.id):
                o = _owner(c, oid)
                idx = next(i for i, x in enumerate(o.attributes) if x.id == aid)
                comp = o.attributes.pop(idx)
                parts = []
                taken = set(c.element_ids())
                for part in comp.components:
                    moved = _reid(c, part, _unique(f"{oid}.{_safe(part.name)}", taken), taken)
                    moved.derived = moved.derived or comp.derived
                    parts.append(moved)
                o.attributes[idx:idx] = parts
                names = _join(p.name for p in parts)
                return [oid, *[p.id for p in parts]], (
                    f"The requirements describe {comp.name} of {o.name} as one composite attribute made of "
                    f"{names}, but {names} are drawn as separate attributes of {o.name} and {comp.name} is gone."
                )

            planned = [f"{owner.id}.{_safe(p.name)}"[:190] for p in a.components]
            yield _Candidate((owner.id, a.id), frozenset([owner.id, *_all_ids(a), *planned]), build)


# -- foreign_key_attribute -------------------------------------------------------------------


@_operator(
    "add_fk_attribute",
    "foreign_key_attribute",
    True,
    "an entity gets an attribute that copies the key of an entity it is related to",
)
def _add_fk_attribute(d: EERD):
    for r in d.relationships:
        ends = _entity_ends(d, r)
        if len(ends) < 2 or len(ends) != len(r.participants):
            continue  # recursive relationships: a copied key would be the entity's own
        for p in r.participants:
            if p.max != 1:
                continue  # the "many" end of a 1:N holds the foreign key in relational thinking
            e = d.entity(p.entity)
            for oid in ends:
                if oid == e.id:
                    continue
                o = d.entity(oid)
                keys = [a for a in o.attributes if a.key]
                for anc in ancestors(d, oid):
                    keys += [a for a in d.entity(anc).attributes if a.key]
                names = list(dict.fromkeys([k.name for k in keys] + [f"{_cap(o.name)[:190]}_id"]))
                own = {normalise(x.name) for x in e.attributes}
                own |= {normalise(k.name) for anc in ancestors(d, e.id) for k in d.entity(anc).attributes}
                for fk in names:
                    if normalise(fk) in own:
                        continue  # that name is already the entity's own (or inherited) attribute
                    new_id = _fresh_id(d, f"{e.id}.{_safe(fk)}")

                    def build(c: EERD, eid=e.id, rid=r.id, oid=oid, fk=fk, new_id=new_id):
                        c.entity(eid).attributes.append(Attribute(id=new_id, name=fk))
                        ename, oname, rname = c.entity(eid).name, c.entity(oid).name, c.relationship(rid).name
                        return [new_id, rid], (
                            f"{ename} carries {fk}, which duplicates the {rname} relationship to {oname}: in an "
                            "ER diagram the link is the relationship, not a foreign-key attribute."
                        )

                    yield _Candidate((r.id, e.id, oid, fk), frozenset([new_id, r.id, e.id]), build)


# -- relationship_structure -------------------------------------------------------------------


@_operator("drop_participant", "relationship_structure", True, "a binary relationship loses one of its two ends")
def _drop_participant(d: EERD):
    for r in d.relationships:
        if r.identifying or len(r.participants) != 2:
            continue
        for i, p in enumerate(r.participants):

            def build(c: EERD, rid=r.id, i=i):
                r2 = c.relationship(rid)
                gone = r2.participants.pop(i)
                kept = r2.participants[0].entity
                return [rid, kept, gone.entity], (
                    f"{r2.name} is drawn with only {c.element_name(kept)} attached; its link to "
                    f"{c.element_name(gone.entity)} is missing, and a relationship needs at least two participants."
                )

            yield _Candidate((r.id, f"{i:03d}"), frozenset([r.id, *[q.entity for q in r.participants]]), build)


@_operator(
    "recursive_roles_dropped",
    "relationship_structure",
    True,
    "a recursive relationship loses the role names on its ends",
)
def _recursive_roles_dropped(d: EERD):
    for r in d.relationships:
        counts = Counter(p.entity for p in r.participants)
        for eid, n in sorted(counts.items()):
            roles = [p.role for p in r.participants if p.entity == eid]
            if n < 2 or not any(roles):
                continue

            def build(c: EERD, rid=r.id, eid=eid, roles=tuple(x for x in roles if x)):
                r2 = c.relationship(rid)
                for p in r2.participants:
                    if p.entity == eid:
                        p.role = None
                name = c.element_name(eid)
                return [rid, eid], (
                    f"{r2.name} links {name} to itself but its ends carry no role names "
                    f"(the requirements distinguish {_join(roles)}), so a reader cannot tell which {name} "
                    "plays which part."
                )

            yield _Candidate((r.id, eid), frozenset([r.id, eid]), build)


@_operator(
    "participant_replaced_by_relationship",
    "relationship_structure",
    True,
    "one end of a relationship is attached to another relationship instead of an entity",
)
def _participant_replaced_by_relationship(d: EERD):
    for r in d.relationships:
        if r.identifying or len(r.participants) < 2:
            continue
        for i, p in enumerate(r.participants):
            if d.entity(p.entity) is None:
                continue
            for r2 in d.relationships_of(p.entity):
                if r2.id == r.id:
                    continue

                def build(c: EERD, rid=r.id, i=i, other=r2.id):
                    rel = c.relationship(rid)
                    part = rel.participants[i]
                    eid = part.entity
                    part.entity = other
                    ename, oname = c.element_name(eid), c.relationship(other).name
                    return [rid, other, eid], (
                        f"{rel.name} is connected to the relationship {oname} where the requirements call for "
                        f"the entity {ename}; relationships connect entities, not other relationships."
                    )

                yield _Candidate((r.id, f"{i:03d}", r2.id), frozenset([r.id, r2.id, p.entity]), build)


@_operator(
    "ternary_split",
    "relationship_structure",
    False,
    "a ternary relationship is replaced by two binary relationships",
)
def _ternary_split(d: EERD):
    for r in d.relationships:
        ends = _entity_ends(d, r)
        if r.identifying or len(r.participants) != 3 or len(ends) != 3:
            continue
        for pivot in range(3):
            a_i, b_i = [j for j in range(3) if j != pivot]
            ids = [
                _fresh_id(d, f"{r.id}_{_safe(d.element_name(r.participants[j].entity))}") for j in (a_i, b_i)
            ]
            if ids[0] == ids[1]:
                ids[1] = ids[1] + "_2"

            def build(c: EERD, rid=r.id, pivot=pivot, pair=(a_i, b_i), ids=tuple(ids)):
                idx = next(k for k, x in enumerate(c.relationships) if x.id == rid)
                old = c.relationships.pop(idx)
                names = [c.element_name(p.entity) for p in old.participants]
                pv = old.participants[pivot]
                news = []
                taken = set(c.element_ids()) | set(ids)
                for n, (j, new_id) in enumerate(zip(pair, ids)):
                    other = old.participants[j]
                    attrs = []
                    if n == 0:
                        for a in old.attributes:
                            attrs.append(_reid(c, a, _unique(f"{new_id}.{_safe(a.name)}", taken), taken))
                    news.append(
                        Relationship(
                            id=new_id,
                            name=f"{old.name[:100]}_{c.element_name(other.entity)[:90]}",
                            participants=[pv.model_copy(), other.model_copy()],
                            attributes=attrs,
                        )
                    )
                c.relationships[idx:idx] = news
                b, cc = names[pair[0]], names[pair[1]]
                return [*ids, *dict.fromkeys(p.entity for p in old.participants)], (
                    f"The requirements describe {old.name} as one ternary relationship among {_join(names)}, "
                    f"each occurrence relating one of each; drawn as two binary relationships {news[0].name} and "
                    f"{news[1].name}, the diagram no longer records which {b} goes with which {cc}."
                )

            touched = [r.id, *ids, *ends, *[x for a in r.attributes for x in _all_ids(a)]]
            yield _Candidate((r.id, str(pivot)), frozenset(touched), build)


# -- missing_element ----------------------------------------------------------------------


@_operator("drop_attribute", "missing_element", False, "a non-key attribute the requirements call for is removed")
def _drop_attribute(d: EERD):
    defining = _defining_attrs(d)
    for owner in d.owners():
        for a in owner.attributes:
            if not _is_plain(a) or a.id in defining:
                continue

            def build(c: EERD, oid=owner.id, aid=a.id):
                o = _owner(c, oid)
                at = _attr(c, aid)
                o.attributes = [x for x in o.attributes if x.id != aid]
                return [oid], (
                    f"The requirements record {at.name} for each {_owner_phrase(o)}, but {o.name} has no "
                    f"{at.name} attribute."
                )

            yield _Candidate((owner.id, a.id), frozenset([owner.id, *_all_ids(a)]), build)


@_operator("drop_relationship", "missing_element", False, "a (non-identifying) relationship is removed")
def _drop_relationship(d: EERD):
    for r in d.relationships:
        ends = _entity_ends(d, r)
        if r.identifying or len(ends) != len(set(p.entity for p in r.participants)) or not ends:
            continue

        def build(c: EERD, rid=r.id):
            r2 = c.relationship(rid)
            said = "; ".join(_constraint(c, r2, i) for i in range(len(r2.participants)))
            c.relationships = [x for x in c.relationships if x.id != rid]
            ends2 = list(dict.fromkeys(p.entity for p in r2.participants))
            return ends2, (
                f"The requirements relate {_join(c.element_name(x) for x in ends2)} through {r2.name} ({said}), "
                f"but the diagram has no {r2.name} relationship."
            )

        touched = [r.id, *ends, *[x for a in r.attributes for x in _all_ids(a)]]
        yield _Candidate((r.id,), frozenset(touched), build)


@_operator(
    "drop_entity",
    "missing_element",
    False,
    "an entity linked by one or two binary relationships is removed together with them",
)
def _drop_entity(d: EERD):
    in_isa = {x for sp in d.specializations for x in [sp.superclass, *sp.subclasses]}
    in_isa |= {x for c in d.categories for x in [c.subclass, *c.superclasses]}
    for e in d.entities:
        rels = d.relationships_of(e.id)
        if e.weak or e.id in in_isa or not 1 <= len(rels) <= 2:
            continue
        if any(r.identifying or len(r.participants) != 2 or len(_entity_ends(d, r)) != 2 for r in rels):
            continue
        if any(p.entity == e.id for r in d.relationships if r not in rels for p in r.participants):
            continue
        neighbours = sorted({p.entity for r in rels for p in r.participants if p.entity != e.id})

        def build(c: EERD, eid=e.id, rids=tuple(r.id for r in rels), neighbours=tuple(neighbours)):
            ent = c.entity(eid)
            keys = [a.name for a in ent.attributes if a.key]
            rnames = _join(c.relationship(x).name for x in rids)
            c.entities = [x for x in c.entities if x.id != eid]
            c.relationships = [x for x in c.relationships if x.id not in rids]
            ident = f" (identified by {_join(keys)})" if keys else ""
            linked = _join(c.element_name(n) for n in neighbours)
            return list(neighbours), (
                f"The requirements call for {ent.name}{ident}, linked to {linked} "
                f"through {rnames}, but the diagram has neither {ent.name} nor {rnames}."
            )

        touched = {e.id, *neighbours, *[r.id for r in rels]}
        touched |= {x for a in e.attributes for x in _all_ids(a)}
        touched |= {x for r in rels for a in r.attributes for x in _all_ids(a)}
        yield _Candidate((e.id,), frozenset(touched), build)


@_operator("duplicate_attribute", "missing_element", True, "an attribute is drawn twice on the same owner")
def _duplicate_attribute(d: EERD):
    for owner in d.owners():
        for a in owner.attributes:
            new_id = _fresh_id(d, f"{a.id}_2")

            def build(c: EERD, oid=owner.id, aid=a.id, new_id=new_id):
                o = _owner(c, oid)
                copy = _reid(c, _attr(c, aid), new_id)
                copy.key = copy.partial_key = False
                o.attributes.append(copy)
                return [oid, aid, new_id], f"{o.name} lists {copy.name} twice; the second {copy.name} is redundant."

            yield _Candidate((owner.id, a.id), frozenset([owner.id, a.id, new_id]), build)


@_operator("duplicate_entity", "missing_element", True, "a strong entity is drawn a second time, unconnected")
def _duplicate_entity(d: EERD):
    for e in _strong_roots(d):
        new_id = _fresh_id(d, f"{e.id}_2")

        def build(c: EERD, eid=e.id, new_id=new_id):
            src = c.entity(eid)
            taken = set(c.element_ids()) | {new_id}
            attrs = [_reid(c, a, _unique(f"{new_id}.{_safe(a.name)}", taken), taken) for a in src.attributes]
            c.entities.append(Entity(id=new_id, name=src.name, attributes=attrs))
            return [eid, new_id], (
                f"{src.name} is drawn twice; the second, unconnected {src.name} box is redundant."
            )

        yield _Candidate((e.id,), frozenset([e.id, new_id]), build)


@_operator("duplicate_relationship", "missing_element", True, "a relationship is drawn twice between the same entities")
def _duplicate_relationship(d: EERD):
    for r in d.relationships:
        if r.identifying:
            continue
        new_id = _fresh_id(d, f"{r.id}_2")

        def build(c: EERD, rid=r.id, new_id=new_id):
            src = c.relationship(rid)
            copy = Relationship(id=new_id, name=src.name, participants=[p.model_copy() for p in src.participants])
            c.relationships.append(copy)
            ends = _join(dict.fromkeys(c.element_name(p.entity) or p.entity for p in src.participants))
            return [rid, new_id], f"{src.name} is drawn twice between {ends}; the second diamond is redundant."

        yield _Candidate((r.id,), frozenset([r.id, new_id]), build)


# -- specialization_constraint ---------------------------------------------------------------


def _spec_words(d: EERD, sp: Specialization) -> tuple[str, str]:
    return d.element_name(sp.superclass) or "?", _join(d.element_name(s) or s for s in sp.subclasses)


def _spec_candidates(d: EERD, attr: str, edit: Callable[[Specialization], object], text, min_subclasses: int = 1):
    for sp in d.specializations:
        if sp.superclass is None or getattr(sp, attr) is None or len(sp.subclasses) < min_subclasses:
            continue
        new = edit(sp)

        def build(c: EERD, sid=sp.id, new=new):
            s = next(x for x in c.specializations if x.id == sid)
            sup, subs = _spec_words(c, s)
            said = text(sup, subs, getattr(s, attr), new)
            setattr(s, attr, new)
            return [sid, s.superclass], said

        yield _Candidate((sp.id,), frozenset([sp.id, sp.superclass]), build)


def _disjoint_text(sup, subs, old, new):
    if old == "d":
        return (
            f"The requirements say {_an(sup)} can be at most one of {subs} (disjoint), but the specialization "
            "is drawn overlapping (o)."
        )
    return (
        f"The requirements say {_an(sup)} can be several of {subs} at once (overlapping), but the specialization "
        "is drawn disjoint (d)."
    )


def _complete_text(sup, subs, old, new):
    if old == "total":
        return (
            f"The requirements say every {sup} must be one of {subs} (total), but the specialization is drawn "
            "partial (single line)."
        )
    return (
        f"The requirements say {_an(sup)} need not be any of {subs} (partial), but the specialization is drawn "
        "total (double line)."
    )


@_operator("flip_disjointness", "specialization_constraint", False, "disjoint and overlapping are swapped")
def _flip_disjointness(d: EERD):
    # With a single subclass, disjoint and overlapping mean the same thing: no mistake to induce.
    return _spec_candidates(
        d, "disjointness", lambda s: "o" if s.disjointness == "d" else "d", _disjoint_text, min_subclasses=2
    )


@_operator(
    "flip_completeness",
    "specialization_constraint",
    False,
    "total and partial are swapped on a specialization or a category",
)
def _flip_completeness(d: EERD):
    yield from _spec_candidates(
        d, "completeness", lambda s: "partial" if s.completeness == "total" else "total", _complete_text
    )
    for cat in d.categories:
        if len(cat.superclasses) < 2:
            continue

        def build(c: EERD, cid=cat.id):
            k = next(x for x in c.categories if x.id == cid)
            sub = c.element_name(k.subclass)
            sups = " or ".join(c.element_name(s) or s for s in k.superclasses)
            if k.completeness == "total":
                said = (
                    f"The requirements say every {sups} is {_an(sub)} (a total category), but the category is drawn "
                    "partial (single line)."
                )
            else:
                said = (
                    f"The requirements say only some of the {sups} instances are {sub} (a partial category), but "
                    "the category is drawn total (double line)."
                )
            k.completeness = "partial" if k.completeness == "total" else "total"
            return [cid, k.subclass], said

        yield _Candidate((cat.id,), frozenset([cat.id, cat.subclass]), build)


@_operator("drop_disjointness", "specialization_constraint", True, "a specialization's d/o mark is left out")
def _drop_disjointness(d: EERD):
    def text(sup, subs, old, new):
        return (
            f"The specialization of {sup} into {subs} does not say whether it is disjoint (d) or overlapping (o)."
        )

    return _spec_candidates(d, "disjointness", lambda s: None, text, min_subclasses=2)


@_operator("drop_completeness", "specialization_constraint", True, "a specialization's total/partial is left out")
def _drop_completeness(d: EERD):
    def text(sup, subs, old, new):
        return f"The specialization of {sup} into {subs} does not say whether it is total or partial."

    return _spec_candidates(d, "completeness", lambda s: None, text)


# -- specialization_structure -------------------------------------------------------------------


def _subclass_parents(d: EERD) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for sub in sorted(d.subclass_ids()):
        out[sub] = list(dict.fromkeys(d.superclasses_of(sub)))
    return out


@_operator("subclass_own_key", "specialization_structure", True, "a subclass declares a key of its own")
def _subclass_own_key(d: EERD):
    for sub, parents in _subclass_parents(d).items():
        e = d.entity(sub)
        if e is None or e.weak or not parents:
            continue
        for a in e.attributes:
            if not _is_simple_stored(a):
                continue

            def build(c: EERD, sub=sub, aid=a.id, parents=tuple(parents)):
                at = _attr(c, aid)
                at.key = True
                keys = [k.name for p in parents for k in c.entity(p).attributes if k.key]
                inherit = f"the key {_join(keys)} it inherits" if keys else "its superclass"
                name = c.entity(sub).name
                return [sub, aid], (
                    f"{name} is a subclass of {_join(c.element_name(p) for p in parents)} but declares its own key "
                    f"{at.name}; a subclass is identified by {inherit}."
                )

            yield _Candidate((sub, a.id), frozenset([sub, a.id]), build)


@_operator(
    "subclass_repeats_inherited",
    "specialization_structure",
    True,
    "a subclass repeats an attribute it inherits",
)
def _subclass_repeats_inherited(d: EERD):
    for sub, parents in _subclass_parents(d).items():
        e = d.entity(sub)
        if e is None or not parents:
            continue
        own = {normalise(a.name) for a in e.attributes}
        for anc in ancestors(d, sub):
            for a in d.entity(anc).attributes:
                if normalise(a.name) in own:
                    continue
                new_id = _fresh_id(d, f"{sub}.{_safe(a.name)}")

                def build(c: EERD, sub=sub, anc=anc, aid=a.id, new_id=new_id):
                    copy = _reid(c, _attr(c, aid), new_id)
                    copy.key = copy.partial_key = False
                    c.entity(sub).attributes.append(copy)
                    return [new_id, aid, sub], (
                        f"{c.entity(sub).name} repeats {copy.name}, which it already inherits from "
                        f"{c.entity(anc).name}."
                    )

                yield _Candidate((sub, anc, a.id), frozenset([sub, a.id, new_id]), build)


@_operator(
    "specialization_superclass_removed",
    "specialization_structure",
    True,
    "a specialization circle is detached from its superclass",
)
def _specialization_superclass_removed(d: EERD):
    for sp in d.specializations:
        if sp.superclass is None:
            continue

        def build(c: EERD, sid=sp.id):
            s = next(x for x in c.specializations if x.id == sid)
            sup, subs = _spec_words(c, s)
            old = s.superclass
            s.superclass = None
            s.defining_attribute = None
            s.defining_values = {}
            return [sid, *s.subclasses, old], (
                f"The specialization into {subs} is not attached to its superclass {sup}, so {subs} "
                "specialize nothing."
            )

        yield _Candidate((sp.id,), frozenset([sp.id, sp.superclass, *sp.subclasses]), build)


@_operator(
    "category_single_superclass",
    "specialization_structure",
    True,
    "a category keeps only one of its superclasses",
)
def _category_single_superclass(d: EERD):
    for cat in d.categories:
        sups = list(dict.fromkeys(cat.superclasses))
        if len(sups) < 2:
            continue
        for keep in sups:

            def build(c: EERD, cid=cat.id, keep=keep):
                k = next(x for x in c.categories if x.id == cid)
                everyone = _join(c.element_name(s) or s for s in dict.fromkeys(k.superclasses))
                k.superclasses = [keep]
                return [cid, k.subclass, keep], (
                    f"The category {c.element_name(k.subclass)} is drawn with the single superclass "
                    f"{c.element_name(keep)}, but it is the union of {everyone}; a category needs at least two "
                    "superclasses."
                )

            yield _Candidate((cat.id, keep), frozenset([cat.id, cat.subclass, *sups]), build)


@_operator(
    "specialization_cycle",
    "specialization_structure",
    True,
    "a superclass is drawn as a subclass of its own subclass",
)
def _specialization_cycle(d: EERD):
    for sp in d.specializations:
        if sp.superclass is None:
            continue
        for sub in dict.fromkeys(sp.subclasses):
            if sub == sp.superclass:
                continue
            new_id = _fresh_id(d, f"SPEC_{_safe(sub)}_CYCLE")

            def build(c: EERD, sup=sp.superclass, sub=sub, new_id=new_id):
                c.specializations.append(
                    Specialization(
                        id=new_id, superclass=sub, subclasses=[sup], disjointness="d", completeness="partial"
                    )
                )
                return [sup, sub, new_id], (
                    f"{c.element_name(sup)} is drawn as a subclass of its own subclass {c.element_name(sub)}, "
                    "which makes the is-a hierarchy a cycle."
                )

            yield _Candidate((sp.id, sub), frozenset([sp.superclass, sub, new_id, sp.id]), build)


# -- registry ---------------------------------------------------------------------------

OPERATORS: tuple[Operator, ...] = tuple(
    sorted(OPERATORS_BY_NAME.values(), key=lambda o: (CATEGORIES.index(o.category), o.name))
)


def operators_for(category: str) -> list[Operator]:
    """The operators that induce ``category`` (one of :data:`r2ta.eerd.CATEGORIES`)."""
    if category not in CATEGORIES:
        from r2ta.errors import DatasetError

        raise DatasetError(f"unknown mistake category {category!r}; known: {', '.join(CATEGORIES)}")
    return [o for o in OPERATORS if o.category == category]


def get_operator(name: str) -> Operator:
    try:
        return OPERATORS_BY_NAME[name]
    except KeyError:
        from r2ta.errors import DatasetError

        known = ", ".join(sorted(OPERATORS_BY_NAME))
        raise DatasetError(f"unknown mutation operator {name!r}; known: {known}") from None
