"""Base schemas set B (movie_rental, bank, online_shop, sports_league, conference, hotel).

Each file must load, keep its narrative in the 150-400 word range, be
structurally sound by the base-schema rules, and keep the EER constructs it was
written to teach (so the 12-schema set covers every construct at least twice).
"""

from __future__ import annotations

import json
import re

import pytest

from r2ta.eerd import diagram_to_dict
from r2ta.records import SCHEMAS_DIR, load_base_schema

SET_B = ["movie_rental", "bank", "online_shop", "sports_league", "conference", "hotel"]


@pytest.fixture(scope="module", params=SET_B)
def schema(request):
    return load_base_schema(SCHEMAS_DIR / f"{request.param}.json")


def _norm(name: str) -> str:
    return re.sub(r"[_\s]", "", name).lower()


def test_file_id_matches_diagram_id(schema):
    assert schema.diagram.id == schema.id


def test_diagram_is_stored_in_canonical_form(schema):
    on_disk = json.loads((SCHEMAS_DIR / f"{schema.id}.json").read_text(encoding="utf-8"))
    assert on_disk["diagram"] == diagram_to_dict(schema.diagram)


def test_requirements_name_every_element(schema):
    """A deleted or renamed element must be detectable from the text alone."""
    text = " ".join(schema.requirements.lower().replace("_", " ").split())
    d = schema.diagram
    names = [o.name for o in d.owners()] + [a.name for _, a, _ in d.iter_attributes()]
    names += [p.role for r in d.relationships for p in r.participants if p.role]
    names += [v for sp in d.specializations for v in sp.defining_values.values()]
    missing = [n for n in names if not re.search(rf"\b{re.escape(n.lower().replace('_', ' '))}\b", text)]
    assert not missing, f"{schema.id}: requirements never mention {missing}"


def test_narrative_word_count_in_range(schema):
    words = len(schema.requirements.split())
    assert 150 <= words <= 400, f"{schema.id}: {words} words"


def test_teachable_size(schema):
    d = schema.diagram
    n_attrs = sum(1 for _ in d.iter_attributes())
    assert 5 <= len(d.entities) <= 10
    assert 5 <= len(d.relationships) <= 9
    assert 20 <= n_attrs <= 40


def test_every_relationship_participant_is_an_entity(schema):
    d = schema.diagram
    entity_ids = {e.id for e in d.entities}
    for r in d.relationships:
        assert len(r.participants) >= 2, r.id
        for p in r.participants:
            assert p.entity in entity_ids, f"{r.id}: {p.entity} is not an entity"


def test_unary_relationships_have_two_distinct_roles(schema):
    for r in schema.diagram.relationships:
        ents = [p.entity for p in r.participants]
        if len(set(ents)) < len(ents):
            roles = [p.role for p in r.participants]
            assert None not in roles and len(set(roles)) == len(roles), r.id


def test_keys_of_strong_and_weak_entities(schema):
    d = schema.diagram
    subs = d.subclass_ids()
    for e in d.entities:
        keys = [a for a in e.attributes if a.key]
        partial = [a for a in e.attributes if a.partial_key]
        if e.weak:
            assert not keys and partial, e.id
            owners = [
                p.entity
                for r in d.relationships
                if r.identifying and any(q.entity == e.id and (q.min, q.max) == (1, 1) for q in r.participants)
                for p in r.participants
                if p.entity != e.id
            ]
            assert owners, f"{e.id} has no identifying relationship with (1,1)"
        elif e.id in subs:
            assert not keys and not partial, f"subclass/category {e.id} declares a key"
        else:
            assert len(keys) == 1, f"{e.id} has {len(keys)} keys"
            assert not keys[0].multivalued and not keys[0].derived, e.id
    for r in d.relationships:
        if r.identifying:
            assert any(d.entity(p.entity).weak for p in r.participants), r.id


def test_no_foreign_key_attributes(schema):
    d = schema.diagram
    for r in d.relationships:
        for p in r.participants:
            own = {_norm(a.name) for a in d.entity(p.entity).attributes}
            for q in r.participants:
                if q.entity == p.entity:
                    continue
                other = d.entity(q.entity)
                keys = [a.name for a in other.attributes if a.key]
                banned = {_norm(k) for k in keys} | {_norm(other.name + "_id")}
                banned |= {_norm(other.name + k) for k in keys}
                assert not (own & banned), f"{p.entity} repeats the key of {q.entity} ({r.id})"


def test_specializations_and_categories_are_well_formed(schema):
    d = schema.diagram

    def inherited(eid: str, seen: tuple = ()) -> set[str]:
        out: set[str] = set()
        for sup in d.superclasses_of(eid):
            assert sup not in seen, f"cycle through {sup}"
            out |= {a.name for a in d.entity(sup).attributes} | inherited(sup, seen + (sup,))
        return out

    for sp in d.specializations:
        assert sp.superclass and len(sp.subclasses) >= 2, sp.id
        assert sp.disjointness in ("d", "o") and sp.completeness in ("total", "partial"), sp.id
    for c in d.categories:
        assert len(c.superclasses) >= 2, c.id
    for sub in d.subclass_ids():
        clash = {a.name for a in d.entity(sub).attributes} & inherited(sub)
        assert not clash, f"{sub} repeats inherited {clash}"


