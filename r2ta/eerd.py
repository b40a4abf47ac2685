"""The EERD model: a typed, validated Elmasri & Navathe extended ER diagram.

Everything in R2tA (checker, mutations, rendering, prompts, import/export,
persistence) works on these classes. Conventions that the rest of the code
relies on:

* Every element (entity, relationship, attribute at any depth, specialization,
  category) has an ``id`` unique within the diagram. Ids are short, readable
  and safe (letters, digits, ``_ . - :``); *names* are free text and may hold
  anything a user types (quotes, ``<>&``, DOT syntax, newlines), so renderers
  must escape names, never ids.
* Participation constraints are (min,max) in the **look-here** convention:
  ``Participation(entity="EMPLOYEE", min=1, max=1)`` in WORKS_FOR means every
  employee works for exactly one department. ``max`` is an int or ``"N"``
  (many). Total participation is ``min >= 1``.
* The model accepts diagrams that contain *modelling mistakes* (a relationship
  with one participant, a missing key, a specialization without a superclass):
  those are the checker's business. It refuses *malformed* input (wrong types,
  duplicate ids, references to ids that do not exist, oversized content) with
  an :class:`~r2ta.errors.DiagramError` naming the element and the path.

This module must not import streamlit, torch or the database layer.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from r2ta.errors import DiagramError

FORMAT_VERSION = 1

# Limits that keep a hostile or accidental upload from exhausting memory or
# hanging the renderer. A real course diagram has a few dozen elements.
MAX_FILE_BYTES = 2_000_000
MAX_ELEMENTS = 2_000
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 20_000
MAX_COMPONENT_DEPTH = 6

ID_PATTERN = r"^[\w.:\-]{1,200}$"

MANY = "N"
Max = Union[Annotated[int, Field(ge=1)], Literal["N"]]

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]


class MistakeCategory(str, Enum):
    """The 11 mistake categories of DESIGN.md §3 (values are the stable ids)."""

    MISSING_KEY = "missing_key"
    WEAK_ENTITY = "weak_entity"
    CARDINALITY = "cardinality"
    PARTICIPATION = "participation"
    ATTRIBUTE_PLACEMENT = "attribute_placement"
    ATTRIBUTE_KIND = "attribute_kind"
    FOREIGN_KEY_ATTRIBUTE = "foreign_key_attribute"
    RELATIONSHIP_STRUCTURE = "relationship_structure"
    MISSING_ELEMENT = "missing_element"
    SPECIALIZATION_CONSTRAINT = "specialization_constraint"
    SPECIALIZATION_STRUCTURE = "specialization_structure"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in MistakeCategory)

# What a reader needs to see each mistake (DESIGN.md §3, "evidence").
CATEGORY_EVIDENCE: dict[str, str] = {
    "missing_key": "structural",
    "weak_entity": "structural + requirements",
    "cardinality": "requirements",
    "participation": "requirements",
    "attribute_placement": "structural + requirements",
    "attribute_kind": "requirements",
    "foreign_key_attribute": "structural",
    "relationship_structure": "structural + requirements",
    "missing_element": "requirements",
    "specialization_constraint": "structural + requirements",
    "specialization_structure": "structural",
}

CATEGORY_TITLES: dict[str, str] = {
    "missing_key": "Missing or invalid key",
    "weak_entity": "Weak entity modelled wrongly",
    "cardinality": "Wrong cardinality (max)",
    "participation": "Wrong participation (min)",
    "attribute_placement": "Attribute on the wrong owner",
    "attribute_kind": "Wrong attribute kind",
    "foreign_key_attribute": "Foreign key drawn as attribute",
    "relationship_structure": "Malformed relationship",
    "missing_element": "Missing or redundant element",
    "specialization_constraint": "Wrong specialization constraint",
    "specialization_structure": "Malformed specialization",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class Attribute(_Model):
    """An attribute of an entity or relationship; composite when it has components."""

    id: Id
    name: Name
    key: bool = False
    partial_key: bool = False
    multivalued: bool = False
    derived: bool = False
    components: list["Attribute"] = Field(default_factory=list)

    @property
    def composite(self) -> bool:
        return bool(self.components)


class Entity(_Model):
    id: Id
    name: Name
    weak: bool = False
    attributes: list[Attribute] = Field(default_factory=list)


class Participation(_Model):
    """One end of a relationship, with its (min,max) in the look-here convention."""

    entity: Id
    min: Annotated[int, Field(ge=0)] = 0
    max: Max = MANY
    role: Name | None = None

    @property
    def total(self) -> bool:
        return self.min >= 1

    @model_validator(mode="after")
    def _min_le_max(self) -> "Participation":
        if self.max != MANY and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Relationship(_Model):
    id: Id
    name: Name
    identifying: bool = False
    participants: list[Participation] = Field(default_factory=list)
    attributes: list[Attribute] = Field(default_factory=list)

    @property
    def degree(self) -> int:
        return len(self.participants)


class Specialization(_Model):
    """A superclass/subclass (is-a) circle: d/o and total/partial.

    ``disjointness`` or ``completeness`` being ``None`` means the diagram does
    not state it (a mistake the checker reports). ``superclass`` is ``None``
    when the circle is not attached to any superclass (also a mistake).
    ``defining_attribute`` (an attribute id of the superclass) makes it
    attribute-defined; ``defining_values`` maps subclass id to its value.
    """

    id: Id
    superclass: Id | None
    subclasses: list[Id] = Field(default_factory=list)
    disjointness: Literal["d", "o"] | None = "d"
    completeness: Literal["total", "partial"] | None = "partial"
    defining_attribute: Id | None = None
    defining_values: dict[str, Annotated[str, Field(max_length=MAX_NAME_CHARS)]] = Field(
        default_factory=dict
    )


class Category(_Model):
    """A union type: ``subclass`` is a subset of the union of ``superclasses``."""

    id: Id
    subclass: Id
    superclasses: list[Id] = Field(default_factory=list)
    completeness: Literal["total", "partial"] = "partial"


class Mistake(_Model):
    """A modelling mistake: ground truth, a checker finding, or a model's claim."""

    category: MistakeCategory
    elements: list[Annotated[str, Field(max_length=400)]] = Field(min_length=1)
    explanation: Annotated[str, Field(max_length=2_000)] = ""
    operator: str | None = None  # the mutation operator that induced it (ground truth only)

    model_config = ConfigDict(extra="forbid", use_enum_values=True)


