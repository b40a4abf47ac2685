"""Evaluate: base vs SFT vs SFT+DPO vs the structural checker, per category, with drill-down to differing variants."""

import streamlit as st

from r2ta import eval_jobs, evaluation, model_jobs, train_view
from r2ta.errors import R2taError
from r2ta.ui import answer_budget_inputs, engine, rates_table, require_app, show_last_job

require_app()

st.title("Evaluate")
st.caption(
    "Each model's latest evaluation (`r2ta eval`, or automatically after a training run; its earlier ones on request). "
    "Scores follow DESIGN.md §5: "
    "a predicted mistake matches a true one with the same category and overlapping elements. The checker reads the "
    "diagram only, so it can find the structural categories and nothing else."
)

split = st.segmented_control("Split", ["test", "train"], default="test", key="eval_split") or "test"
earlier = st.toggle("Earlier evaluations too", key="eval_earlier",
                    help="A model evaluated again (under another answer budget, say) is listed by its latest "
                         "evaluation; this adds the earlier ones, as 'MODEL · evaluation N' followed by the "
                         "budget it ran under where that differs, to compare with it. 'Where each model comes "
                         "from' gives every evaluation's budget.")
stored = evaluation.list_evaluations(split=split, engine=engine(), every=earlier)
going = model_jobs.active_job()
OTHER = "another model…"


@st.cache_resource(show_spinner=False)
def _base_dtype() -> str | None:
    return train_view.base_generation_dtype()


@st.fragment(run_every=going.redraw_s if going else None)  # a quarter of its updates' pace, 2 to 10 s
def evaluate_a_model() -> None:
    """Start an evaluation of one model in the background, follow it, cancel it; say how the last one ended."""
    job = model_jobs.active_job()
    if job is None and going is not None:  # it ended since the page ran: show its scores
        st.rerun()
    if job is not None and going is not None and abs(job.redraw_s - going.redraw_s) >= 2:
        st.rerun()  # its updates' pace is known now, or the next model's differs: reset the timer
    if job is not None and job.kind == model_jobs.REASON:
        st.info(f"The model is reasoning about more variants for review (the Review page): {job.describe()}. "
                "An evaluation can start when it is done.")
        return
    if job is not None:
        st.progress(job.done / job.total if job.total else 0.0, text=f"Evaluating {job.describe()}")
        st.caption("It goes on if you leave or reload this page. A training run started meanwhile would share "
                   "this machine's cores with it.")
        if st.button("Cancel the evaluation", icon=":material/cancel:"):
            model_jobs.cancel_job(job.job_dir)
            st.rerun()
        return
    show_last_job(model_jobs.EVALUATE, "The last evaluation", success=True)
    models = train_view.evaluable_models(engine=engine())
    pick = st.selectbox("Model", [*models, OTHER], format_func=lambda m: models.get(m, m))
    name = st.text_input("Model to evaluate", placeholder="a backend name, a model folder, a run folder[:sft], "
                         "a model hub id downloaded here") if pick == OTHER else pick
    default = eval_jobs.default_limit() or 0
    count = st.number_input(f"{split.capitalize()} variants (the first N; 0 = all)", min_value=0, max_value=10_000,
                            value=0 if pick == evaluation.CHECKER_MODEL_ID else default, step=8,
                            help="A model writes an answer to each variant: seconds a variant on a GPU, several "
                                 "on a CPU. Answers it has already written under the same budget are reused. The "
                                 "checker takes seconds for all of them.")
    tokens, per_construct = (None, 0) if pick == evaluation.CHECKER_MODEL_ID else answer_budget_inputs("eval")
    dtype = _base_dtype() if pick == "embedded" else None
    if name and name.strip():
        try:  # how many answers it writes, and for how long, before the click (no model is loaded)
            plan = model_jobs.plan_model_evaluation(name.strip(), split=split, limit=count or None, dtype=dtype,
                                                    max_new_tokens=tokens, tokens_per_construct=per_construct,
                                                    engine=engine())
        except R2taError:
            plan = None  # an unknown model: the button says what it could be
        if plan is not None:
            st.caption(plan.describe())
    if st.button("Evaluate", icon=":material/play_arrow:", disabled=not name):
        try:
            model_jobs.start_model_evaluation(name.strip(), split=split, limit=count or None, dtype=dtype,
                                              max_new_tokens=tokens, tokens_per_construct=per_construct)
        except R2taError as err:
            st.error(str(err))
        else:
            st.rerun()


with st.expander("Evaluate a model", icon=":material/play_circle:", expanded=not stored or going is not None):
    evaluate_a_model()
if not stored:
    st.info(f"No evaluation on the {split} split yet: evaluate a model above (the checker takes seconds), train "
            f"one on the Train page, or run `r2ta eval --model checker --split {split}`.")
    st.stop()

by_id = evaluation.evaluation_labels(stored)  # a model's latest under its id, an earlier "MODEL · evaluation N, BUDGET"
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


@st.cache_data(show_spinner=False, max_entries=16)
def _variant_csv(ids: tuple[tuple[str, int], ...], common: tuple[str, ...] | None) -> str:
    return evaluation.rows_csv(evaluation.variant_rows(dict(ids), only=common, engine=engine()))


reports, common = _rescore(tuple((m, by_id[m].evaluation_id) for m in chosen), common_only)
if common_only:
    st.caption(f"Scored on the {len(common)} variants the chosen models have in common.")

with st.expander("Where each model comes from"):
    origins = [{**row, "model": label}
               for row, label in zip(evaluation.model_origins([by_id[m] for m in chosen], engine=engine()), chosen)]
    shown = [k for k in origins[0] if any(row[k] != "" for row in origins)]  # no run among them: no run columns
    st.dataframe([{k: row[k] for k in shown} for row in origins], hide_index=True, width="stretch",
                 column_config={"model": st.column_config.TextColumn(width="large")})
st.subheader("Overall")
rates_table(evaluation.summary_rows(reports), ("micro F1", "macro F1", "micro P", "micro R", "hallucination",
                                               "grounding", "format validity", "validity, unforced", "exact match"))
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
    rates_table(evaluation.category_rows(reports), ("precision", "recall", "f1"))
with st.expander("Per base schema (format validity, micro P / R / F1)"):
    st.caption("Each variant is a mutation of one of the base schemas. A model trained on few schemas "
               "shows it here: valid answers on the schemas it saw, few on the others.")
    scored = sorted({v.variant_id for r in reports.values() for v in r.per_variant})
    rates_table(evaluation.schema_rows(reports, evaluation.variant_schemas(scored, engine=engine())),
                ("format validity", "micro P", "micro R", "micro F1"))

st.download_button(
    "Download each variant's result (CSV)", icon=":material/download:", mime="text/csv",
    data=_variant_csv(tuple((m, by_id[m].evaluation_id) for m in chosen), tuple(common) if common_only else None),
    file_name=f"r2ta-evaluation-{split}.csv",
    help="One row per chosen model and variant: its base schema, whether the verdict parses (and whether R2tA asked "
         "for it), the mistakes predicted and the true ones, and how many were right, wrong and missed.")

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
