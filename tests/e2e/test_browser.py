"""The app in a real browser: Debian chromium driven by playwright against ``streamlit run app.py``.

One module-scoped server on a free port, against a temporary data folder that
is seeded (the 600-variant dataset) and given a few traces and proposals by
:mod:`review_fixtures` (no model needed). The tests then:

* accept one item (with the keyboard shortcut), edit another, reject a third,
  and check the database holds exactly those three decisions;
* let two browser contexts decide the same item at the same moment: one is
  saved, the other sees the conflict message and keeps what it typed, and
  saving again keeps both reviews;
* open an item whose names and model output are hostile (HTML, script tags,
  markdown, DOT syntax): shown as text, no script runs, no element injected;
* save a 1440x900 screenshot of every page in the sidebar into ``assets/screenshots/<title-slug>.png``;
* open a page's link (with its query) as the server's very first visitor: it lands there.

Skipped, with the reason printed, only when ``/usr/bin/chromium`` is absent.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from sqlmodel import Session

from db import queries
from r2ta.app_server import CHROMIUM, CHROMIUM_ARGS, start_app
from r2ta.config import PROJECT_ROOT

SHOTS = PROJECT_ROOT / "assets" / "screenshots"
VIEWPORT = {"width": 1440, "height": 900}
TIMEOUT_MS = 60_000

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

if not Path(CHROMIUM).exists():
    print(f"\nskipping the browser tests: {CHROMIUM} is absent (install the Debian chromium package: make setup)")
    pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (make setup)", allow_module_level=True)

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

expect.set_options(timeout=TIMEOUT_MS)  # a loaded CI machine can take seconds per script run


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A seeded data folder with proposals, and a streamlit server on it: yields (base url, engine, ids)."""
    data = tmp_path_factory.mktemp("e2e-data")
    mp = pytest.MonkeyPatch()
    mp.setenv("R2TA_DATA_DIR", str(data))
    mp.delenv("R2TA_DATABASE_URL", raising=False)
    from r2ta import catalog
    from r2ta.seeding import seed
    from review_fixtures import add_proposal, add_proposals, flawed_trace, hostile_variant, store_variant

    seed(with_model=False)
    engine = catalog.open_engine()
    variants = [catalog.get_variant(engine, s.id) for s in catalog.list_variant_summaries(engine, split="train")[:9]]
    ids = add_proposals(engine, variants)
    hostile = hostile_variant(variants[0])
    store_variant(engine, hostile)
    raw = flawed_trace(hostile, 0).replace("is identified by", "<script>alert(3)</script> __bold__ :red[x] is identified by")
    hostile_id = add_proposal(engine, hostile, raw=raw, model_id="<img src=x onerror=alert(\"model\")> :red[m]")
    # The Evaluate page's screenshot shows a real comparison: the checker alone on the test split
    # (costs no model) beside the fixture model's traces on the test variants it has.
    from r2ta.evaluation import evaluate
    from r2ta.pipeline import evaluate_model
    from review_fixtures import MODEL_ID

    add_proposals(engine, [catalog.get_variant(engine, s.id) for s in catalog.list_variant_summaries(engine, split="test")[:12]])
    evaluate("checker", split="test", engine=engine)
    evaluate_model(MODEL_ID, split="test", engine=engine, store=True)

    server = start_app(data, data / "streamlit.log")
    yield server.url, engine, ids, hostile_id
    server.stop()
    mp.undo()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield b
        b.close()


