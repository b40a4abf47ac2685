"""``r2ta import``: detection, warnings on stderr, JSON or PlantUML output, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

from r2ta.cli import main
from r2ta.eerd import diagram_from_json, diagram_to_json
from r2ta.formats import import_file, read_any

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "formats"


def test_import_prints_native_json_and_warnings(capsys):
    assert main(["import", str(FIXTURES / "mermaid_company.mmd")]) == 0
    out, err = capsys.readouterr()
    d = diagram_from_json(out)
    assert diagram_to_json(d) == diagram_to_json(import_file(FIXTURES / "mermaid_company.mmd").diagram)
    assert "warning: EMPLOYEE: foreign-key attribute(s) dno, super_ssn left out" in err
    assert "imported mermaid_company.mmd (mermaid): 5 entities, 7 relationships" in err


def test_import_writes_json_or_plantuml_by_suffix(tmp_path, capsys):
    src = FIXTURES / "erdplus_new_company.erdplus"
    out_json, out_puml = tmp_path / "c.json", tmp_path / "c.puml"
    assert main(["import", str(src), "--format", "erdplus", "-o", str(out_json)]) == 0
    assert main(["import", str(src), "-o", str(out_puml)]) == 0
    err = capsys.readouterr().err
    original = import_file(src).diagram
    assert diagram_to_json(read_any(out_json)) == diagram_to_json(original)
    assert out_puml.read_text().startswith("@startchen company_erdplus\n")
    # roles cannot be written in PlantUML Chen: said, and everything else comes back
    assert "warning: PlantUML export: SUPERVISION: role name 'supervisee'" in err
    back = read_any(out_puml)
    assert [e.id for e in back.entities] == [e.id for e in original.entities]
    assert [(p.entity, p.min, p.max) for p in back.relationship("WORKS_IN").participants] == [
        ("EMPLOYEE", 1, 1), ("DEPARTMENT", 1, "N")]


def test_bad_input_is_an_error_line_with_exit_2_and_no_output_file(tmp_path, capsys):
    bad = tmp_path / "bad.erdplus"
    bad.write_text('{"shapes": [{"type": "Entity", "details": {"id": 1, "name": "A"}}], "connectors": [')
    out = tmp_path / "out.json"
    assert main(["import", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bad.erdplus: not valid JSON") and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_unknown_output_suffix_is_refused(tmp_path, capsys):
    assert main(["import", str(FIXTURES / "plantuml_company.puml"), "-o", str(tmp_path / "x.png")]) == 2
    assert "name it OUT.json" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_existing_output_is_replaced_whole(tmp_path, capsys):
    out = tmp_path / "d.json"
    out.write_text("old content")
    assert main(["import", str(FIXTURES / "plantuml_company.puml"), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["id"] == "company"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json"]  # no temporary file left behind
