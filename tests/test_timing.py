"""How long a job will take (from a finished run of the same recipe on the same hardware) and has left."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from r2ta import eval_jobs, jobs, timing
from r2ta.pairs import write_rows
from training.tiny import smoke_rows

T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)
CPU = "CPU only (2 cores)"


def test_durations_read_the_way_a_person_plans():
    assert [timing.format_duration(s) for s in (0.2, 40, 89, 90, 3_000, 5_300, 5_400, 7_500, 40_000)] == [
        "1 s", "40 s", "89 s", "2 min", "50 min", "88 min", "1 h 30 min", "2 h 05 min", "11 h 07 min"]


def _progress(points, *, stage="sft", state="running", max_steps=100) -> jobs.RunProgress:
    return jobs.RunProgress(Path("/nowhere"), {"status": state, "stage": stage, "max_steps": max_steps}, points)


def _point(step, elapsed, stage="sft", max_steps=100):
    return {"stage": stage, "step": step, "max_steps": max_steps, "elapsed_s": elapsed,
            "time": (T0 + dt.timedelta(seconds=elapsed)).isoformat()}


def test_time_left_is_the_stages_recent_time_a_step_times_the_steps_left():
    # 10 s a step for 5 steps, then 20 s a step: the window follows the slower machine
    points = [_point(s, 10.0 * s) for s in range(1, 6)] + [_point(s, 50 + 20.0 * (s - 5)) for s in range(6, 31)]
    left = timing.stage_time_left(_progress(points), now=T0 + dt.timedelta(seconds=points[-1]["elapsed_s"]))
    assert left.step == 30 and left.max_steps == 100
    assert left.seconds_per_step == pytest.approx(20.0)  # the last WINDOW steps, all at 20 s
    assert left.seconds_left == pytest.approx(70 * 20.0)
    assert left.describe() == "20.0 s a step, about 23 min left in SFT"
    # 5 minutes after the last point, that much less is left
    later = timing.stage_time_left(_progress(points), now=T0 + dt.timedelta(seconds=points[-1]["elapsed_s"] + 300))
    assert later.seconds_left == pytest.approx(70 * 20.0 - 300)
    # the other stage's points do not count; one point: its time includes the warm-up
    mixed = [_point(s, 1.0 * s, stage="sft") for s in range(1, 4)] + [_point(1, 30.0, stage="dpo", max_steps=8)]
    one = timing.stage_time_left(_progress(mixed, stage="dpo", max_steps=8), now=T0 + dt.timedelta(seconds=30))
    assert one.stage == "dpo" and one.seconds_per_step == 30.0 and one.seconds_left == 7 * 30.0
    last = timing.stage_time_left(_progress([_point(1, 5.0, max_steps=2), _point(2, 9.0, max_steps=2)], max_steps=2),
                                  now=T0 + dt.timedelta(seconds=9))
    assert last.seconds_left == 0 and last.describe() == "4.0 s a step, SFT's last step done"


def test_no_time_left_without_a_logged_step_of_the_stage_or_once_finished():
    assert timing.stage_time_left(_progress([])) is None
    assert timing.stage_time_left(_progress([_point(1, 5.0, stage="sft")], stage="dpo")) is None
    assert timing.stage_time_left(_progress([_point(3, 5.0)], state="succeeded")) is None
    assert timing.stage_time_left(_progress([_point(3, 5.0)], stage="merging")) is None
    no_max = [{"stage": "sft", "step": 3, "elapsed_s": 5.0}]
    assert timing.stage_time_left(jobs.RunProgress(Path("/x"), {"status": "running", "stage": "sft"}, no_max)) is None


def test_a_watching_page_redraws_a_quarter_of_a_step_apart_between_2_and_10_seconds():
    def every(seconds_a_step, stage="sft"):
        return timing.refresh_seconds(_progress([_point(s, seconds_a_step * s) for s in range(1, 4)], stage=stage))

    assert every(0.3) == 2.0  # a GPU's fast steps: the bar moves every redraw
    assert every(14.0) == 4.0  # 3.5, rounded to whole seconds
    assert every(60.0) == 10.0 and every(600.0) == 10.0  # the embedded model's 4-row steps on 2 cores, and slower
    assert every(60.0, stage="dpo") == 2.0  # the next stage has logged no step yet
    assert timing.refresh_seconds(_progress([])) == 2.0
    assert timing.refresh_seconds(_progress([_point(3, 300.0)], state="succeeded")) == 2.0


def test_a_page_watching_a_models_job_redraws_a_quarter_of_its_updates_apart(tmp_path):
    """An evaluation or a batch of traces updates its status once a batch of answers: the job records the batch
    (eval_jobs.progress_writer), and a watching page redraws a quarter of an update's time apart, 2 to 10 s."""
    progress = eval_jobs.progress_writer(tmp_path)
    eval_jobs.write_eval_status(tmp_path, stage_started_at=T0.isoformat(), done=0)
    assert timing.job_refresh_seconds(eval_jobs.read_eval_status(tmp_path)) == 2.0  # no update yet
    progress(8, 24)
    progress(16, 24)
    progress(20, 24)  # the last batch is short: the batch stays the biggest
    status = eval_jobs.read_eval_status(tmp_path)
    assert (status["done"], status["total"], status["batch"]) == (20, 24, 8)
    # 20 answers in 100 s: 5 s an answer, 40 s an update, redrawn every 10 s; on a GPU every 2 s
    assert timing.job_refresh_seconds(status, now=T0 + dt.timedelta(seconds=100)) == 10.0
    assert timing.job_refresh_seconds(status, now=T0 + dt.timedelta(seconds=30)) == 3.0
    assert timing.job_refresh_seconds(status, now=T0 + dt.timedelta(seconds=2)) == 2.0
    # the next model starts again from 0 answers: its first update sets its own batch
    progress(4, 24)
    assert eval_jobs.read_eval_status(tmp_path)["batch"] == 8  # the biggest a writer has seen
    fresh = eval_jobs.progress_writer(tmp_path / "other")
    fresh(0, 24)
    assert "batch" not in eval_jobs.read_eval_status(tmp_path / "other")
    for odd in ({"done": "x", "batch": 8, "started_at": T0.isoformat()}, {"done": 8, "batch": 8}, {}):
        assert timing.job_refresh_seconds(odd) == 2.0


