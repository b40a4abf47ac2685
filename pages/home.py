"""Overview: where the R2tA loop stands, and where to go next."""

import streamlit as st

from r2ta import catalog
from r2ta.ui import engine, require_app

require_app()

st.title("R2tA Studio")
st.caption("Reason → Refine → then Align: a small model learns to audit EER diagrams from expert-validated reasoning.")

counts = catalog.stage_counts(engine())
cols = st.columns(6)
cols[0].metric("Base schemas", counts["base_schemas"])
cols[1].metric("Variants", counts["variants"])
cols[2].metric("Traces", counts["traces"], help="model reasoning stored for a variant")
cols[3].metric("Proposals", counts["proposals"], help="audited refinements waiting for or past review")
cols[4].metric("Reviews", counts["reviews"])
cols[5].metric("Pairs ready", counts["pairs_ready"], help="DPO chosen/rejected pairs from accepted or edited reviews")

st.subheader("Next")
for text, page, label, icon in catalog.next_steps(counts, engine()):
    left, right = st.columns([3, 1], vertical_alignment="center")
    left.markdown(text)
    right.page_link(page, label=label, icon=icon)

st.subheader("The loop")
st.markdown(
    "1. **Dataset** — hand-written base EERDs mutated into variants with known mistakes from 11 categories.\n"
    "2. **Reason** — the base model writes step-wise reasoning and a verdict for each variant.\n"
    "3. **Refine** — an auditor marks hallucinated, inconsistent and missing steps and proposes a corrected trace.\n"
    "4. **Review** — educators accept, edit or reject each proposal beside the rendered diagram.\n"
    "5. **Align** — accepted traces train the model (SFT, then DPO on chosen/rejected pairs).\n"
    "6. **Evaluate** — every model is scored per category on the 150 test variants."
)
links = st.columns(4)
links[0].page_link("pages/review.py", label="Review refinements", icon=":material/rate_review:")
links[1].page_link("pages/dataset.py", label="Browse schemas and variants", icon=":material/schema:")
links[2].page_link("pages/train.py", label="Retrain the model", icon=":material/model_training:")
links[3].page_link("pages/evaluate.py", label="Compare models", icon=":material/leaderboard:")
