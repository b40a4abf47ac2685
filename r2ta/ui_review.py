"""Streamlit widgets of the review, browse, agreement and datasets pages (streamlit-aware, like :mod:`r2ta.ui`).

Text safety: every piece of user or model text reaches the page through
``st.text``, ``st.code``, a dataframe cell, a widget's plain-text option, or
:func:`html.escape` inside the step cards built here (rendered with
``st.html``, which DOMPurify sanitises on top). Markdown strings hold only
fixed words, numbers and ids (which match ``[\\w.:-]``).

The step cards are pure functions (:func:`step_card`, :func:`verdict_card`) so
tests can check their escaping without a browser.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

import streamlit as st

from db.errors import ReviewConflict
from r2ta import browse, catalog, review
from r2ta.eerd import CATEGORIES, diagram_from_json, diagram_to_json
from r2ta.review import DecisionRefused, ReviewFilters, ReviewView, StepLine, VerdictLine
from r2ta.ui import category_label, engine, show_last_job

# status -> (label, text colour, background)
STYLES = {
    "correct": ("✓ correct", "#1b5e20", "#edf7ee"),
    "hallucinated": ("✗ hallucinated", "#b71c1c", "#fdecea"),
    "inconsistent": ("⚠ inconsistent", "#8a4b00", "#fff4e5"),
    "irrelevant": ("– irrelevant", "#555555", "#f1f1f1"),
    "unaudited": ("? not audited", "#555555", "#f1f1f1"),
    "kept": ("= kept", "#555555", "#fafafa"),
    "inserted": ("+ inserted", "#0d47a1", "#e8f1fb"),
    "checked": ("✓ checked, ok", "#555555", "#fafafa"),
    "rewritten": ("✎ rewritten", "#4a148c", "#f3e8f7"),
    "removed": ("✗ removed", "#b71c1c", "#fdecea"),
    "added": ("+ added", "#0d47a1", "#e8f1fb"),
}
_E = html.escape


def _card(status: str, head: str, body: str, reason: str, struck: bool, focused: bool = False, extra: str = "") -> str:
    label, fg, bg = STYLES.get(status, (status, "#555555", "#f1f1f1"))
    outline = f"outline: 2px solid {fg};" if focused else ""
    strike = "text-decoration: line-through; opacity: 0.75;" if struck else ""
    why = f'<div style="font-size:0.82rem; color:{fg}; margin-top:2px;">{_E(reason)}</div>' if reason else ""
    return (
        f'<div class="r2ta-card r2ta-{_E(status)}" style="border-left:4px solid {fg}; background:{bg}; {outline} '
        'padding:6px 10px; margin:0 0 6px 0; border-radius:4px; font-size:0.9rem; line-height:1.35;">'
        f'<div style="font-size:0.72rem; font-weight:700; letter-spacing:0.02em; color:{fg};">{_E(label)}{extra}</div>'
        f'<div style="{strike}">{head} {body}</div>{why}</div>'
    )


def step_card(line: StepLine, focused: bool = False) -> str:
    """One step as an escaped HTML card: number, elements, text, finding; dropped steps struck through."""
    head = f"<b>Step {line.number}</b> <code style=\"font-size:0.85em\">[{_E(', '.join(line.elements))}]</code>:"
    body = f"{_E(line.body)} <b>→ {_E(line.finding or 'no finding')}</b>"
    extra = " · dropped from the refinement" if line.dropped else ""
    return _card(line.status, head, body, line.reason, struck=line.dropped, focused=focused, extra=_E(extra))


def folded_card(lines: list[StepLine]) -> str:
    """A walk's checked steps as one escaped card: how many, their step numbers, the constructs they name."""
    head = f"<b>{len(lines)} constructs</b> (steps {_E(_ranges([s.number for s in lines]))}):"
    names = ", ".join(s.elements[0] if s.elements else f"step {s.number}" for s in lines)
    return _card("checked", head, _E(names), "", struck=False, extra=" · folded")


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> '1-3, 5, 7-8'."""
    out: list[str] = []
    for n in numbers:
        if out and n == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def verdict_card(line: VerdictLine) -> str:
    head = f"<b>{_E(line.category)}</b> <code style=\"font-size:0.85em\">[{_E(', '.join(line.elements))}]</code>"
    return _card(line.status, head, _E(line.explanation), line.reason, struck=line.status == "removed")


@st.cache_data(show_spinner="Counting hallucinations and omissions…", ttl=600)
def _cached_patterns(url: str, traces_stamp: int) -> list[browse.Pattern]:
    return browse.model_patterns(engine())


def cached_patterns() -> list[browse.Pattern]:
    """:func:`r2ta.browse.model_patterns`, recomputed when the number of traces changes."""
    return _cached_patterns(catalog.database_url(), catalog.stage_counts(engine())["traces"])


@dataclass(frozen=True)
class ExportPreview:
    rows: int
    first: dict | None  # the first row in TRL's format (no provenance)
    provenance: dict | None
    jsonl: bytes  # what `r2ta export KIND --split ...` writes
    skipped: tuple[str, ...]


def cached_export(kind: str, split: str) -> ExportPreview:
    """SFT rows or DPO pairs from the decisions in force (:func:`r2ta.pipeline.export_rows`), rebuilt when a review is added."""
    return _cached_export(kind, split, catalog.database_url(), catalog.stage_counts(engine())["reviews"])


@st.cache_data(show_spinner="Building the training rows…", ttl=600)
def _cached_export(kind: str, split: str, url: str, reviews_stamp: int) -> ExportPreview:
    from r2ta.pairs import to_trl
    from r2ta.pipeline import export_rows

    report = export_rows(kind, split=None if split == "all" else split, engine=engine())  # type: ignore[arg-type]
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in report.rows).encode("utf-8")
    first = report.rows[0] if report.rows else None
    return ExportPreview(len(report.rows), to_trl([first])[0] if first else None,
                         first.get("provenance") if first else None, data, tuple(report.skipped))


# -- the reviewer ------------------------------------------------------------------------


def require_reviewer() -> str | None:
    """The reviewer's name, asked once per session; None (and a form) until given."""
    name = st.session_state.get("reviewer", "").strip()
    if name:
        st.sidebar.caption("Reviewing as")
        st.sidebar.text(name)
        if st.sidebar.button("Change name", icon=":material/person:"):
            st.session_state.reviewer = ""
            st.rerun()
        return name
    with st.form("reviewer_form"):
        st.write("Your name is stored with every decision you make (several reviewers may review the same item).")
        typed = st.text_input("Your name", max_chars=80, placeholder="e.g. Ana Souza")
        if st.form_submit_button("Start reviewing", type="primary") and typed.strip():
            st.session_state.reviewer = typed.strip()
            st.rerun()
    return None