def test_structural_checker_finds_nothing(schema):
    checker = pytest.importorskip("r2ta.checker")
    assert checker.check(schema.diagram) == []


# -- constructs each schema was written to carry ----------------------------------


def _load(sid):
    return load_base_schema(SCHEMAS_DIR / f"{sid}.json").diagram


def _attr(d, attr_id):
    return next(a for _, a, _ in d.iter_attributes() if a.id == attr_id)


def test_movie_rental_constructs():
    d = _load("movie_rental")
    rental = d.relationship("RENTAL")
    assert {p.entity for p in rental.participants} == {"CUSTOMER", "COPY", "EMPLOYEE"}
    assert [a.name for a in rental.attributes][:1] == ["Rental_date"]
    assert d.entity("COPY").weak and _attr(d, "COPY.Copy_no").partial_key
    assert d.relationship("COPY_OF").identifying
    assert [a.name for a in d.relationship("ACTS_IN").attributes] == ["Character"]
    assert _attr(d, "MOVIE.Genres").multivalued
    assert _attr(d, "MOVIE.Number_of_copies").derived


def test_bank_constructs():
    d = _load("bank")
    assert d.entity("BRANCH").weak and _attr(d, "BRANCH.Branch_no").partial_key
    assert d.entity("LOAN_PAYMENT").weak
    (sp,) = d.specializations
    assert (sp.superclass, sp.disjointness, sp.completeness) == ("ACCOUNT", "d", "total")
    assert sp.defining_attribute == "ACCOUNT.Account_type"
    assert set(sp.defining_values) == {"SAVINGS", "CHECKING"}
    (cat,) = d.categories
    assert cat.subclass == "CUSTOMER" and set(cat.superclasses) == {"PERSON", "COMPANY"}
    assert _attr(d, "BRANCH.Address").composite
    assert _attr(d, "LOAN.Remaining_balance").derived


def test_online_shop_constructs():
    d = _load("online_shop")
    refers = d.relationship("REFERS")
    assert {p.entity for p in refers.participants} == {"CUSTOMER"}
    assert {p.role for p in refers.participants} == {"referrer", "referred"}
    supplies = d.relationship("SUPPLIES")
    assert {p.entity for p in supplies.participants} == {"SUPPLIER", "PRODUCT", "WAREHOUSE"}
    assert [a.name for a in supplies.attributes] == ["Quantity"]
    contains = d.relationship("CONTAINS")
    assert [p.max for p in contains.participants] == ["N", "N"]
    assert _attr(d, "ORDER.Order_total").derived
    assert _attr(d, "CUSTOMER.Phones").multivalued


def test_sports_league_constructs():
    d = _load("sports_league")
    specs = {sp.id: sp for sp in d.specializations}
    person = specs["SPEC_PERSON"]
    assert set(person.subclasses) == {"PLAYER", "COACH", "REFEREE"}
    assert (person.disjointness, person.completeness) == ("o", "partial")
    # the lattice: PLAYER_COACH is a subclass in two specializations
    assert set(d.superclasses_of("PLAYER_COACH")) == {"PLAYER", "COACH"}
    plays = d.relationship("PLAYS_FOR")
    assert {p.entity for p in plays.participants} == {"PLAYER", "TEAM", "SEASON"}
    assert [a.name for a in plays.attributes] == ["Jersey_number"]
    to_team = [r.id for r in d.relationships if {p.entity for p in r.participants} == {"MATCH", "TEAM"}]
    assert sorted(to_team) == ["AWAY_TEAM", "HOME_TEAM"]
    assert _attr(d, "TEAM.Home_ground").composite


def test_conference_constructs():
    d = _load("conference")
    (sp,) = d.specializations
    assert (sp.superclass, set(sp.subclasses), sp.disjointness) == ("PERSON", {"AUTHOR", "REVIEWER"}, "o")
    reviews = d.relationship("REVIEWS")
    assert [p.max for p in reviews.participants] == ["N", "N"]
    assert {a.name for a in reviews.attributes} == {"Score", "Comments"}
    assert d.entity("SESSION").weak and d.relationship("SESSION_OF").identifying
    cites = d.relationship("CITES")
    assert {p.entity for p in cites.participants} == {"PAPER"}
    assert {p.role for p in cites.participants} == {"citing", "cited"}
    assert _attr(d, "PAPER.Keywords").multivalued


def test_hotel_constructs():
    d = _load("hotel")
    assert d.entity("ROOM").weak and _attr(d, "ROOM.Room_no").partial_key
    (cat,) = d.categories
    assert cat.subclass == "PAYER" and set(cat.superclasses) == {"GUEST", "COMPANY"}
    booking = d.relationship("BOOKING")
    assert {p.entity for p in booking.participants} == {"GUEST", "ROOM", "PAYER"}
    assert _attr(d, "BOOKING.Number_of_nights").derived
    assert _attr(d, "HOTEL.Amenities").multivalued
    (sp,) = d.specializations
    assert (sp.superclass, sp.disjointness, sp.completeness) == ("ROOM", "d", "partial")
