"""Small, correct diagrams built in code for the checker and mutation tests.

``company()`` has a weak entity, 1:1, 1:N (with an attribute), M:N (with an
attribute), a unary relationship with roles, a ternary with an attribute, a
leaf entity (OFFICE), a disjoint partial attribute-defined specialization, an
overlapping total one and a category: every operator applies to it.
``airline()`` has a weak entity owned by a weak entity
(FLIGHT -> FLIGHT_LEG -> LEG_INSTANCE) and a specialization lattice. Both must
stay free of checker findings; tests build broken twins from them.
"""

from __future__ import annotations

from r2ta.eerd import EERD, parse_diagram


def _a(owner: str, name: str, **flags) -> dict:
    comps = flags.pop("components", [])
    return {
        "id": f"{owner}.{name}",
        "name": name,
        **flags,
        "components": [_a(f"{owner}.{name}", c) for c in comps],
    }


def _p(entity: str, lo: int, hi, role: str | None = None) -> dict:
    out = {"entity": entity, "min": lo, "max": hi}
    if role:
        out["role"] = role
    return out


def company_dict() -> dict:
    return {
        "format_version": 1,
        "id": "company_fixture",
        "name": "Company (fixture)",
        "entities": [
            {
                "id": "EMPLOYEE",
                "name": "EMPLOYEE",
                "attributes": [
                    _a("EMPLOYEE", "Ssn", key=True),
                    _a("EMPLOYEE", "Name", components=["Fname", "Lname"]),
                    _a("EMPLOYEE", "Birth_date"),
                    _a("EMPLOYEE", "Age", derived=True),
                    _a("EMPLOYEE", "Salary"),
                    _a("EMPLOYEE", "Job_type"),
                ],
            },
            {
                "id": "DEPARTMENT",
                "name": "DEPARTMENT",
                "attributes": [
                    _a("DEPARTMENT", "Dnumber", key=True),
                    _a("DEPARTMENT", "Dname"),
                    _a("DEPARTMENT", "Locations", multivalued=True),
                    _a("DEPARTMENT", "Number_of_employees", derived=True),
                ],
            },
            {
                "id": "PROJECT",
                "name": "PROJECT",
                "attributes": [
                    _a("PROJECT", "Pnumber", key=True),
                    _a("PROJECT", "Pname"),
                    _a("PROJECT", "Budget"),
                ],
            },
            {
                "id": "DEPENDENT",
                "name": "DEPENDENT",
                "weak": True,
                "attributes": [
                    _a("DEPENDENT", "Dependent_name", partial_key=True),
                    _a("DEPENDENT", "Sex"),
                    _a("DEPENDENT", "Kinship"),
                ],
            },
            {
                "id": "SUPPLIER",
                "name": "SUPPLIER",
                "attributes": [
                    _a("SUPPLIER", "Sname", key=True),
                    _a("SUPPLIER", "Address", components=["Street", "City", "Zip"]),
                ],
            },
            {
                "id": "PART",
                "name": "PART",
                "attributes": [_a("PART", "Part_no", key=True), _a("PART", "Description")],
            },
            {
                "id": "OFFICE",
                "name": "OFFICE",
                "attributes": [_a("OFFICE", "Office_no", key=True), _a("OFFICE", "Floor")],
            },
            {"id": "SECRETARY", "name": "SECRETARY", "attributes": [_a("SECRETARY", "Typing_speed")]},
            {"id": "ENGINEER", "name": "ENGINEER", "attributes": [_a("ENGINEER", "Eng_type")]},
            {"id": "MANAGER_ROLE", "name": "SENIOR", "attributes": [_a("MANAGER_ROLE", "Seniority_level")]},
            {"id": "MENTOR", "name": "MENTOR", "attributes": [_a("MENTOR", "Mentoring_hours")]},
            {
                "id": "PAYEE",
                "name": "PAYEE",
                "attributes": [_a("PAYEE", "Bank_account"), _a("PAYEE", "Payment_terms")],
            },
        ],
        "relationships": [
            {
                "id": "WORKS_FOR",
                "name": "WORKS_FOR",
                "participants": [_p("EMPLOYEE", 1, 1), _p("DEPARTMENT", 1, "N")],
                "attributes": [_a("WORKS_FOR", "Start_date")],
            },
            {
                "id": "MANAGES",
                "name": "MANAGES",
                "participants": [_p("EMPLOYEE", 0, 1), _p("DEPARTMENT", 1, 1)],
                "attributes": [_a("MANAGES", "Mgr_start_date")],
            },
            {
                "id": "WORKS_ON",
                "name": "WORKS_ON",
                "participants": [_p("EMPLOYEE", 1, "N"), _p("PROJECT", 1, "N")],
                "attributes": [_a("WORKS_ON", "Hours")],
            },
            {
                "id": "CONTROLS",
                "name": "CONTROLS",
                "participants": [_p("DEPARTMENT", 0, "N"), _p("PROJECT", 1, 1)],
            },
            {
                "id": "SUPERVISION",
                "name": "SUPERVISION",
                "participants": [
                    _p("EMPLOYEE", 0, "N", "supervisor"),
                    _p("EMPLOYEE", 0, 1, "supervisee"),
                ],
            },
            {
                "id": "DEPENDENTS_OF",
                "name": "DEPENDENTS_OF",
                "identifying": True,
                "participants": [_p("EMPLOYEE", 0, "N"), _p("DEPENDENT", 1, 1)],
            },
            {
                "id": "HOUSED_IN",
                "name": "HOUSED_IN",
                "participants": [_p("OFFICE", 0, 1), _p("DEPARTMENT", 1, "N")],
            },
            {
                "id": "SUPPLY",
                "name": "SUPPLY",
                "participants": [_p("SUPPLIER", 0, "N"), _p("PART", 1, "N"), _p("PROJECT", 0, "N")],
                "attributes": [_a("SUPPLY", "Quantity")],
            },
        ],
        "specializations": [
            {
                "id": "SPEC_EMPLOYEE",
                "superclass": "EMPLOYEE",
                "subclasses": ["SECRETARY", "ENGINEER"],
                "disjointness": "d",
                "completeness": "partial",
                "defining_attribute": "EMPLOYEE.Job_type",
                "defining_values": {"SECRETARY": "secretary", "ENGINEER": "engineer"},
            },
            {
                "id": "SPEC_EMPLOYEE_ROLE",
                "superclass": "EMPLOYEE",
                "subclasses": ["MANAGER_ROLE", "MENTOR"],
                "disjointness": "o",
                "completeness": "total",
            },
        ],
        "categories": [
            {
                "id": "CAT_PAYEE",
                "subclass": "PAYEE",
                "superclasses": ["EMPLOYEE", "SUPPLIER"],
                "completeness": "partial",
            }
        ],
    }


