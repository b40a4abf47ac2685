"""Pieces every importer shares: safe ids, warnings, size/encoding checks, final validation.

An importer turns a foreign file into the native diagram *dict* and a list of
warnings; :func:`finish` validates that dict through :func:`r2ta.eerd.parse_diagram`,
so nothing half-converted ever leaves this package. Importers raise
:class:`~r2ta.errors.ImportFormatError` (never anything else on bad input) with a
message naming the element or the line and column.

This module must not import streamlit or anything heavier than the model.
"""

from __future__ import annotations

import re
import unicodedata

from r2ta.eerd import EERD, MAX_ELEMENTS, MAX_FILE_BYTES, MAX_NAME_CHARS, parse_diagram
from r2ta.errors import DiagramError, ImportFormatError

# A line longer than this is not a hand-written diagram (the longest legitimate one is
# a 200-character name with every character escaped); refusing it early keeps the
# line-oriented parsers' regular expressions fast on hostile input.
MAX_LINE_CHARS = 4_000
# Non-blank lines a text diagram may have: MAX_ELEMENTS declarations plus their links and
# block ends fit many times over; beyond it the file is refused before any parsing.
MAX_LINES = 20_000
MAX_WARNINGS = 100

# Unicode categories that Python's ``\w`` and the Rust regex behind pydantic's ``\w``
# both accept: ids built from them always pass ``ID_PATTERN``.
_ID_CATEGORIES = {"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"}


def _id_chars(text: str, keep: str = "_", tidy: bool = True) -> str:
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch if (ch.isalnum() or ch in keep) else "_")
        else:
            out.append(ch if unicodedata.category(ch) in _ID_CATEGORIES else "_")
    joined = "".join(out)
    return re.sub(r"_+", "_", joined).strip("_") if tidy else joined


def upper_snake(text: str, fallback: str) -> str:
    """``"Works for"`` -> ``WORKS_FOR``; entity and relationship ids (ARCHITECTURE.md)."""
    return _id_chars(_id_chars(text).upper())[:80] or fallback


def attr_token(text: str, fallback: str) -> str:
    """``"Birth date"`` -> ``Birth_date``: the last part of an attribute id, case kept."""
    return _id_chars(text)[:80] or fallback


def code_token(text: str, fallback: str, keep: str = "_.") -> str:
    """A format's own identifier (PlantUML code) kept as it is where it is already safe."""
    return _id_chars(text, keep=keep, tidy=False)[:120] or fallback


class IdAllocator:
    """Hands out ids unique within one diagram, adding ``_2``, ``_3`` ... on a clash."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def claim(self, wanted: str) -> str:
        candidate, n = wanted, 2
        while candidate in self.used:
            candidate = f"{wanted}_{n}"
            n += 1
        self.used.add(candidate)
        return candidate


class Warnings(list):
    """What the import could not express; deduplicated and capped so a hostile file cannot flood it."""

    def add(self, message: str) -> None:
        if message in self:
            return
        if len(self) < MAX_WARNINGS:
            self.append(message)
        elif len(self) == MAX_WARNINGS:
            self.append("... further warnings left out")


def short(value: object, limit: int = 60) -> str:
    """A user value quoted for a message, cut so a 1 MB name does not become a 1 MB message."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text) if isinstance(value, str) else text


def check_count(count: int, what: str) -> None:
    """Refuse a diagram with more elements than the model allows before converting any of it."""
    if count > MAX_ELEMENTS:
        raise ImportFormatError(
            f"{what} has {count:,} elements; the limit is {MAX_ELEMENTS:,} (a course diagram has a few dozen)"
        )


def check_name(name: str, what: str) -> str:
    """Names longer than the model allows are refused; say which element, not a JSON path."""
    if len(name) > MAX_NAME_CHARS:
        raise ImportFormatError(
            f"{what}: the name is {len(name):,} characters long; the limit is {MAX_NAME_CHARS}"
        )
    return name


def decode_text(data: str | bytes, what: str = "file") -> str:
    """Bytes -> text with the size limit, refusing binary content with the offending byte."""
    if len(data) > MAX_FILE_BYTES:
        raise ImportFormatError(
            f"the {what} is {len(data):,} bytes; the limit is {MAX_FILE_BYTES:,} bytes"
        )
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ImportFormatError(
                f"the {what} is not UTF-8 text (undecodable byte at offset {err.start}); "
                "is it a binary file?"
            ) from None
    if data.startswith("\ufeff"):
        data = data[1:]
    if "\x00" in data:
        raise ImportFormatError(
            f"the {what} contains NUL characters (offset {data.index(chr(0))}); it is a binary file, not a diagram"
        )
    return data


def split_lines(text: str) -> list[str]:
    """Lines of a text format, refusing absurdly long ones (see ``MAX_LINE_CHARS``)."""
    lines = text.split("\n")
    filled = 0
    for i, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise ImportFormatError(
                f"line {i} is {len(line):,} characters long (limit {MAX_LINE_CHARS:,}); this is not a diagram file"
            )
        if line.strip():
            filled += 1
            if filled > MAX_LINES:
                raise ImportFormatError(
                    f"the file has more than {MAX_LINES:,} lines (line {i}); a course diagram has a few hundred"
                )
    return [line.rstrip("\r") for line in lines]


def finish(data: dict, what: str) -> EERD:
    """Validate the converted diagram; a failure here is reported as an import error."""
    try:
        return parse_diagram(data)
    except DiagramError as err:
        raise ImportFormatError(f"the {what} converts to an invalid diagram: {err}") from None


def diagram_id(name: str | None, fallback: str = "imported") -> str:
    return _id_chars(name or "").lower()[:60] or fallback
