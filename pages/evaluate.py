"""Evaluate: base vs SFT vs SFT+DPO vs the structural checker, per category, with drill-down to differing variants."""

import streamlit as st

from r2ta import evaluation
from r2ta.ui import engine, rates_table, require_app

require_app()

st.title("Evaluate")
st.caption(
    "Each model's latest evaluation (`r2ta eval`, or automatically after a training run). Scores follow DESIGN.md §5: "
    "a predicted mistake matches a true one with the same category and overlapping elements. The checker reads the "
    "diagram only, so it can find the structural categories and nothing else."
)

split = st.segmented_control("Split", ["test", "train"], default="test", key="eval_split") or "test"
stored = evaluation.list_evaluations(split=split, engine=engine())
if not stored:
    st.info(f"No evaluation on the {split} split yet. Run `r2ta eval --model checker --split {split}` or "
            f"`r2ta eval --model embedded --split {split} --limit 24`, or train a model on the Train page.")
    st.stop()

by_id = {m.model_id: m for m in stored}
# The Train page's link names a run's models (and the checker): those, where they have an evaluation on this split.
asked = [m for m in st.query_params.get_all("models") if m in by_id]
chosen = st.multiselect("Models", list(by_id), default=asked or list(by_id)[:6])
common_only = st.toggle("Only the variants every chosen model was scored on", value=True,
                        help="Comparing models on different variants compares the variants, not the models.")
if not chosen:
    st.stop()


@st.cache_data(show_spinner="Scoring…", max_entries=64)
def _rescore(ids: tuple[tuple[str, int], ...], common: bool):
    return evaluation.rescore(dict(ids), common_only=common, engine=engine())


reports, common = _rescore(tuple((m, by_id[m].evaluation_id) for m in chosen), common_only)
if common_only:
    st.caption(f"Scored on the {len(common)} variants the chosen models have in common.")

with st.expander("Where each model comes from"):
    st.dataframe(evaluation.model_origins([by_id[m] for m in chosen], engine=engine()), hide_index=True,
                 width="stretch")
st.subheader("Overall")
st.dataframe(rates_table(evaluation.summary_rows(reports),
                         ("micro F1", "macro F1", "micro P", "micro R", "hallucination", "grounding",
                          "format validity", "validity, unforced", "exact match")),
             hide_index=True, width="stretch")
st.caption("n/a: no predicted mistakes to judge for hallucination, no cited elements for grounding. "
           "Verdicts asked for: answers with no VERDICT line in the model's token budget, to which R2tA "
           "appended one for the model to go on from; validity, unforced, leaves those out. A model id ending "
           "in +grammar is that model with every verdict — asked for or its own — decoded under the verdict "
           "grammar (known categories, the diagram's own elements: r2ta eval --verdict-grammar).")
st.plotly_chart(evaluation.summary_figure(reports), width="stretch", key="summary")

st.subheader("Per category")
metric = st.segmented_control("Metric", ["f1", "precision", "recall"], default="f1", key="eval_metric") or "f1"
st.plotly_chart(evaluation.category_figure(reports, metric), width="stretch", key="categories")
with st.expander("Per-category table (precision, recall, F1, counts)"):
    st.dataframe(rates_table(evaluation.category_rows(reports), ("precision", "recall", "f1")), hide_index=True,
                 width="stretch")
with st.expander("Per base schema (format validity, micro P / R / F1)"):
    st.caption("Each variant is a mutation of one of the base schemas. A model trained on few schemas "
               "shows it here: valid answers on the schemas it saw, few on the others.")
    scored = sorted({v.variant_id for r in reports.values() for v in r.per_variant})
    st.dataframe(rates_table(evaluation.schema_rows(reports, evaluation.variant_schemas(scored, engine=engine())),
                             ("format validity", "micro P", "micro R", "micro F1")),
                 hide_index=True, width="stretch")

st.subheader("Where two models differ")
if len(chosen) < 2:
    st.info("Choose two or more models to compare their answers variant by variant.")
    st.stop()
a_col, b_col = st.columns(2)
model_a = a_col.selectbox("Model A", chosen, index=0)
model_b = b_col.selectbox("Model B", chosen, index=1)
diffs = evaluation.differing_variants(by_id[model_a].evaluation_id, by_id[model_b].evaluation_id, engine=engine())
if not diffs:
    st.success(f"{model_a} and {model_b} predict the same mistakes on every variant both were scored on.")
    st.stop()
labels = [f"{d.variant_id} — correct: A {d.a_correct}, B {d.b_correct} of {len(d.truth)}" for d in diffs]
pick = st.selectbox(f"{len(diffs)} variants differ", range(len(diffs)), format_func=labels.__getitem__)
diff = diffs[pick]
st.markdown("**Ground truth**")
st.markdown("\n".join(f"- `{m.category}` on {', '.join(f'`{e}`' for e in m.elements)}: {m.explanation}" for m in diff.truth))
left, right = st.columns(2)
for col, name, result in ((left, model_a, diff.a), (right, model_b, diff.b)):
    col.markdown(f"**{name}** — verdict {'parses' if result.valid else 'does not parse'}"
                 + (" (its VERDICT line was appended by R2tA: the model wrote none in its budget)" if result.forced else ""))
    col.code(result.raw_output or "(no trace stored)", language="text", height=420)
