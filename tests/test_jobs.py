"""Training jobs as the Train page sees them: a killed job reads as failed, a cancelled one as cancelled,
and progress read twice (or after a page reload) is the same.

The fast tests stand a sleeping Python process in for the runner (the liveness
logic does not care what the process computes); the slow ones run the real
runner on the tiny model.
"""

from __future__ import annotations

import json
import math
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r2ta import jobs
from r2ta.pairs import PairError, write_rows
from training.tiny import smoke_rows

SLEEPER = [sys.executable, "-c", "import time; print('working', flush=True); time.sleep(120)"]


def _data(tmp_path: Path, n: int = 4) -> tuple[Path, Path]:
    sft, dpo = smoke_rows(n)
    write_rows(sft, tmp_path / "sft.jsonl")
    write_rows(dpo, tmp_path / "dpo.jsonl")
    return tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"


def _until(predicate, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


@pytest.fixture()
def started(tmp_path):
    """A prepared run whose 'runner' is a sleeping process; killed at the end if still alive."""
    run_dir = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "run")
    child = jobs.launch(run_dir, SLEEPER)
    yield run_dir, child
    if child.poll() is None:
        child.kill()
        child.wait()


def test_prepare_run_copies_the_data_and_queues(tmp_path):
    sft_file, dpo_file = _data(tmp_path)
    default = jobs.prepare_run(sft_file, dpo_file, recipe="tiny-cpu")
    assert default.parent == jobs.runs_dir() and jobs.list_runs() == [default]
    run_dir = jobs.prepare_run(sft_file, dpo_file, recipe="tiny-cpu", run_dir=tmp_path / "run", max_steps=3)
    request = jobs.read_request(run_dir)
    assert Path(request["sft_file"]).read_bytes() == sft_file.read_bytes()
    assert request["sft_source"] == str(sft_file.resolve()) and request["max_steps"] == 3
    sft_file.write_text("")  # a later export cannot change the run
    assert Path(request["sft_file"]).stat().st_size > 0
    assert jobs.read_status(run_dir)["status"] == "queued"
    with pytest.raises(jobs.TrainingError, match="already holds a training run"):
        jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=run_dir)


def test_a_run_changes_recipe_settings_in_its_own_copy(tmp_path):
    """``--set``/the Train page's settings: the changed recipe lives in the run folder, the named one is untouched."""
    import yaml

    shipped = jobs.recipe_file("tiny-cpu").read_text()
    sets = ["dpo.beta=0.2", "dpo.loss_type=[sigmoid, sft]", "dpo.loss_weights=[1.0, 1.0]"]
    run_dir = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "run", overrides=sets)
    request = jobs.read_request(run_dir)
    assert request["recipe"] == "tiny-cpu" and request["overrides"] == sets
    assert Path(request["recipe_file"]) == run_dir / "recipe.yaml"
    data = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert data["dpo"]["beta"] == 0.2 and data["dpo"]["loss_type"] == ["sigmoid", "sft"]
    assert data["sft"] == yaml.safe_load(shipped)["sft"]
    assert jobs.recipe_file("tiny-cpu").read_text() == shipped
    assert jobs.read_status(run_dir)["overrides"] == sets


def test_a_bad_setting_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    import tempfile

    sft_file, dpo_file = _data(tmp_path)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # other workers' runs write their own there
    before = set(Path(tempfile.gettempdir()).glob(".tiny-cpu-*"))
    for bad, message in (("dpo.bta=0.2", "unknown key.*bta"), ("beta=0.2", "SECTION.KEY=VALUE"),
                         ("train.beta=0.2", "SECTION.KEY=VALUE"), ("dpo.beta=[", "not readable as YAML")):
        with pytest.raises(jobs.TrainingError, match=message):
            jobs.prepare_run(sft_file, dpo_file, recipe="tiny-cpu", overrides=[bad])
    assert jobs.list_runs() == []
    assert set(Path(tempfile.gettempdir()).glob(".tiny-cpu-*")) == before


