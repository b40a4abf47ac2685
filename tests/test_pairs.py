"""TRL conversational rows: built from traces, validated on the way out and in."""

from __future__ import annotations

import json

import pytest

from r2ta.pairs import PairError, dpo_row, read_rows, sft_row, to_trl, validate_dpo, write_rows
from reasoning_fixtures import CORRECT_TRACE, DIAGRAM, REQUIREMENTS

FLAWED = "Step 1 [EMPLOYEE]: fine -> ok\nVERDICT:\nNONE"


def test_sft_and_dpo_rows_have_trl_shapes(tmp_path):
    prov = {"variant_id": "v1", "review_id": 7}
    sft = sft_row(REQUIREMENTS, DIAGRAM, CORRECT_TRACE, prov)
    assert [m["role"] for m in sft["messages"]] == ["system", "user", "assistant"]
    assert sft["messages"][-1]["content"] == CORRECT_TRACE and sft["provenance"] == prov
    assert REQUIREMENTS in sft["messages"][1]["content"]
    dpo = dpo_row(REQUIREMENTS, DIAGRAM, CORRECT_TRACE, FLAWED, prov)
    assert [m["role"] for m in dpo["prompt"]] == ["system", "user"]
    assert dpo["chosen"] == [{"role": "assistant", "content": CORRECT_TRACE}]
    assert dpo["rejected"] == [{"role": "assistant", "content": FLAWED}]
    assert dpo["prompt"] == sft["messages"][:2]  # one prompt for both stages

    path = tmp_path / "dpo.jsonl"
    assert write_rows([dpo, dpo], path) == 2
    rows = read_rows(path, "dpo")
    assert rows[0] == dpo
    assert set(to_trl(rows)[0]) == {"prompt", "chosen", "rejected"}


def test_invalid_rows_are_refused_with_the_reason():
    with pytest.raises(PairError, match="same text"):
        dpo_row(REQUIREMENTS, DIAGRAM, CORRECT_TRACE, CORRECT_TRACE + "\n", {})
    with pytest.raises(PairError, match="does not parse"):
        sft_row(REQUIREMENTS, DIAGRAM, "Step 1 [EMPLOYEE]: truncat", {})
    row = dpo_row(REQUIREMENTS, DIAGRAM, CORRECT_TRACE, FLAWED, {})
    row["chosen"][0]["role"] = "user"
    with pytest.raises(PairError, match="expected role 'assistant'"):
        validate_dpo(row)


def test_a_broken_file_is_reported_by_line(tmp_path):
    path = tmp_path / "sft.jsonl"
    good = sft_row(REQUIREMENTS, DIAGRAM, CORRECT_TRACE, {})
    path.write_text(json.dumps(good) + "\n" + json.dumps({"messages": good["messages"][:2]}) + "\n")
    with pytest.raises(PairError, match=r"sft.jsonl:2"):
        read_rows(path, "sft")
    with pytest.raises(PairError, match="r2ta export sft"):
        read_rows(tmp_path / "missing.jsonl", "sft")
