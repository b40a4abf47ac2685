"""The review, browse, agreement and datasets pages through Streamlit's AppTest, on a seeded database.

The dataset is seeded once per module (about 10 s); each test works on its own
copy of that data folder, with traces and proposals added by
:mod:`review_fixtures`, so tests never see each other's decisions.
"""

from __future__ import annotations

import re
import shutil

import pytest
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from db import queries
from r2ta import catalog, review
from r2ta.config import PROJECT_ROOT
from review_fixtures import GHOST, add_proposal, add_proposals, hostile_variant, store_variant

pytestmark = pytest.mark.xdist_group("pages")
APP = str(PROJECT_ROOT / "app.py")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    data = tmp_path_factory.mktemp("seeded-review")
    mp = pytest.MonkeyPatch()
    mp.setenv("R2TA_DATA_DIR", str(data))
    mp.delenv("R2TA_DATABASE_URL", raising=False)
    from r2ta.seeding import seed

    seed(with_model=False)
    mp.undo()
    return data


@pytest.fixture
def store(template, tmp_path, monkeypatch):
    """A private copy of the seeded data folder with 6 proposals (3 kinds of flawed trace); returns (engine, ids)."""
    data = tmp_path / "seeded"
    shutil.copytree(template, data, ignore=shutil.ignore_patterns("*.pid", "seed-*"))
    monkeypatch.setenv("R2TA_DATA_DIR", str(data))
    engine = catalog.open_engine()
    summaries = catalog.list_variant_summaries(engine, split="train")[:6]
    variants = [catalog.get_variant(engine, s.id) for s in summaries]
    return engine, add_proposals(engine, variants), variants


