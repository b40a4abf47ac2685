"""Train: export the reviewed data and train SFT then DPO in one click; follow, cancel, resume and list runs."""

from pathlib import Path

import streamlit as st

from r2ta import catalog, eval_jobs, jobs, model_jobs, probe, timing, train_view
from r2ta.errors import R2taError
from r2ta.model_jobs import budget_words
from r2ta.ui import answer_budget_inputs, engine, rates_table, require_app

require_app()

st.title("Train")
st.caption(
    "One click exports the accepted and edited refinements of the train split (SFT examples and DPO pairs), trains "
    "SFT and then DPO from the SFT result as a background job, and when it succeeds evaluates both models on the "
    "test split beside the model they were trained from (its answers are generated once and kept). The job keeps "
    "running if you close or reload this page."
)


@st.cache_data(show_spinner="Looking at the hardware…")
def _hardware() -> tuple[str, str]:
    return train_view.hardware_headline()


@st.cache_data(show_spinner=False)
def _hardware_for(recipe: str) -> tuple[str, str] | None:
    try:
        return train_view.hardware_and_precision(recipe)
    except R2taError:  # e.g. a GPU recipe's bf16 on a CPU: the run would refuse to start
        return None


@st.cache_data(show_spinner=False)
def _precision_choices() -> list[str]:
    return train_view.precision_choices()


def _run_dirs() -> list:
    return timing.known_run_dirs(engine=engine())


def _test_variants(limit: int) -> int:
    """The test variants an evaluation of the first ``limit`` (0 = all) will answer: no more than there are."""
    there = len(catalog.list_variant_summaries(engine(), split="test"))
    return min(limit, there) if limit else there


