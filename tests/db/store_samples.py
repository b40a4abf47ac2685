"""Small synthetic records for the data-layer tests (imported by conftest and tests; not a test module)."""

from __future__ import annotations


def diagram(name: str) -> dict:
    return {
        "format_version": 1,
        "id": name,
        "name": name.title(),
        "entities": [
            {"id": "EMPLOYEE", "name": "EMPLOYEE", "attributes": [{"id": "EMPLOYEE.Ssn", "name": "Ssn", "key": True}]}
        ],
        "relationships": [],
        "specializations": [],
        "categories": [],
    }


def base_dict(base_id: str) -> dict:
    return {
        "id": base_id,
        "domain": "business",
        "title": base_id.title(),
        "requirements": f"Requirements of {base_id}.",
        "diagram": diagram(base_id),
    }


def variant_dict(variant_id: str, base_id: str, split: str, categories: list[str], seed: int = 0) -> dict:
    return {
        "id": variant_id,
        "base_id": base_id,
        "seed": seed,
        "split": split,
        "requirements": f"Requirements of {base_id}.",
        "diagram": diagram(base_id),
        "mistakes": [
            {"category": c, "elements": ["EMPLOYEE"], "explanation": f"{c} here", "operator": f"op_{c}"}
            for c in categories
        ],
    }


# The small store most query tests start from: 2 base schemas, 4 variants.
VARIANTS = [
    ("company-1", "company", "train", ["missing_key", "cardinality"]),
    ("company-2", "company", "test", ["cardinality"]),
    ("library-1", "library", "train", ["weak_entity"]),
    ("library-2", "library", "train", ["missing_key"]),
]