def airline_dict() -> dict:
    return {
        "format_version": 1,
        "id": "airline_fixture",
        "name": "Airline (fixture)",
        "entities": [
            {
                "id": "FLIGHT",
                "name": "FLIGHT",
                "attributes": [_a("FLIGHT", "Flight_number", key=True), _a("FLIGHT", "Weekdays", multivalued=True)],
            },
            {
                "id": "FLIGHT_LEG",
                "name": "FLIGHT_LEG",
                "weak": True,
                "attributes": [_a("FLIGHT_LEG", "Leg_no", partial_key=True), _a("FLIGHT_LEG", "Scheduled_dep")],
            },
            {
                "id": "LEG_INSTANCE",
                "name": "LEG_INSTANCE",
                "weak": True,
                "attributes": [
                    _a("LEG_INSTANCE", "Date", partial_key=True),
                    _a("LEG_INSTANCE", "Seats_free", derived=True),
                ],
            },
            {
                "id": "AIRPLANE",
                "name": "AIRPLANE",
                "attributes": [_a("AIRPLANE", "Airplane_id", key=True), _a("AIRPLANE", "Total_seats")],
            },
            {
                "id": "PERSON",
                "name": "PERSON",
                "attributes": [
                    _a("PERSON", "Passport_no", key=True),
                    _a("PERSON", "Full_name", components=["First", "Last"]),
                    _a("PERSON", "Phones", multivalued=True),
                ],
            },
            {"id": "PILOT", "name": "PILOT", "attributes": [_a("PILOT", "License_no")]},
            {"id": "CUSTOMER", "name": "CUSTOMER", "attributes": [_a("CUSTOMER", "Miles")]},
            {"id": "PILOT_CUSTOMER", "name": "FLYING_PILOT", "attributes": [_a("PILOT_CUSTOMER", "Discount")]},
        ],
        "relationships": [
            {
                "id": "LEGS",
                "name": "LEGS",
                "identifying": True,
                "participants": [_p("FLIGHT", 1, "N"), _p("FLIGHT_LEG", 1, 1)],
            },
            {
                "id": "INSTANCE_OF",
                "name": "INSTANCE_OF",
                "identifying": True,
                "participants": [_p("FLIGHT_LEG", 0, "N"), _p("LEG_INSTANCE", 1, 1)],
            },
            {
                "id": "ASSIGNED",
                "name": "ASSIGNED",
                "participants": [_p("LEG_INSTANCE", 1, 1), _p("AIRPLANE", 0, "N")],
            },
            {
                "id": "FLIES",
                "name": "FLIES",
                "participants": [_p("PILOT", 0, "N"), _p("LEG_INSTANCE", 1, 2)],
            },
            {
                "id": "RESERVATION",
                "name": "RESERVATION",
                "participants": [_p("CUSTOMER", 0, "N"), _p("LEG_INSTANCE", 0, "N")],
                "attributes": [_a("RESERVATION", "Seat_no")],
            },
        ],
        "specializations": [
            {
                "id": "SPEC_PERSON",
                "superclass": "PERSON",
                "subclasses": ["PILOT", "CUSTOMER"],
                "disjointness": "o",
                "completeness": "partial",
            },
            {
                "id": "SPEC_PILOT",
                "superclass": "PILOT",
                "subclasses": ["PILOT_CUSTOMER"],
                "disjointness": "d",
                "completeness": "partial",
            },
            {
                "id": "SPEC_CUSTOMER",
                "superclass": "CUSTOMER",
                "subclasses": ["PILOT_CUSTOMER"],
                "disjointness": "d",
                "completeness": "partial",
            },
        ],
    }


def company() -> EERD:
    return parse_diagram(company_dict())


def airline() -> EERD:
    return parse_diagram(airline_dict())


FIXTURES = {"company_fixture": company, "airline_fixture": airline}