# -- filters and progress ----------------------------------------------------------------


def _reset_item() -> None:
    st.session_state.pop("review_current", None)


def review_filters(reviewer: str, schemas: list[str], models: list[str]) -> ReviewFilters:
    sb = st.sidebar
    sb.subheader("Filters")
    any_ = "all"
    category = sb.selectbox("Category", [any_, *CATEGORIES], key="rf_category", on_change=_reset_item,
                            format_func=lambda c: c if c == any_ else category_label(c))
    split = sb.selectbox("Split", [any_, "train", "test"], key="rf_split", on_change=_reset_item)
    base = sb.selectbox("Base schema", [any_, *schemas], key="rf_base", on_change=_reset_item)
    model = sb.selectbox("Model", [any_, *models], key="rf_model", on_change=_reset_item)
    status = sb.selectbox("Status", ["pending", "accepted", "edited", "rejected", review.STATUS_ANY], key="rf_status",
                          on_change=_reset_item)
    mine = sb.toggle("Hide items I reviewed", value=True, key="rf_mine", on_change=_reset_item)
    pick = lambda v: None if v == any_ else v  # noqa: E731
    return ReviewFilters(pick(category), pick(split), pick(base), pick(model), status, reviewer if mine else None)


@st.cache_data(show_spinner=False, ttl=600, max_entries=200)
def _cached_progress(url: str, filters: ReviewFilters, stamp: tuple[int, int, int]) -> review.Progress:
    return review.review_progress(engine(), filters)


def cached_progress(filters: ReviewFilters) -> review.Progress:
    """:func:`r2ta.review.review_progress`, recomputed when a review or a proposal is added (anyone's)."""
    return _cached_progress(catalog.database_url(), filters, review.store_stamp(engine()))


def show_progress(progress: review.Progress) -> None:
    sb = st.sidebar
    sb.subheader("Progress")
    sb.progress(progress.fraction, text=f"{progress.reviewed} of {progress.total} reviewed (these filters, any status)")
    if progress.reviewers:
        sb.dataframe(
            [{"reviewer": r.reviewer, "items": r.items, "✓": r.accept, "✎": r.edit, "✗": r.reject}
             for r in progress.reviewers],
            hide_index=True, width="stretch",
            column_config={"reviewer": st.column_config.TextColumn(width="medium"),
                           **{c: st.column_config.NumberColumn(width=40) for c in ("items", "✓", "✎", "✗")}},
        )
    sb.caption("Per reviewer: items reviewed, ✓ accepted, ✎ edited, ✗ rejected.  \nKeys: **A** accept · **X** reject · "
               "**N** next (not while typing in a box)")