recipes = jobs.list_recipes()
left, right = st.columns([2, 3])
with left:
    recipe = st.selectbox("Recipe", recipes, index=recipes.index(jobs.DEFAULT_RECIPE) if jobs.DEFAULT_RECIPE in recipes else 0)
    st.caption(train_view.recipe_description(recipe))
    default_limit = eval_jobs.default_limit()
    limit = st.number_input("Test variants to evaluate on afterwards (0 = all)", min_value=0, max_value=10_000,
                            value=default_limit or 0, step=8)
    eval_tokens, eval_per_construct = answer_budget_inputs(
        "train_eval", base_note=" The trained models only: the model they start from keeps the answer budget "
                                "alone, so that the answers it gave earlier runs are reused.")
    negatives = st.radio(
        "DPO rejected traces", train_view.NEGATIVE_CHOICES, format_func=train_view.NEGATIVE_CHOICES.get, horizontal=True,
        help="The R2tA pair rejects the model's own trace. A planted negative is the reviewed trace with one "
        "omission, hallucination or misclassification put in (r2ta.negatives): a harder pair when the model's "
        "own traces are degenerate loops.",
    )
    with st.expander("Training settings"):
        st.caption("This run's values; the recipe's are filled in. A change is saved with the run (its recipe.yaml "
                   "and model card); `r2ta train --set SECTION.KEY=VALUE` changes any other setting.")
        try:
            current = train_view.recipe_settings(recipe)
        except R2taError as err:
            st.error(str(err))
            current = {"sft_term": 0.0}
        chosen = {}
        shown = [s for s in train_view.SETTINGS if s.key in current]
        cells = [cell for _ in range(0, len(shown) + 1, 2) for cell in st.columns(2)]
        for setting, cell in zip(shown, cells):
            is_int = setting.kind is int
            chosen[setting.key] = cell.number_input(
                setting.label, min_value=setting.kind(setting.minimum), max_value=setting.kind(setting.maximum),
                value=current[setting.key], step=1 if is_int else current[setting.key] / 2,
                format="%d" if is_int else ("%.2e" if "learning_rate" in setting.key else "%.3f"),
                help=setting.help, key=f"setting:{recipe}:{setting.key}",
            )
        chosen["sft_term"] = cells[len(shown)].number_input(
            train_view.SFT_TERM_LABEL, min_value=0.0, max_value=train_view.SFT_TERM_MAX,
            value=float(current["sft_term"]), step=1.0, format="%.1f", key=f"setting:{recipe}:sft_term",
            help="An SFT term beside DPO keeps the chosen answer likely: TRL's loss_type [sigmoid, sft] (RPO), "
            "DPO's pairwise loss plus the chosen answer's own loss times this weight. Plain DPO can fit its pairs by making both answers "
            "unlikely. TRL averages the term over the answer's tokens: weight beta x answer length (tokens) / 2 "
            "matches DPO's pull at the start. Measured on 64 walks (~433 tokens): at 1 DPO still lowered the "
            "chosen answer (run64r); at 20 it held, and DPO changed the model little (run64s).",
        )
        chosen[train_view.CHECKPOINTING] = st.checkbox(
            train_view.CHECKPOINTING_LABEL, value=current.get(train_view.CHECKPOINTING, False),
            key=f"setting:{recipe}:{train_view.CHECKPOINTING}",
            help="Recompute each layer's activations in the backward pass instead of holding them: less memory, "
            "more time. The default recipe on a 2-core CPU, bf16, 8 SFT steps of real 1.7-2.6k-token rows: 120 "
            "tokens/s at 2.9 GB peak with it, 162 tokens/s at 6.5 GB without (benchmarks/bench_training.py "
            "--trl-arg=--activation_checkpointing=false). Turn it off when the machine has the memory.",
        )
        recipe_where = _hardware_for(recipe)
        choices = _precision_choices()
        picked = recipe_where[1] if recipe_where and recipe_where[1] in choices else choices[0]
        precision = st.selectbox(
            "Precision", choices, index=choices.index(picked), key=f"precision:{recipe}", disabled=len(choices) == 1,
            help="What this machine can train in; the recipe's choice is selected (auto: bf16 where the CPU or "
            "GPU computes it, else fp32). bf16 on a CPU needs one that computes it natively (Intel AMX or "
            "AVX512-BF16): the default recipe's SFT ran at 1.2-1.4x and DPO at 1.3-1.8x the tokens/s of fp32 "
            "on a 2-core AMX Xeon and a 2-core AMD EPYC (benchmarks/bench_training.py); the result differs from "
            "fp32's in rounding. A run's models are evaluated in the dtype it trained in, the base model beside "
            "them in the same one.",
        )
rows = train_view.training_rows(engine=engine(), negatives=negatives)
with right:
    headline, cores_limit = _hardware()
    st.metric("Hardware", headline)
    if cores_limit:
        st.caption(f"{cores_limit[0].upper()}{cores_limit[1:]}: model jobs and training here take as many threads as it allows, "
                   "not one for each of the machine's cores.")
    cols = st.columns(2)
    cols[0].metric("SFT examples", rows.sft,
                   help="Accepted or edited proposals on train variants (the latest review of each): what a run "
                        "exports. Test variants are kept for the evaluation.")
    cols[1].metric("DPO pairs" + (" (at most)" if rows.dpo_at_most else ""), rows.dpo,
                   help="With the model's own traces: a pair where the reviewed trace differs from the model's. A "
                        "planted error is put in each reviewed trace that has room for one (at most one pair each).")
ready = bool(rows.sft and rows.dpo)
if not ready:
    st.info("Nothing to train on yet: a run learns from reviewed refinements of train variants. Accept or edit "
            "proposals on the Review page; each one becomes an SFT example and, where the reviewed trace differs "
            "from the model's, a DPO pair." + (f" ({rows.sft} reviewed, but none differs from the model's own "
                                                "trace: choose a planted error for the rejected traces.)"
                                                if rows.sft else ""), icon=":material/rate_review:")
    st.page_link("pages/review.py", label="Review refinements", icon=":material/rate_review:")

