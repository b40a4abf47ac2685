"""The one streamlit-aware module of the library: cached resources, session state, shared widgets.

Pages call these helpers and the core library; nothing else in ``r2ta/`` imports
streamlit. ``st.cache_resource`` holds the engine; ``st.cache_data`` holds pure
results and is cleared by the write helpers that make it stale.
"""

from __future__ import annotations

import streamlit as st

from r2ta import catalog
from r2ta.eerd import CATEGORY_TITLES, EERD


def init_state() -> None:
    """Idempotent defaults for the session (safe to call on every rerun)."""
    st.session_state.setdefault("reviewer", "")
    st.session_state["_r2ta_routed"] = True


def require_app() -> None:
    """Send a visitor who opened a page URL directly through app.py's router.

    On a server that has not run app.py yet, Streamlit serves ``pages/*.py`` in its
    legacy multipage mode (no page config, no first-run check, a raw file list in
    the sidebar). Every page calls this first; it is a no-op once app.py has run.
    """
    if not st.session_state.get("_r2ta_routed"):
        import inspect
        from pathlib import Path

        from r2ta.config import PROJECT_ROOT

        # Remember where the visitor was going (a bookmark, a shared ?proposal=12 link): app.py takes them there.
        page = Path(inspect.stack()[1].filename).resolve()
        try:
            target = str(page.relative_to(PROJECT_ROOT))
        except ValueError:
            target = None
        if target:
            st.session_state["_r2ta_target"] = (target, {k: st.query_params.get_all(k) for k in st.query_params})
        st.switch_page("app.py")


def route_to_target() -> None:
    """In app.py, once its pages are known: go on to the page a visitor opened before app.py had run (see
    :func:`require_app`), with its query parameters. A no-op otherwise."""
    target = st.session_state.pop("_r2ta_target", None)
    if target:
        st.switch_page(target[0], query_params=target[1])


@st.cache_resource(show_spinner=False)
def _engine_for(url: str):
    return catalog.open_engine(url)


def engine():
    """The database engine for the configured URL, created (and migrated to head) once per process."""
    return _engine_for(catalog.database_url())


def require_seeded() -> bool:
    """Show the first-run screen until the database holds a dataset. Returns True when ready."""
    if catalog.is_seeded(engine()):
        return True
    _first_run_screen()
    return False


def _first_run_screen() -> None:
    from r2ta.seeding import read_seed_status, start_seed_process

    st.title("Welcome to R2tA Studio")
    st.write(
        "This data folder is empty. Setting up builds the 600-variant dataset, loads it into "
        "the database, fetches the embedded model (SmolLM2-135M-Instruct) and lets it reason "
        "about a first batch of variants, so there is real work to review."
    )
    status = read_seed_status()
    if status is None or (status.error and not status.running):
        if status and status.error:
            st.error(f"The last setup failed:\n\n```\n{status.error}\n```")
        if st.button("Set up R2tA Studio", type="primary", icon=":material/rocket_launch:"):
            start_seed_process()
            st.rerun()
        return

    @st.fragment(run_every=1.0)
    def _progress() -> None:
        s = read_seed_status()
        if s is None:
            return
        st.progress(min(max(s.fraction, 0.0), 1.0), text=s.message)
        if s.finished or catalog.is_seeded(engine()) and not s.running:
            st.rerun(scope="app")
        if s.error and not s.running:
            st.error(s.error)

    _progress()


def rates_table(rows: list[dict], rates: tuple[str, ...], **kwargs) -> None:
    """``rows`` as a table whose ``rates`` columns show 3 decimals and a rate with nothing to judge (None) as n/a;
    the cells stay numbers, so a click on a column header sorts them as numbers. A model column is wide enough
    for the embedded model's ids (``smollm2-135m-instruct@bfloat16``) and pinned, so it stays in view while a
    dozen rates scroll beside it; a "model id" column (beside a short "model" one) shows a run's ids whole."""
    config = {c: st.column_config.NumberColumn(format="%.3f") for c in rates}
    config.update({"model": st.column_config.TextColumn(width=230, pinned=True),
                   "model id": st.column_config.TextColumn(width="large")})
    config.update(kwargs.pop("column_config", {}))
    st.dataframe(rows, placeholder="n/a", hide_index=True, width="stretch", column_config=config, **kwargs)


