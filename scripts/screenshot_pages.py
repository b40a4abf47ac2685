"""Screenshot pages of the app on an existing data folder (e.g. the one `r2ta loop` filled).

    .venv/bin/python scripts/screenshot_pages.py --data-dir /tmp/loopdata --prefix loop- Train Evaluate
    .venv/bin/python scripts/screenshot_pages.py --data-dir /tmp/loopdata --prefix loop-schemas- --expand "Per base schema" Evaluate
    .venv/bin/python scripts/screenshot_pages.py --data-dir /tmp/loopdata --reviewer Ana --review-status accepted Review
    .venv/bin/python scripts/screenshot_pages.py --data-dir /tmp/resdata --prefix resume- --click Resume Train
    .venv/bin/python scripts/screenshot_pages.py --data-dir /tmp/loopdata --toggle "Earlier evaluations too" Evaluate

Serves the app on that data folder, opens each named page through the sidebar in
Debian's chromium at 1440x900 (full page height with --full-page) and writes
``assets/screenshots/<prefix><page-slug>.png``. The browser test keeps the seeded
screenshots current; this one records what a real run looks like.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from r2ta.app_server import CHROMIUM, CHROMIUM_ARGS, ROOT, start_app
from r2ta.errors import R2taError


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pages", nargs="+", help="page titles as the sidebar shows them")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--prefix", default="")
    ap.add_argument("--full-page", action="store_true")
    ap.add_argument("--expand", action="append", default=[], metavar="LABEL",
                    help="open the expander whose label starts with LABEL before the screenshot (repeatable)")
    ap.add_argument("--charts", action="store_true",
                    help="a 1440x1280 window, to take in the page's plotly charts (the Train page's curves), and wait for them")
    ap.add_argument("--reviewer", metavar="NAME", help="the name to give a page that asks for one (Review)")
    ap.add_argument("--review-status", choices=("pending", "accepted", "edited", "rejected", "any"),
                    help="on the Review page, the sidebar's Status filter (accepted, edited, rejected, any) before the screenshot")
    ap.add_argument("--toggle", action="append", default=[], metavar="LABEL",
                    help="turn on the toggle (or checkbox) labelled LABEL before the screenshot (repeatable)")
    ap.add_argument("--scroll-to", metavar="TEXT",
                    help="scroll the first element showing TEXT into view before the screenshot (below the fold)")
    ap.add_argument("--click", metavar="LABEL",
                    help="after the screenshot, click the button whose name starts with LABEL, wait for the page, "
                         "and take a second one (<prefix><page>-clicked.png)")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "screenshots")
    args = ap.parse_args()

    try:
        server = start_app(args.data_dir, args.data_dir / "screenshot-streamlit.log")
    except R2taError as err:
        sys.exit(str(err))
    base = server.url
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1440, "height": 1280 if args.charts else 900}).new_page()
            page.set_default_timeout(120_000)
            page.goto(base)
            expect(page.get_by_role("heading", name="R2tA Studio")).to_be_visible()
            for title in args.pages:
                page.get_by_role("link", name=title, exact=True).click()
                expect(page.get_by_role("heading", level=1).first).to_be_visible()
                # The status widget can lag the click on a busy machine: give the rerun a moment to
                # start, then wait for it, and for Streamlit's placeholders, to be gone.
                page.wait_for_timeout(1500)
                running = page.get_by_test_id("stStatusWidget").filter(has_text=re.compile("Running|Stop"))
                expect(running).to_have_count(0)
                expect(page.get_by_test_id("stSkeleton")).to_have_count(0)
                if args.reviewer and page.get_by_label("Your name").count():
                    page.get_by_label("Your name").fill(args.reviewer)
                    page.get_by_role("button", name="Start reviewing").click()
                    expect(page.get_by_label("Your name")).to_have_count(0)
                if args.review_status and page.get_by_label("Status").count():
                    box = page.get_by_label("Status")
                    box.click()
                    if not page.get_by_role("option").count():
                        box.press("ArrowDown")  # a click on an already focused box does not open it
                    page.get_by_role("option", name=args.review_status, exact=True).click()
                    page.wait_for_timeout(1500)
                    expect(running).to_have_count(0)
                for chart in ("stPlotlyChart", "stGraphVizChart"):
                    if page.get_by_test_id(chart).count():
                        expect(page.get_by_test_id(chart).first.locator("svg").first).to_be_visible()
                for label in args.toggle:
                    box = page.get_by_label(label, exact=True)
                    if not box.is_checked():
                        box.check(force=True)  # Streamlit hides the input under its own switch
                        page.wait_for_timeout(1500)
                        expect(running).to_have_count(0)
                for label in args.expand:
                    summary = page.get_by_test_id("stExpander").locator("summary").filter(has_text=label)
                    expect(summary.first).to_be_visible()  # the page may still be drawing: an unseen one is an error
                    details = summary.first.locator("xpath=..")
                    stayed = 0
                    for _ in range(12):  # a click during a rerun can be lost, a rerun can close it again:
                        expect(running).to_have_count(0)  # click until it is seen open twice in a row
                        if details.get_attribute("open") is not None:
                            stayed += 1
                            if stayed == 2:
                                break
                        else:
                            stayed = 0
                            summary.first.click()
                        page.wait_for_timeout(1000)
                    summary.first.scroll_into_view_if_needed()
                if args.charts and page.get_by_test_id("stPlotlyChart").count():
                    expect(page.get_by_test_id("stPlotlyChart").first.locator(".plot-container svg").first).to_be_visible()
                if args.scroll_to:
                    page.get_by_text(args.scroll_to).first.scroll_into_view_if_needed()
                page.wait_for_timeout(1500)
                for grid in page.get_by_test_id("stDataFrame").all():  # a table draws its canvas once on screen
                    if grid.is_visible():
                        expect(grid.locator("canvas").first).to_be_visible()
                page.wait_for_timeout(1000)
                slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
                path = args.out / f"{args.prefix}{slug}.png"
                page.screenshot(path=str(path), full_page=args.full_page)
                print(path)
                if args.click:
                    page.get_by_role("button", name=re.compile("^" + re.escape(args.click))).first.click()
                    page.wait_for_timeout(3000)
                    expect(running).to_have_count(0)
                    page.wait_for_timeout(1500)
                    path = args.out / f"{args.prefix}{slug}-clicked.png"
                    page.screenshot(path=str(path), full_page=args.full_page)
                    print(path)
            browser.close()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
