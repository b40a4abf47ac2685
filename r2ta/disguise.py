"""Disguised variants: the same diagram and mistakes under fresh names, so a row cannot be recalled.

The 600 variants are mutations of 12 base schemas. A construct is correct in most
variants of its schema, so a small model trained on them can learn "AIRPORT has
key Airport_code" by name and write it without reading the line that says
``key none`` (run64e read its 0 of 20 defect facts that way). run64n trained on
disguised rows and found recall was not the cause: the model writes the *usual*
fact (a key, the first attribute as the key, two ends) whatever the names, and
trained only on made-up names it names real rows badly (grounding 0.50; see
docs/measured/loop-run64n-disguised-2026-12-06.txt). A disguised variant
renames every content word of every name -- entities, relationships,
attributes, roles, defining values -- to a made-up word, the same way
everywhere in the row: the diagram, the requirements narrative and the
ground truth. The order of entities, relationships, specializations and
categories is shuffled too, and so is each owner's list of attributes. Structure,
mistakes and what the checker finds stay exactly the same; only recall by name
or position is gone.

Words are renamed token by token (``[A-Za-z]+``), so ``Branch_no`` becomes
``Kelovu_no`` in the diagram and "a branch number (Branch_no)" becomes "a kelovu
zadime (Kelovu_no)" in the narrative. English function words and the words the
narrative states constraints with ("each", "exactly", "made", "unique", ...)
are never renamed, so the requirements still say what they said. Case is kept
(BANK -> KAVO, Bank -> Kavo), a plural follows its singular (branches ->
kelovus), and a made-up word never ends in ``s`` and never equals a word already
in the row, so the renaming is one-to-one and ids stay unique.

Deterministic: ``disguise_variant(v, seed)`` gives the same bytes on every machine.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from r2ta.eerd import EERD, Attribute, Mistake, parse_diagram
from r2ta.errors import DatasetError
from r2ta.records import Variant

# Never renamed: function words, and the words a narrative states constraints with.
KEEP_WORDS = frozenset(
    """
    a an the and or nor but not no none never neither either both each every any all some
    of on in at as by for to from into onto with within without per via than then since until
    is are was were be been being has have had do does did can could may might must shall should will would
    it its this that these those which who whom whose what when where while how why
    one two three four five six seven eight nine ten many more most least few only exactly
    own owns also other same such there their they them he she his her we our you your
    made make makes kept held acts act up out off over under away home yet once
    key keys partial total unique identified identifies identify weak derived computed stored
    multivalued composite value values number numbers id
    """.split()
)

_TOKEN = re.compile(r"[A-Za-z]+")
_AN = re.compile(r"\b([Aa])n ([A-Za-z]+)\b")
_CONSONANTS = "bdfgklmnprtvz"
_VOWELS = "aeiou"


def _words(text: str) -> set[str]:
    return {t.lower() for t in _TOKEN.findall(text)}


def _name_words(diagram: EERD) -> set[str]:
    """Content words of every name in the diagram (what the renaming covers)."""
    names: list[str] = [diagram.name]
    names += [o.name for o in diagram.owners()]
    names += [a.name for _, a, _ in diagram.iter_attributes()]
    names += [p.role for r in diagram.relationships for p in r.participants if p.role]
    names += [v for s in diagram.specializations for v in s.defining_values.values()]
    words = set()
    for n in names:
        words |= _words(n)
    return {w for w in words if w not in KEEP_WORDS and len(w) > 1}


def _singular(word: str, vocabulary: set[str]) -> str | None:
    """The singular of a plural ``word`` when that singular is itself in ``vocabulary``."""
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(suffix) and word[: -len(suffix)] + repl in vocabulary:
            return word[: -len(suffix)] + repl
    return None


def _made_up(rng: random.Random, taken: set[str]) -> str:
    """A pronounceable made-up word, starting with a consonant and ending in a vowel (so never in 's'),
    not in ``taken``."""
    while True:
        n = rng.choice((2, 3, 3))
        w = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(n))
        if w not in taken:
            taken.add(w)
            return w


class Renaming:
    """A one-to-one word map for one row, applied token by token with case kept."""

    def __init__(self, words: Iterable[str], avoid: set[str], rng: random.Random):
        vocabulary = set(words)
        taken = set(avoid) | vocabulary
        self.map: dict[str, str] = {}
        for w in sorted(vocabulary, key=lambda w: (len(w), w)):  # singulars before plurals
            base = _singular(w, vocabulary)
            self.map[w] = self.map[base] + "s" if base in self.map else _made_up(rng, taken)

    def _token(self, m: re.Match) -> str:
        t = m.group(0)
        low = t.lower()
        new = self.map.get(low)
        if new is None:
            base = _singular(low, set(self.map))
            if base is None:
                return t
            new = self.map[base] + "s"
        if t.isupper() and len(t) > 1:
            return new.upper()
        if t[0].isupper():
            return new[0].upper() + new[1:]
        return new

    def text(self, text: str) -> str:
        out = _TOKEN.sub(self._token, text)
        # "an address" became "an nutope": made-up words start with a consonant
        made_up = set(self.map.values())
        return _AN.sub(
            lambda m: f"{m.group(1)} {m.group(2)}" if m.group(2).lower().removesuffix("s") in made_up else m.group(0),
            out,
        )


def _rename_attr(a: Attribute, r: Renaming) -> dict:
    d = a.model_dump(mode="json")
    d["id"], d["name"] = r.text(a.id), r.text(a.name)
    d["components"] = [_rename_attr(c, r) for c in a.components]
    return d


def _rename_diagram(diagram: EERD, r: Renaming, rng: random.Random | None, shuffle_attributes: bool) -> EERD:
    data = diagram.model_dump(mode="json")
    data["name"] = r.text(diagram.name)
    data["entities"] = [
        {**e.model_dump(mode="json"), "id": r.text(e.id), "name": r.text(e.name),
         "attributes": [_rename_attr(a, r) for a in e.attributes]}
        for e in diagram.entities
    ]
    data["relationships"] = [
        {**rel.model_dump(mode="json"), "id": r.text(rel.id), "name": r.text(rel.name),
         "attributes": [_rename_attr(a, r) for a in rel.attributes],
         "participants": [
             {**p.model_dump(mode="json"), "entity": r.text(p.entity), "role": r.text(p.role) if p.role else p.role}
             for p in rel.participants
         ]}
        for rel in diagram.relationships
    ]
    data["specializations"] = [
        {**s.model_dump(mode="json"), "id": r.text(s.id),
         "superclass": r.text(s.superclass) if s.superclass else s.superclass,
         "subclasses": [r.text(x) for x in s.subclasses],
         "defining_attribute": r.text(s.defining_attribute) if s.defining_attribute else s.defining_attribute,
         "defining_values": {r.text(k): r.text(v) for k, v in s.defining_values.items()}}
        for s in diagram.specializations
    ]
    data["categories"] = [
        {**c.model_dump(mode="json"), "id": r.text(c.id), "subclass": r.text(c.subclass),
         "superclasses": [r.text(x) for x in c.superclasses]}
        for c in diagram.categories
    ]
    if rng is None:
        return parse_diagram(data)
    for key in ("entities", "relationships", "specializations", "categories"):
        rng.shuffle(data[key])
    if shuffle_attributes:
        for owner in data["entities"] + data["relationships"]:
            _shuffle_attrs(owner["attributes"], rng)
    return parse_diagram(data)


def _shuffle_attrs(attrs: list[dict], rng: random.Random) -> None:
    rng.shuffle(attrs)
    for a in attrs:
        _shuffle_attrs(a["components"], rng)


def _renaming(variant: Variant, seed: int) -> tuple[Renaming, random.Random]:
    rng = random.Random(f"{seed}:{variant.id}")
    avoid = _words(variant.requirements) | _words(" ".join(m.explanation for m in variant.mistakes))
    return Renaming(_name_words(variant.diagram), avoid, rng), rng


def renaming_for(variant: Variant, seed: int = 0) -> Renaming:
    """The word map :func:`disguise_variant` uses for ``variant`` (the original, undisguised row)."""
    return _renaming(variant, seed)[0]


def rename_diagram(diagram: EERD, renaming: Renaming) -> EERD:
    """``diagram`` under ``renaming``, order kept: e.g. a variant's base schema as its disguised row would name it."""
    return _rename_diagram(diagram, renaming, None, False)


