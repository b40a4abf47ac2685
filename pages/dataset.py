"""Schemas & variants: requirements, the rendered diagram with ground-truth mistakes highlighted, the mistakes."""

import streamlit as st

from r2ta import catalog
from r2ta.eerd import CATEGORIES
from r2ta.ui import category_label, engine, require_app, show_diagram

require_app()

st.title("Schemas & variants")

schemas = {s.id: s for s in catalog.list_base_schemas(engine())}
left, mid, right = st.columns([2, 1, 2])
base_id = left.selectbox("Base schema", list(schemas), format_func=lambda i: f"{schemas[i].title} ({i})")
split = mid.selectbox("Split", ["all", "train", "test"])
category = right.selectbox("Mistake category", ["all", *CATEGORIES], format_func=lambda c: c if c == "all" else category_label(c))

variants = catalog.list_variant_summaries(
    engine(),
    base_id=base_id,
    split=None if split == "all" else split,
    category=None if category == "all" else category,
)
choices = {"The correct base diagram": "base"}
choices.update({f"{v.id} · {v.split} · {', '.join(v.categories)}": v.id for v in variants})
picked = choices[st.selectbox(f"Diagram ({len(variants)} variants match)", list(choices))]

schema = schemas[base_id]
if picked == "base":
    diagram, mistakes = schema.diagram, []
else:
    variant = catalog.get_variant(engine(), picked)
    diagram, mistakes = variant.diagram, variant.mistakes

st.subheader("Diagram")
legend = st.toggle("Legend", value=False)
show_diagram(diagram, highlight=catalog.mistake_highlights(diagram, mistakes), legend=legend)

text_col, mistakes_col = st.columns(2)
with text_col:
    st.subheader("Requirements")
    st.text(schema.requirements)  # st.text: shown as-is, never interpreted as markdown or HTML
with mistakes_col:
    st.subheader(f"Ground-truth mistakes ({len(mistakes)})")
    if not mistakes:
        st.info("This is the correct diagram: the checker finds nothing here and no mistake was induced.")
    for m in mistakes:
        with st.container(border=True):
            st.markdown(f"**{category_label(m.category)}**")
            st.text(m.explanation)
            st.caption("Elements: " + ", ".join(m.elements) + (f" · operator: {m.operator}" if m.operator else ""))