def test_train_page_settings_become_overrides_only_where_they_differ():
    from r2ta import train_view
    from r2ta.errors import R2taError

    current = train_view.recipe_settings("smollm2-135m-cpu")
    assert current == {"sft.num_train_epochs": 3, "sft.learning_rate": 2e-4, "dpo.learning_rate": 5e-5,
                       "dpo.beta": 0.5, "model.lora_r": 16, "sft_term": 0.0, "sft.activation_checkpointing": True}
    assert train_view.recipe_overrides("smollm2-135m-cpu", dict(current)) == []
    assert train_view.recipe_overrides("smollm2-135m-cpu", {"sft.activation_checkpointing": False}) == [
        "sft.activation_checkpointing=false"]
    assert train_view.recipe_settings("tiny-cpu")["sft.activation_checkpointing"] is False  # TRL's default
    assert train_view.recipe_overrides("tiny-cpu", {"sft.activation_checkpointing": True}) == [
        "sft.activation_checkpointing=true"]
    changed = train_view.recipe_overrides(
        "smollm2-135m-cpu", {**current, "dpo.beta": 0.25, "model.lora_r": 32, "sft_term": 20.0})
    assert changed == ["dpo.beta=0.25", "model.lora_r=32", "dpo.loss_type=[sigmoid, sft]",
                       "dpo.loss_weights=[1.0, 20.0]"]
    for bad, message in (({"dpo.beta": 0.0}, "between"), ({"model.lora_r": 2.5}, "whole number"),
                         ({"dpo.beta": float("nan")}, "must be a number"), ({"dpo.beta": "0.2"}, "must be a number"),
                         ({"sft.max_length": 10}, "not a setting"), ({"sft_term": -1.0}, "between 0 and"),
                         ({"sft_term": float("inf")}, "must be a number"), ({"sft_term": True}, "must be a number"),
                         ({"sft.activation_checkpointing": 1}, "on or off")):
        with pytest.raises(R2taError, match=message):
            train_view.recipe_overrides("smollm2-135m-cpu", bad)


def test_the_sft_term_weight_reads_and_changes_a_recipe_that_has_one(tmp_path):
    from r2ta import train_view

    with_term = tmp_path / "with-term.yaml"
    jobs.derive_recipe("smollm2-135m-cpu", ["dpo.loss_type=[sigmoid, sft]", "dpo.loss_weights=[0.5, 20.0]"], with_term)
    assert train_view.recipe_settings(with_term)["sft_term"] == 20.0
    assert train_view.recipe_overrides(with_term, {"sft_term": 20.0}) == []
    assert train_view.recipe_overrides(with_term, {"sft_term": 30}) == [
        "dpo.loss_type=[sigmoid, sft]", "dpo.loss_weights=[0.5, 30.0]"]  # the pairwise loss keeps its weight
    assert train_view.recipe_overrides(with_term, {"sft_term": 0.0}) == [
        "dpo.loss_type=[sigmoid]", "dpo.loss_weights=null"]
    unweighted = tmp_path / "unweighted.yaml"  # TRL: no loss_weights, each loss counts once
    jobs.derive_recipe("smollm2-135m-cpu", ["dpo.loss_type=[sigmoid, sft]"], unweighted)
    assert train_view.recipe_settings(unweighted)["sft_term"] == 1.0


def test_a_relative_run_folder_is_the_callers_not_the_runners(tmp_path, monkeypatch):
    # r2ta train --run-dir my-run from some folder: the runner starts in the project folder
    sft_file, dpo_file = _data(tmp_path)
    monkeypatch.chdir(tmp_path)
    run_dir = jobs.prepare_run(sft_file.name, dpo_file.name, recipe="tiny-cpu", run_dir="my-run")
    assert run_dir == tmp_path / "my-run" and run_dir.is_absolute()
    assert Path(jobs.read_request(run_dir)["sft_file"]).is_absolute()
    assert jobs.runner_command(run_dir)[-1] == str(tmp_path / "my-run")