def test_a_page_watching_a_run_or_a_measurement_redraws_at_its_stages_pace(tmp_path):
    """The Train page's run and its measurement (a probe folder is a run folder): a quarter of a training step
    while it trains, then a quarter of its evaluation's updates apart; 2 s before either has a pace."""
    jobs.write_status(tmp_path, status="running", stage="sft", max_steps=100)
    assert eval_jobs.redraw_seconds(tmp_path) == 2.0  # no step logged yet
    for step in range(1, 4):
        jobs.append_progress(tmp_path, _point(step, 24.0 * step))
    assert eval_jobs.redraw_seconds(tmp_path) == 6.0  # 24 s a step
    jobs.write_status(tmp_path, status="succeeded", stage="done", finished_at=jobs.now_iso())
    assert eval_jobs.redraw_seconds(tmp_path) == 2.0  # its evaluation has not begun
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=100)
    eval_jobs.write_eval_status(tmp_path, status="running", stage_started_at=started.isoformat(), done=16, batch=8)
    assert eval_jobs.redraw_seconds(tmp_path) == 10.0  # 100 s for 16 answers: 50 s an update of 8


def test_a_models_job_says_the_time_its_answers_have_left():
    # 20 answers in 100 s: 5 s an answer, 4 to go; nothing to say before the first update, after the last, or done
    status = {"status": "running", "stage_started_at": T0.isoformat(), "done": 20, "total": 24}
    assert timing.job_time_left(status, now=T0 + dt.timedelta(seconds=100)) == 20.0
    assert timing.job_time_left({**status, "stage_started_at": None, "started_at": T0.isoformat()},
                                now=T0 + dt.timedelta(seconds=50)) == 10.0
    for odd in ({**status, "done": 0}, {**status, "done": 24}, {**status, "status": "succeeded"},
                {**status, "total": "x"}, {**status, "stage_started_at": None}, {}):
        assert timing.job_time_left(odd, now=T0 + dt.timedelta(seconds=100)) is None


RECIPE = {"run": {"precision": "auto"}, "model": {"use_peft": True},
          "sft": {"num_train_epochs": 2, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 2},
          "dpo": {"num_train_epochs": 1, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 4}}


def _finished_run(folder: Path, *, recipe="smollm2-135m-cpu", hardware=CPU, precision="fp32", status="succeeded",
                  finished="2026-12-01T10:00:00+00:00", evaluated=True) -> Path:
    """A finished run as the runner leaves it: SFT 10 rows x 2 epochs in 10 steps (batch 2), 40 s of steps in
    50 s of stage; DPO 8 pairs in 2 steps (batch 4), 80 s in 95 s; evaluation 2 models x 5 variants in 100 s."""
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    jobs.write_status(folder, status=status, recipe=recipe, precision=precision, finished_at=finished,
                      hardware={"description": hardware, "processes": 1},
                      data=[{"stage": "sft", "rows": 10}, {"stage": "dpo", "rows": 8}],
                      metrics={"sft": {"steps": 10, "train_runtime_s": 40.0, "wall_s": 50.0},
                               "dpo": {"steps": 2, "train_runtime_s": 80.0, "wall_s": 95.0}})
    if evaluated:
        eval_jobs.eval_dir(folder).mkdir()
        eval_jobs.write_eval_status(folder, status="succeeded", total=5, evaluations={"sft": 1, "sft+dpo": 2},
                                    started_at="2026-12-01T10:00:00+00:00", finished_at="2026-12-01T10:01:40+00:00")
    return folder


