"""What a model's verdicts claim: mistake lines per answer and claims by category (its latest traces).

    R2TA_DATA_DIR=... python scripts/verdict_claims.py MODEL_ID [MODEL_ID ...] [--split test]

Used for the records in docs/measured/ (which categories a model piles its claims onto).
"""

from __future__ import annotations

import argparse
import collections

from sqlmodel import Session

from db.engine import get_engine
from r2ta.store import latest_traces


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--split", default="test", choices=["train", "test"])
    args = p.parse_args(argv)
    with Session(get_engine()) as session:
        for model in args.models:
            rows = latest_traces(session=session, model_id=model, split=args.split)
            lines: collections.Counter = collections.Counter()
            claims: collections.Counter = collections.Counter()
            own = asked = 0
            for trace, _ in rows:
                verdict = trace.verdict or []
                lines[len(verdict)] += 1
                claims.update(m["category"] for m in verdict)
                own += any("wrote 'VERDICT:' itself" in e for e in trace.parse_errors or [])
                asked += trace.verdict_forced_at is not None
            print(f"{model} on {args.split}: {len(rows)} traces, {asked} verdicts asked for, "
                  f"{own} own verdicts decoded again under the grammar")
            print("  mistake lines per answer", dict(sorted(lines.items())))
            print("  claims", dict(claims.most_common()))


if __name__ == "__main__":
    main()