# -- one item ----------------------------------------------------------------------------


def code_md(text: str) -> str:
    """Text as a markdown code span: shown literally (no markdown, HTML, emoji or directives) — for ids in labels."""
    return "`" + " ".join(str(text).replace("`", "'").split())[:200] + "`"


def show_header(view: ReviewView) -> None:
    st.caption(
        f"Proposal #{view.proposal_id} (version {view.version}) · variant {code_md(view.variant_id)} · {view.split} · "
        f"model {code_md(view.model_id)} · auditor {code_md(view.auditor_id)} · status **{view.status}** · "
        f"{len(view.reviews)} review(s)"
    )


def _focus_key(view: ReviewView) -> str:
    return f"review_focus_{view.proposal_id}"


def show_diagram_and_requirements(view: ReviewView) -> None:
    focus = st.session_state.get(_focus_key(view), ("all", 0))
    left, right = st.columns([2, 1])
    with left:
        what = "every element the model and the auditor mention (a walk's ok steps aside)" if focus[0] == "all" else f"the elements of {focus[0]} step {focus[1]}"
        st.caption(f"Highlighted: {what}. Click the target beside a step to show only its elements; hover an element for the "
                   "notes; the full-screen button at the diagram's top right (on hover) enlarges it.")
        if focus[0] != "all":
            st.button("Highlight all", key=f"focus_all_{view.proposal_id}", on_click=_set_focus, args=(view, ("all", 0)))
        st.graphviz_chart(_dot(diagram_to_json(view.diagram, indent=None), tuple(sorted(view.highlight(focus).items()))),
                          width="stretch")
    with right:
        st.markdown("**Requirements**")
        with st.container(height=640):
            st.text(view.requirements)


@st.cache_data(show_spinner=False, max_entries=256)
def _dot(diagram_json: str, highlight: tuple[tuple[str, str], ...]) -> str:
    """DOT source of a diagram with its highlights; cached because ``to_dot`` settles the layout with graphviz (~0.1 s)."""
    from r2ta.render import to_dot

    return to_dot(diagram_from_json(diagram_json), highlight=dict(highlight))


def _set_focus(view: ReviewView, focus: tuple[str, int]) -> None:
    st.session_state[_focus_key(view)] = focus


def _step_rows(view: ReviewView, side: str, lines: list[StepLine]) -> None:
    focus = st.session_state.get(_focus_key(view), ("all", 0))
    for line in lines:
        card, button = st.columns([14, 1], vertical_alignment="center")
        card.html(step_card(line, focused=focus == (side, line.number)))
        button.button("", icon=":material/my_location:", key=f"focus_{view.proposal_id}_{side}_{line.number}", help="Highlight this step's elements",
                      on_click=_set_focus, args=(view, (side, line.number)))


def show_comparison(view: ReviewView) -> None:
    """The model's reasoning and the proposed refinement, side by side, changes marked per step."""
    left, right = st.columns(2, gap="medium")
    with left:
        st.subheader("Model's reasoning")
        if not view.original:
            st.warning("The model's output has no readable steps; see its raw output below.")
        _step_rows(view, "model", view.original)
        st.markdown("**Verdict**")
        for v in view.original_verdict:
            st.html(verdict_card(v))
        if not view.original_verdict:
            st.caption("NONE (no mistakes listed)")
    with right:
        st.subheader("Proposed refinement")
        checked = sum(s.status == "checked" for s in view.refined)
        show_all = checked > review.FOLD_CHECKED_OVER and st.toggle(
            f"Show the {checked} constructs checked ok", key=f"show_checked_{view.proposal_id}",
            help="This refinement walks the diagram, one step per construct; by default only its findings are cards.")
        cards, folded = view.refined_cards(show_checked=show_all)
        _step_rows(view, "refined", cards)
        if folded:
            st.html(folded_card(folded))
        st.markdown("**Verdict**" + (" (changed)" if view.verdict_changed else " (unchanged)"))
        for v in view.refined_verdict:
            st.html(verdict_card(v))
        if not view.refined_verdict:
            st.caption("NONE (no mistakes listed)")
    with st.expander(f"Auditor's changes ({len(view.changes)}), flags ({len(view.flags)}), raw output, ground truth"):
        st.text("\n".join(f"• {c}" for c in view.changes) or "No changes: the auditor found the trace correct.")
        if view.flags:
            st.text("Flags:\n" + "\n".join(f"• {f}" for f in view.flags))
        st.caption("Raw model output")
        st.code(view.raw_output or "(empty)", language=None, wrap_lines=True)
        if view.parse_errors:
            st.text("Parse errors:\n" + "\n".join(f"• {e}" for e in view.parse_errors))
        st.caption("Ground truth (the induced mistakes)")
        st.dataframe([{"category": m.category, "elements": ", ".join(m.elements), "explanation": m.explanation}
                      for m in view.truth], hide_index=True, width="stretch")
    if view.reviews:
        st.caption("Reviews of this item so far")
        st.dataframe([{"#": r.id, "reviewer": r.reviewer, "decision": r.decision, "reason": r.reason,
                       "on version": r.version, "at (UTC)": f"{r.created_at:%Y-%m-%d %H:%M}"} for r in view.reviews],
                     hide_index=True, width="stretch")