def test_a_finished_run_gives_seconds_per_row_and_epoch_and_the_time_outside_its_steps(tmp_path):
    rates = timing.run_rates(_finished_run(tmp_path / "run"))
    assert rates.stages["sft"] == timing.StageRate(2.0, 10.0)  # 40 s / (10 rows x 2 epochs)
    assert rates.stages["dpo"] == timing.StageRate(10.0, 15.0)  # 80 s / 8 pairs
    assert rates.eval_seconds_per_variant == pytest.approx(10.0)  # 100 s / (2 models x 5 variants)
    # 450 rows x 3 epochs, 450 pairs x 1 epoch, 150 test variants
    bigger = {**RECIPE, "sft": {**RECIPE["sft"], "num_train_epochs": 3}}
    estimate = timing.estimate_run(rates, bigger, {"sft": 450, "dpo": 450}, eval_variants=150)
    assert estimate.stages == {"sft": 10.0 + 2.0 * 1350, "dpo": 15.0 + 10.0 * 450}
    assert estimate.evaluation_s == pytest.approx(10.0 * 2 * 150)
    assert estimate.total_s == pytest.approx(2710 + 4515 + 3000)
    assert estimate.describe() == ("about 2 h 50 min: SFT 45 min (450 rows × 3 epochs), DPO 75 min (450 pairs × 1 "
                                   "epoch), evaluation 50 min (150 test variants × 2 models); rates of run run")
    # a setting that changes the time a row takes is named
    unchecked = {**bigger, "sft": {**bigger["sft"], "activation_checkpointing": False}, "model": {"use_peft": False}}
    other = timing.estimate_run(rates, unchecked, {"sft": 450, "dpo": 450})
    assert other.differs == ["model.use_peft", "sft.activation_checkpointing"]
    assert other.describe().endswith("rates of run run, which ran with another model.use_peft, "
                                     "sft.activation_checkpointing, so the time a row takes may differ")
    # --max-steps caps each stage: 3 steps of 2 rows, of 4 pairs
    capped = timing.estimate_run(rates, RECIPE, {"sft": 450, "dpo": 450}, max_steps=3)
    assert capped.stages == {"sft": 10.0 + 2.0 * 6, "dpo": 15.0 + 10.0 * 12}
    assert "(450 rows × 2 epochs, stopped after 3 steps)" in capped.describe()
    # a cap the stage never reaches is not one
    assert "stopped" not in timing.estimate_run(rates, RECIPE, {"sft": 2, "dpo": 4}, max_steps=3).describe()


def test_a_runs_logged_steps_give_its_rate_without_the_first_steps_warm_up(tmp_path):
    """SFT of _finished_run, each of its 10 steps logged: 2 rows of 100 tokens a step, 4 s a step (0.02 s a token),
    but the first step took 7 s (3 s of warm-up; 43 s of runtime). The rate is the steady 4 s / 2 rows; the warm-up, once a stage,
    joins the stage's time outside its steps. A measurement's two steps are where this shows."""
    folder = _finished_run(tmp_path / "run", evaluated=False)
    status = jobs.read_status(folder)
    status["metrics"]["sft"].update(train_runtime_s=43.0, wall_s=53.0)
    jobs.write_status(folder, metrics=status["metrics"])
    for step in range(1, 11):
        jobs.append_progress(folder, {"stage": "sft", "step": step, "elapsed_s": 3.0 + 4.0 * step,
                                      "num_tokens": 200.0 * step, "loss": 1.0})
    rates = timing.run_rates(folder)
    assert rates.stages["sft"].seconds_per_row == pytest.approx(2.0)  # 0.02 s x 2,000 tokens / 20 rows
    assert rates.stages["sft"].overhead_s == pytest.approx(10.0 + 3.0)
    assert timing.estimate_run(rates, RECIPE, {"sft": 10, "dpo": 8}).stages["sft"] == pytest.approx(53.0)  # its own
    assert rates.stages["dpo"] == timing.StageRate(10.0, 15.0)  # no logged steps: its runtime over its pairs
    # a measurement: 2 steps, the second of longer rows (300 tokens in 5 s), the first 4 s with 100 tokens
    probe = _finished_run(tmp_path / "probe", evaluated=False)
    status = jobs.read_status(probe)
    status["metrics"]["sft"].update(steps=2, train_runtime_s=9.0)
    jobs.write_status(probe, metrics=status["metrics"])
    jobs.append_progress(probe, {"stage": "sft", "step": 1, "elapsed_s": 4.0, "num_tokens": 100.0})
    jobs.append_progress(probe, {"stage": "sft", "step": 2, "elapsed_s": 9.0, "num_tokens": 400.0})
    steady = timing.run_rates(probe).stages["sft"]  # 5 s / 300 tokens x 400 tokens / 4 rows
    assert steady.seconds_per_row == pytest.approx(5 / 300 * 400 / 4) and steady.seconds_per_row < 9.0 / 4
    assert steady.overhead_s == pytest.approx((50.0 - 9.0) + (4.0 - 5 / 300 * 100))  # wall - runtime, warm-up
    # a step missing from the log, a stage logged in two attempts (a resume), or a first step faster a token than
    # the second (no warm-up to leave out; the tiny model's steps on a busy machine): its runtime over its rows
    for broken in ({"stage": "sft", "step": 2, "elapsed_s": 9.0}, {"stage": "sft", "step": 2, "elapsed_s": 9.0,
                                                                     "num_tokens": 400.0, "attempt": 2},
                   {"stage": "sft", "step": 2, "elapsed_s": 9.0, "num_tokens": 150.0}):
        (probe / jobs.PROGRESS_FILE).write_text("")
        jobs.append_progress(probe, {"stage": "sft", "step": 1, "elapsed_s": 4.0, "num_tokens": 100.0})
        jobs.append_progress(probe, broken)
        assert timing.run_rates(probe).stages["sft"].seconds_per_row == pytest.approx(9.0 / 4)


