"""Reading and writing diagrams in foreign formats (ERDPlus, PlantUML Chen, Mermaid).

``read_any(path, fmt=None)`` is what ``r2ta check``, ``r2ta render`` and the app use:
it detects the format from the content unless ``fmt`` is given and returns a
validated :class:`~r2ta.eerd.EERD`, or raises :class:`~r2ta.errors.ImportFormatError`
(a :class:`~r2ta.errors.DiagramError`) that says what is wrong and where.
``import_text`` / ``import_file`` also return the warnings: what the source format
could not express, or what the import had to assume.

Formats (``FORMATS``): ``json`` (native R2tA, a bare diagram or a base schema with a
``diagram`` key), ``erdplus`` (both ERDPlus file formats, see
:mod:`r2ta.formats.erdplus`), ``plantuml`` (``@startchen``, see
:mod:`r2ta.formats.plantuml`), ``mermaid`` (``erDiagram``, see
:mod:`r2ta.formats.mermaid`). Every result is validated through
:func:`r2ta.eerd.parse_diagram`: nothing half-imported is ever returned.

This package must not import streamlit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from r2ta.eerd import EERD, MAX_FILE_BYTES, parse_diagram
from r2ta.errors import DiagramError, ImportFormatError
from r2ta.formats._common import decode_text

FORMATS: tuple[str, ...] = ("json", "erdplus", "plantuml", "mermaid")

_ALIASES = {
    "json": "json",
    "r2ta": "json",
    "native": "json",
    "erdplus": "erdplus",
    "plantuml": "plantuml",
    "puml": "plantuml",
    "chen": "plantuml",
    "mermaid": "mermaid",
    "mmd": "mermaid",
}


@dataclass(frozen=True)
class ImportResult:
    """A converted diagram, the format it came from, and what the conversion could not express."""

    diagram: EERD
    format: str
    warnings: list[str] = field(default_factory=list)


def normalize_format(fmt: str | None) -> str | None:
    if fmt is None:
        return None
    key = fmt.strip().lower()
    if key not in _ALIASES:
        raise ImportFormatError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return _ALIASES[key]


def _json_kind(data: object) -> str:
    from r2ta.formats.erdplus import erdplus_variant

    if erdplus_variant(data):
        return "erdplus"
    if isinstance(data, dict) and ({"entities", "format_version", "relationships"} & data.keys() or "diagram" in data):
        return "json"
    raise ImportFormatError(
        "this JSON is neither an R2tA diagram (no 'entities'/'format_version') nor an ERDPlus file "
        "(no 'shapes' or 'data.nodes')"
    )


def _unclosed(text: str) -> bool:
    """True when JSON brackets are still open at the end (strings skipped): a cut-off file."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return in_string or depth > 0


def _loads(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        truncated = err.pos >= len(text.rstrip()) or _unclosed(text)
        hint = " (the file looks truncated: brackets are still open at its end)" if truncated else ""
        raise ImportFormatError(
            f"not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}{hint}"
        ) from None
    except RecursionError:
        raise ImportFormatError("the JSON nests too deeply to be a diagram") from None


def _first_words(text: str) -> str:
    """The first line that is not blank, a comment or Mermaid front matter."""
    lines = text.split("\n", 400)[:400]
    in_front = False
    for i, raw in enumerate(lines):
        line = raw.strip()
        if i == 0 and line == "---":
            in_front = True
            continue
        if in_front:
            in_front = line != "---"
            continue
        if not line or line.startswith(("%%", "'")):
            continue
        return line[:200]
    return ""


def detect_format(text: str | bytes) -> str:
    """Tell the format of a file's content: one of :data:`FORMATS`.

    Raises :class:`ImportFormatError` when the content is none of them (binary,
    unrelated text, JSON of another tool).
    """
    text = decode_text(text)
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return _json_kind(_loads(text))
    first = _first_words(text)
    low = first.lower()
    if low.startswith("@startchen"):
        return "plantuml"
    if low.startswith("erdiagram"):
        return "mermaid"
    if low.startswith("@startuml") or low.startswith("@start"):
        raise ImportFormatError(
            f"a PlantUML file, but not a Chen ER diagram ({first.split()[0]}); R2tA reads @startchen ... @endchen"
        )
    if not stripped:
        raise ImportFormatError("the file is empty")
    raise ImportFormatError(
        "cannot tell the format: expected R2tA or ERDPlus JSON, a PlantUML @startchen diagram or a "
        f"Mermaid erDiagram; the file begins with {first[:40]!r}"
    )


def _native(data: object) -> EERD:
    if isinstance(data, dict) and "diagram" in data and "entities" not in data:
        data = data["diagram"]
    try:
        return parse_diagram(data)
    except DiagramError as err:
        raise ImportFormatError(str(err)) from None


def import_text(text: str | bytes, fmt: str | None = None, *, name: str | None = None) -> ImportResult:
    """Convert a diagram file's content; ``fmt`` is detected when ``None``.

    ``name`` (e.g. the file's stem) names the diagram when the format has no name
    of its own.
    """
    fmt = normalize_format(fmt)
    text = decode_text(text)
    if fmt is None:
        fmt = detect_format(text)
    if fmt == "json":
        diagram = _native(_loads(text))
        return ImportResult(diagram, "json", [])
    if fmt == "erdplus":
        from r2ta.formats._common import finish
        from r2ta.formats.erdplus import read_erdplus

        data, warnings = read_erdplus(_loads(text), name=name)
        return ImportResult(finish(data, "ERDPlus file"), "erdplus", warnings)
    if fmt == "plantuml":
        from r2ta.formats.plantuml import read_plantuml

        diagram, warnings = read_plantuml(text, name=name)
        return ImportResult(diagram, "plantuml", warnings)
    from r2ta.formats.mermaid import read_mermaid

    diagram, warnings = read_mermaid(text, name=name)
    return ImportResult(diagram, "mermaid", warnings)


def import_file(path: str | Path, fmt: str | None = None) -> ImportResult:
    """Read and convert a diagram file; errors name the file."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImportFormatError(f"{path} is a folder, not a diagram file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImportFormatError(f"{path} is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} bytes")
        data = path.read_bytes()
    except OSError as err:
        raise ImportFormatError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        return import_text(data, fmt, name=path.stem)
    except ImportFormatError as err:
        raise ImportFormatError(f"{path.name}: {err}") from None


def read_any(path: str | Path, fmt: str | None = None) -> EERD:
    """The diagram in ``path``, whatever its format (see :func:`import_file` for the warnings)."""
    return import_file(path, fmt).diagram


__all__ = [
    "FORMATS",
    "ImportResult",
    "detect_format",
    "import_file",
    "import_text",
    "normalize_format",
    "read_any",
]