# -- deciding ----------------------------------------------------------------------------


def _flash(kind: str, title: str, detail: str = "") -> None:
    st.session_state["review_flash"] = (kind, title, detail)


def show_flash() -> None:
    flash = st.session_state.pop("review_flash", None)
    if not flash:
        return
    kind, title, detail = flash
    {"success": st.success, "error": st.error, "warning": st.warning}[kind](title)
    if detail:
        st.code(detail, language=None, wrap_lines=True)


def _decide(view: ReviewView, reviewer: str, filters: ReviewFilters, decision: str) -> None:
    pid = view.proposal_id
    seen = st.session_state.setdefault("review_seen", {})
    expected = seen.get(pid, view.version)
    try:
        reason = ""
        if decision == "reject":
            reason = review.reject_reason(st.session_state.get(f"reject_choice_{pid}"),
                                          st.session_state.get(f"reject_note_{pid}", ""))
        result = review.decide(engine(), proposal_id=pid, expected_version=expected, reviewer=reviewer,
                               decision=decision, reason=reason,
                               edited_text=st.session_state.get(f"edit_text_{pid}") if decision == "edit" else None)
    except ReviewConflict as err:
        seen[pid] = review.load_view(engine(), pid).version  # reloaded: the next save counts as seen
        _flash("error", "**Not saved: someone else saved this item first.** It is reloaded below with their "
               "decision; what you typed is kept. Save again to add your own review.", str(err))
        return
    except DecisionRefused as err:
        _flash("warning", "**Not saved.** Fix what is listed and try again.", "\n".join([str(err), *err.problems]))
        return
    extra = " SFT example ready." if result.sft_row else ""
    extra += f" DPO pair #{result.pair_id} stored." if result.pair_id else (f" ({result.note})" if result.note else "")
    seen.pop(pid, None)
    _flash("success", f"Saved **{decision}** on proposal #{pid} (review #{result.review_id}).{extra}")
    _go_next(pid, filters)


def _go_next(after: int, filters: ReviewFilters) -> None:
    st.session_state.setdefault("review_seen", {}).pop(after, None)
    st.session_state["review_current"] = review.next_item_id(engine(), filters, after_id=after)


def mark_seen(view: ReviewView) -> None:
    """Remember the version this reviewer first saw; a save is checked against it, not against a later rerun's.

    A rerun (typing, focusing a step) re-reads the item; if someone saved meanwhile the page shows it,
    and this reviewer's next save is refused once with the conflict message (then counts as reloaded).
    """
    seen = st.session_state.setdefault("review_seen", {})
    for other in [p for p in seen if p != view.proposal_id]:  # only the item on screen is remembered
        del seen[other]
    first = seen.setdefault(view.proposal_id, view.version)
    if first != view.version:
        st.warning("Someone saved a decision on this item after you opened it (see the reviews below). "
                   "Your next save will be refused once so that you can check theirs.")


def action_bar(view: ReviewView, reviewer: str, filters: ReviewFilters) -> None:
    pid = view.proposal_id
    a, reason, note, x, n = st.columns([1.1, 2.4, 2.4, 1.1, 1.1], vertical_alignment="bottom")
    a.button("Accept", type="primary", shortcut="A", key="btn_accept", width="stretch", icon=":material/check:",
             on_click=_decide, args=(view, reviewer, filters, "accept"))
    reason.selectbox("Reject because", review.REJECT_REASONS, index=None, placeholder="Pick a reason to reject",
                     key=f"reject_choice_{pid}")
    note.text_input("Note (optional; required for Other)", key=f"reject_note_{pid}", max_chars=500)
    x.button("Reject", shortcut="X", key="btn_reject", width="stretch", icon=":material/close:",
             on_click=_decide, args=(view, reviewer, filters, "reject"))
    n.button("Next", shortcut="N", key="btn_next", width="stretch", icon=":material/skip_next:",
             on_click=_go_next, args=(pid, filters))