def test_bad_input_is_refused_before_any_process_starts(tmp_path):
    sft_file, dpo_file = _data(tmp_path)
    with pytest.raises(jobs.TrainingError, match="does not exist"):
        jobs.prepare_run(tmp_path / "missing.jsonl", dpo_file)
    with pytest.raises(jobs.TrainingError, match="recipe 'nope' not found.*tiny-cpu"):
        jobs.prepare_run(sft_file, dpo_file, recipe="nope")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(sft_file.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(PairError, match="broken.jsonl:2"):
        jobs.prepare_run(broken, dpo_file)
    assert jobs.list_runs() == []  # nothing half-made left behind


def test_a_job_killed_with_sigkill_is_reported_failed(started):
    run_dir, child = started
    assert _until(lambda: "working" in jobs.read_log(run_dir))
    progress = jobs.read_progress(run_dir)
    assert not progress.finished and progress.status["pid"] == child.pid
    os.kill(child.pid, signal.SIGKILL)
    progress = _until(lambda: (p := jobs.read_progress(run_dir)).finished and p)
    assert progress.state == "failed"
    assert "SIGKILL" in progress.error and str(run_dir / "train.log") in progress.error
    assert jobs.read_status(run_dir)["status"] == "failed"  # written back: the database sync sees it too
    assert jobs.read_status(run_dir)["finished_at"]


def test_a_dead_job_started_by_another_process_is_failed_too(started):
    """The page that started the job may be gone: the zombie (or vanished pid) is still seen as dead."""
    run_dir, child = started
    jobs._CHILDREN.pop(child.pid)  # as if another process had started it
    assert jobs.process_alive(child.pid, jobs.read_status(run_dir)["pid_start"])
    os.kill(child.pid, signal.SIGKILL)
    _until(lambda: not jobs.process_alive(child.pid))  # a zombie until reaped: not alive
    assert jobs.read_progress(run_dir).state == "failed"
    child.wait()


def test_a_reused_pid_is_not_mistaken_for_the_job(started):
    run_dir, child = started
    jobs._CHILDREN.pop(child.pid)
    assert not jobs.process_alive(child.pid, start_ticks=jobs.process_start_ticks(child.pid) + 1)


def test_cancelling_a_job_whose_process_ignores_sigterm_can_force_it(tmp_path):
    run_dir = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "run")
    stubborn = [sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
                "time.sleep(120)"]
    child = jobs.launch(run_dir, stubborn)
    _until(lambda: "up" in jobs.read_log(run_dir))
    progress = jobs.cancel(run_dir, wait_s=1.0, force=True)
    assert progress.state == "cancelled" and child.poll() == -signal.SIGKILL


def test_cancelling_a_queued_run_that_never_started(tmp_path):
    run_dir = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "run")
    assert jobs.cancel(run_dir).state == "cancelled"
    assert jobs.cancel(run_dir).state == "cancelled"  # idempotent


def test_progress_survives_rereading_and_half_written_lines(tmp_path):
    run_dir = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "run")
    jobs.write_status(run_dir, status="succeeded", stage="done", fraction=1.0)
    for step in (1, 2, 3):
        jobs.append_progress(run_dir, {"stage": "sft", "step": step, "loss": 2.0 / step})
    jobs.append_progress(run_dir, {"stage": "dpo", "step": 1, "loss": 0.69, "reward_margin": 0.1})
    with open(run_dir / "progress.jsonl", "a") as handle:
        handle.write('{"stage": "dpo", "step": 2, "lo')  # the writer is mid-line
    first, second = jobs.read_progress(run_dir), jobs.read_progress(run_dir)
    assert first.points == second.points and len(first.points) == 4
    assert first.series("loss", "sft") == [(1, 2.0), (2, 1.0), (3, pytest.approx(2 / 3))]
    assert first.series("reward_margin") == [(1, 0.1)]
    assert first.finished and first.fraction == 1.0


def test_status_json_is_replaced_whole(tmp_path):
    run_dir = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "run")
    jobs.write_status(run_dir, step=5, last={"loss": 1.5})
    status = json.loads((run_dir / "status.json").read_text())
    assert status["step"] == 5 and status["status"] == "queued" and status["last"] == {"loss": 1.5}
    assert not list(run_dir.glob(".status.json.*"))  # no temp files left behind