def show_last_job(kind: str, title: str, *, success: bool = False) -> None:
    """How the last model job of ``kind`` ended (:mod:`r2ta.model_jobs`): a failure with its log, a cancel said
    plainly, a success too when ``success``; then a warning when a training run would share the machine with the
    next one."""
    from r2ta import eval_jobs, model_jobs

    last = next(iter(model_jobs.list_jobs(kind)), None)
    if last is not None and last.state == eval_jobs.SUCCEEDED and success:
        st.caption(f"{title}: {last.describe()}.")
    elif last is not None and last.state == eval_jobs.FAILED:
        (st.info if last.cancelled else st.warning)(f"{title}: {last.describe()}")
        if not last.cancelled:
            with st.expander("Its log"):
                st.code(model_jobs.read_log(last.job_dir) or "(empty)")
    note = model_jobs.sharing_note()
    if note:
        st.warning(note, icon=":material/speed:")


def answer_budget_inputs(key: str, *, base_note: str = "") -> tuple[int, int]:
    """Two number inputs side by side: the tokens each answer may take, and how many more per construct of its
    diagram (:func:`r2ta.pipeline.answer_budget`). Returns (max_new_tokens, tokens_per_construct)."""
    from r2ta.eval_jobs import MAX_TOKENS_PER_CONSTRUCT
    from r2ta.model_jobs import MAX_TOKENS, MIN_TOKENS
    from r2ta.pipeline import DEFAULT_MAX_NEW_TOKENS

    left, right = st.columns(2)
    tokens = left.number_input(  # the Review page's batch offers the same bounds
        "Tokens an answer", min_value=MIN_TOKENS, max_value=MAX_TOKENS, value=DEFAULT_MAX_NEW_TOKENS, step=32,
        key=f"{key}_tokens",
        help="Where an answer is cut if the model has not ended it. An answer the model wrote before under another "
             "budget is written again, so the scores are always this budget's.")
    per = right.number_input(
        "More tokens a construct", min_value=0, max_value=MAX_TOKENS_PER_CONSTRUCT, value=0, step=5,
        key=f"{key}_per_construct",
        help="A trained model walks the diagram a step per entity, relationship, specialization and category: "
             "about 15 tokens a construct and 110 a mistake. 320 an answer + 20 a construct fits the walk of every "
             "test variant; 256 alone cuts about half of them (docs/measured/walk-target-lengths-2026-12-07.txt)."
             + base_note)
    return int(tokens), int(per)


def category_label(category: str) -> str:
    return f"{category} — {CATEGORY_TITLES.get(category, category)}"


@st.cache_data(show_spinner=False, max_entries=512)
def _dot_source(diagram_json: str, highlight: tuple[tuple[str, str], ...], legend: bool) -> str:
    """DOT text for a diagram (laid out and pinned with the local graphviz: ~0.1 s, so cached)."""
    from r2ta.eerd import diagram_from_json
    from r2ta.render import to_dot

    return to_dot(diagram_from_json(diagram_json), highlight=dict(highlight), legend=legend)


def show_diagram(diagram: EERD, highlight: dict[str, str] | None = None, legend: bool = False) -> None:
    """Render a diagram in the browser (no ``dot`` binary needed on the server, faster with one)."""
    from r2ta.eerd import diagram_to_json

    source = _dot_source(diagram_to_json(diagram, indent=None), tuple(sorted((highlight or {}).items())), legend)
    st.graphviz_chart(source, width="stretch")


@st.cache_resource(show_spinner="Loading the model…")
def embedded_backend():
    """The default backend (``R2TA_BACKEND`` or the embedded model), loaded once per server process."""
    from r2ta.backends import get_backend

    return get_backend()