class EERD(_Model):
    """A whole diagram. Construct with :func:`parse_diagram` for friendly errors."""

    format_version: Literal[1] = FORMAT_VERSION
    id: Id
    name: Name
    entities: list[Entity] = Field(default_factory=list)
    relationships: list[Relationship] = Field(default_factory=list)
    specializations: list[Specialization] = Field(default_factory=list)
    categories: list[Category] = Field(default_factory=list)

    # -- indexes -------------------------------------------------------------
    def entity(self, entity_id: str) -> Entity | None:
        return next((e for e in self.entities if e.id == entity_id), None)

    def relationship(self, rel_id: str) -> Relationship | None:
        return next((r for r in self.relationships if r.id == rel_id), None)

    def owners(self) -> Iterator[Entity | Relationship]:
        yield from self.entities
        yield from self.relationships

    def iter_attributes(self) -> Iterator[tuple[Entity | Relationship, Attribute, int]]:
        """Every attribute at any depth as ``(owner, attribute, depth)``; depth 0 is top level."""

        def walk(owner, attrs, depth):
            for a in attrs:
                yield owner, a, depth
                yield from walk(owner, a.components, depth + 1)

        for owner in self.owners():
            yield from walk(owner, owner.attributes, 0)

    def element_ids(self) -> dict[str, str]:
        """Map every element id to its kind (entity, relationship, attribute, ...)."""
        kinds: dict[str, str] = {}
        for e in self.entities:
            kinds[e.id] = "entity"
        for r in self.relationships:
            kinds[r.id] = "relationship"
        for _, a, _ in self.iter_attributes():
            kinds[a.id] = "attribute"
        for s in self.specializations:
            kinds[s.id] = "specialization"
        for c in self.categories:
            kinds[c.id] = "category"
        return kinds

    def element_name(self, element_id: str) -> str | None:
        for e in self.owners():
            if e.id == element_id:
                return e.name
        for _, a, _ in self.iter_attributes():
            if a.id == element_id:
                return a.name
        return None

    def subclass_ids(self) -> set[str]:
        """Entities that are a subclass in some specialization or are a category."""
        subs = {s for sp in self.specializations for s in sp.subclasses}
        subs |= {c.subclass for c in self.categories}
        return subs

    def superclasses_of(self, entity_id: str) -> list[str]:
        sups = [sp.superclass for sp in self.specializations if entity_id in sp.subclasses and sp.superclass]
        for c in self.categories:
            if c.subclass == entity_id:
                sups.extend(c.superclasses)
        return sups

    def relationships_of(self, entity_id: str) -> list[Relationship]:
        return [r for r in self.relationships if any(p.entity == entity_id for p in r.participants)]

    # -- validation of references ------------------------------------------------
    @model_validator(mode="after")
    def _check_references(self) -> "EERD":
        _validate_references(self)
        return self


