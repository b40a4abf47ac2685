"""R2tA Studio: the Streamlit entry point. Page config, shared state, the page table.

Run with ``make run`` (or ``streamlit run app.py``). Every page listed here exists
in ``pages/`` and is rendered by a test (tests/test_pages.py).
"""

import streamlit as st

from r2ta.ui import init_state, require_seeded, route_to_target

st.set_page_config(page_title="R2tA Studio", page_icon=":material/fact_check:", layout="wide")
init_state()

PAGES = {
    "Studio": [
        st.Page("pages/home.py", title="Overview", icon=":material/home:", default=True),
        st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
        st.Page("pages/agreement.py", title="Agreement", icon=":material/groups:"),
        st.Page("pages/exports.py", title="Datasets", icon=":material/dataset:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
    ],
    "Research": [
        st.Page("pages/dataset.py", title="Schemas & variants", icon=":material/schema:"),
        st.Page("pages/browse.py", title="Browse mistakes & traces", icon=":material/travel_explore:"),
        st.Page("pages/import_diagram.py", title="Import a diagram", icon=":material/upload_file:"),
    ],
}

if require_seeded():
    navigation = st.navigation(PAGES)
    route_to_target()  # a page opened by its URL before this server had run app.py
    navigation.run()