def test_a_run_cut_short_by_max_steps_counts_the_rows_it_saw(tmp_path):
    folder = _finished_run(tmp_path / "run", evaluated=False)
    status = jobs.read_status(folder)
    status["metrics"]["sft"].update(steps=3, train_runtime_s=12.0)  # 3 steps x 2 rows, not 10 x 2
    jobs.write_status(folder, metrics=status["metrics"])
    rates = timing.run_rates(folder)
    assert rates.stages["sft"].seconds_per_row == pytest.approx(2.0) and rates.eval_seconds_per_variant is None
    assert "evaluation not estimated" in timing.estimate_run(rates, RECIPE, {"sft": 1, "dpo": 1}, 10).describe()


def test_rows_seen_counts_an_epochs_short_last_step():
    assert timing.rows_seen(450, 450, 1, 1) == 450 and timing.rows_seen(6, 24, 4, 3) == 24
    # 3 rows in steps of 4: each step (one an epoch) sees the 3 rows, not 4
    assert timing.rows_seen(2, 3, 4, 3) == 6 and timing.rows_seen(3, 3, 4, 3) == 9
    # 10 rows in steps of 4: 4, 4, 2 an epoch; capped at the epochs' rows
    assert [timing.rows_seen(k, 10, 4, 2) for k in range(7)] == [0, 4, 8, 10, 14, 18, 20]
    assert timing.rows_seen(9, 10, 4, 2) == 20 and timing.rows_seen(4, 10, 4, 1.5) == 14


def test_a_run_on_fewer_rows_than_a_step_takes_is_timed_by_the_rows_it_saw(tmp_path):
    folder = _finished_run(tmp_path / "run", evaluated=False)
    status = jobs.read_status(folder)
    recipe = {**RECIPE, "dpo": {**RECIPE["dpo"], "num_train_epochs": 3}}  # 4 pairs a step
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    status["metrics"]["dpo"].update(steps=2, train_runtime_s=12.0)  # 2 steps of the 3 pairs there are
    jobs.write_status(folder, metrics=status["metrics"], data=[{"stage": "sft", "rows": 20},
                                                               {"stage": "dpo", "rows": 3}])
    assert timing.run_rates(folder).stages["dpo"].seconds_per_row == pytest.approx(2.0)  # 12 s / 6 pairs, not / 8


