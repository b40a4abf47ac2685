"""Browse: mistake categories (counts, examples), search, any variant's traces and audits, each model's patterns."""

import plotly.express as px
import streamlit as st

from r2ta import browse, catalog, review
from r2ta.eerd import CATEGORIES
from r2ta.ui import category_label, engine, require_app
from r2ta.ui_review import (
    cached_patterns,
    code_md,
    show_comparison,
    show_diagram_and_requirements,
)

require_app()

st.title("Browse mistakes & traces")
view = st.segmented_control(
    "View", ["Categories", "Search", "Variant traces", "Model patterns"], default="Categories", key="browse_view"
) or "Categories"

if view == "Categories":
    counts = browse.category_counts(engine())
    fig = px.bar(counts, x="category", y="variants", color="split", barmode="group",
                 title="Variants per mistake category and split", category_orders={"category": list(CATEGORIES)})
    fig.update_layout(height=380, margin={"t": 50, "b": 10}, xaxis_title=None)
    st.plotly_chart(fig, width="stretch")
    category = st.selectbox("Examples of", CATEGORIES, format_func=category_label)
    examples = browse.category_examples(engine(), category)
    st.dataframe(
        [{"variant": e.variant_id, "base schema": e.base_id, "split": e.split, "elements": ", ".join(e.mistake.elements),
          "explanation": e.mistake.explanation} for e in examples],
        hide_index=True, width="stretch",
    )

elif view == "Search":
    query = st.text_input("Search elements (id or name), mistake explanations, requirements and model output",
                          placeholder="e.g. EMPLOYEE, Ssn, hours, GHOST", max_chars=browse.MAX_QUERY)
    hits = browse.search(engine(), query) if query else []
    if query:
        st.caption(f"{len(hits)} hit(s) (at most 50)")
        st.dataframe([h.__dict__ for h in hits], hide_index=True, width="stretch")

elif view == "Variant traces":
    summaries = {v.id: v for v in catalog.list_variant_summaries(engine())}
    variant_id = st.selectbox("Variant", list(summaries), key="browse_variant",
                              format_func=lambda i: f"{i} · {summaries[i].split} · " + ", ".join(summaries[i].categories))
    traces = {t.trace_id: t for t in browse.variant_traces(engine(), variant_id)}
    if not traces:
        st.info("No model has reasoned about this variant yet (`r2ta reason`).")
        st.stop()
    t = traces[st.selectbox("Trace", list(traces), index=len(traces) - 1, format_func=lambda i: (
        f"#{i} by {traces[i].model_id} at {traces[i].created_at} UTC · "
        + ("verdict parses" if traces[i].valid else "verdict does not parse")
        + (" · VERDICT line appended by R2tA" if traces[i].verdict_forced_at is not None else "")))]
    for pid, auditor, status, n in t.proposals:
        st.page_link("pages/review.py", label=f"Review proposal #{pid} ({code_md(auditor)}, {status}, {n} review(s))",
                     icon=":material/rate_review:", query_params={"proposal": str(pid)})
    if t.proposals:
        view = review.load_view(engine(), t.proposals[-1][0])
        show_diagram_and_requirements(view)
        show_comparison(view)
    else:
        st.caption("Not audited yet (`r2ta refine`). The model's raw output:")
        st.code(t.raw_output or "(empty)", language=None, wrap_lines=True)
        st.text("Parse errors:\n" + "\n".join(f"• {e}" for e in t.parse_errors))

else:
    patterns = cached_patterns()
    if not patterns:
        st.info("No traces yet: the patterns appear once a model has reasoned about variants (`r2ta reason`).")
    else:
        rows = [{"model": p.model_id, "category": p.category, "hallucinated": p.hallucinated, "omitted": p.omitted,
                 "predicted": p.predicted, "true mistakes": p.truth,
                 "hallucination rate": round(p.hallucination_rate, 3), "omission rate": round(p.omission_rate, 3)}
                for p in patterns]
        long = [{"model": r["model"], "category": r["category"], "kind": k, "count": r[k]}
                for r in rows for k in ("hallucinated", "omitted")]
        fig = px.bar(long, x="category", y="count", color="kind", facet_row="model", barmode="group",
                     title="Hallucinated and omitted mistakes per category", category_orders={"category": list(CATEGORIES)})
        fig.update_layout(height=260 + 220 * len({r["model"] for r in rows}), xaxis_title=None)
        st.plotly_chart(fig, width="stretch")
        st.dataframe(rows, hide_index=True, width="stretch")
