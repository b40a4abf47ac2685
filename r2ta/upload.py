"""The upload page's library side: import bytes in any supported format, check, export. No streamlit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from r2ta.checker import check
from r2ta.config import ASSETS_DIR
from r2ta.eerd import EERD, Mistake, diagram_to_json
from r2ta.formats import import_text
from r2ta.formats.plantuml import to_plantuml

SAMPLES_DIR = ASSETS_DIR / "samples"


@dataclass
class Upload:
    diagram: EERD
    format: str
    warnings: list[str] = field(default_factory=list)
    checker_findings: list[Mistake] = field(default_factory=list)

    @property
    def json_text(self) -> str:
        return diagram_to_json(self.diagram)


def list_samples() -> list[str]:
    return sorted(p.name for p in SAMPLES_DIR.iterdir() if p.is_file() and p.suffix != ".md")


def import_upload(data: bytes, fmt: str | None = None, name: str | None = None) -> Upload:
    """Import uploaded bytes (size-limited, format detected unless given); raises ImportFormatError."""
    result = import_text(data, fmt, name=Path(name).stem if name else None)
    return Upload(result.diagram, result.format, list(result.warnings), check(result.diagram))


def plantuml_text(diagram: EERD) -> str:
    return to_plantuml(diagram)