def test_the_reference_is_the_last_finished_run_of_the_recipe_on_this_hardware_and_precision(tmp_path):
    older = _finished_run(tmp_path / "older", finished="2026-12-01T10:00:00+00:00")
    newer = _finished_run(tmp_path / "newer", finished="2026-12-02T10:00:00+00:00")
    others = [
        _finished_run(tmp_path / "failed", status="failed", finished="2026-12-03T10:00:00+00:00"),
        _finished_run(tmp_path / "gpu", hardware="1 x NVIDIA H100, 80 GB", finished="2026-12-03T10:00:00+00:00"),
        _finished_run(tmp_path / "bf16", precision="bf16", finished="2026-12-03T10:00:00+00:00"),
        _finished_run(tmp_path / "tiny", recipe="tiny-cpu", finished="2026-12-03T10:00:00+00:00"),
    ]
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / jobs.STATUS_FILE).write_text("{half")
    dirs = [*others, tmp_path / "broken", older, newer]
    assert timing.reference_run("smollm2-135m-cpu", CPU, "fp32", dirs).run_dir == newer
    assert timing.reference_run("smollm2-135m-cpu", CPU, "fp32", [older]).run_dir == older
    assert timing.reference_run("qwen2.5-0.5b-gpu", CPU, "fp32", dirs) is None
    assert timing.estimate_for_recipe("smollm2-135m-cpu", [], {"sft": 1, "dpo": 1}, hardware="2 x A100",
                                      precision="bf16", run_dirs=dirs) is None
    # the shipped recipe with the page's overrides: 5 SFT epochs
    estimate = timing.estimate_for_recipe("smollm2-135m-cpu", ["sft.num_train_epochs=5"], {"sft": 4, "dpo": 2},
                                          hardware=CPU, precision="fp32", eval_variants=3, run_dirs=dirs)
    assert estimate.source == newer and estimate.epochs["sft"] == 5.0
    assert estimate.stages["sft"] == 10.0 + 2.0 * 20 and estimate.evaluation_s == pytest.approx(60.0)


def test_a_run_that_carried_a_stage_over_is_a_reference_only_where_that_stage_was_measured_alike(tmp_path):
    """A DPO-again run (or a resumed one) carries its SFT's figures over from the run it came from; those are this
    machine's rates only where that run trained on the same hardware at the same precision."""
    def carried(folder: Path, source: Path) -> Path:
        (folder / jobs.REQUEST_FILE).write_text(json.dumps({"resume": {"from_run": str(source), "done": ["sft"]}}))
        return folder

    here = _finished_run(tmp_path / "here", finished="2026-12-01T10:00:00+00:00")
    elsewhere = _finished_run(tmp_path / "elsewhere", hardware="CPU only (64 cores)",
                              finished="2026-12-01T10:00:00+00:00")
    in_bf16 = _finished_run(tmp_path / "in-bf16", precision="bf16", finished="2026-12-01T10:00:00+00:00")
    alike = carried(_finished_run(tmp_path / "alike", finished="2026-12-02T10:00:00+00:00"), here)
    moved = carried(_finished_run(tmp_path / "moved", finished="2026-12-03T10:00:00+00:00"), elsewhere)
    other_precision = carried(_finished_run(tmp_path / "fp32-dpo", finished="2026-12-03T10:00:00+00:00"), in_bf16)
    gone = carried(_finished_run(tmp_path / "gone", finished="2026-12-03T10:00:00+00:00"), tmp_path / "deleted")
    # a chain: a DPO-again run from a run that had itself carried its SFT from a run elsewhere
    chained = carried(_finished_run(tmp_path / "chained", finished="2026-12-04T10:00:00+00:00"), moved)
    assert timing.run_rates(alike) is not None
    for not_here in (moved, other_precision, gone, chained):
        assert timing.run_rates(not_here) is None, not_here.name
    dirs = [here, alike, moved, other_precision, gone, chained]
    assert timing.reference_run("smollm2-135m-cpu", CPU, "fp32", dirs).run_dir == alike
    # a request that carried nothing, or none at all (an older run): as before
    (moved / jobs.REQUEST_FILE).write_text(json.dumps({"resume": None}))
    (other_precision / jobs.REQUEST_FILE).unlink()
    assert timing.run_rates(moved) is not None and timing.run_rates(other_precision) is not None


