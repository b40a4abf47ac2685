"""A small diagram with known mistakes, shared by the prompting, audit, pairs and pipeline tests."""

from __future__ import annotations

from r2ta.eerd import Mistake, parse_diagram
from r2ta.records import Variant

REQUIREMENTS = (
    "Each department has a unique number and a name. Each employee has a unique ssn, a name and a "
    "birth date. Every employee works for exactly one department; a department employs at least one "
    "employee. Each project has a unique number; employees work on projects, and the hours each "
    "employee works on each project are recorded."
)

DIAGRAM = parse_diagram(
    {
        "id": "company_small",
        "name": "Company",
        "entities": [
            {
                "id": "DEPARTMENT",
                "name": "DEPARTMENT",
                "attributes": [
                    {"id": "DEPARTMENT.Dnumber", "name": "Dnumber", "key": True},
                    {"id": "DEPARTMENT.Dname", "name": "Dname"},
                ],
            },
            {
                "id": "EMPLOYEE",
                "name": "EMPLOYEE",
                "attributes": [
                    {"id": "EMPLOYEE.Ssn", "name": "Ssn", "key": True},
                    {"id": "EMPLOYEE.Ename", "name": "Ename"},
                    {"id": "EMPLOYEE.Bdate", "name": "Bdate"},
                    {"id": "EMPLOYEE.Dnumber", "name": "Dnumber"},
                ],
            },
            {"id": "PROJECT", "name": "PROJECT", "attributes": [{"id": "PROJECT.Pnumber", "name": "Pnumber", "key": True}]},
        ],
        "relationships": [
            {
                "id": "WORKS_FOR",
                "name": "WORKS_FOR",
                "participants": [
                    {"entity": "EMPLOYEE", "min": 0, "max": 1},
                    {"entity": "DEPARTMENT", "min": 1, "max": "N"},
                ],
            },
            {
                "id": "WORKS_ON",
                "name": "WORKS_ON",
                "participants": [
                    {"entity": "EMPLOYEE", "min": 0, "max": "N"},
                    {"entity": "PROJECT", "min": 0, "max": "N"},
                ],
                "attributes": [{"id": "WORKS_ON.Hours", "name": "Hours"}],
            },
        ],
    }
)

TRUTH = [
    Mistake(
        category="participation",
        elements=["WORKS_FOR", "EMPLOYEE"],
        explanation="Every employee works for a department, so EMPLOYEE must be (1,1) in WORKS_FOR.",
    ),
    Mistake(
        category="foreign_key_attribute",
        elements=["EMPLOYEE.Dnumber", "WORKS_FOR"],
        explanation="Dnumber in EMPLOYEE duplicates the WORKS_FOR relationship.",
    ),
]

# A correct trace: every step true, every real mistake found and listed.
CORRECT_TRACE = """Step 1 [DEPARTMENT, DEPARTMENT.Dnumber]: DEPARTMENT is identified by its key Dnumber. -> ok
Step 2 [EMPLOYEE, EMPLOYEE.Ssn]: EMPLOYEE is identified by its key Ssn. -> ok
Step 3 [EMPLOYEE.Dnumber, WORKS_FOR]: EMPLOYEE stores Dnumber although WORKS_FOR links it to DEPARTMENT. -> foreign_key_attribute
Step 4 [WORKS_FOR, EMPLOYEE]: Every employee works for exactly one department, but EMPLOYEE is (0,1). -> participation
Step 5 [WORKS_ON, WORKS_ON.Hours]: Hours is recorded per employee and project, on WORKS_ON. -> ok
VERDICT:
MISTAKE: foreign_key_attribute | EMPLOYEE.Dnumber, WORKS_FOR | Dnumber in EMPLOYEE duplicates WORKS_FOR.
MISTAKE: participation | WORKS_FOR, EMPLOYEE | EMPLOYEE must be (1,1) in WORKS_FOR."""


def variant(split: str = "test", n: int = 0) -> Variant:
    return Variant(
        id=f"company_small-{n:03d}",
        base_id="company_small",
        seed=n,
        split=split,
        requirements=REQUIREMENTS,
        diagram=DIAGRAM,
        mistakes=TRUTH,
    )