# --------------------------------------------------------------------------- the real runner


@pytest.mark.slow
def test_the_real_runner_cancelled_with_sigterm_reports_cancelled(tmp_path):
    run_dir = jobs.start_training(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "run", max_steps=100_000)
    _until(lambda: jobs.read_progress(run_dir).points, timeout_s=300)  # training has begun
    child = jobs._CHILDREN[jobs.read_status(run_dir)["pid"]]
    progress = jobs.cancel(run_dir, wait_s=120)
    assert progress.state == "cancelled", jobs.read_log(run_dir)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert "cancel requested" in jobs.read_log(run_dir)
    assert not (run_dir / "dpo").exists()  # it stopped in SFT and went no further
    assert jobs.read_progress(run_dir).points == progress.points  # what was logged stays readable


@pytest.mark.slow
def test_the_real_runner_records_a_failure_with_its_traceback(tmp_path):
    # The embedded model is not in this test's empty data folder: the run must fail and say what to do.
    run_dir = jobs.start_training(*_data(tmp_path), recipe="smollm2-135m-cpu", run_dir=tmp_path / "run")
    progress = jobs.wait_for(run_dir, timeout_s=300)
    assert progress.state == "failed"
    assert "r2ta seed" in progress.error
    log = jobs.read_log(run_dir)
    assert "Traceback (most recent call last)" in log and "RecipeError" in log
    assert jobs._CHILDREN[progress.status["pid"]].wait(timeout=30) == 1


@pytest.mark.slow
def test_r2ta_train_follows_a_run_to_the_end(tmp_path):
    sft_file, dpo_file = _data(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "r2ta", "train", "--sft", str(sft_file), "--dpo", str(dpo_file),
         "--recipe", "tiny-cpu", "--max-steps", "2", "--no-merge", "--run-dir", str(tmp_path / "run"),
         # DPO with an SFT term (TRL's loss list) through --set, for real
         "--set", "dpo.loss_type=[sigmoid, sft]", "--set", "dpo.loss_weights=[1.0, 1.0]"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sft step 2/2  loss" in done.stdout and "dpo step 2/2  loss" in done.stdout
    assert "margin" in done.stdout and "model card:" in done.stdout
    # evaluated afterwards by default: a data folder with no test variants says so and is not an error
    assert "evaluation: skipped: the store has no test variants to evaluate on" in done.stdout
    assert not (tmp_path / "run" / "merged").exists()
    first_dpo = next(p for p in jobs.read_progress(tmp_path / "run").points if p["stage"] == "dpo")
    assert first_dpo["loss"] > math.log(2) + 0.1  # ln 2 from the pair at step 1, plus the chosen answer's NLL
    card = (tmp_path / "run" / "README.md").read_text()
    assert "--recipe tiny-cpu" in card and "--set 'dpo.loss_type=[sigmoid, sft]'" in card
    assert "loss_type:" in (tmp_path / "run" / "recipe.yaml").read_text()


def test_sync_run_to_db_mirrors_the_run_folder_stage_by_stage(tmp_path):
    from sqlmodel import Session

    from db.engine import get_engine, init_db
    from db.queries import get_training_run, list_run_metrics

    engine = get_engine(f"sqlite:///{tmp_path / 'r2ta.db'}")
    init_db(engine)
    run_dir = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "run")
    with Session(engine) as session:
        ids = jobs.sync_run_to_db(run_dir, session=session)
        assert get_training_run(ids["sft"], session=session).status == "queued"
        dpo = get_training_run(ids["dpo"], session=session)
        assert dpo.parent_run_id == ids["sft"] and dpo.status == "queued"

    # The runner is in DPO (the process is this test's, alive): SFT finished, DPO running.
    jobs.write_status(run_dir, status="running", stage="dpo", step=1, max_steps=4, pid=os.getpid(),
                      base_model="builtin:tiny-llama", hardware={"kind": "cpu"})
    for step in (1, 2):
        jobs.append_progress(run_dir, {"stage": "sft", "step": step, "loss": 1.0 / step})
    jobs.append_progress(run_dir, {"stage": "dpo", "step": 1, "loss": 0.69, "reward_margin": 0.0})
    with Session(engine) as session:
        assert jobs.sync_run_to_db(run_dir, session=session) == ids  # the same rows, not new ones
        assert jobs.sync_run_to_db(run_dir, session=session) == ids  # idempotent: no duplicate metrics
        sft, dpo = get_training_run(ids["sft"], session=session), get_training_run(ids["dpo"], session=session)
        assert (sft.status, sft.progress) == ("succeeded", 1.0)
        assert (dpo.status, dpo.progress) == ("running", 0.25)
        assert [m.step for m in list_run_metrics(ids["sft"], session=session)] == [1, 2]
        assert [m.metrics["loss"] for m in list_run_metrics(ids["dpo"], session=session)] == [0.69]

    # The process dies in DPO: the run folder says failed, and so does the database.
    jobs.write_status(run_dir, pid=2**22 + 12345)  # no such process
    with Session(engine) as session:
        jobs.sync_run_to_db(run_dir, session=session)
        dpo = get_training_run(ids["dpo"], session=session)
        assert dpo.status == "failed" and "without reporting a result" in dpo.error
        assert get_training_run(ids["sft"], session=session).status == "succeeded"