def test_what_a_running_job_has_left_after_its_stage(tmp_path):
    rates = timing.run_rates(_finished_run(tmp_path / "ref"))
    running = tmp_path / "running"
    running.mkdir()
    (running / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    (running / jobs.REQUEST_FILE).write_text(json.dumps({"max_steps": None}))
    status = {"status": "running", "stage": "sft", "data": [{"stage": "sft", "rows": 100}, {"stage": "dpo", "rows": 50}]}
    rest = timing.after_this_stage(jobs.RunProgress(running, status, []), rates, eval_variants=10)
    assert rest.stages == {"dpo": 15.0 + 10.0 * 50} and rest.evaluation_s == pytest.approx(200.0)
    in_dpo = timing.after_this_stage(jobs.RunProgress(running, {**status, "stage": "dpo"}, []), rates, 10)
    assert in_dpo.stages == {} and in_dpo.describe().startswith("about 3 min: evaluation 3 min")
    assert timing.after_this_stage(jobs.RunProgress(running, status, []), None) is None


def test_r2ta_train_prints_the_estimate_a_real_run_gives_the_next(tmp_path, monkeypatch, capsys):
    """The rates come from what the real runner writes: a tiny run, then the estimate of the next from it."""
    from r2ta.commands.train import follow

    monkeypatch.setenv("R2TA_DATA_DIR", str(tmp_path / "data"))
    sft, dpo = smoke_rows(4)
    write_rows(sft, tmp_path / "sft.jsonl")
    write_rows(dpo, tmp_path / "dpo.jsonl")
    command = [sys.executable, "-m", "r2ta", "train", "--sft", str(tmp_path / "sft.jsonl"), "--dpo",
               str(tmp_path / "dpo.jsonl"), "--recipe", "tiny-cpu", "--no-merge", "--run-dir", str(tmp_path / "run")]
    started = subprocess.run([*command, "--detach"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "expected:   no estimate: no run of this recipe has finished on this hardware yet" in started.stdout
    # what `r2ta train` does after starting a run, polling often enough to see a tiny run's steps one by one (a
    # tiny step takes ~0.1 s: at the command's 1 s a whole stage may arrive in one poll, with no time left to say)
    capsys.readouterr()
    assert follow(tmp_path / "run", poll_s=0.01) == 0
    assert "s a step, " in capsys.readouterr().out  # the follower's time left
    from r2ta.train_view import hardware_and_precision

    hardware, precision = hardware_and_precision("tiny-cpu")
    assert timing.known_run_dirs() == [tmp_path / "run"]  # outside DATA/runs: found through the database
    detached = subprocess.run([*command[:-1], str(tmp_path / "run2"), "--detach"], capture_output=True, text=True,
                              timeout=120)
    assert detached.returncode == 0, detached.stdout + detached.stderr
    assert set(timing.known_run_dirs()) == {tmp_path / "run", tmp_path / "run2"}  # listed before it ends
    assert "rates of run run" in detached.stdout  # and its estimate is the first run's
    jobs.cancel(tmp_path / "run2", wait_s=60, force=True)
    rates = timing.reference_run("tiny-cpu", hardware, precision, timing.known_run_dirs())
    assert rates is not None and rates.run_dir == tmp_path / "run"
    assert all(rate.seconds_per_row > 0 and rate.overhead_s >= 0 for rate in rates.stages.values())
    # tiny-cpu: 4 rows x 2 epochs of SFT, 4 pairs x 2 epochs of DPO: the estimate of the same data is its own time
    status = jobs.read_status(tmp_path / "run")
    estimate = timing.estimate_run(rates, timing.read_recipe(tmp_path / "run" / "recipe.yaml"), {"sft": 4, "dpo": 4})
    for stage in timing.STAGES:
        assert estimate.stages[stage] == pytest.approx(status["metrics"][stage]["wall_s"], rel=1e-6)


def test_an_evaluation_has_left_its_models_time_a_variant_times_the_variants_left():
    running = {"status": "running", "stage": "sft", "stage_started_at": T0.isoformat(), "done": 5, "total": 50}
    # 5 variants in 100 s: 45 more of SFT, then 50 of SFT+DPO
    assert timing.evaluation_time_left(running, now=T0 + dt.timedelta(seconds=100)) == pytest.approx(20.0 * 95)
    final = {**running, "stage": "sft+dpo"}
    assert timing.evaluation_time_left(final, now=T0 + dt.timedelta(seconds=100)) == pytest.approx(20.0 * 45)
    assert timing.evaluation_time_left({**running, "done": 0}) is None  # nothing to measure yet
    assert timing.evaluation_time_left({**running, "status": "succeeded"}) is None
    assert timing.evaluation_time_left({"status": "running", "stage": "sft", "done": 5, "total": 50}) is None


def test_the_base_model_counts_only_the_answers_it_lacks(tmp_path):
    """The evaluation after a run scores the base model too, generating only what it has not answered yet."""
    run = _finished_run(tmp_path / "run")
    # the job records each model's generation: the base had all 5 answers already (0 generated, 0.2 s)
    eval_jobs.write_eval_status(run, evaluations={"sft": 1, "sft+dpo": 2, "base": 3}, total=5, generated={
        "sft": {"variants": 5, "seconds": 40.0}, "sft+dpo": {"variants": 5, "seconds": 60.0},
        "base": {"variants": 0, "seconds": 0.2}})
    rates = timing.run_rates(run)
    assert rates.eval_seconds_per_variant == pytest.approx(10.0)  # 100 s / 10 answers, not 100 s / 15
    estimate = timing.estimate_run(rates, RECIPE, {"sft": 10, "dpo": 8}, eval_variants=6, base_variants=4)
    assert estimate.evaluation_s == pytest.approx(10.0 * (2 * 6 + 4))
    assert "evaluation 3 min (6 test variants × 2 models + the base model on 4)" in estimate.describe()
    running = {"status": "running", "stage": "sft", "stage_started_at": T0.isoformat(), "done": 5, "total": 50,
               "models": ["sft", "sft+dpo", "base"], "base_pending": 10}
    # 5 variants in 100 s: 45 more of SFT, 50 of SFT+DPO, the base model's 10 missing answers
    assert timing.evaluation_time_left(running, now=T0 + dt.timedelta(seconds=100)) == pytest.approx(20.0 * 105)
    at_base = {**running, "stage": "base", "done": 2, "total": 10}
    assert timing.evaluation_time_left(at_base, now=T0 + dt.timedelta(seconds=100)) == pytest.approx(50.0 * 8)
    assert timing.evaluation_time_left({**running, "base_pending": "lots"}) is None


def test_a_models_load_counts_once_not_in_each_answer(tmp_path):
    """An evaluation that recorded its models' loads apart: the rate a variant is their answers' alone; the first
    model's load (the libraries' import with it) counts once, and each model loaded after it in the same process
    at what those took (SFT+DPO after SFT, and the base where it has answers to give)."""
    run = _finished_run(tmp_path / "run")
    eval_jobs.write_eval_status(run, evaluations={"sft": 1, "sft+dpo": 2, "base": 3}, total=5, generated={
        "sft": {"variants": 5, "seconds": 40.0, "load_seconds": 4.0},
        "sft+dpo": {"variants": 5, "seconds": 60.0, "load_seconds": 0.5},
        "base": {"variants": 0, "seconds": 0.2, "load_seconds": 0.0}})  # answered none: loaded nothing
    rates = timing.run_rates(run)
    assert rates.eval_seconds_per_variant == pytest.approx(10.0)
    assert (rates.eval_load_s, rates.eval_reload_s) == (pytest.approx(4.0), pytest.approx(0.5))
    # the first load is the first model's the job loaded ("models": its order), not the first key of the file
    # (written sorted: base first)
    eval_jobs.write_eval_status(run, models=["sft", "sft+dpo", "base"], generated={
        "base": {"variants": 5, "seconds": 50.0, "load_seconds": 0.4},
        "sft": {"variants": 5, "seconds": 40.0, "load_seconds": 4.0},
        "sft+dpo": {"variants": 5, "seconds": 60.0, "load_seconds": 0.6}})
    rates = timing.run_rates(run)
    assert (rates.eval_load_s, rates.eval_reload_s) == (pytest.approx(4.0), pytest.approx(0.5))
    with_base = timing.estimate_run(rates, RECIPE, {"sft": 10, "dpo": 8}, eval_variants=6, base_variants=4)
    assert with_base.evaluation_s == pytest.approx(10.0 * (2 * 6 + 4) + 4.0 + 0.5 * 2)
    without = timing.estimate_run(rates, RECIPE, {"sft": 10, "dpo": 8}, eval_variants=6)
    assert without.evaluation_s == pytest.approx(10.0 * 12 + 4.0 + 0.5)
    # a measurement loads one model: its load counts once, no reload is known
    probe_run = _finished_run(tmp_path / "probe")
    eval_jobs.write_eval_status(probe_run, evaluations={"base": 1}, total=4, generated={
        "base": {"variants": 4, "seconds": 24.0, "load_seconds": 3.9}})
    rates = timing.run_rates(probe_run)
    assert (rates.eval_load_s, rates.eval_reload_s) == (pytest.approx(3.9), None)
    estimate = timing.estimate_run(rates, RECIPE, {"sft": 10, "dpo": 8}, eval_variants=8, base_variants=4)
    assert estimate.evaluation_s == pytest.approx(6.0 * 20 + 3.9)
    # an evaluation from before loads were recorded apart: its seconds hold them, nothing is added
    old = _finished_run(tmp_path / "old")
    eval_jobs.write_eval_status(old, evaluations={"sft": 1, "sft+dpo": 2}, total=5, generated={
        "sft": {"variants": 5, "seconds": 44.0}, "sft+dpo": {"variants": 5, "seconds": 66.0}})
    rates = timing.run_rates(old)
    assert rates.eval_load_s is None and rates.eval_reload_s is None
    assert timing.estimate_run(rates, RECIPE, {"sft": 10, "dpo": 8}, eval_variants=6).evaluation_s == pytest.approx(11.0 * 12)
    bad = _finished_run(tmp_path / "bad")
    eval_jobs.write_eval_status(bad, evaluations={"sft": 1}, total=5, generated={
        "sft": {"variants": 5, "seconds": 44.0, "load_seconds": "slow"}})
    assert timing.run_rates(bad).eval_seconds_per_variant is None  # edited by hand: no rate, no error


def test_an_evaluation_again_adds_its_answers_to_the_earlier_ones():
    from types import SimpleNamespace

    def outcome(n, seconds, load):
        return SimpleNamespace(generated=n, generation_s=seconds, load_s=load)

    before = {"variants": 5, "seconds": 40.0, "load_seconds": 4.0}
    assert eval_jobs.pooled_answers(before, outcome(3, 30.0, 3.5)) == {"variants": 8, "seconds": 70.0, "load_seconds": 3.5}
    # nothing generated (every answer reused): the earlier figures, its load kept
    assert eval_jobs.pooled_answers(before, outcome(0, 0.0, 0.0)) == before
    # nothing before, or a hand-edited entry: this evaluation's alone
    for earlier in (None, {}, {"variants": "five", "seconds": 1}, {"variants": 0, "seconds": 0.0}):
        assert eval_jobs.pooled_answers(earlier, outcome(2, 9.0, 1.0)) == {"variants": 2, "seconds": 9.0, "load_seconds": 1.0}


def test_hand_edited_run_files_give_no_rates_and_a_bad_recipe_a_clear_error(tmp_path):
    from r2ta.errors import R2taError

    folder = _finished_run(tmp_path / "run", evaluated=False)
    jobs.write_status(folder, data=[{"stage": "sft", "rows": "ten"}, {"stage": "dpo", "rows": 8}])
    assert timing.run_rates(folder) is None
    folder = _finished_run(tmp_path / "run2", evaluated=False)
    (folder / "recipe.yaml").write_text(yaml.safe_dump({**RECIPE, "sft": {"num_train_epochs": "three"}}))
    assert timing.run_rates(folder) is None
    with pytest.raises(R2taError, match="sft section has no usable epochs"):
        timing.estimate_run(timing.run_rates(_finished_run(tmp_path / "ok")), {"sft": {"num_train_epochs": 0}},
                            {"sft": 1, "dpo": 1})
    points = [{"stage": "sft", "step": 2, "max_steps": "many", "elapsed_s": 4.0}]
    assert timing.stage_time_left(_progress(points)) is None
    assert timing.stage_time_left(_progress([{"stage": "sft", "step": "2", "elapsed_s": 4.0}])) is None


def test_an_estimate_from_a_run_before_a_speed_change_or_on_another_allocator_says_so(tmp_path):
    """A reference run trained by slower code (no speed_revision: before the CPU LM head scored only labelled
    positions) overstates a new run's time on a CPU: the estimate says so. Not on a GPU, which that change
    left alone; and a run that trained on another memory allocator than the new one is named like a setting."""
    old_cpu = _finished_run(tmp_path / "old-cpu")
    jobs.write_status(old_cpu, hardware={"description": CPU, "kind": "cpu", "processes": 1})
    rates = timing.run_rates(old_cpu)
    assert rates.speed_revision == 1 and rates.hardware_kind == "cpu" and rates.allocator is None
    assert timing.changes_since(rates) == [timing.SPEED_CHANGES[2][0]]
    text = timing.estimate_run(rates, RECIPE, {"sft": 4, "dpo": 2}).describe()
    assert text.endswith("; that run trained on an earlier version of the training code, before a CPU run's LM head "
                         "scores only the labelled positions (SFT 1.3-1.45x the tokens/s) and training runs on "
                         "tcmalloc where the system has it, so this run will likely take less")
    # the same run on a GPU: that change made no difference there
    jobs.write_status(old_cpu, hardware={"description": "1 x NVIDIA H100, 80 GB", "kind": "cuda", "processes": 1})
    assert timing.changes_since(timing.run_rates(old_cpu)) == []
    # a run of this revision: no note; on glibc's malloc while the next runs on tcmalloc: named
    current = _finished_run(tmp_path / "current")
    jobs.write_status(current, hardware={"description": CPU, "kind": "cpu", "processes": 1},
                      speed_revision=timing.SPEED_REVISION, allocator="glibc malloc")
    rates = timing.run_rates(current)
    same = timing.estimate_run(rates, RECIPE, {"sft": 4, "dpo": 2}, allocator="glibc malloc")
    assert same.changes_since == [] and same.differs == [] and same.describe().endswith("rates of run current")
    other = timing.estimate_run(rates, RECIPE, {"sft": 4, "dpo": 2}, allocator="tcmalloc")
    assert other.differs == ["memory allocator (glibc malloc; this run: tcmalloc)"]
    assert other.describe().endswith("which ran with another memory allocator (glibc malloc; this run: tcmalloc), "
                                     "so the time a row takes may differ")
    # a status edited by hand into nonsense reads as the oldest revision, not an error
    jobs.write_status(current, speed_revision="fast", allocator=7)
    assert timing.run_rates(current).speed_revision == 1 and timing.run_rates(current).allocator is None