Attribute.model_rebuild()


def _validate_references(d: EERD) -> None:
    seen: dict[str, str] = {}

    def claim(element_id: str, path: str) -> None:
        if element_id in seen:
            raise ValueError(f"{path}: id {element_id!r} is already used by {seen[element_id]}")
        seen[element_id] = path

    count = 0

    def walk_attrs(attrs: list[Attribute], path: str, depth: int) -> None:
        nonlocal count
        if depth > MAX_COMPONENT_DEPTH:
            raise ValueError(f"{path}: composite attributes nest deeper than {MAX_COMPONENT_DEPTH} levels")
        for i, a in enumerate(attrs):
            count += 1
            p = f"{path}[{i}] (attribute {a.id!r})"
            claim(a.id, p)
            walk_attrs(a.components, f"{p}.components", depth + 1)

    for i, e in enumerate(d.entities):
        count += 1
        p = f"entities[{i}] (entity {e.id!r})"
        claim(e.id, p)
        walk_attrs(e.attributes, f"{p}.attributes", 0)
    for i, r in enumerate(d.relationships):
        count += 1
        p = f"relationships[{i}] (relationship {r.id!r})"
        claim(r.id, p)
        walk_attrs(r.attributes, f"{p}.attributes", 0)
    for i, s in enumerate(d.specializations):
        count += 1
        claim(s.id, f"specializations[{i}] (specialization {s.id!r})")
    for i, c in enumerate(d.categories):
        count += 1
        claim(c.id, f"categories[{i}] (category {c.id!r})")
    if count > MAX_ELEMENTS:
        raise ValueError(f"the diagram has {count} elements; the limit is {MAX_ELEMENTS}")

    entity_ids = {e.id for e in d.entities}
    rel_ids = {r.id for r in d.relationships}
    for i, r in enumerate(d.relationships):
        for j, part in enumerate(r.participants):
            # A participant may (mistakenly) be another relationship; the checker reports that.
            if part.entity not in entity_ids and part.entity not in rel_ids:
                raise ValueError(
                    f"relationships[{i}] (relationship {r.id!r}).participants[{j}]: "
                    f"{part.entity!r} is not an entity of this diagram"
                )
    for i, s in enumerate(d.specializations):
        p = f"specializations[{i}] (specialization {s.id!r})"
        if s.superclass is not None and s.superclass not in entity_ids:
            raise ValueError(f"{p}.superclass: {s.superclass!r} is not an entity of this diagram")
        for j, sub in enumerate(s.subclasses):
            if sub not in entity_ids:
                raise ValueError(f"{p}.subclasses[{j}]: {sub!r} is not an entity of this diagram")
        if s.defining_attribute is not None:
            sup = d.entity(s.superclass) if s.superclass else None
            attr_ids = {a.id for a in (sup.attributes if sup else [])}
            if s.defining_attribute not in attr_ids:
                raise ValueError(
                    f"{p}.defining_attribute: {s.defining_attribute!r} is not an attribute of "
                    f"the superclass {s.superclass!r}"
                )
        for sub in s.defining_values:
            if sub not in s.subclasses:
                raise ValueError(f"{p}.defining_values: {sub!r} is not one of its subclasses")
    for i, c in enumerate(d.categories):
        p = f"categories[{i}] (category {c.id!r})"
        if c.subclass not in entity_ids:
            raise ValueError(f"{p}.subclass: {c.subclass!r} is not an entity of this diagram")
        for j, sup in enumerate(c.superclasses):
            if sup not in entity_ids:
                raise ValueError(f"{p}.superclasses[{j}]: {sup!r} is not an entity of this diagram")