def _review_page(reviewer: str | None = "Ana", **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if reviewer:
        at.session_state["reviewer"] = reviewer
    at.run()
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page("pages/review.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _reviews(engine, pid=None):
    with Session(engine) as session:
        return queries.list_reviews(session=session, proposal_id=pid)


def _shown(at: AppTest) -> int:
    caption = next(c.value for c in at.caption if c.value.startswith("Proposal #"))
    return int(caption.split("#")[1].split(" ")[0])


def test_the_name_is_asked_once_and_stored_with_the_decision(store):
    engine, ids, _ = store
    at = _review_page(reviewer=None)
    at.text_input[0].input("Dr. Ana <b>Souza</b>")
    at.button[0].click().run()  # Start reviewing
    assert not at.exception
    assert _shown(at) == ids[0]
    at.button(key="btn_accept").click().run()
    assert at.success and "Saved **accept**" in at.success[0].value
    [r] = _reviews(engine)
    assert (r.proposal_id, r.reviewer, r.decision) == (ids[0], "Dr. Ana <b>Souza</b>", "accept")
    assert _shown(at) == ids[1], "after a decision the next pending item is shown"
    assert "Dr. Ana <b>Souza</b>" in [t.value for t in at.sidebar.text]  # shown as text, not HTML


def test_the_page_shows_both_sides_with_changes_marked(store):
    engine, ids, _ = store
    at = _review_page()
    cards = [h.proto.body for h in at.html]
    assert any("r2ta-hallucinated" in c and "line-through" in c and GHOST in c for c in cards)
    assert any("r2ta-inserted" in c and "inserted step" in c for c in cards)
    assert any("r2ta-removed" in c and "line-through" in c for c in cards), "the hallucinated verdict entry is struck"
    assert [s.value for s in at.subheader][:2] == ["Model's reasoning", "Proposed refinement"]
    chart = at.get("graphviz_chart")[0].proto.spec
    view = review.load_view(engine, ids[0])
    assert chart.count("#d62728") >= len(view.highlight()) > 0  # every mentioned element is outlined in red


def test_focusing_a_step_highlights_only_its_elements(store):
    engine, ids, _ = store
    at = _review_page()
    view = review.load_view(engine, ids[0])
    before = at.get("graphviz_chart")[0].proto.spec
    ghost = next(s for s in view.original if s.status == "hallucinated" and s.element_ids)
    at.button(key=f"focus_{ids[0]}_model_{ghost.number}").click().run()
    after = at.get("graphviz_chart")[0].proto.spec
    assert after != before and after.count("#d62728") < before.count("#d62728")
    assert any("outline: 2px" in h.proto.body and f"Step {ghost.number}" in h.proto.body for h in at.html)


def test_a_walk_shows_its_findings_as_cards_and_folds_the_constructs_checked_ok(store):
    from r2ta.audit import audit_walk

    engine, _, variants = store
    pid = add_proposal(engine, variants[0], kind=1, auditor=audit_walk)
    view = review.load_view(engine, pid)
    checked = [s for s in view.refined if s.status == "checked"]
    assert len(checked) > review.FOLD_CHECKED_OVER
    at = _review_page(proposal=str(pid))
    assert _shown(at) == pid

    def step_cards(status=None):  # the cards of the "Proposed refinement" column, its verdict aside
        column = next(c for c in at.columns if [h.value for h in c.subheader] == ["Proposed refinement"])
        return [h.proto.body for h in column.html if ("<b>Step " in h.proto.body or "folded" in h.proto.body)
                and (status is None or f"r2ta-{status}" in h.proto.body)]

    [folded] = step_cards("checked")
    assert f"{len(checked)} constructs" in folded and "folded" in folded
    findings = [s for s in view.refined if s.status != "checked"]
    assert len(step_cards()) == len(findings) + 1
    at.toggle(key=f"show_checked_{pid}").set_value(True).run()
    assert not at.exception and len(step_cards("checked")) == len(checked)
    assert len(step_cards()) == len(view.refined) and not any("folded" in c for c in step_cards())


def test_reject_needs_a_reason_then_saves_it(store):
    engine, ids, _ = store
    at = _review_page()
    at.button(key="btn_reject").click().run()
    assert at.warning and "Not saved" in at.warning[0].value and _reviews(engine) == []
    at.selectbox(key=f"reject_choice_{ids[0]}").select(review.REJECT_REASONS[1])
    at.text_input(key=f"reject_note_{ids[0]}").input("no key is missing")
    at.button(key="btn_reject").click().run()
    [r] = _reviews(engine)
    assert (r.decision, r.reason) == ("reject", f"{review.REJECT_REASONS[1]}. no key is missing")


def test_an_edit_with_an_unknown_element_is_refused_then_a_valid_one_saved(store):
    engine, ids, _ = store
    at = _review_page()
    box = at.text_area(key=f"edit_text_{ids[0]}")
    original = box.value
    box.input(original.replace("-> ok", "-> ok\nStep 99 [UNICORN]: a unicorn is missing. -> missing_element", 1)).run()
    at.button(key="btn_edit").click().run()
    assert at.warning and "Not saved" in at.warning[0].value
    assert any("UNICORN" in c.value and "not in the diagram" in c.value for c in at.code)
    assert _reviews(engine) == [] and "UNICORN" in at.text_area(key=f"edit_text_{ids[0]}").value  # nothing lost
    fixed = original.replace(" -> ok", " Checked. -> ok", 1)
    at.text_area(key=f"edit_text_{ids[0]}").input(fixed).run()
    at.button(key="btn_check").click().run()
    assert any(s.value.startswith("Valid:") for s in at.success)
    at.button(key="btn_edit").click().run()
    [r] = _reviews(engine)
    assert r.decision == "edit" and any("Checked." in s["text"] for s in r.steps)


def test_two_reviewers_on_one_item_conflict_and_nothing_is_lost(store):
    engine, ids, _ = store
    ana, bo = _review_page("Ana"), _review_page("Bo")
    assert _shown(ana) == _shown(bo) == ids[0]
    ana.button(key="btn_accept").click().run()
    mine = "Step 1 [" + bo.text_area(key=f"edit_text_{ids[0]}").value.split("Step 1 [", 1)[1].replace("key", "KEY", 1)
    bo.text_area(key=f"edit_text_{ids[0]}").input(mine).run()
    assert bo.warning and "after you opened it" in bo.warning[0].value
    bo.button(key="btn_edit").click().run()
    assert bo.error and "someone else saved this item first" in bo.error[0].value
    assert any("latest decision: accept by Ana" in c.value for c in bo.code)
    assert [(r.reviewer, r.decision) for r in _reviews(engine)] == [("Ana", "accept")]
    assert bo.text_area(key=f"edit_text_{ids[0]}").value == mine and _shown(bo) == ids[0]
    bo.button(key="btn_edit").click().run()  # reloaded: saving again adds Bo's review
    assert [(r.reviewer, r.decision) for r in _reviews(engine)] == [("Ana", "accept"), ("Bo", "edit")]


def test_filters_pick_the_item_and_progress_counts(store):
    engine, ids, variants = store
    at = _review_page()
    wanted = variants[3].mistakes[0].category
    at.sidebar.selectbox(key="rf_category").select(wanted).run()
    assert wanted in review.load_view(engine, _shown(at)).categories
    at.sidebar.selectbox(key="rf_base").select(variants[0].base_id).run()
    assert review.load_view(engine, _shown(at)).base_id == variants[0].base_id
    at.sidebar.selectbox(key="rf_split").select("test").run()
    assert any("Nothing to review" in i.value for i in at.info)
    at.sidebar.selectbox(key="rf_split").select("all").run()
    at.sidebar.selectbox(key="rf_category").select("all").run()
    first = _shown(at)
    at.button(key="btn_next").click().run()
    assert _shown(at) == ids[ids.index(first) + 1]
    progress = at.sidebar.get("progress")[0].proto.text
    assert progress.startswith("0 of ") and _reviews(engine) == []


def test_hostile_names_and_model_output_are_shown_as_text(store):
    engine, _, variants = store
    variant = hostile_variant(variants[0])
    store_variant(engine, variant)
    from review_fixtures import flawed_trace

    raw = flawed_trace(variant, 0).replace("is identified by", "<script>alert(3)</script> __bold__ :red[x] is identified by")
    model = "<img src=x onerror=alert(1)> :red[m] `x`"
    pid = add_proposal(engine, variant, raw=raw, model_id=model)
    at = _review_page(proposal=str(pid))
    assert _shown(at) == pid
    # Markdown strings carry user text only inside code spans (shown literally); step cards are escaped HTML.
    markdown = [re.sub(r"`[^`]*`", "", t.value) for t in [*at.markdown, *at.caption]]
    assert not any("<script" in t or "<img" in t or "<h1>" in t or ":red[" in t for t in markdown)
    assert any("`<img src=x onerror=alert(1)> :red[m] 'x'`" in c.value for c in at.caption)
    assert not any("<script" in h.proto.body or "<img" in h.proto.body for h in at.html)
    assert any("&lt;script&gt;alert(3)&lt;/script&gt;" in h.proto.body for h in at.html)
    assert any("<h1>big</h1>" in t.value for t in at.text)  # requirements: st.text, verbatim
    chart = at.get("graphviz_chart")[0].proto.spec
    assert "&lt;script&gt;" in chart and "<script" not in chart
    at.switch_page("pages/browse.py").run()
    at.segmented_control(key="browse_view").set_value("Search").run()
    at.text_input[0].input("<script>").run()
    assert not at.exception
    assert not any("<script" in m.value for m in at.markdown)


def test_browse_views_render(store):
    engine, ids, variants = store
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/browse.py").run()
    assert not at.exception and at.get("plotly_chart"), "the category chart is drawn"
    at.segmented_control(key="browse_view").set_value("Search").run()
    at.text_input[0].input(GHOST).run()
    assert any("hit" in c.value and not c.value.startswith("0") for c in at.caption)
    at.segmented_control(key="browse_view").set_value("Variant traces").run()
    at.selectbox(key="browse_variant").select(variants[0].id).run()
    assert not at.exception and any(h for h in at.html), "the trace and its audit are shown"
    at.segmented_control(key="browse_view").set_value("Model patterns").run()
    assert not at.exception and at.get("plotly_chart") and at.dataframe


def test_agreement_page_shows_kappa_and_resolves_a_disagreement(store):
    engine, ids, _ = store
    review.decide(engine, proposal_id=ids[0], expected_version=1, reviewer="Ana", decision="accept")
    review.decide(engine, proposal_id=ids[0], expected_version=2, reviewer="Bo", decision="reject", reason="no")
    review.decide(engine, proposal_id=ids[1], expected_version=1, reviewer="Ana", decision="reject", reason="no")
    review.decide(engine, proposal_id=ids[1], expected_version=2, reviewer="Bo", decision="reject", reason="no")
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["reviewer"] = "Cy"
    at.run()
    at.switch_page("pages/agreement.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Items with 2+ reviewers"] == "2" and metrics["Open disagreements"] == "1"
    at.button(key=f"resolve_{ids[0]}").click().run()
    assert not at.exception
    assert _reviews(engine, ids[0])[-1].reviewer == "Cy"
    assert {m.label: m.value for m in at.metric}["Open disagreements"] == "0"


def test_datasets_page_counts_previews_and_downloads(store):
    engine, ids, _ = store
    view = review.load_view(engine, ids[0])
    review.decide(engine, proposal_id=ids[0], expected_version=1, reviewer="Ana", decision="accept")
    review.decide(engine, proposal_id=ids[2], expected_version=1, reviewer="Ana", decision="reject", reason="no")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/exports.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["SFT examples ready"] == "1" and metrics["DPO pairs ready"] == "1"
    previews = [c.value for c in at.code if '"messages"' in c.value or '"chosen"' in c.value]
    assert len(previews) == 2 and view.refined_text.splitlines()[0].replace('"', '\\"') in previews[0]
    assert len(at.get("download_button")) == 2
