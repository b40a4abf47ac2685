"""A reviewer that never stops: saves reviews in a loop and prints each committed review id.

Run by tests/db/test_db_crash.py as ``python review_writer.py URL``, then killed
with SIGKILL at an arbitrary moment. Each printed id was committed before it
was printed, so every printed id must survive the kill.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlmodel import Session, select  # noqa: E402

from db.engine import get_engine  # noqa: E402
from db.models import ProposalRow  # noqa: E402
from db.queries import create_review  # noqa: E402

# Big edits widen the window in which a kill lands mid-write.
EDITED_STEPS = [f"step {n}: EMPLOYEE participates totally in WORKS_FOR " * 4 for n in range(200)]


def main(url: str) -> None:
    engine = get_engine(url)
    with Session(engine) as session:
        versions = {p.id: p.version for p in session.exec(select(ProposalRow).order_by(ProposalRow.id))}
    print("ready", flush=True)
    for n in itertools.count():
        proposal_id = list(versions)[n % len(versions)]
        decision = ("accept", "edit", "reject")[n % 3]
        with Session(engine) as session:
            review = create_review(
                session=session,
                proposal_id=proposal_id,
                reviewer=f"writer-{n % 5}",
                decision=decision,
                expected_version=versions[proposal_id],
                reason=f"review {n}",
                steps=EDITED_STEPS if decision == "edit" else None,
            )
            versions[proposal_id] += 1
            print(review.id, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
