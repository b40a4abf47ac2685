"""Datasets: how many SFT examples and DPO pairs the reviews have made, a preview of each in TRL's format, JSONL downloads."""

import json

import streamlit as st

from r2ta import catalog
from r2ta.ui import engine, require_app
from r2ta.ui_review import cached_export

require_app()

st.title("Datasets")
st.caption(
    "Every accepted or edited proposal (its latest review) is one SFT example (the reviewed trace as the answer) and "
    "one DPO pair (chosen: the reviewed trace, rejected: the model's original output). Rejected proposals make neither. "
    "Same rows as `r2ta export sft|dpo --split ...`."
)
split = st.segmented_control("Rows from", ["train", "test", "all"], default="train", key="export_split") or "train"
if split != "train":
    st.warning("Training uses the **train** split; test-split rows are for inspection only (training on them leaks the test set).")

stamp = catalog.stage_counts(engine())["reviews"]
sft, dpo = cached_export("sft", split), cached_export("dpo", split)
cols = st.columns(4)
cols[0].metric("SFT examples ready", sft.rows)
cols[1].metric("DPO pairs ready", dpo.rows)
cols[2].metric("Reviews so far", stamp)
cols[3].metric("Skipped", len(set(sft.skipped) | set(dpo.skipped)), help="decisions that make no valid row (reasons below)")

for title, preview, kind in (("SFT (TRL conversational: messages)", sft, "sft"), ("DPO (TRL preference: prompt, chosen, rejected)", dpo, "dpo")):
    st.subheader(title)
    if preview.first is None:
        st.info("No rows yet: accept or edit proposals on the Review page.")
        continue
    st.download_button(
        f"Download {kind}.jsonl ({preview.rows} rows)", data=preview.jsonl, file_name=f"r2ta-{kind}-{split}.jsonl",
        mime="application/jsonl", icon=":material/download:", key=f"download_{kind}",
    )
    left, right = st.columns([3, 1])
    with left:
        st.caption("First row, as TRL reads it")
        st.code(json.dumps(preview.first, indent=2, ensure_ascii=False), language="json", height=420)
    with right:
        st.caption("Its provenance (kept in the file, dropped before training)")
        st.code(json.dumps(preview.provenance, indent=2, ensure_ascii=False), language="json")

skipped = sorted(set(sft.skipped) | set(dpo.skipped))
if skipped:
    with st.expander(f"Skipped decisions ({len(skipped)})"):
        st.text("\n".join(skipped))