def _open(browser, base: str, page_name: str, reviewer: str | None = None, path: str = "") -> Page:
    """A fresh browser context on the app, navigated to ``page_name`` through the sidebar (or ``path``)."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message!r} (script injection?)"))
    page.goto(base)
    expect(page.get_by_role("heading", name="R2tA Studio")).to_be_visible()
    if path:
        page.goto(base + path)
    else:
        page.get_by_role("link", name=page_name, exact=True).click()
    if reviewer:
        page.get_by_label("Your name").fill(reviewer)
        page.get_by_role("button", name="Start reviewing").click()
        expect(page.get_by_text(re.compile(r"^Proposal #\d+"))).to_be_visible()
    return page


def _settle(page: Page) -> None:
    """Wait until the script run is over: no "Running" status, no stale elements of the previous run (twice, apart)."""
    running = page.get_by_test_id("stStatusWidget").filter(has_text=re.compile("Running|Stop"))
    for _ in range(2):
        page.wait_for_timeout(400)
        expect(running).to_have_count(0, timeout=TIMEOUT_MS)
        expect(page.locator('[data-stale="true"]')).to_have_count(0, timeout=TIMEOUT_MS)


def _shown(page: Page) -> int:
    _settle(page)
    text = page.get_by_text(re.compile(r"^Proposal #\d+")).inner_text()
    return int(re.search(r"#(\d+)", text).group(1))


def _wait_saved(page: Page, decision: str, pid: int) -> None:
    expect(page.get_by_text(f"Saved {decision} on proposal #{pid}")).to_be_visible()


def _decisions(engine) -> list[tuple[int, str, str]]:
    with Session(engine) as session:
        return [(r.proposal_id, r.reviewer, r.decision) for r in queries.list_reviews(session=session)]


def _pick_reason(page: Page, index: int) -> None:
    """Open the reason dropdown (a click on an already focused box does not open it: the arrow key does)."""
    _settle(page)
    combo = page.get_by_label("Reject because")
    combo.click()
    if not page.get_by_role("option").count():
        combo.press("ArrowDown")
    page.get_by_role("option").nth(index).click()
    _settle(page)  # choosing reruns the script


def _reject(page: Page, reason_index: int = 1) -> None:
    _pick_reason(page, reason_index)
    page.get_by_role("button", name="Reject").click()


def test_a_link_opened_first_on_a_fresh_server_lands_on_its_page(app, browser):
    """Before any visitor has run app.py, Streamlit serves pages/*.py bare; the page sends the visitor through
    app.py, which must then open the page the link named, with its query (it opened the Overview, query lost).
    First in this module: the server has served no page yet."""
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    base, _, _, _ = app
    page.goto(base + "/evaluate?models=checker")
    expect(page.get_by_role("heading", name="Evaluate", exact=True)).to_be_visible()
    _settle(page)
    chosen = page.get_by_test_id("stMultiSelect").first
    expect(chosen.get_by_text("checker", exact=True)).to_be_visible()
    expect(chosen.get_by_text("smollm2-135m-test", exact=True)).to_have_count(0)  # the link's choice, not the default
    assert page.url.endswith("/evaluate?models=checker")
    page.context.close()


def test_accept_edit_reject_are_stored_exactly(app, browser):
    base, engine, ids, _ = app
    page = _open(browser, base, "Review", reviewer="Ana")
    first = _shown(page)
    assert first == ids[0]
    expect(page.get_by_role("button", name="Accept")).to_be_enabled()
    page.get_by_role("heading", name="Review").first.click()  # focus outside any box, then the shortcut
    _settle(page)
    page.keyboard.press("a")
    _wait_saved(page, "accept", first)

    second = _shown(page)
    assert second == ids[1]
    page.get_by_text("Edit the refinement, then accept").click()
    box = page.get_by_label("Refined trace")
    text = box.input_value()
    edited = text.replace(" -> ok", " Checked in the browser. -> ok", 1)
    assert edited != text
    box.fill(edited)
    box.press("Tab")  # commit the text (a rerun) before the click: a click landing in that rerun was lost in CI
    _settle(page)
    page.get_by_role("button", name="Save edit & accept").click()
    _wait_saved(page, "edit", second)

    third = _shown(page)
    _reject(page)
    _wait_saved(page, "reject", third)

    assert _decisions(engine) == [(first, "Ana", "accept"), (second, "Ana", "edit"), (third, "Ana", "reject")]
    with Session(engine) as session:
        edit = queries.list_reviews(session=session, proposal_id=second)[0]
    assert any(s["text"].endswith("Checked in the browser.") for s in edit.steps)
    page.context.close()


def test_two_reviewers_deciding_at_once_one_conflicts_nothing_lost(app, browser):
    base, engine, ids, _ = app
    before = _decisions(engine)
    ana, bo = _open(browser, base, "Review", reviewer="Cy"), _open(browser, base, "Review", reviewer="Dee")
    pid = _shown(ana)
    assert _shown(bo) == pid and pid not in {p for p, _, _ in before}
    ana.get_by_label("Note (optional; required for Other)").fill("Cy typed this")
    bo.get_by_label("Note (optional; required for Other)").fill("Dee typed this")
    for page in (ana, bo):
        _pick_reason(page, 4)  # Other: the typed note is the reason
    ana.get_by_role("button", name="Reject").click()  # both click before either save is done
    bo.get_by_role("button", name="Reject").click()

    conflict = "Not saved: someone else saved this item first."
    winner = loser = None
    deadline = time.monotonic() + 60
    while winner is None and time.monotonic() < deadline:
        for page, other in ((ana, bo), (bo, ana)):
            if page.get_by_text(conflict).count():
                winner, loser = other, page
        time.sleep(0.3)
    assert loser is not None, "neither page shows the conflict message"
    _wait_saved(winner, "reject", pid)
    new = [d for d in _decisions(engine) if d not in before]
    assert len(new) == 1 and new[0][0] == pid, "exactly one decision saved"
    typed = "Cy typed this" if loser is ana else "Dee typed this"
    assert loser.get_by_label("Note (optional; required for Other)").input_value() == typed  # nothing lost
    assert _shown(loser) == pid
    loser.get_by_role("button", name="Reject").click()  # reloaded: saving again keeps both
    _wait_saved(loser, "reject", pid)
    new = [d for d in _decisions(engine) if d not in before]
    assert sorted(r for _, r, _ in new) == ["Cy", "Dee"] and {p for p, _, _ in new} == {pid}
    with Session(engine) as session:
        reasons = {r.reviewer: r.reason for r in queries.list_reviews(session=session, proposal_id=pid)}
    assert reasons == {"Cy": "Cy typed this", "Dee": "Dee typed this"}
    ana.context.close()
    bo.context.close()


def test_hostile_text_is_shown_as_text(app, browser):
    base, _, _, hostile_id = app
    page = _open(browser, base, "Review", path=f"/review?proposal={hostile_id}")
    page.get_by_label("Your name").fill('<img src=x onerror=alert("name")>')
    page.get_by_role("button", name="Start reviewing").click()
    expect(page.get_by_text(f"Proposal #{hostile_id} ")).to_be_visible()
    expect(page.get_by_text("<script>alert(3)</script> __bold__ :red[x]").first).to_be_visible()
    expect(page.get_by_text('<img src=x onerror=alert("name")>')).to_be_visible()  # the reviewer's name, as text
    injected = page.evaluate(
        "() => [document.querySelectorAll('img[src=\"x\"]').length,"
        " [...document.scripts].filter(s => s.textContent.includes('alert(')).length,"
        " document.querySelectorAll('h1').length]"
    )
    assert injected == [0, 0, 1], f"injected elements (img, script, h1): {injected}"
    svg = page.locator("svg").filter(has_text="script").first.inner_html()
    assert "&lt;script&gt;" in svg and "<script" not in svg
    page.context.close()


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _drawn(page: Page) -> None:
    """Wait until the charts on screen are drawn (plotly and graphviz render after the script run)."""
    _settle(page)
    for chart, svg in (("stPlotlyChart", ".main-svg"), ("stGraphVizChart", "svg")):
        if page.get_by_test_id(chart).count():
            expect(page.get_by_test_id(chart).first.locator(svg).first).to_be_visible()
    page.wait_for_timeout(800)


def test_screenshots_of_every_page(app, browser):
    base, engine, ids, _ = app
    from r2ta import review

    # A disagreement for the Agreement page: two reviewers decide one item differently.
    review.decide(engine, proposal_id=ids[7], expected_version=1, reviewer="Ana", decision="accept")
    review.decide(engine, proposal_id=ids[7], expected_version=2, reviewer="Bo", decision="reject",
                  reason=review.REJECT_REASONS[2])
    # An accepted item of its own, so that the Datasets page shows rows whichever tests ran before this one
    # (a run of this test alone caught it with none: the other tests' decisions are the rest).
    review.decide(engine, proposal_id=ids[8], expected_version=1, reviewer="Ana", decision="accept")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = _open(browser, base, "Overview")
    links = page.get_by_test_id("stSidebarNav").get_by_role("link").all()
    titles = [a.inner_text().strip().split("\n")[-1].strip() for a in links]  # the icon ligature comes first
    declared = Path(PROJECT_ROOT / "app.py").read_text().count("st.Page(")
    assert len(titles) == declared, f"the sidebar lists {titles}, app.py declares {declared} pages"
    for link in titles:
        name = _slug(link)
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("heading", level=1).first).to_be_visible()
        _settle(page)
        if link == "Review":
            page.get_by_label("Your name").fill("Ana")
            page.get_by_role("button", name="Start reviewing").click()
            while _shown(page) != ids[6]:  # an item whose refinement drops, inserts and changes the verdict
                page.get_by_role("button", name="Next").click()
        _drawn(page)
        page.screenshot(path=str(SHOTS / f"{name}.png"))
        if link == "Review":
            page.get_by_role("button", name="my_location").nth(2).click()  # focus the hallucinated step
            _drawn(page)
            page.get_by_role("heading", name="Model's reasoning").scroll_into_view_if_needed()
            page.mouse.wheel(0, -260)
            page.wait_for_timeout(500)
            page.screenshot(path=str(SHOTS / "review-steps.png"))
    page.context.close()
    assert {p.name for p in SHOTS.glob("*.png")} >= {f"{_slug(t)}.png" for t in titles} | {"review-steps.png"}
