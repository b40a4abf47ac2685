"""ERDPlus (``.erdplus``) import, both of its file formats.

There is no ERDPlus specification to cite; this module writes down the reading
it implements so that the fixtures in ``tests/fixtures/formats/`` and the tests
can be checked against it.

Older format (top-level ``shapes`` and ``connectors``)
-------------------------------------------------------
* ``shapes[i] = {"type": T, "details": {...}}`` with ``details.id`` (number or
  string, unique) and ``details.name``. ``T`` is ``Entity`` (``details.type``:
  ``regular`` | ``weak`` | ``associative``), ``Relationship``, ``Attribute`` or
  ``Label`` (free text, ignored with a warning).
* Attribute flags in ``details``: ``isUnique`` (key), ``isPartiallyUnique``
  (partial key), ``isMultivalued``, ``isDerived``, ``isComposite``,
  ``isOptional`` (dropped: E&N has no optional attributes).
* Relationship ``details.isIdentifying`` and ``details.slots``: one slot per
  participating entity, ``{"entityId": .., "participation": "mandatory" |
  "optional", "cardinality": "one" | "many", "role": ..}``; ``minimum`` /
  ``maximum`` (numbers) are read where a file has them instead.
* ``connectors[i] = {"type": "Connector" | "RelationshipConnector", "source":
  id, "destination": id}``. A connector joining an attribute to an entity, a
  relationship or another attribute (composite) places the attribute; one
  joining an entity to a relationship is the drawn line of a slot.

**Look-here.** A slot carries *the entity's own* participation and cardinality:
the slot of EMPLOYEE in WORKS_IN says whether every employee must take part
(``mandatory``) and with how many departments (``one``). That is exactly the
E&N (min,max) of EMPLOYEE, so a slot converts one to one:
``mandatory/one -> (1,1)``, ``optional/many -> (0,N)``. Nothing crosses over.
Worked example (``tests/fixtures/formats/erdplus_old_company.erdplus``): "each
employee works in exactly one department, a department has one or more
employees": slot EMPLOYEE ``mandatory/one`` -> EMPLOYEE (1,1); slot DEPARTMENT
``mandatory/many`` -> DEPARTMENT (1,N).

Newer format (top-level ``diagramType`` and ``data.nodes`` / ``data.edges``)
-----------------------------------------------------------------------------
* ``diagramType`` 1 is an ER diagram (2 is a relational schema: refused).
* Nodes ``{"id", "type", "data", "parentId"?}``: ``Entity`` with
  ``data.label`` and ``data.type`` ``Regular`` | ``Weak`` | ``Associative`` |
  ``Supertype``; a subtype has ``data.parentId`` = its supertype's node id, and
  the supertype carries ``supertypeDefinition`` (``Disjointed`` |
  ``Overlapping``) and ``totalSpecialization`` (on the node or in its data).
  ``Attribute`` with ``parentId`` (entity, relationship or composite attribute)
  and ``data.types``, a list of one-key objects (``[{"Unique": true},
  {"Multivalued": false}, ...]``; a plain object is read too) with the flags
  ``Unique``, ``Partially Unique``, ``Multivalued``, ``Optional``,
  ``Composite``, ``Derived``. ``Relationship`` with ``data.label``,
  ``isIdentifying`` and two ends ``sourceEntityDetails`` /
  ``targetEntityDetails`` = ``{"id": entity node id, "minCardinality":
  "Mandatory" | "Optional", "maxCardinality": "One" | "Many",
  "exactConstraints": {"role", "min", "max"}}``. ``Label`` nodes are ignored.
* Edges ``{"type": "Attribute" | "Relationship" | "SelfRelationship" |
  "Supertype", "source", "target", "data"?}`` repeat what the nodes say; they
  are used where a node leaves it out (an attribute without ``parentId``, a
  relationship without end details, a subtype without ``parentId``).

**Look-across.** The marks at an end are drawn crow's-foot style: the marks at
the EMPLOYEE end say how many *employees* relate to one department. So each
entity's look-here (min,max) comes from the marks at the *other* end:
``min = 1 if other.minCardinality == "Mandatory" else 0``,
``max = 1 if other.maxCardinality == "One" else N``. ``exactConstraints``
numbers sit beside the marks and are read the same way (they refine the
other entity's (min,max)); ``exactConstraints.role`` names the role of the
end's own entity. Worked example (``erdplus_new_company.erdplus``): WORKS_IN
with source EMPLOYEE ``{Mandatory, Many}`` and target DEPARTMENT ``{Mandatory,
One}`` -> EMPLOYEE (1,1) (from the DEPARTMENT end: one department per
employee), DEPARTMENT (1,N) (from the EMPLOYEE end: one or more employees per
department). Relationships in this format are binary (two ends), which keeps
the swap exact.

Both formats
------------
* Ids are generated from names (UPPER_SNAKE for entities and relationships,
  ``OWNER.Attr`` for attributes, ``SPEC_<SUPER>``), unique with a suffix; names
  keep the original text.
* Weak entities: ERDPlus marks an identifier with "Unique". When a file never
  uses the partial-identifier flag, a weak entity's unique attribute is read as
  its partial key (the only way such a file can draw one), with a warning;
  where the file does use the partial flag, "Unique" on a weak entity stays a
  full key (a modelling mistake the checker reports).
* Associative entities have no E&N counterpart: imported as regular entities
  with a warning.
* Refused with :class:`~r2ta.errors.ImportFormatError` naming the element:
  unknown shape/node/edge types, duplicate or dangling ids, attributes nested
  in a cycle or attached to two owners, values that are not what the format
  allows. An attribute attached to nothing is left out with a warning. A
  supertype cycle is a modelling mistake the model can hold: it is kept, and
  the checker reports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from r2ta.eerd import MANY, MAX_COMPONENT_DEPTH
from r2ta.errors import ImportFormatError
from r2ta.formats._common import (
    IdAllocator,
    Warnings,
    attr_token,
    check_count,
    check_name,
    diagram_id,
    short,
    upper_snake,
)

# -- the neutral graph both readers fill --------------------------------------------


@dataclass
class _Entity:
    key: str
    name: str
    weak: bool
    where: str


@dataclass
class _End:
    entity: str  # node key
    min: int
    max: int | str
    role: str | None
    where: str


@dataclass
class _Rel:
    key: str
    name: str
    identifying: bool
    ends: list[_End]
    where: str


@dataclass
class _Attr:
    key: str
    name: str
    where: str
    unique: bool = False
    partial: bool = False
    multivalued: bool = False
    derived: bool = False
    composite: bool = False
    optional: bool = False
    parent: str | None = None  # explicit owner key (newer format)


@dataclass
class _Spec:
    superclass: str
    subclasses: list[str]
    disjointness: str | None
    completeness: str
    where: str


@dataclass
class _Graph:
    name: str | None = None
    entities: list[_Entity] = field(default_factory=list)
    rels: list[_Rel] = field(default_factory=list)
    attrs: list[_Attr] = field(default_factory=list)
    links: list[tuple[str, str, str]] = field(default_factory=list)  # undirected, with where
    specs: list[_Spec] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # node key -> entity/relationship/attribute/label
    labels: dict[str, str] = field(default_factory=dict)  # node key -> where (for messages)
    has_partial_marker: bool = False


# -- small typed accessors ----------------------------------------------------------------


def _err(where: str, message: str) -> ImportFormatError:
    return ImportFormatError(f"{where}: {message}")


def _obj(value: object, where: str, what: str = "an object") -> dict:
    if not isinstance(value, dict):
        raise _err(where, f"expected {what}, found {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list:
    if not isinstance(value, list):
        raise _err(where, f"expected a list, found {type(value).__name__}")
    return value


def _node_key(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise _err(where, f"an id must be a number or a non-empty string, found {short(value)}")
    text = str(value)
    if len(text) > 200:
        raise _err(where, "an id longer than 200 characters")
    return text


def _text(obj: dict, keys: tuple[str, ...], where: str) -> str | None:
    for k in keys:
        if k in obj and obj[k] is not None:
            value = obj[k]
            if not isinstance(value, str):
                raise _err(where, f"{k} must be text, found {type(value).__name__}")
            return value
    return None


def _flag(obj: dict, keys: tuple[str, ...], where: str) -> bool:
    for k in keys:
        if k in obj and obj[k] is not None:
            value = obj[k]
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise _err(where, f"{k} must be true or false, found {short(value)}")
            return value
    return False


def _name(raw: str | None, fallback: str, where: str, w: Warnings) -> str:
    if raw is None or not raw.strip():
        w.add(f"{where} has no name; it is called {fallback!r}")
        return fallback
    return check_name(raw, where)


# -- older format -------------------------------------------------------------------------

_OLD_SHAPES = {"entity": "entity", "relationship": "relationship", "attribute": "attribute", "label": "label"}
_OLD_CONNECTORS = {"connector", "relationshipconnector"}
_ENTITY_KINDS = {"regular": False, "strong": False, "weak": True, "associative": False, "supertype": False}


def _old_min(slot: dict, where: str, w: Warnings) -> int:
    for k in ("participation", "minimum", "min"):
        if k in slot and slot[k] is not None:
            v = slot[k]
            if isinstance(v, str):
                low = v.strip().lower()
                if low in ("mandatory", "total", "one", "1"):
                    return 1
                if low in ("optional", "partial", "zero", "0"):
                    return 0
            elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1_000_000:
                return v
            raise _err(where, f"{k} must be mandatory or optional, found {short(v)}")
    w.add(f"{where} does not say whether participation is mandatory; optional (min 0) assumed")
    return 0


def _old_max(slot: dict, where: str, w: Warnings) -> int | str:
    for k in ("cardinality", "maximum", "max"):
        if k in slot and slot[k] is not None:
            v = slot[k]
            if isinstance(v, str):
                low = v.strip().lower()
                if low in ("one", "1"):
                    return 1
                if low in ("many", "n", "m", "*"):
                    return MANY
            elif isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1_000_000:
                return v
            raise _err(where, f"{k} must be one or many, found {short(v)}")
    w.add(f"{where} does not say one or many; many (max N) assumed")
    return MANY


def _read_old(doc: dict, w: Warnings) -> _Graph:
    g = _Graph()
    shapes = _list(doc.get("shapes"), "shapes")
    connectors = _list(doc.get("connectors", []), "connectors")
    check_count(len(shapes), "the ERDPlus file")
    rel_details: list[tuple[str, dict, str]] = []
    for i, raw in enumerate(shapes):
        where = f"shapes[{i}]"
        shape = _obj(raw, where, "a shape object")
        stype = shape.get("type")
        if not isinstance(stype, str) or stype.strip().lower() not in _OLD_SHAPES:
            raise _err(
                where,
                f"unknown shape type {short(stype)}; ERDPlus ER diagrams have Entity, Relationship, Attribute and Label",
            )
        kind = _OLD_SHAPES[stype.strip().lower()]
        details = _obj(shape.get("details"), f"{where}.details")
        key = _node_key(details.get("id"), f"{where}.details.id")
        where = f"shapes[{i}] ({kind} id {key})"
        if key in g.kinds:
            raise _err(where, f"id {key} is already used by {g.labels[key]}")
        g.kinds[key] = kind
        g.labels[key] = where
        raw_name = _text(details, ("name", "text", "label"), where)
        if kind == "label":
            w.add(f"{where}: free-text label {short(raw_name or '')} is not part of an ER diagram; ignored")
            continue
        if kind == "entity":
            etype = details.get("type", "regular")
            if etype is None:
                etype = "regular"
            if not isinstance(etype, str) or etype.strip().lower() not in _ENTITY_KINDS:
                raise _err(where, f"unknown entity type {short(etype)}; expected regular, weak or associative")
            etype = etype.strip().lower()
            name = _name(raw_name, f"Entity {key}", where, w)
            if etype == "associative":
                w.add(f"{where}: associative entity {name!r} has no E&N counterpart; imported as a regular entity")
            g.entities.append(_Entity(key, name, _ENTITY_KINDS[etype] or _flag(details, ("isWeak",), where), where))
        elif kind == "attribute":
            name = _name(raw_name, f"Attribute {key}", where, w)
            a = _Attr(
                key,
                name,
                where,
                unique=_flag(details, ("isUnique", "isKey", "isIdentifier"), where),
                partial=_flag(details, ("isPartiallyUnique", "isPartialUnique", "isPartialKey"), where),
                multivalued=_flag(details, ("isMultivalued", "isMultiValued"), where),
                derived=_flag(details, ("isDerived",), where),
                composite=_flag(details, ("isComposite",), where),
                optional=_flag(details, ("isOptional",), where),
            )
            if any(k in details for k in ("isPartiallyUnique", "isPartialUnique", "isPartialKey")):
                g.has_partial_marker = True
            g.attrs.append(a)
        else:
            name = _name(raw_name, f"Relationship {key}", where, w)
            rel = _Rel(key, name, _flag(details, ("isIdentifying",), where), [], where)
            g.rels.append(rel)
            rel_details.append((key, details, where))

    # Connectors: attribute placement links and drawn relationship lines.
    drawn: dict[str, list[str]] = {}
    for i, raw in enumerate(connectors):
        where = f"connectors[{i}]"
        con = _obj(raw, where, "a connector object")
        ctype = con.get("type")
        if not isinstance(ctype, str) or ctype.strip().lower() not in _OLD_CONNECTORS:
            raise _err(where, f"unknown connector type {short(ctype)}; expected Connector or RelationshipConnector")
        src = _node_key(con.get("source"), f"{where}.source")
        dst = _node_key(con.get("destination", con.get("target")), f"{where}.destination")
        for end in (src, dst):
            if end not in g.kinds:
                raise _err(where, f"joins id {end}, which is not a shape of this diagram")
        if src == dst:
            raise _err(where, f"joins shape {src} to itself")
        kinds = {g.kinds[src], g.kinds[dst]}
        if "label" in kinds:
            continue
        if kinds == {"entity", "relationship"}:
            rel, ent = (src, dst) if g.kinds[src] == "relationship" else (dst, src)
            drawn.setdefault(rel, []).append(ent)
        elif "attribute" in kinds:
            g.links.append((src, dst, where))
        else:
            raise _err(
                where,
                f"joins {g.labels[src]} and {g.labels[dst]}; a connector must join an attribute to its owner "
                "or an entity to a relationship",
            )

    rels_by_key = {r.key: r for r in g.rels}
    for key, details, where in rel_details:
        rel = rels_by_key[key]
        slots = details.get("slots")
        if slots is None or slots == []:
            for ent in drawn.get(key, []):
                rel.ends.append(_End(ent, 0, MANY, None, where))
            if rel.ends:
                w.add(f"{where}: relationship {rel.name!r} has no slots (no participation or cardinality); (0,N) assumed")
            continue
        for j, raw in enumerate(_list(slots, f"{where}.slots")):
            swhere = f"{where}.slots[{j}]"
            slot = _obj(raw, swhere, "a slot object")
            ent = slot.get("entityId", slot.get("entity", slot.get("id")))
            ent = _node_key(ent, f"{swhere}.entityId")
            if ent not in g.kinds:
                raise _err(swhere, f"names entity id {ent}, which is not a shape of this diagram")
            if g.kinds[ent] != "entity":
                raise _err(swhere, f"names {g.labels[ent]}, which is not an entity")
            role = _text(slot, ("role", "roleName"), swhere) or None
            rel.ends.append(_End(ent, _old_min(slot, swhere, w), _old_max(slot, swhere, w), role, swhere))
        listed = {e.entity for e in rel.ends}
        for ent in drawn.get(key, []):
            if ent not in listed:
                w.add(f"{where}: a connector joins {g.labels[ent]} to {rel.name!r} but no slot lists it; ignored")
    return g


# -- newer format -------------------------------------------------------------------------

_NEW_NODES = {"entity": "entity", "relationship": "relationship", "attribute": "attribute", "label": "label"}
_NEW_EDGES = {"attribute", "relationship", "selfrelationship", "supertype"}
_NEW_ENTITY_TYPES = {"regular": False, "weak": True, "associative": False, "supertype": False}
_FLAG_NAMES = {
    "unique": "unique",
    "identifier": "unique",
    "partiallyunique": "partial",
    "partialunique": "partial",
    "partialidentifier": "partial",
    "multivalued": "multivalued",
    "derived": "derived",
    "composite": "composite",
    "optional": "optional",
}


def _types(value: object, where: str, w: Warnings) -> dict[str, bool]:
    """``data.types``: ``[{"Unique": true}, ...]``, ``{"Unique": true, ...}`` or ``["Unique", ...]``."""
    pairs: list[tuple[object, object]] = []
    if value is None:
        return {}
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                pairs.extend(item.items())
            elif isinstance(item, str):
                pairs.append((item, True))
            else:
                raise _err(where, f"data.types entries must be objects or names, found {type(item).__name__}")
    else:
        raise _err(where, f"data.types must be a list, found {type(value).__name__}")
    flags: dict[str, bool] = {}
    for k, v in pairs:
        if not isinstance(k, str):
            raise _err(where, "data.types has a flag without a name")
        norm = "".join(ch for ch in k.lower() if ch.isalnum())
        if norm not in _FLAG_NAMES:
            w.add(f"{where}: unknown attribute flag {short(k)} ignored")
            continue
        if not isinstance(v, bool):
            raise _err(where, f"data.types {k} must be true or false, found {short(v)}")
        flags[_FLAG_NAMES[norm]] = flags.get(_FLAG_NAMES[norm], False) or v
        if _FLAG_NAMES[norm] == "partial":
            flags["_partial_marker"] = True
    return flags


def _mark_min(value: object, where: str, w: Warnings) -> int:
    if value is None:
        w.add(f"{where}: no minCardinality; Optional assumed")
        return 0
    if isinstance(value, str) and value.strip().lower() in ("mandatory", "optional"):
        return 1 if value.strip().lower() == "mandatory" else 0
    raise _err(where, f"minCardinality must be Mandatory or Optional, found {short(value)}")


def _mark_max(value: object, where: str, w: Warnings) -> int | str:
    if value is None:
        w.add(f"{where}: no maxCardinality; Many assumed")
        return MANY
    if isinstance(value, str) and value.strip().lower() in ("one", "many"):
        return 1 if value.strip().lower() == "one" else MANY
    raise _err(where, f"maxCardinality must be One or Many, found {short(value)}")


def _exact(details: dict, where: str) -> tuple[int | None, int | str | None, str | None]:
    ec = details.get("exactConstraints")
    if ec is None:
        return None, None, None
    ec = _obj(ec, f"{where}.exactConstraints")
    role = _text(ec, ("role",), where) or None
    lo, hi = ec.get("min"), ec.get("max")
    for k, v in (("min", lo), ("max", hi)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1_000_000):
            raise _err(where, f"exactConstraints.{k} must be a whole number, found {short(v)}")
    if hi == 0:
        raise _err(where, "exactConstraints.max is 0; a maximum must be at least 1")
    return lo, hi, role


def _read_new(doc: dict, w: Warnings) -> _Graph:
    g = _Graph()
    dtype = doc.get("diagramType")
    if isinstance(dtype, str):
        dtype = dtype.strip().lower()
    if dtype in (2, "2", "relational", "relationalschema"):
        raise ImportFormatError(
            "diagramType is 2: this ERDPlus file is a relational schema, not an ER diagram; "
            "export the ER diagram from ERDPlus instead"
        )
    if dtype not in (None, 1, "1", "er", "erd", "erdiagram"):
        raise _err("diagramType", f"unsupported value {short(doc.get('diagramType'))}; ER diagrams have 1")
    data = _obj(doc.get("data"), "data")
    nodes = _list(data.get("nodes"), "data.nodes")
    edges = _list(data.get("edges", []), "data.edges")
    check_count(len(nodes), "the ERDPlus file")
    if isinstance(doc.get("name"), str) and doc["name"].strip():
        g.name = doc["name"]

    rel_nodes: list[tuple[_Rel, dict, str]] = []
    entity_info: dict[str, tuple[dict, dict]] = {}
    for i, raw in enumerate(nodes):
        where = f"data.nodes[{i}]"
        node = _obj(raw, where, "a node object")
        ntype = node.get("type")
        if isinstance(ntype, str) and ntype.strip().lower() == "table":
            raise _err(where, "a Table node: this is a relational schema, not an ER diagram")
        if not isinstance(ntype, str) or ntype.strip().lower() not in _NEW_NODES:
            raise _err(
                where, f"unknown node type {short(ntype)}; ERDPlus ER diagrams have Entity, Relationship, Attribute and Label"
            )
        kind = _NEW_NODES[ntype.strip().lower()]
        key = _node_key(node.get("id"), f"{where}.id")
        where = f"data.nodes[{i}] ({kind} id {key!r})"
        if key in g.kinds:
            raise _err(where, f"id {key!r} is already used by {g.labels[key]}")
        g.kinds[key] = kind
        g.labels[key] = where
        ndata = _obj(node.get("data", {}), f"{where}.data")
        raw_name = _text(ndata, ("label", "name"), where)
        if kind == "label":
            w.add(f"{where}: free-text label {short(raw_name or '')} is not part of an ER diagram; ignored")
        elif kind == "entity":
            etype = ndata.get("type") or "Regular"
            if not isinstance(etype, str) or etype.strip().lower() not in _NEW_ENTITY_TYPES:
                raise _err(where, f"unknown entity type {short(etype)}; expected Regular, Weak, Associative or Supertype")
            name = _name(raw_name, f"Entity {len(g.entities) + 1}", where, w)
            if etype.strip().lower() == "associative":
                w.add(f"{where}: associative entity {name!r} has no E&N counterpart; imported as a regular entity")
            g.entities.append(_Entity(key, name, _NEW_ENTITY_TYPES[etype.strip().lower()], where))
            entity_info[key] = (node, ndata)
        elif kind == "attribute":
            name = _name(raw_name, f"Attribute {len(g.attrs) + 1}", where, w)
            flags = _types(ndata.get("types"), where, w)
            if flags.pop("_partial_marker", False):
                g.has_partial_marker = True
            parent = node.get("parentId", ndata.get("parentId"))
            a = _Attr(key, name, where, parent=None if parent is None else _node_key(parent, f"{where}.parentId"), **flags)
            g.attrs.append(a)
        else:
            name = _name(raw_name, f"Relationship {len(g.rels) + 1}", where, w)
            rel = _Rel(key, name, _flag(ndata, ("isIdentifying",), where), [], where)
            g.rels.append(rel)
            rel_nodes.append((rel, ndata, where))

    # Edges: checked for dangling ids; used where the nodes leave something out.
    rel_edges: dict[str, list[tuple[str, dict, str]]] = {}
    super_edges: list[tuple[str, str, str]] = []
    for i, raw in enumerate(edges):
        where = f"data.edges[{i}]"
        edge = _obj(raw, where, "an edge object")
        etype = edge.get("type")
        if not isinstance(etype, str) or etype.strip().lower() not in _NEW_EDGES:
            raise _err(
                where, f"unknown edge type {short(etype)}; expected Attribute, Relationship, SelfRelationship or Supertype"
            )
        etype = etype.strip().lower()
        src = _node_key(edge.get("source"), f"{where}.source")
        dst = _node_key(edge.get("target"), f"{where}.target")
        for end in (src, dst):
            if end not in g.kinds:
                raise _err(where, f"joins id {end!r}, which is not a node of this diagram")
        if src == dst:
            raise _err(where, f"joins node {src!r} to itself")
        if etype == "attribute":
            if "attribute" not in (g.kinds[src], g.kinds[dst]):
                raise _err(where, "an Attribute edge must have an attribute at one end")
            g.links.append((src, dst, where))
        elif etype == "supertype":
            if g.kinds[src] != "entity" or g.kinds[dst] != "entity":
                raise _err(where, "a Supertype edge must join two entities")
            super_edges.append((src, dst, where))
        else:
            kinds = (g.kinds[src], g.kinds[dst])
            if set(kinds) != {"relationship", "entity"}:
                raise _err(where, f"a {edge.get('type')} edge must join a relationship and an entity")
            rel, ent = (src, dst) if kinds[0] == "relationship" else (dst, src)
            edata = edge.get("data") or {}
            rel_edges.setdefault(rel, []).append((ent, _obj(edata, f"{where}.data"), where))

    for rel, ndata, where in rel_nodes:
        ends: list[tuple[str, dict, str]] = []
        for side in ("sourceEntityDetails", "targetEntityDetails"):
            details = ndata.get(side)
            if details is None:
                continue
            dwhere = f"{where}.data.{side}"
            details = _obj(details, dwhere)
            ent = _node_key(details.get("id"), f"{dwhere}.id")
            if ent not in g.kinds:
                raise _err(dwhere, f"names entity id {ent!r}, which is not a node of this diagram")
            if g.kinds[ent] != "entity":
                raise _err(dwhere, f"names {g.labels[ent]}, which is not an entity")
            ends.append((ent, details, dwhere))
        if not ends:
            ends = rel_edges.get(rel.key, [])
        if len(ends) != 2:
            w.add(
                f"{where}: relationship {rel.name!r} has {len(ends)} connected end(s) instead of 2; "
                "its cardinality marks cannot be read across and (0,N) is assumed"
            )
            for ent, details, dwhere in ends:
                lo, hi, role = _exact(details, dwhere)
                rel.ends.append(_End(ent, 0, MANY, role, dwhere))
            continue
        # Look-across: each entity's (min,max) is read from the marks at the *other* end.
        marks = []
        for ent, details, dwhere in ends:
            lo, hi, role = _exact(details, dwhere)
            mn = lo if lo is not None else _mark_min(details.get("minCardinality"), dwhere, w)
            mx = hi if hi is not None else _mark_max(details.get("maxCardinality"), dwhere, w)
            if mx != MANY and mn > mx:
                raise _err(dwhere, f"minimum {mn} is greater than maximum {mx}")
            marks.append((ent, mn, mx, role, dwhere))
        (e0, mn0, mx0, role0, w0), (e1, mn1, mx1, role1, w1) = marks
        rel.ends.append(_End(e0, mn1, mx1, role0, w0))
        rel.ends.append(_End(e1, mn0, mx0, role1, w1))

    # Specializations: subtypes name their supertype (data.parentId); Supertype edges fill gaps.
    parent_of: dict[str, list[str]] = {}
    for ent in g.entities:
        node, ndata = entity_info[ent.key]
        sup = ndata.get("parentId")
        if sup is None:
            continue
        sup = _node_key(sup, f"{ent.where}.data.parentId")
        if sup not in g.kinds or g.kinds[sup] != "entity":
            raise _err(ent.where, f"data.parentId {sup!r} is not an entity of this diagram")
        if sup == ent.key:
            raise _err(ent.where, "the entity names itself as its supertype")
        parent_of.setdefault(ent.key, []).append(sup)
    for src, dst, where in super_edges:
        src_type = str(entity_info[src][1].get("type", "")).lower()
        dst_type = str(entity_info[dst][1].get("type", "")).lower()
        if src in parent_of.get(dst, []) or dst in parent_of.get(src, []):
            continue
        sup, sub = (dst, src) if (dst_type == "supertype" and src_type != "supertype") else (src, dst)
        parent_of.setdefault(sub, []).append(sup)
    order = [e.key for e in g.entities]
    subs_of: dict[str, list[str]] = {}
    for sub in order:
        for sup in parent_of.get(sub, []):
            if sub not in subs_of.setdefault(sup, []):
                subs_of[sup].append(sub)
    for sup in order:
        if sup not in subs_of:
            continue
        node, ndata = entity_info[sup]
        sup_where = g.labels[sup]
        definition = node.get("supertypeDefinition", ndata.get("supertypeDefinition"))
        if definition is None:
            disjointness = None
            w.add(
                f"{sup_where}: supertype does not say disjoint or overlapping; "
                "the specialization is imported without it (the checker will report it)"
            )
        elif isinstance(definition, str) and definition.strip().lower() in ("disjointed", "disjoint", "d"):
            disjointness = "d"
        elif isinstance(definition, str) and definition.strip().lower() in ("overlapping", "overlap", "o"):
            disjointness = "o"
        else:
            raise _err(sup_where, f"supertypeDefinition must be Disjointed or Overlapping, found {short(definition)}")
        total = node.get("totalSpecialization", ndata.get("totalSpecialization"))
        if total is not None and not isinstance(total, bool):
            raise _err(sup_where, f"totalSpecialization must be true or false, found {short(total)}")
        g.specs.append(_Spec(sup, subs_of[sup], disjointness, "total" if total else "partial", sup_where))
    return g


# -- graph -> native diagram dict --------------------------------------------------------------


def _place_attributes(g: _Graph, w: Warnings) -> dict[str, str]:
    """Return attribute key -> owner key (entity, relationship or parent attribute)."""
    by_key = {a.key: a for a in g.attrs}
    parent: dict[str, str] = {}
    for a in g.attrs:
        if a.parent is None:
            continue
        if a.parent not in g.kinds:
            raise _err(a.where, f"parentId {a.parent!r} is not a node of this diagram")
        if g.kinds[a.parent] == "label":
            raise _err(a.where, f"parentId {a.parent!r} is a label, not an entity, relationship or attribute")
        if a.parent == a.key:
            raise _err(a.where, "the attribute names itself as its parent")
        parent[a.key] = a.parent
    owner_links: dict[str, list[str]] = {}
    neighbours: dict[str, list[str]] = {}
    for x, y, where in g.links:
        kx, ky = g.kinds[x], g.kinds[y]
        if kx == "attribute" and ky == "attribute":
            neighbours.setdefault(x, []).append(y)
            neighbours.setdefault(y, []).append(x)
        else:
            attr, owner = (x, y) if kx == "attribute" else (y, x)
            if ky in ("entity", "relationship") or kx in ("entity", "relationship"):
                if owner not in owner_links.setdefault(attr, []):
                    owner_links[attr].append(owner)
    for a in g.attrs:
        if a.key in parent:
            continue
        owners = owner_links.get(a.key, [])
        if len(owners) > 1:
            raise _err(
                a.where,
                f"attribute {a.name!r} is connected to {len(owners)} owners ({', '.join(g.labels[o] for o in owners)}); "
                "an attribute belongs to exactly one entity or relationship",
            )
        if owners:
            parent[a.key] = owners[0]
    # Attributes joined only to other attributes hang below whichever of them is placed
    # (composites); breadth-first from the placed ones, in file order.
    queue = [a.key for a in g.attrs if a.key in parent]
    head = 0
    while head < len(queue):
        cur = queue[head]
        head += 1
        for nb in neighbours.get(cur, []):
            if nb not in parent:
                parent[nb] = cur
                queue.append(nb)
    # Explicit parents may form cycles; follow every chain up to an owner.
    for a in g.attrs:
        seen = [a.key]
        cur = a.key
        while cur in parent and g.kinds[parent[cur]] == "attribute":
            cur = parent[cur]
            if cur in seen:
                cycle = seen[seen.index(cur) :]
                names = " -> ".join(by_key[k].name for k in cycle + [cur])
                raise _err(a.where, f"composite attributes form a cycle ({names}); an attribute cannot contain itself")
            seen.append(cur)
            if len(seen) > MAX_COMPONENT_DEPTH + 1:
                raise _err(a.where, f"composite attributes nest deeper than {MAX_COMPONENT_DEPTH} levels")
    unplaced = [a for a in g.attrs if a.key not in parent or _root(parent, g.kinds, a.key) is None]
    for a in unplaced:
        w.add(f"{a.where}: attribute {a.name!r} is not connected to any entity or relationship; left out")
    return {k: v for k, v in parent.items() if _root(parent, g.kinds, k) is not None}


def _root(parent: dict[str, str], kinds: dict[str, str], key: str) -> str | None:
    cur = key
    for _ in range(MAX_COMPONENT_DEPTH + 2):
        if cur not in parent:
            return None
        cur = parent[cur]
        if kinds[cur] in ("entity", "relationship"):
            return cur
    return None


def _to_native(g: _Graph, name: str | None, w: Warnings) -> dict:
    ids = IdAllocator()
    node_id: dict[str, str] = {}
    entities: list[dict] = []
    weak = {e.key for e in g.entities if e.weak}
    entity_names = {e.key: e.name for e in g.entities}
    for e in g.entities:
        node_id[e.key] = ids.claim(upper_snake(e.name, "ENTITY"))
        entities.append({"id": node_id[e.key], "name": e.name, "weak": e.weak, "attributes": []})
    rels: list[dict] = []
    for r in g.rels:
        node_id[r.key] = ids.claim(upper_snake(r.name, "RELATIONSHIP"))
    owner_dict = {e.key: d for e, d in zip(g.entities, entities)}

    parent = _place_attributes(g, w)
    attr_dict: dict[str, dict] = {}
    # File order within each owner; parents get their id before their components.
    pending = [a for a in g.attrs if a.key in parent]
    depth = {a.key: 0 for a in pending}
    for a in pending:
        d, cur = 0, a.key
        while g.kinds[parent[cur]] == "attribute":
            cur = parent[cur]
            d += 1
        depth[a.key] = d
    for a in sorted(pending, key=lambda x: depth[x.key]):
        p = parent[a.key]
        root = _root(parent, g.kinds, a.key)
        prefix = node_id[p] if g.kinds[p] != "attribute" else attr_dict[p]["id"]
        aid = ids.claim(f"{prefix}.{attr_token(a.name, 'Attr')}")
        key_flag, partial = a.unique, a.partial
        if a.unique and root in weak and not g.has_partial_marker and g.kinds[p] != "relationship":
            key_flag, partial = False, True
            w.add(
                f"{a.where}: {a.name!r} is unique within weak entity {entity_names[root]!r}: read as its "
                "partial key (this file has no partial-identifier flag)"
            )
        if a.optional:
            w.add(f"{a.where}: {a.name!r} is optional; E&N diagrams have no optional attributes, flag dropped")
        attr_dict[a.key] = {
            "id": aid,
            "name": a.name,
            "key": key_flag,
            "partial_key": partial,
            "multivalued": a.multivalued,
            "derived": a.derived,
            "components": [],
        }
    rel_dict: dict[str, dict] = {}
    for r in g.rels:
        participants = []
        for end in r.ends:
            participants.append({"entity": node_id[end.entity], "min": end.min, "max": end.max, "role": end.role})
        rd = {"id": node_id[r.key], "name": r.name, "identifying": r.identifying, "participants": participants, "attributes": []}
        rels.append(rd)
        rel_dict[r.key] = rd
    for a in g.attrs:  # attach in file order
        if a.key not in attr_dict:
            continue
        p = parent[a.key]
        kind = g.kinds[p]
        if kind == "attribute":
            attr_dict[p]["components"].append(attr_dict[a.key])
        elif kind == "entity":
            owner_dict[p]["attributes"].append(attr_dict[a.key])
        else:
            rel_dict[p]["attributes"].append(attr_dict[a.key])
    for a in g.attrs:
        if a.key in attr_dict and a.composite and not attr_dict[a.key]["components"]:
            w.add(f"{a.where}: {a.name!r} is marked composite but has no component attributes")

    specs = []
    for s in g.specs:
        sid = ids.claim(f"SPEC_{node_id[s.superclass]}")
        specs.append(
            {
                "id": sid,
                "superclass": node_id[s.superclass],
                "subclasses": [node_id[x] for x in s.subclasses],
                "disjointness": s.disjointness,
                "completeness": s.completeness,
            }
        )
    title = g.name or name or "Imported ERDPlus diagram"
    return {
        "format_version": 1,
        "id": diagram_id(g.name or name),
        "name": check_name(title, "the diagram name"),
        "entities": entities,
        "relationships": rels,
        "specializations": specs,
        "categories": [],
    }


# -- entry points --------------------------------------------------------------------------------


def erdplus_variant(data: object) -> str | None:
    """``"old"`` (shapes/connectors), ``"new"`` (diagramType, data.nodes) or ``None``."""
    if not isinstance(data, dict):
        return None
    if "shapes" in data or "connectors" in data:
        return "old"
    if "diagramType" in data or (isinstance(data.get("data"), dict) and "nodes" in data["data"]):
        return "new"
    return None


def read_erdplus(data: object, *, name: str | None = None) -> tuple[dict, list[str]]:
    """Convert a decoded ``.erdplus`` JSON document into a native diagram dict and warnings."""
    variant = erdplus_variant(data)
    if variant is None:
        raise ImportFormatError(
            "not an ERDPlus file: expected top-level 'shapes' and 'connectors' (older format) "
            "or 'diagramType' and 'data.nodes' (newer format)"
        )
    w = Warnings()
    g = _read_old(data, w) if variant == "old" else _read_new(data, w)  # type: ignore[arg-type]
    return _to_native(g, name, w), list(w)