where = recipe_where and (recipe_where[0], precision)  # a run of another precision is no reference for this one
try:
    planned = train_view.recipe_overrides(recipe, chosen)
    estimate = where and timing.estimate_for_recipe(
        recipe, planned, {"sft": rows.sft, "dpo": rows.dpo},
        hardware=where[0], precision=where[1], eval_variants=_test_variants(limit), run_dirs=_run_dirs(),
        base_variants=train_view.base_answers_missing(recipe, where[1], limit, engine=engine(),
                                                      max_new_tokens=eval_tokens))
except R2taError:  # a setting out of bounds: the button says so
    estimate = None
st.caption(f"Expected on this machine: {estimate.describe()}." if estimate else timing.NO_ESTIMATE)
measuring = probe.active_probe()
run_precision = "auto" if recipe_where and precision == recipe_where[1] else precision  # what a run is asked for


measure_every = eval_jobs.redraw_seconds(measuring) if measuring else None  # a quarter of a step, 2 to 10 s


@st.fragment(run_every=measure_every)
def measure() -> None:
    """Before the first run of a recipe here: measure a few real steps so the estimate has something to go on."""
    going = probe.active_probe()
    if going is None and measuring is not None:  # it ended since the page ran: show its estimate
        st.rerun()
    if going is not None and measure_every is not None and abs(eval_jobs.redraw_seconds(going) - measure_every) >= 2:
        st.rerun()  # its steps' pace is known now, or its evaluation's differs: reset the timer
    if going is not None:
        st.info(f"Measuring this machine — {probe.describe_probe(going)}. The estimate appears here when it is done.",
                icon=":material/timer:")
        if st.button("Cancel the measurement", icon=":material/cancel:"):
            probe.cancel_probe(going)
            st.rerun()
        return
    if estimate and not estimate.probe:
        return
    last = probe.latest_probe(recipe)
    if last is not None and probe.probe_state(last) in (jobs.FAILED, jobs.CANCELLED):
        st.warning(probe.describe_probe(last))
        with st.expander("The measurement's log"):
            st.code(jobs.read_log(last)[-6_000:] + eval_jobs.read_eval_log(last)[-4_000:] or "(empty)")
    label = "Measure again" if estimate else "Measure this machine first"
    if st.button(label, icon=":material/timer:", disabled=not ready,
                 help=f"Trains {probe.PROBE_STEPS} steps of SFT and of DPO with this recipe, these settings and this "
                 "precision on a few of your rows (shortest to longest), then lets the base model answer "
                 f"{probe.PROBE_EVAL_VARIANTS} test variants (kept for the first run's evaluation), in the background. "
                 "A few minutes on a CPU, well under one on a GPU. Its models are deleted; only the rates stay."):
        try:
            data = train_view.export_for_training(engine=engine(), negatives=negatives)
            probe.start_probe(data.sft_file, data.dpo_file, recipe=recipe, overrides=train_view.recipe_overrides(recipe, chosen),
                              precision=run_precision)
        except R2taError as err:
            st.error(str(err))
        else:
            st.rerun()


measure()
other = model_jobs.active_job()
if other is not None:
    st.warning(f"Going now: {other.describe()}. A run started meanwhile shares this machine with it, and both go "
               "slower.", icon=":material/speed:")
training = jobs.training_run()
if training is not None:
    st.warning(f"Run {training.name} is training: a second run started now shares this machine's cores with it "
               "(each takes a share), and both take longer than their estimates.", icon=":material/speed:")
if st.button("Export and train", type="primary", icon=":material/model_training:",
             disabled=not ready or measuring is not None,
             help="Waits for the measurement going (or cancel it): two jobs at once would slow each other and "
                  "spoil its figures." if measuring else None):
    try:
        overrides = train_view.recipe_overrides(recipe, chosen)
        data = train_view.export_for_training(engine=engine(), negatives=negatives)
        run_dir = eval_jobs.start_training_with_evaluation(data.sft_file, data.dpo_file, recipe=recipe,
                                                           limit=limit or None, overrides=overrides,
                                                           precision=run_precision, max_new_tokens=eval_tokens,
                                                           tokens_per_construct=eval_per_construct)
    except R2taError as err:
        st.error(str(err))
    else:
        st.query_params["run"] = run_dir.name
        changed = f"; changed: {', '.join(overrides)}" if overrides else ""
        st.toast(f"Started {run_dir.name}: {data.sft_rows} SFT rows, {data.dpo_rows} DPO pairs{changed}")

