"""Measuring the machine before the first run (r2ta.probe): the sample, the job, and the estimate it gives."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from db.models import EvaluationRow, TraceRow
from r2ta import eval_jobs, jobs, probe, timing
from r2ta.errors import R2taError
from test_evaluation import _tiny_data, small_store

TEST_VARIANTS = 2 * probe.PROBE_EVAL_VARIANTS + 1  # two measurements' answers, and one left for a run


@pytest.fixture
def engine(tmp_path, monkeypatch):
    """test_evaluation's store, with test variants enough for two measurements' new answers."""
    return small_store(tmp_path, monkeypatch, test_variants=TEST_VARIANTS)


def test_the_sample_spans_the_rows_lengths():
    lines = [f'{{"x": "{"a" * n}"}}' for n in (50, 3, 70, 10, 30, 90, 1, 60)]
    picked = probe.sample_lines(lines, 3)
    lengths = sorted(len(line) for line in lines)
    assert [len(line) for line in picked] == [lengths[0], lengths[4], lengths[-1]]  # shortest, middle, longest
    assert probe.sample_lines(lines, 20) == lines  # fewer rows than asked for: all of them
    assert len(probe.sample_lines(lines, 1)) == 1


def _wait(run_dir: Path, timeout: float = 400) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = probe.probe_state(run_dir)
        if state != "running":
            return state
        time.sleep(0.5)
    raise AssertionError(f"the probe did not finish: {jobs.read_log(run_dir)}")


def _hardware(recipe) -> tuple[str, str]:
    from r2ta.train_view import hardware_and_precision

    return hardware_and_precision(recipe)


@pytest.mark.slow
def test_a_probe_trains_a_few_steps_times_the_base_model_and_gives_the_first_estimate(engine, tmp_path):
    recipe = _tiny_data(engine, tmp_path)
    hardware, precision = _hardware(recipe)
    rows = {"sft": 40, "dpo": 40}
    assert timing.estimate_for_recipe(recipe, [], rows, hardware=hardware, precision=precision, run_dirs=[]) is None
    run_dir = probe.start_probe(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe, max_new_tokens=8)
    assert run_dir.parent.parent == probe.probes_dir() and probe.active_probe() == run_dir
    with pytest.raises(R2taError, match="already going"):
        probe.start_probe(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe)
    assert _wait(run_dir) == jobs.SUCCEEDED, jobs.read_log(run_dir) + eval_jobs.read_eval_log(run_dir)
    assert probe.active_probe() is None and probe.latest_probe(recipe) == run_dir
    status = jobs.read_status(run_dir)
    assert status["max_steps"] == probe.PROBE_STEPS and jobs.read_request(run_dir)["probe"] is True
    # 2 steps of 2 rows (the tiny recipe's batch) of the 3 exported: the sample, not the whole export
    assert {d["stage"]: d["rows"] for d in status["data"]} == {"sft": 3, "dpo": 3}
    assert not any((run_dir / stage).exists() for stage in ("sft", "dpo", "merged"))  # its models are deleted
    # the base model answered PROBE_EVAL_VARIANTS test variants, stored like any evaluation's (the first run's reuses them)
    ev = eval_jobs.read_eval_status(run_dir)
    assert ev["models"] == ["base"] and ev["generated"]["base"]["variants"] == probe.PROBE_EVAL_VARIANTS
    assert ev["job"] == "measurement"  # were its process to die, the error would name it so
    with Session(engine) as session:
        traces = session.exec(select(TraceRow).where(TraceRow.model_id == "models/tiny-llama")).all()
        assert len(traces) == probe.PROBE_EVAL_VARIANTS and {e.model_id for e in session.exec(select(EvaluationRow))} == {"models/tiny-llama"}
    # not a run: the Train page does not list it, and a second probe times as many more variants
    assert jobs.list_runs() == []
    estimate = timing.estimate_for_recipe(recipe, [], rows, hardware=hardware, precision=precision, run_dirs=[],
                                          eval_variants=10)
    assert estimate is not None and estimate.probe and estimate.source == run_dir
    assert estimate.stages["sft"] > 0 and estimate.stages["dpo"] > 0 and estimate.evaluation_s > 0
    text = estimate.describe()
    assert text.startswith("roughly ") and "measured by a few training steps" in text and run_dir.parent.name not in text
    # a finished run of the recipe is the better reference and replaces it
    assert timing.run_rates(run_dir).eval_seconds_per_variant > 0
    assert timing.reference_run(Path(recipe).stem, hardware, precision, [], probes=False) is None
    second = probe.start_probe(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe, max_new_tokens=8)
    assert _wait(second) == jobs.SUCCEEDED
    with Session(engine) as session:
        assert len(session.exec(select(TraceRow).where(TraceRow.model_id == "models/tiny-llama")).all()) \
            == 2 * probe.PROBE_EVAL_VARIANTS
    assert timing.estimate_for_recipe(recipe, [], rows, hardware=hardware, precision=precision,
                                      run_dirs=[]).source == second  # the newest


@pytest.mark.slow
def test_a_cancelled_probe_is_marked_and_gives_no_estimate(engine, tmp_path):
    recipe = _tiny_data(engine, tmp_path)
    run_dir = probe.start_probe(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe)
    probe.cancel_probe(run_dir)
    assert _wait(run_dir, 60) == jobs.CANCELLED and probe.active_probe() is None
    assert probe.describe_probe(run_dir) == "the measurement was cancelled"
    hardware, precision = _hardware(recipe)
    assert timing.estimate_for_recipe(recipe, [], {"sft": 4, "dpo": 4}, hardware=hardware, precision=precision,
                                      run_dirs=[]) is None


def test_a_probe_refuses_a_bad_setting_or_file_and_leaves_nothing(engine, tmp_path):
    (tmp_path / "sft.jsonl").write_text(json.dumps({"x": 1}) + "\n")
    with pytest.raises(R2taError):
        probe.start_probe(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe="tiny-cpu",
                          overrides=["sft.learning_rat=1"])
    with pytest.raises(R2taError):  # the DPO file is missing; the SFT rows do not validate either
        probe.start_probe(tmp_path / "sft.jsonl", tmp_path / "missing.jsonl", recipe="tiny-cpu")
    assert not probe.probes_dir().exists() or not any(probe.probes_dir().iterdir())
    assert probe.list_probes() == [] and probe.latest_probe("tiny-cpu") is None


def test_a_probe_waits_for_a_run_that_is_training(engine, tmp_path):
    import os

    recipe = _tiny_data(engine, tmp_path)
    going = jobs.prepare_run(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe)
    jobs.write_status(going, status="running", stage="sft", pid=os.getpid(), pid_start=jobs.process_start_ticks(os.getpid()))
    with pytest.raises(R2taError, match=f"run {going.name} is training; measure when it is done"):
        probe.start_probe(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe)
    assert probe.list_probes() == []
    # a model's job beside it (an evaluation, the Review page's next batch) would be timed with it too
    from r2ta import model_jobs

    assert model_jobs.sharing_note() == (f"Run {going.name} is training: a job started now shares this machine "
                                         "with it, and both go slower.")
    jobs.write_status(going, status="succeeded", stage="done", fraction=1.0)
    assert jobs.training_run() is None and model_jobs.sharing_note() is None
    job_dir = model_jobs.evaluations_dir() / "20260101-000000-000000-embedded"
    eval_jobs.write_eval_status(job_dir, status=eval_jobs.RUNNING, kind=model_jobs.EVALUATE, model="embedded",
                                split="test", limit=24, done=8, total=24, pid=os.getpid(),
                                pid_start=jobs.process_start_ticks(os.getpid()))
    with pytest.raises(R2taError, match="embedded on the first 24 test variants: 8 of 24 new answers written is "
                                        "going; measure when it is done"):
        probe.start_probe(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe)
    assert probe.list_probes() == []


def test_a_model_job_waits_for_a_measurement(engine, monkeypatch, tmp_path):
    from r2ta import model_jobs

    monkeypatch.setattr(probe, "active_probe", lambda: tmp_path / "probe" / "run")
    with pytest.raises(R2taError, match="the Train page is measuring this machine"):
        model_jobs.start_model_evaluation("checker")
    assert model_jobs.list_jobs() == []


@pytest.mark.slow
def test_r2ta_train_measure_prints_the_estimate_and_trains_nothing(engine, tmp_path, capsys):
    from r2ta.cli import main

    recipe = _tiny_data(engine, tmp_path)
    code = main(["train", "--sft", str(tmp_path / "sft.jsonl"), "--dpo", str(tmp_path / "dpo.jsonl"), "--recipe",
                 str(recipe), "--measure", "--eval-limit", str(probe.PROBE_EVAL_VARIANTS + 1)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "measuring:  2 steps of SFT and of DPO" in out and "expected:   roughly " in out
    # 3 rows x 2 epochs, 3 pairs x 2 epochs, 5 test variants x 2 models + the base's one answer still missing
    assert "SFT" in out and "(3 rows × 2 epochs)" in out
    assert f"({probe.PROBE_EVAL_VARIANTS + 1} test variants × 2 models + the base model on 1)" in out
    # the Train page's estimate: the answers its evaluation rate comes from are named
    assert f"the base model's {probe.PROBE_EVAL_VARIANTS} answers" in out
    assert jobs.list_runs() == [] and probe.latest_probe(recipe) is not None


def test_a_failed_probe_says_why_and_gives_no_estimate(engine, tmp_path):
    recipe = _tiny_data(engine, tmp_path)
    run_dir = jobs.prepare_run(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe,
                               run_dir=probe.probes_dir() / "20260101-000000-x" / "run", max_steps=2)
    jobs.write_status(run_dir, status="failed", stage="sft", error="RuntimeError: out of cheese", finished_at=None)
    eval_jobs.write_eval_status(run_dir, status=eval_jobs.SKIPPED, error="not evaluated: the run failed")
    assert probe.probe_state(run_dir) == jobs.FAILED and probe.active_probe() is None
    assert probe.describe_probe(run_dir) == "the measurement failed: RuntimeError: out of cheese"
    assert probe.latest_probe(recipe) == run_dir
    hardware, precision = _hardware(recipe)
    assert timing.reference_run(Path(recipe).stem, hardware, precision, []) is None
    # a job process that died before it launched the runner: failed, not "running" forever
    gone = jobs.prepare_run(tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl", recipe=recipe,
                            run_dir=probe.probes_dir() / "20260101-000001-x" / "run", max_steps=2)
    eval_jobs.write_eval_status(gone, status=eval_jobs.WAITING, pid=2**22 + 12345, pid_start=1, job="measurement")
    assert probe.probe_state(gone) == jobs.FAILED and probe.active_probe() is None
    assert probe.describe_probe(gone).startswith(
        "the measurement failed: the measurement process (pid 4206649) ended without a result; see ")