# -- loading and saving ---------------------------------------------------------


def _format_validation_error(err: ValidationError, data: object, what: str) -> str:
    lines = []
    for e in err.errors()[:8]:
        loc = e.get("loc", ())
        path = _describe_path(data, loc)
        msg = e.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        lines.append(f"{path}: {msg}" if path else msg)
    more = len(err.errors()) - 8
    if more > 0:
        lines.append(f"... and {more} more problem(s)")
    return f"invalid {what}:\n  " + "\n  ".join(lines)


def _describe_path(data: object, loc: tuple) -> str:
    """Render a pydantic location, naming elements by id where the data has one."""
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(step, int):
            label = f"[{step}]"
            try:
                node = node[step]  # type: ignore[index]
                if isinstance(node, dict) and isinstance(node.get("id"), str):
                    label += f" ({node['id'][:60]!r})"
            except (IndexError, KeyError, TypeError):
                node = None
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(step))
            try:
                node = node.get(step) if isinstance(node, dict) else None  # type: ignore[union-attr]
            except AttributeError:
                node = None
    return "".join(parts)


def parse_diagram(data: object) -> EERD:
    """Validate a decoded JSON object as an :class:`EERD` or raise :class:`DiagramError`."""
    if not isinstance(data, dict):
        raise DiagramError(f"a diagram must be a JSON object, got {type(data).__name__}")
    version = data.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise DiagramError(
            f"unsupported format_version {version!r}; this version of R2tA reads version {FORMAT_VERSION}"
        )
    try:
        return EERD.model_validate(data)
    except ValidationError as err:
        raise DiagramError(_format_validation_error(err, data, "diagram")) from None


def loads_json(text: str | bytes, what: str = "diagram file") -> object:
    """Decode JSON with a size limit and a message that says where it broke."""
    if len(text) > MAX_FILE_BYTES:
        raise DiagramError(
            f"the {what} is {len(text):,} bytes; the limit is {MAX_FILE_BYTES:,} bytes"
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DiagramError(f"the {what} is not UTF-8 text (byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DiagramError(
            f"the {what} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        ) from None
    except RecursionError:
        raise DiagramError(f"the {what} nests too deeply to be a diagram") from None


def diagram_from_json(text: str | bytes) -> EERD:
    return parse_diagram(loads_json(text))


def diagram_to_json(diagram: EERD, indent: int | None = 2) -> str:
    """Canonical JSON: field order fixed by the model and defaults left out, so equal diagrams give equal text."""
    data = {"format_version": FORMAT_VERSION, **diagram.model_dump(mode="json", exclude_defaults=True)}
    return json.dumps(data, indent=indent, ensure_ascii=False)


def diagram_to_dict(diagram: EERD) -> dict:
    return json.loads(diagram_to_json(diagram, indent=None))


def read_diagram(path: str | Path) -> EERD:
    """Read a native R2tA JSON diagram file (a bare diagram or a base schema with a ``diagram`` key)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DiagramError(f"cannot read {path}: {err.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise DiagramError(f"{path} is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} bytes")
    data = loads_json(path.read_bytes(), what=f"file {path.name}")
    if isinstance(data, dict) and "diagram" in data and "entities" not in data:
        data = data["diagram"]
    return parse_diagram(data)


def json_schema() -> dict:
    """The published JSON Schema of the diagram format (written to ``assets/eerd.schema.json``)."""
    schema = EERD.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "R2tA EERD diagram"
    schema["description"] = (
        "An extended entity-relationship diagram (Elmasri & Navathe notation). "
        "Participation constraints are (min,max) look-here; max is an integer or 'N'."
    )
    return schema