summaries = train_view.list_run_summaries(engine=engine())
names = [s.name for s in summaries]
if not summaries:
    st.info("No training runs yet.")
    st.stop()
shown_run = st.query_params.get("run")
shown_run = shown_run if shown_run in names else names[0]
shown_run = st.selectbox("Run", names, index=names.index(shown_run))
st.query_params["run"] = shown_run
run_dir = summaries[names.index(shown_run)].run_dir


def _active() -> bool:
    ev = eval_jobs.read_eval_status(run_dir)
    return not jobs.read_progress(run_dir).finished or ev.get("status") in (eval_jobs.WAITING, eval_jobs.RUNNING)


was_active = _active()
every = eval_jobs.redraw_seconds(run_dir) if was_active else None  # a quarter of a step, or of an update's time


@st.fragment(run_every=every)
def live_run() -> None:
    progress = jobs.read_progress(run_dir)
    train_view.sync_to_db(run_dir, engine=engine())
    status = progress.status
    step = f" — step {status.get('step')}/{status.get('max_steps')}" if status.get("max_steps") else ""
    left = timing.stage_time_left(progress)
    step += f" — {left.describe()}" if left else ""
    st.progress(min(max(progress.fraction, 0.0), 1.0), text=f"{progress.state}: {progress.stage or 'waiting'}{step}")
    if left and (where := _hardware_for(status.get("recipe") or recipe)):
        evaluation = eval_jobs.read_eval_status(run_dir)  # {} when this run is not evaluated afterwards
        rest = timing.after_this_stage(
            progress, timing.reference_run(status.get("recipe") or "", where[0], where[1], _run_dirs()),
            eval_variants=_test_variants(evaluation.get("limit") or 0) if evaluation else 0,
            base_variants=train_view.base_answers_missing(run_dir / "recipe.yaml", status.get("precision") or "",
                                                          evaluation.get("limit") or 0, engine=engine(),
                                                          max_new_tokens=evaluation.get("max_new_tokens"))
            if evaluation else 0)
        if rest and (rest.stages or rest.evaluation_s is not None):
            st.caption(f"After {progress.stage.upper()}: {rest.describe()}.")
    shared = status.get("threads") if isinstance(status.get("threads"), dict) else {}
    if not progress.finished and 0 < (shared.get("threads") or 0) < (shared.get("cores") or 0):
        st.caption(f"Training on {shared['threads']} of {shared['cores']} cores since {str(shared.get('stage')).upper()} "
                   f"step {shared.get('since_step')}: another process on this machine uses the rest (an evaluation, "
                   "a batch of traces?). The run takes them back when it ends; its steps are slower meanwhile.")
    if status.get("overrides"):
        # a run of `r2ta loop` or of --recipe FILE ran a file of its own, whose name ("recipe") is no recipe's
        ran = (f"Recipe {status.get('recipe', '')}" if status.get("recipe") in recipes
               else f"A recipe file of its own (`{Path(str(status.get('recipe') or 'recipe')).name.replace('`', chr(39))}"
                    ".yaml`: `r2ta loop`'s or `--recipe FILE`'s; the run folder keeps it as recipe.yaml)")
        st.caption(f"{ran} with " + ", ".join(
            f"`{item.replace('`', chr(39))}`" for item in status["overrides"]))
    if status.get("resumed_from"):
        st.caption(f"Continues run {Path(status['resumed_from']).name}: {status.get('resumed_at', '')}.")
    if status.get("sft_from"):
        st.caption(f"DPO again from the SFT stage of run {Path(status['sft_from']).name}: its SFT is carried over "
                   "as it was saved, and only DPO trains here.")
    if not progress.finished and st.button("Cancel run", icon=":material/cancel:",
                                           help="Stops after the current step and saves a checkpoint there (when "
                                                "the recipe's run.checkpoint_minutes is not 0): Resume goes on "
                                                "from it."):
        progress = jobs.cancel(run_dir, wait_s=1.0)
        st.rerun(scope="app")
    if progress.state == jobs.FAILED:
        st.error(f"Failed: {progress.error}")
    elif progress.state == jobs.CANCELLED:
        st.warning("Cancelled.")
    elif progress.state == jobs.SUCCEEDED:
        st.success("Succeeded: " + ", ".join(f"{k} → `{v}`" for k, v in (status.get("artefacts") or {}).items()))
    if progress.state in (jobs.FAILED, jobs.CANCELLED):
        _resume_controls(run_dir, status)
    if progress.finished:
        _dpo_again_controls(run_dir, status)
    a, b = st.columns(2)
    a.plotly_chart(train_view.loss_figure(progress), width="stretch", key="loss")
    b.plotly_chart(train_view.margin_figure(progress), width="stretch", key="margin")
    ev = eval_jobs.read_eval_status(run_dir)
    if ev:
        eval_left = timing.evaluation_time_left(ev)
        st.caption(f"Evaluation{budget_words(ev.get('max_new_tokens'), ev.get('tokens_per_construct'))}: "
                   f"{ev.get('status')}"
                   + (f" — {ev['stage']} {ev.get('done', 0)}/{ev.get('total', '?')}"
                      if ev.get("status") == "running" and ev.get("stage") else "")
                   + (f" — about {timing.format_duration(eval_left)} left" if eval_left is not None else ""))
        if ev.get("error"):
            st.caption(ev["error"])
        if (ev.get("status") == eval_jobs.FAILED and progress.state == jobs.SUCCEEDED
                and st.button("Evaluate again", icon=":material/refresh:",
                              help="The test variants the models have answered already are kept; it goes on with "
                                   "the rest.")):
            eval_jobs.start_run_evaluation(run_dir, split=ev.get("split") or "test", limit=ev.get("limit"),
                                           max_new_tokens=ev.get("max_new_tokens"),
                                           tokens_per_construct=int(ev.get("tokens_per_construct") or 0))
            st.rerun(scope="app")  # the page sets its refresh timer from whether a job is going
    elif progress.state == jobs.SUCCEEDED and st.button("Evaluate this run", icon=":material/analytics:"):
        eval_jobs.start_run_evaluation(run_dir, limit=limit or None, max_new_tokens=eval_tokens,
                                       tokens_per_construct=eval_per_construct)
        st.rerun(scope="app")  # the page sets its refresh timer from whether a job is going
    if ev.get("base_note"):
        st.caption(ev["base_note"])
    compared = _comparison(run_dir, ev) if ev.get("evaluations") else []
    if ev.get("status") == eval_jobs.SUCCEEDED:
        st.page_link("pages/evaluate.py", label="Compare on the Evaluate page", icon=":material/analytics:",
                     query_params={"models": [*compared, "checker"]} if compared else None)
    if progress.state in (jobs.FAILED, jobs.CANCELLED) or st.toggle("Show the log", key="show_log"):
        st.code(jobs.read_log(run_dir, max_chars=8000) or "(the log is empty)", language="text", height=300)
    if was_active and not _active():
        st.rerun(scope="app")  # finished: redraw once without the timer
    elif every and abs(eval_jobs.redraw_seconds(run_dir) - every) >= 2:
        st.rerun(scope="app")  # a step's or an update's time is known now, or the next one's differs: reset the timer


