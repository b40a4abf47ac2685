"""Dataset records: a base schema (requirements + correct diagram) and a variant with induced mistakes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from r2ta.eerd import EERD, MAX_TEXT_CHARS, Mistake, _format_validation_error, loads_json
from r2ta.errors import DatasetError


class BaseSchema(BaseModel):
    """A hand-written, correct EERD with the requirements narrative that states every constraint."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=r"^[a-z0-9_\-]{1,64}$")]
    domain: str
    title: str
    requirements: Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
    diagram: EERD


class Variant(BaseModel):
    """A base schema's diagram with 1-3 induced mistakes and their ground truth."""

    model_config = ConfigDict(extra="forbid")

    id: str
    base_id: str
    seed: int
    split: Literal["train", "test"]
    requirements: str
    diagram: EERD
    mistakes: list[Mistake]


ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
SCHEMAS_DIR = ASSETS_DIR / "schemas"


def load_base_schema(path: str | Path) -> BaseSchema:
    path = Path(path)
    data = loads_json(path.read_bytes(), what=f"base schema {path.name}")
    try:
        return BaseSchema.model_validate(data)
    except ValidationError as err:
        raise DatasetError(_format_validation_error(err, data, f"base schema {path.name}")) from None


def load_base_schemas(directory: str | Path = SCHEMAS_DIR) -> list[BaseSchema]:
    """All base schemas in ``directory``, sorted by id (the order is part of dataset determinism)."""
    paths = sorted(Path(directory).glob("*.json"))
    if not paths:
        raise DatasetError(f"no base schemas (*.json) found in {directory}")
    schemas = sorted((load_base_schema(p) for p in paths), key=lambda s: s.id)
    ids = [s.id for s in schemas]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise DatasetError(f"duplicate base schema ids: {sorted(dupes)}")
    return schemas


def variant_to_json(v: Variant) -> str:
    return json.dumps(v.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"))


def read_variants(path: str | Path) -> list[Variant]:
    """Read a ``train.jsonl``/``test.jsonl`` file; a bad line is reported by number."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(Variant.model_validate_json(line))
            except ValidationError as err:
                raise DatasetError(f"{path}:{n}: {err.errors()[0]['msg']}") from None
    return out