def edit_panel(view: ReviewView, reviewer: str, filters: ReviewFilters) -> None:
    key = f"edit_text_{view.proposal_id}"
    st.session_state.setdefault(key, view.refined_text)
    with st.expander("Edit the refinement, then accept", expanded=st.session_state[key] != view.refined_text):
        st.caption("One line per step: `Step n [ELEMENT, OWNER.Attribute]: reasoning -> ok | category`, then "
                   "`VERDICT:` and `MISTAKE: category | elements | explanation` lines (or `NONE`).")
        st.text_area("Refined trace", key=key, height=300)
        check, save, reset = st.columns([1, 1, 1])
        if check.button("Check", key="btn_check", icon=":material/rule:"):
            try:
                checked = review.validate_edit(st.session_state[key], view.diagram)
                st.success(f"Valid: {len(checked.steps)} steps, {len(checked.verdict)} mistakes in the verdict.")
            except DecisionRefused as err:
                st.error("**Not valid yet.**")
                st.code("\n".join([str(err), *err.problems]), language=None, wrap_lines=True)
        save.button("Save edit & accept", type="primary", key="btn_edit", icon=":material/edit:",
                    on_click=_decide, args=(view, reviewer, filters, "edit"))
        reset.button("Reset to the proposal", key="btn_reset", on_click=st.session_state.__setitem__,
                     args=(key, view.refined_text))


def more_variants_panel(*, queue_empty: bool = True) -> None:
    """Let the model reason about the next train variants and the auditor refine its traces, in the background
    (:func:`r2ta.model_jobs.start_reasoning`), then review them: below an empty queue (its new proposals are shown
    when the job ends), or in the sidebar beside an item (the next batch is made while this one is reviewed)."""
    from r2ta import model_jobs
    from r2ta.errors import R2taError
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS

    going = model_jobs.active_job()

    @st.fragment(run_every=going.redraw_s if going else None)  # a quarter of its updates' pace, 2 to 10 s
    def panel() -> None:
        job = model_jobs.active_job()
        if job is None and going is not None:  # it ended since the page ran: the new proposals are next
            if queue_empty:
                st.session_state.pop("review_current", None)
            st.rerun()
        if job is not None and going is not None and abs(job.redraw_s - going.redraw_s) >= 2:
            st.rerun()  # its updates' pace is known now: reset the timer
        if job is not None:
            if job.kind != model_jobs.REASON:
                st.info(f"An evaluation is going (the Evaluate page): {job.describe()}. More variants can be "
                        "reasoned about when it is done.")
                return
            st.progress(job.done / job.total if job.total else 0.0, text=job.describe())
            st.caption("Traces are stored as they are written; the page can be left and reloaded.")
            if st.button("Cancel", icon=":material/cancel:", key="cancel_reasoning"):
                model_jobs.cancel_job(job.job_dir)
                st.rerun()
            return
        show_last_job(model_jobs.REASON, "The last batch")
        left = model_jobs.variants_left("train", engine=engine())
        if not left:
            st.success("The model has reasoned about every train variant.")
            return
        count = st.number_input(f"Train variants to reason about next ({left} left)", min_value=1,
                                max_value=left, value=min(24, left), step=8,
                                help="Round-robin across the base schemas, so a batch covers all of them. The model "
                                     "writes a trace for each (seconds a variant on a GPU, about ten on a small "
                                     "CPU), then the auditor proposes a refinement of each.")
        budget = st.number_input(
            "New tokens a trace may take", min_value=model_jobs.MIN_TOKENS, max_value=model_jobs.MAX_TOKENS,
            value=DEFAULT_MAX_NEW_TOKENS, step=64, key=f"reasoning_tokens:{queue_empty}",
            help=f"The model's budget for each trace ({DEFAULT_MAX_NEW_TOKENS}, as `r2ta reason`, by default). A trace "
                 "cut at its budget is asked for its verdict; the time a variant takes grows with the budget.")
        timed = model_jobs.reasoning_time(int(count), int(budget))
        if timed:
            st.caption(timed)
        if st.button("Reason about them", icon=":material/psychology:", type="primary",
                     help=f"The model is the {model_jobs.reasoning_model()!r} backend (R2TA_BACKEND); the "
                          "auditor, the deterministic one."):
            try:
                model_jobs.start_reasoning(int(count), max_new_tokens=int(budget))
            except R2taError as err:
                st.error(str(err))
            else:
                st.rerun()

    panel()