def _comparison(run_dir, ev: dict) -> list[str]:
    """The new models against the one they were trained from, on the test variants all of them answered; returns
    their model ids (what the Evaluate page is opened on)."""
    rows = train_view.run_comparison(run_dir, engine=engine())
    if not rows:
        return []
    st.markdown("**Before and after training**" + ("" if ev.get("status") == eval_jobs.SUCCEEDED else " (so far)"))
    rates = ("micro F1", "macro F1", "hallucination", "grounding", "format validity", "validity, unforced")
    # the variants: the caption below, the same for every row; a rate with nothing to judge reads n/a, not None
    rates_table([{k: v for k, v in row.items() if k != "variants"} for row in rows], rates)
    st.caption(f"Scored on the {rows[0]['variants']} test variants the models above all answered"
               + (f", generated in {ev['dtype']}" if ev.get("dtype") else "")
               + ". n/a: no predicted mistakes to judge (hallucination), no cited elements (grounding). Per "
                 "category and variant by variant: the Evaluate page.")
    return [row["model id"] for row in rows if row["model id"]]


def _resume_controls(run_dir, status: dict) -> None:
    """A failed or cancelled run goes on from its newest checkpoint, in a new run folder, with one click."""
    if status.get("resumed_by"):
        st.caption(f"Resumed as run {Path(status['resumed_by']).name}.")
        return
    try:
        point = jobs.resume_point(run_dir)
    except R2taError as err:
        st.caption(f"Cannot be resumed: {err}")
        return
    if st.button(f"Resume: {point.describe()}", icon=":material/play_arrow:", key="resume"):
        try:
            new = eval_jobs.resume_training(run_dir)
        except R2taError as err:
            st.error(str(err))
        else:
            st.query_params["run"] = new.name
            st.rerun(scope="app")