def test_train_page_lists_runs_the_database_records_outside_the_runs_folder(tmp_path):
    # `r2ta loop` and `r2ta train --run-dir` put runs elsewhere; the Train page must still show them.
    from sqlmodel import Session

    from db.engine import get_engine, init_db
    from r2ta.train_view import list_run_summaries, recorded_run_dirs

    engine = get_engine(f"sqlite:///{tmp_path / 'r2ta.db'}")
    init_db(engine)
    inside = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu")
    elsewhere = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "loop" / "run")
    gone = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "gone")
    with Session(engine) as session:
        for run_dir in (inside, elsewhere, gone):
            jobs.sync_run_to_db(run_dir, session=session)
    shutil.rmtree(gone)
    assert recorded_run_dirs(engine=engine) == [elsewhere]  # once, though it has a row per stage
    assert sorted(s.run_dir for s in list_run_summaries(engine=engine)) == sorted([inside, elsewhere])


def test_a_training_process_runs_on_tcmalloc_where_the_system_has_it(tmp_path, monkeypatch):
    """glibc's malloc let a long CPU run's memory grow step after step; a run preloads tcmalloc when it is there,
    jemalloc when asked, glibc's when asked or when nothing is installed, and never stacks a second allocator."""
    libs = tmp_path / "lib"
    libs.mkdir()
    (libs / "libtcmalloc_minimal.so.4").write_bytes(b"")
    dirs = (str(tmp_path / "missing"), str(libs))
    tcmalloc = str(libs / "libtcmalloc_minimal.so.4")
    assert jobs.allocator_env({}, dirs) == {"LD_PRELOAD": tcmalloc}
    assert jobs.allocator_env({"LD_PRELOAD": "/x/libasan.so"}, dirs) == {"LD_PRELOAD": f"{tcmalloc} /x/libasan.so"}
    assert jobs.allocator_env({"R2TA_ALLOCATOR": "system"}, dirs) == {}
    assert jobs.allocator_env({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, dirs) == {}  # one already
    assert jobs.allocator_env({"R2TA_ALLOCATOR": "jemalloc"}, dirs) == {}  # not installed: glibc's
    (libs / "libjemalloc.so.2").write_bytes(b"")
    assert jobs.allocator_env({"R2TA_ALLOCATOR": "JEMalloc"}, dirs) == {"LD_PRELOAD": str(libs / "libjemalloc.so.2")}
    with pytest.raises(jobs.TrainingError, match="R2TA_ALLOCATOR='mimalloc': use tcmalloc, jemalloc or system"):
        jobs.allocator_env({"R2TA_ALLOCATOR": "mimalloc"}, dirs)
    assert jobs.allocator_in_use({"LD_PRELOAD": tcmalloc}) == "tcmalloc"
    # what a run launched now would record (the time estimate compares it with its reference run's)
    assert jobs.planned_allocator({}, dirs) == "tcmalloc"
    assert jobs.planned_allocator({"R2TA_ALLOCATOR": "system"}, dirs) == "glibc malloc"
    assert jobs.planned_allocator({"R2TA_ALLOCATOR": "mimalloc"}, dirs) is None
    assert jobs.allocator_in_use({"LD_PRELOAD": str(libs / "libjemalloc.so.2")}) == "jemalloc"
    assert jobs.allocator_in_use({}) == "glibc malloc"

    # launch() starts the runner with it
    seen = {}

    class Child:
        pid = 4242

    def popen(command, **kwargs):
        seen.update(kwargs["env"])
        return Child()

    monkeypatch.setattr(jobs, "allocator_env", lambda: {"LD_PRELOAD": "/lib/libtcmalloc_minimal.so.4"})
    monkeypatch.setattr(jobs.subprocess, "Popen", popen)
    monkeypatch.setattr(jobs, "process_start_ticks", lambda pid: 1)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    jobs.launch(run_dir, ["true"])
    jobs._CHILDREN.pop(4242, None)
    assert seen["LD_PRELOAD"] == "/lib/libtcmalloc_minimal.so.4" and seen["PYTHONUNBUFFERED"] == "1"
    # a misspelt allocator: the run is marked failed with the reason, not left queued
    monkeypatch.undo()
    monkeypatch.setenv("R2TA_ALLOCATOR", "mimalloc")
    bad = tmp_path / "bad"
    bad.mkdir()
    jobs.write_status(bad, status=jobs.QUEUED)
    with pytest.raises(jobs.TrainingError, match="R2TA_ALLOCATOR"):
        jobs.launch(bad, ["true"])
    status = jobs.read_status(bad)
    assert status["status"] == jobs.FAILED and "R2TA_ALLOCATOR='mimalloc'" in status["error"]


def test_a_job_knows_whether_a_run_trained_at_any_time_while_it_ran(tmp_path):
    """jobs.training_since: a run going now, or one that finished since the job started — one that started and
    ended within the job too — shared the job's cores; one that ended before did not
    (r2ta.model_jobs._beside_run marks the job's rate so)."""
    from r2ta.model_jobs import _beside_run

    started = "2026-12-07T15:00:00+00:00"
    assert jobs.training_since(started) is None and _beside_run(started) is False
    earlier = jobs.runs_dir() / "20261207-140000-tiny-cpu"
    earlier.mkdir(parents=True)
    jobs.write_status(earlier, status=jobs.SUCCEEDED, stage="done", created_at="2026-12-07T14:00:00+00:00",
                      finished_at="2026-12-07T14:59:59+00:00")
    assert jobs.training_since(started) is None  # ended before the job began
    within = jobs.runs_dir() / "20261207-150100-tiny-cpu"
    within.mkdir()
    jobs.write_status(within, status=jobs.CANCELLED, stage="sft", created_at="2026-12-07T15:01:00+00:00",
                      finished_at="2026-12-07T15:03:00+00:00")
    assert jobs.training_since(started) == within and _beside_run(started) is True
    assert jobs.training_run() is None  # what the job's start and end alone would have seen: nothing going
    assert jobs.training_since("2026-12-07T15:04:00+00:00") is None
    going = jobs.prepare_run(*_data(tmp_path), recipe="tiny-cpu")  # queued: it will take the cores
    assert jobs.training_since("2026-12-07T15:04:00+00:00") == going


def test_a_cpu_run_trains_on_the_cores_other_processes_leave_free(monkeypatch):
    """training.callbacks.FreeCoresCallback: before a step, at most once in its window, the threads become the cores
    not busy with other processes over that window (the machine's busy cores less this process's own CPU time)."""
    import torch
    from types import SimpleNamespace

    from training.callbacks import FreeCoresCallback
    from training.runner import follows_free_cores

    now = {"t": 0.0, "own": 0.0, "idle": 0, "total": 0}

    def advance(seconds, machine_busy, own_busy):  # 100 jiffies a core-second
        now["t"] += seconds
        now["own"] += seconds * own_busy
        now["total"] += int(seconds * 2 * 100)
        now["idle"] += int(seconds * (2 - machine_busy) * 100)

    told = []
    callback = FreeCoresCallback(30.0, cores=2, ticks=lambda: (now["idle"], now["total"]),
                                 own_seconds=lambda: now["own"], clock=lambda: now["t"],
                                 on_change=lambda *change: told.append(change))
    before = torch.get_num_threads()
    state, args, control = SimpleNamespace(global_step=0), None, None
    try:
        torch.set_num_threads(2)
        callback.on_train_begin(args, state, control)
        advance(10, 2.0, 1.0)
        callback.on_step_begin(args, state, control)  # 10 s: not looked at yet
        assert torch.get_num_threads() == 2
        advance(30, 2.0, 1.0)  # an evaluation beside it took a core: 40 s with one core of the two others'
        state.global_step = 3
        callback.on_step_begin(args, state, control)
        assert torch.get_num_threads() == 1
        advance(40, 1.1, 1.0)  # it ended; a page's redraws take a tenth of a core
        state.global_step = 6
        callback.on_step_begin(args, state, control)
        assert torch.get_num_threads() == 2 and callback.changes == [(3, 1), (6, 2)]
        assert told == [(3, 1, 2), (6, 2, 2)]  # what the runner writes into the run's status
        advance(40, 2.0, 2.0)  # alone on both cores: its own threads are not counted as others'
        callback.on_step_begin(args, state, control)
        assert torch.get_num_threads() == 2 and len(callback.changes) == 2

        def unreadable():
            raise OSError("no /proc/stat")

        blind = FreeCoresCallback(0.0, cores=2, ticks=unreadable)
        blind.on_train_begin(args, state, control)
        blind.on_step_begin(args, state, control)  # nothing to look at: the threads stay
        assert torch.get_num_threads() == 2 and blind.changes == []
    finally:
        torch.set_num_threads(before)
    # on by default on a CPU; off where OMP_NUM_THREADS fixes the threads, or under several processes
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert follows_free_cores() is True
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert follows_free_cores() is False
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert follows_free_cores() is False


@pytest.mark.slow
def test_the_sharing_benchmark_runs_both_settings_with_a_neighbour(tmp_path, capsys):
    """benchmarks/bench_sharing.py's plumbing (its figures need the embedded model: minutes): each setting trains,
    starts a real neighbour process at the step asked, and prints both; then the ratios."""
    from benchmarks import bench_sharing
    from training.tiny import ensure_tiny_llama

    write_rows(smoke_rows(4)[0], tmp_path / "sft.jsonl")
    tiny = ensure_tiny_llama(tmp_path / "models" / "tiny-llama")
    bench_sharing.main(["--recipe", "tiny-cpu", "--data", str(tmp_path / "sft.jsonl"), "--steps", "3",
                        "--start-at", "2", "--variants", "2", "--batch-size", "2", "--max-new-tokens", "4",
                        "--dtype", "float32", "--every", "0", "--neighbour-model", str(tiny)])
    out = capsys.readouterr().out
    for setting in bench_sharing.SETTINGS:
        assert re.search(rf"{setting}: run +[\d.]+ s, a step .* neighbour +[\d.]+ s on threads \[\d+\]; both done", out), out
    assert "following / fixed: both done" in out
    with pytest.raises(SystemExit):
        bench_sharing.main(["--steps", "3", "--start-at", "1"])


def test_r2ta_train_follow_says_when_the_run_shares_the_cores():
    from r2ta.commands.train import threads_line

    assert threads_line({"threads": 1, "cores": 2, "stage": "sft", "since_step": 4}) == (
        "threads:    1 of 2 cores from SFT step 4: another process on this machine uses the rest; the steps are "
        "slower until it ends")
    assert threads_line({"threads": 2, "cores": 2, "stage": "dpo", "since_step": 3}) == (
        "threads:    all 2 cores again from DPO step 3")
    for nothing in (None, {}, "x", {"threads": 0, "cores": 2}, {"threads": 1}):
        assert threads_line(nothing) is None
