"""Review: one proposal at a time — diagram, requirements, the model's reasoning beside the refinement; accept, edit or reject."""

import streamlit as st

from db.errors import RecordNotFound
from r2ta import model_jobs, review
from r2ta.ui import engine, require_app
from r2ta.ui_review import (
    action_bar,
    cached_progress,
    edit_panel,
    mark_seen,
    more_variants_panel,
    require_reviewer,
    review_filters,
    show_comparison,
    show_diagram_and_requirements,
    show_flash,
    show_header,
    show_progress,
)

require_app()

st.title("Review")
reviewer = require_reviewer()
if reviewer is None:
    st.stop()

filters = review_filters(reviewer, review.list_base_ids(engine()), review.list_models(engine()))
show_progress(cached_progress(filters))

# An item named in the URL (?proposal=12, from the Browse page) is shown whatever the filters.
if "proposal" in st.query_params and st.query_params["proposal"].isdigit():
    st.session_state["review_current"] = int(st.query_params.pop("proposal"))
if st.session_state.get("review_current") is None:
    st.session_state["review_current"] = review.next_item_id(engine(), filters)

show_flash()
current = st.session_state["review_current"]
if current is None:
    batch = model_jobs.active_job(model_jobs.REASON)
    st.info(
        "Nothing to review with these filters yet: the model is reasoning about the next variants below, and their "
        "proposals appear here when it is done." if batch is not None else
        f"Nothing to review with these filters ({review.count_queue(engine(), filters)} items match). "
        "Change the filters in the sidebar, or let the model reason about more variants below "
        "(`r2ta reason`, then `r2ta refine`, from the command line)."
    )
    more_variants_panel()
    st.stop()
try:
    view = review.load_view(engine(), current)
except RecordNotFound:
    st.session_state.pop("review_current")
    st.rerun()

with st.sidebar.expander("Reason about more variants", icon=":material/psychology:"):
    more_variants_panel(queue_empty=False)
show_header(view)
mark_seen(view)
action_bar(view, reviewer, filters)
show_diagram_and_requirements(view)
show_comparison(view)
edit_panel(view, reviewer, filters)