def _dpo_again_controls(run_dir, status: dict) -> None:
    """A run whose SFT finished trains DPO again from that SFT in a new run, with the form's DPO settings: a sweep
    of beta or the learning rate, or today's pairs, without training SFT again."""
    status_recipe = status.get("recipe") or ""
    try:
        jobs.sft_source(run_dir)
        changes = train_view.dpo_again_overrides(run_dir, chosen)
    except R2taError:
        return  # no finished SFT, or a setting of the form out of bounds (the Export and train button says so)
    with st.expander("DPO again from this run's SFT"):
        st.caption("A new run carries this run's SFT stage over as it was saved and trains only DPO from it, with the "
                   "DPO settings of *Training settings* above, then is evaluated as a new run is (its SFT column is "
                   "this run's, whose answers are reused). "
                   + (f"Changed from this run: {', '.join(f'`{c}`' for c in changes)}." if changes
                      else "The DPO settings above are this run's: change the beta, the DPO learning rate or the SFT "
                           "term first to try another.")
                   + ("" if status_recipe == recipe else
                      f" (*Training settings* shows recipe {recipe}'s values and this run ran {status_recipe}: choose "
                      "it as the recipe above to start from its values.)" if status_recipe in recipes else
                      f" (*Training settings* shows recipe {recipe}'s values; this run ran a recipe file of its own "
                      "(`r2ta loop`, `--recipe FILE`): the changes listed are against that file.)"))
        today = st.checkbox(f"On today's pairs ({rows.dpo}, the rejected traces chosen above) instead of this run's",
                            key="dpo_again_today", disabled=not rows.dpo)
        if st.button("Train DPO again", icon=":material/replay:", key="dpo_again",
                     disabled=measuring is not None):
            try:
                pairs = train_view.export_for_training(engine=engine(), negatives=negatives).dpo_file if today else None
                new = eval_jobs.start_dpo_again(run_dir, dpo_file=pairs, overrides=changes, limit=limit or None,
                                                max_new_tokens=eval_tokens, tokens_per_construct=eval_per_construct)
            except R2taError as err:
                st.error(str(err))
            else:
                st.query_params["run"] = new.name
                st.rerun(scope="app")


live_run()

st.subheader("Past runs")
rates_table([s.row() for s in summaries], ("SFT loss", "DPO margin"))
