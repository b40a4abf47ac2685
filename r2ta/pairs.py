"""Training rows in TRL's conversational formats, built and validated in one place.

* SFT: ``{"messages": [*prompt, assistant], "provenance": {...}}`` — the prompt
  of :func:`r2ta.prompting.build_messages` (system, then the task) and the
  accepted or edited trace.
* DPO: ``{"prompt": [...], "chosen": [assistant], "rejected": [assistant],
  "provenance": {...}}`` — chosen is the accepted/edited trace, rejected the
  model's original trace.

Export (``r2ta export``) writes these rows as JSONL; training reads them with
:func:`read_rows` and hands :func:`to_trl` (the rows without provenance) to TRL.
Every row passes :func:`validate_sft` / :func:`validate_dpo` on the way out and
on the way in, so a hand-edited or truncated file fails loudly, by line number.

This module must not import streamlit, torch or the database layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Literal

from r2ta.eerd import EERD
from r2ta.errors import R2taError
from r2ta.prompting import build_messages, parse_output

Kind = Literal["sft", "dpo"]
PROMPT_ROLES = ("system", "user")  # the shape build_messages produces (prompt r2ta-v2)


class PairError(R2taError):
    """A training row is malformed (wrong roles, empty content, identical chosen and rejected)."""


def _message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def _check_messages(messages: Any, where: str, roles: tuple[str, ...]) -> None:
    """Exactly ``roles``, in order, each with non-empty text."""
    if not isinstance(messages, list) or len(messages) != len(roles):
        raise PairError(f"{where}: expected {len(roles)} messages with roles {list(roles)}, got {messages!r:.120}")
    for i, (m, role) in enumerate(zip(messages, roles)):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise PairError(f"{where}[{i}]: a message is an object with exactly 'role' and 'content'")
        if m["role"] != role:
            raise PairError(f"{where}[{i}]: expected role {role!r}, got {m['role']!r}")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise PairError(f"{where}[{i}]: the {role} message is empty")


def _check_trace(text: str, diagram: EERD | None, where: str) -> None:
    """A training target must be a trace the parser reads as valid (when the diagram is at hand)."""
    if diagram is None:
        return
    parsed = parse_output(text, diagram)
    if not parsed.valid:
        raise PairError(f"{where}: the trace's verdict does not parse: {'; '.join(parsed.errors[:3])}")


def validate_sft(row: Any, diagram: EERD | None = None, where: str = "SFT row") -> dict:
    if not isinstance(row, dict) or set(row) - {"messages", "provenance"} or "messages" not in row:
        raise PairError(f"{where}: expected keys 'messages' and 'provenance'")
    _check_messages(row["messages"], f"{where}.messages", (*PROMPT_ROLES, "assistant"))
    if not isinstance(row.get("provenance", {}), dict):
        raise PairError(f"{where}.provenance: must be an object")
    _check_trace(row["messages"][-1]["content"], diagram, f"{where} assistant message")
    return row


def validate_dpo(row: Any, diagram: EERD | None = None, where: str = "DPO row") -> dict:
    keys = {"prompt", "chosen", "rejected"}
    if not isinstance(row, dict) or not keys <= set(row) or set(row) - keys - {"provenance"}:
        raise PairError(f"{where}: expected keys 'prompt', 'chosen', 'rejected' and 'provenance'")
    _check_messages(row["prompt"], f"{where}.prompt", PROMPT_ROLES)
    _check_messages(row["chosen"], f"{where}.chosen", ("assistant",))
    _check_messages(row["rejected"], f"{where}.rejected", ("assistant",))
    if row["chosen"][0]["content"].strip() == row["rejected"][0]["content"].strip():
        raise PairError(f"{where}: chosen and rejected are the same text; such a pair teaches nothing")
    if not isinstance(row.get("provenance", {}), dict):
        raise PairError(f"{where}.provenance: must be an object")
    _check_trace(row["chosen"][0]["content"], diagram, f"{where} chosen")
    return row


def sft_row(requirements: str, diagram: EERD, trace: str, provenance: dict) -> dict:
    row = {"messages": [*build_messages(requirements, diagram), _message("assistant", trace)], "provenance": dict(provenance)}
    return validate_sft(row, diagram)


def dpo_row(requirements: str, diagram: EERD, chosen: str, rejected: str, provenance: dict) -> dict:
    row = {
        "prompt": build_messages(requirements, diagram),
        "chosen": [_message("assistant", chosen)],
        "rejected": [_message("assistant", rejected)],
        "provenance": dict(provenance),
    }
    return validate_dpo(row, diagram)


def write_rows(rows: Iterable[dict], path: str | Path) -> int:
    """Write JSONL atomically (a temp file renamed into place); returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(path)
    return n


def read_rows(path: str | Path, kind: Kind) -> list[dict]:
    """Read and validate an exported file; a bad line is reported by number."""
    validate = validate_sft if kind == "sft" else validate_dpo
    rows = []
    try:
        fh = open(path, encoding="utf-8")
    except OSError as err:
        raise PairError(f"cannot read {path}: {err.strerror}; export it with 'r2ta export {kind} --out {path}'") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise PairError(f"{path}:{n}: not valid JSON ({err.msg})") from None
            rows.append(validate(row, where=f"{path}:{n}"))
    return rows


def to_trl(rows: list[dict]) -> list[dict]:
    """The rows as TRL expects them: provenance stays behind (it is for people, not the trainer)."""
    return [{k: v for k, v in row.items() if k != "provenance"} for row in rows]
