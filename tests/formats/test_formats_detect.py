"""Format detection, read_any, and bad files: a message with what and where, never a traceback or a half diagram."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from r2ta.eerd import MAX_FILE_BYTES, diagram_to_json
from r2ta.errors import DiagramError, ImportFormatError
from r2ta.formats import FORMATS, detect_format, import_file, import_text, read_any
from r2ta.records import SCHEMAS_DIR

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "formats"
SAMPLES = ROOT / "assets" / "samples"

EXPECTED = {
    "erdplus_old_company.erdplus": "erdplus",
    "erdplus_new_company.erdplus": "erdplus",
    "plantuml_company.puml": "plantuml",
    "mermaid_company.mmd": "mermaid",
}


@pytest.mark.parametrize("name, fmt", sorted(EXPECTED.items()))
def test_detects_each_fixture_from_its_content(name, fmt, tmp_path):
    data = (FIXTURES / name).read_bytes()
    assert detect_format(data) == fmt
    # the content decides, not the file name
    renamed = tmp_path / "upload.bin"
    renamed.write_bytes(data)
    assert import_file(renamed).format == fmt


def test_samples_cover_every_foreign_format_and_import_cleanly():
    found: dict[str, list[str]] = {}
    for path in sorted(SAMPLES.iterdir()):
        if path.name.lower().startswith("readme"):
            continue
        result = import_file(path)
        found.setdefault(result.format, []).append(path.name)
        assert result.diagram.entities, path.name
    assert {"erdplus", "plantuml", "mermaid"} <= set(found), found


def test_native_json_and_base_schemas_read_through_read_any(tmp_path):
    schema = sorted(SCHEMAS_DIR.glob("*.json"))[0]
    d = read_any(schema)  # a base schema file: the diagram inside it
    assert detect_format(schema.read_text()) == "json"
    bare = tmp_path / "d.json"
    bare.write_text(diagram_to_json(d))
    assert diagram_to_json(read_any(bare)) == diagram_to_json(d)
    assert diagram_to_json(read_any(bare, "json")) == diagram_to_json(d)


def test_format_can_be_forced_and_must_exist():
    text = (FIXTURES / "mermaid_company.mmd").read_text()
    assert import_text(text, "mermaid").format == "mermaid"
    with pytest.raises(ImportFormatError, match="unknown format 'visio'"):
        import_text(text, "visio")
    with pytest.raises(ImportFormatError, match="expected 'erDiagram'"):
        import_text((FIXTURES / "plantuml_company.puml").read_text(), "mermaid")
    assert set(FORMATS) == {"json", "erdplus", "plantuml", "mermaid"}


def test_truncated_json_says_line_column_and_truncated(tmp_path):
    text = (FIXTURES / "erdplus_new_company.erdplus").read_text()
    cut = tmp_path / "cut.erdplus"
    cut.write_text(text[: len(text) // 2])
    with pytest.raises(ImportFormatError) as info:
        read_any(cut)
    message = str(info.value)
    assert message.startswith("cut.erdplus: not valid JSON") and "line " in message and "column " in message
    assert "truncated" in message
    with pytest.raises(ImportFormatError) as info:
        import_text('{"shapes": [], "connectors": [] } }')
    assert "column 35" in str(info.value) and "truncated" not in str(info.value)


def test_wrong_version_of_native_json():
    with pytest.raises(ImportFormatError, match="unsupported format_version 7"):
        import_text(json.dumps({"format_version": 7, "id": "x", "name": "x", "entities": []}))


def test_dangling_reference_in_native_json_names_the_element():
    doc = {"id": "x", "name": "x", "entities": [{"id": "A", "name": "A"}],
           "relationships": [{"id": "R", "name": "R", "participants": [{"entity": "GHOST"}]}]}
    with pytest.raises(ImportFormatError, match=r"relationships\[0\].*'GHOST' is not an entity"):
        import_text(json.dumps(doc))


def test_oversized_file_is_refused_before_reading(tmp_path):
    big = tmp_path / "big.puml"
    with big.open("wb") as fh:
        fh.write(b"@startchen x\n")
        fh.write(os.urandom(1024) * (10 * 1024))  # 10 MB of nonsense
    with pytest.raises(ImportFormatError, match=f"limit is {MAX_FILE_BYTES:,} bytes"):
        read_any(big)
    with pytest.raises(ImportFormatError, match="limit"):
        import_text(b"x" * (MAX_FILE_BYTES + 1))


def test_nonsense_just_under_the_limit_is_refused_quickly():
    text = ("lorem ipsum " * 300 + "\n") * ((MAX_FILE_BYTES - 10_000) // 3601)
    with pytest.raises(ImportFormatError, match="cannot tell the format"):
        import_text(text)
    with pytest.raises(ImportFormatError, match="line 2 is 5,000 characters long"):
        import_text("@startchen\n" + "-" * 5000 + "\n@endchen")


@pytest.mark.parametrize(
    "data, what",
    [
        (bytes(range(256)) * 4, "not UTF-8"),
        (b"\x00\x01binary\x00", "NUL"),
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"@startuml\nA -> B\n@enduml", "not a Chen ER diagram"),
        (b"[1, 2, 3]", "neither an R2tA diagram"),
        (b'{"hello": "world"}', "neither an R2tA diagram"),
        (b"[" * 100_000, "nests too deeply"),
        (b"\xef\xbb\xbf{\"shapes\": 5}", "shapes: expected a list"),
    ],
)
def test_garbage_gets_a_clear_import_error(data, what):
    with pytest.raises(ImportFormatError) as info:
        import_text(data)
    assert what in str(info.value), str(info.value)
    assert isinstance(info.value, DiagramError)


def test_unreadable_paths(tmp_path):
    with pytest.raises(ImportFormatError, match="cannot read"):
        read_any(tmp_path / "missing.erdplus")
    with pytest.raises(ImportFormatError, match="is a folder"):
        read_any(tmp_path)
