"""Every page in app.py's table renders through Streamlit's AppTest on a seeded database, without exceptions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from r2ta.config import PROJECT_ROOT

pytestmark = pytest.mark.xdist_group("pages")

APP = str(PROJECT_ROOT / "app.py")


def _page_files() -> list[str]:
    """The page paths declared in app.py (st.Page("pages/...")), read from its source."""
    tree = ast.parse(Path(APP).read_text())
    return [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "Page"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    data = tmp_path_factory.mktemp("seeded")
    mp = pytest.MonkeyPatch()
    mp.setenv("R2TA_DATA_DIR", str(data))
    from r2ta.seeding import seed

    seed(with_model=False)
    yield data
    mp.undo()


@pytest.fixture
def use_seeded(seeded, monkeypatch):
    monkeypatch.setenv("R2TA_DATA_DIR", str(seeded))


def test_every_declared_page_exists():
    pages = _page_files()
    assert pages, "app.py declares no pages"
    for page in pages:
        assert (PROJECT_ROOT / page).is_file(), page


@pytest.mark.parametrize("page", _page_files())
def test_page_renders_without_exception(use_seeded, page):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.title, f"{page} shows no title"


def test_empty_data_folder_shows_first_run_screen():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert at.title[0].value == "Welcome to R2tA Studio"
    assert any("Set up" in b.label for b in at.button)


def test_overview_counts_the_seeded_dataset(use_seeded):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Base schemas"] == "12"
    assert metrics["Variants"] == "600"


def test_dataset_page_lists_mistakes_of_a_variant(use_seeded):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/dataset.py")
    at.run()
    assert "correct diagram" in at.info[0].value  # the base diagram comes first
    diagram_box = at.selectbox[3]
    diagram_box.select_index(1).run()
    assert not at.exception
    subheaders = [s.value for s in at.subheader]
    assert any(s.startswith("Ground-truth mistakes (") and not s.endswith("(0)") for s in subheaders)


def test_import_page_shows_a_sample_and_its_findings(use_seeded):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/import_diagram.py")
    at.run()
    at.radio[0].set_value("Try a sample").run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.success and "Imported" in at.success[0].value
    assert any(s.value.startswith("Checker findings (") for s in at.subheader)


def test_import_page_refuses_garbage_with_a_message(use_seeded):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/import_diagram.py")
    at.run()
    at.radio[0].set_value("Paste text").run()
    at.text_area[0].input('{"shapes": [ {"type": "Entity", "id": 1, ').run()
    assert not at.exception
    assert at.error and "Could not import pasted text" in at.error[0].value


def test_import_page_escapes_hostile_names(use_seeded):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/import_diagram.py")
    at.run()
    at.radio[0].set_value("Paste text").run()
    at.text_area[0].input(
        "erDiagram\n"
        '    "<script>alert(1)</script>" {\n        int id PK\n    }\n'
    ).run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.success, "the hostile-named diagram should import"
    # names reach the page only as text elements or inside the escaped graphviz source
    for md in at.markdown:
        assert "<script>" not in md.value
    charts = at.get("graphviz_chart")
    assert charts, "the diagram should be drawn"
    for chart in charts:
        assert "&lt;script&gt;" in chart.proto.spec
        assert "<script>" not in chart.proto.spec


def test_overview_says_what_to_do_next(use_seeded):
    """A seeded store with nothing reasoned about, reviewed or scored: reason about variants, score the checker."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    texts = [m.value for m in at.markdown]
    assert "No proposal waits for review: let the model reason about the next train variants." in texts
    assert any(t.startswith("No model is scored yet: evaluate the structural checker") for t in texts)
    assert not any("DPO pairs are ready" in t for t in texts)  # nothing reviewed: nothing to train on
    labels = [e.proto.label for e in at.get("page_link")]
    assert "More to review" in labels and "Score models" in labels