def disguise_variant(variant: Variant, seed: int = 0, *, shuffle_attributes: bool = True) -> Variant:
    """``variant`` under fresh names and a shuffled construct order; same structure and mistakes.

    ``shuffle_attributes`` also shuffles each entity's and relationship's attributes (and a composite's
    components): in the base schemas the key is the first attribute (run64n's model wrote
    ``key <first attribute>`` where no key is drawn; run64n2, trained with the attributes shuffled, still
    writes a key there: docs/measured/loop-run64n-disguised-2026-12-06.txt).
    """
    renaming, rng = _renaming(variant, seed)
    diagram = _rename_diagram(variant.diagram, renaming, rng, shuffle_attributes)
    mistakes = [
        Mistake.model_validate(
            {**m.model_dump(mode="json"), "elements": [renaming.text(e) for e in m.elements],
             "explanation": renaming.text(m.explanation)}
        )
        for m in variant.mistakes
    ]
    known = set(diagram.element_ids())
    for m in mistakes:
        lost = [e for e in m.elements if e not in known]
        if lost:  # a mistake naming something that is not in the diagram would be unlearnable
            raise DatasetError(f"disguising {variant.id} lost the mistake's elements {lost}")
    return variant.model_copy(
        update={"requirements": renaming.text(variant.requirements), "diagram": diagram, "mistakes": mistakes}
    )


def disguise_variants(
    variants: list[Variant], split: str, seed: int = 0, *, shuffle_attributes: bool = True
) -> list[Variant]:
    """Disguise the variants of ``split`` ("train", "test" or "all"); others are returned as they are."""
    if split not in ("train", "test", "all"):
        raise DatasetError(f"unknown split to disguise {split!r}: use train, test or all")
    return [
        disguise_variant(v, seed, shuffle_attributes=shuffle_attributes) if split in ("all", v.split) else v
        for v in variants
    ]
