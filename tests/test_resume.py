"""A failed or cancelled training run goes on from its newest checkpoint and ends where it would have.

The real tests train the tiny model through the real runner: one run uninterrupted, others
cancelled in SFT or killed with SIGKILL in DPO and then resumed; the resumed adapters must equal
the uninterrupted run's bit for bit (the Trainer restores weights, optimizer, scheduler, RNG state
and step). The rest checks what the files say, the time estimates of a resumed run, the command
line and the Train page.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from r2ta import eval_jobs, jobs, timing
from r2ta.pairs import write_rows
from training.recipe import RecipeError, load_recipe
from training.tiny import smoke_rows

pytestmark = pytest.mark.xdist_group("resume")
EVERY_STEP = ["run.checkpoint_minutes=0.00001"]  # a checkpoint after every step
STEPS = 12


def _data(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sft, dpo = smoke_rows(8)
    write_rows(sft, folder / "sft.jsonl")
    write_rows(dpo, folder / "dpo.jsonl")
    return folder / "sft.jsonl", folder / "dpo.jsonl"


def _until(predicate, timeout_s: float = 300.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def _same(a: Path, b: Path) -> float:
    """The largest difference between two safetensors files' tensors (they must hold the same names)."""
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and wa
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def _checkpoint(run_dir: Path) -> dict:
    return jobs.read_status(run_dir).get("checkpoint") or {}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same data, recipe and steps, trained without a stop (checkpoints on, as in the others)."""
    root = tmp_path_factory.mktemp("resume")
    with pytest.MonkeyPatch.context() as patch:  # module scope: the autouse per-test data folder is not there
        patch.setenv("R2TA_DATA_DIR", str(root / "data"))
        data = _data(root)
        run = jobs.start_training(*data, recipe="tiny-cpu", run_dir=root / "a", max_steps=STEPS,
                                  overrides=EVERY_STEP)
        progress = jobs.wait_for(run, timeout_s=600)
    assert progress.state == "succeeded", jobs.read_log(run)
    return root, data, run


def test_a_run_cancelled_in_sft_resumes_and_ends_as_the_uninterrupted_one(uninterrupted, monkeypatch):
    root, data, a = uninterrupted
    monkeypatch.setenv("R2TA_DATA_DIR", str(root / "data"))
    b = jobs.start_training(*data, recipe="tiny-cpu", run_dir=root / "b", max_steps=STEPS, overrides=EVERY_STEP)
    _until(lambda: _checkpoint(b).get("step", 0) >= 3)
    stopped = jobs.cancel(b, wait_s=120)
    assert stopped.state == "cancelled", jobs.read_log(b)
    step = _checkpoint(b)["step"]
    assert 3 <= step < STEPS and [p.name for p in (b / "sft").glob("checkpoint-*")] == [f"checkpoint-{step}"]
    point = jobs.resume_point(b)
    assert (point.done, point.stage, point.step, point.max_steps) == ([], "sft", step, STEPS)
    assert point.describe() == f"SFT goes on from step {step} of {STEPS} (its checkpoint)"

    c = jobs.prepare_resume(b, new_dir=root / "c")
    assert jobs.read_status(c)["status"] == "queued" and jobs.read_status(b)["resumed_by"] == str(c)
    assert jobs.read_status(c)["fraction"] == round(step / STEPS / 2, 4)  # the bar starts where the run stopped
    request = jobs.read_request(c)
    assert request["attempt"] == 2 and request["resume"]["stage"] == "sft" and request["resume"]["step"] == step
    assert Path(request["sft_file"]).parent == c / "data" and Path(request["recipe_file"]) == c / "recipe.yaml"
    jobs.launch(c)
    done = jobs.wait_for(c, timeout_s=600)
    assert done.state == "succeeded", jobs.read_log(c)

    for artefact in ("sft/adapter_model.safetensors", "dpo/adapter_model.safetensors", "merged/model.safetensors"):
        assert _same(a / artefact, c / artefact) == 0.0, artefact
    # The progress is whole: the first run's steps up to the checkpoint, then this run's, each step once.
    sft_steps = [(p["step"], p.get("attempt")) for p in done.points if p["stage"] == "sft"]
    assert sft_steps == [(s, None) for s in range(1, step + 1)] + [(s, 2) for s in range(step + 1, STEPS + 1)]
    assert [p["step"] for p in done.points if p["stage"] == "dpo"] == list(range(1, STEPS + 1))
    losses = {p["stage"] + str(p["step"]): p["loss"] for p in jobs.read_points(a)}
    assert all(p["loss"] == losses[p["stage"] + str(p["step"])] for p in done.points)
    metrics, reference = done.status["metrics"], jobs.read_status(a)["metrics"]
    assert metrics["sft"]["steps"] == STEPS and metrics["sft"]["resumed_from_step"] == step
    assert metrics["sft"]["train_loss"] == pytest.approx(reference["sft"]["train_loss"], rel=1e-9)  # all 12 steps
    assert done.status["completed_stages"] == ["sft", "dpo"] and done.status["checkpoint"] is None
    assert not list(c.glob("*/checkpoint-*"))  # a finished stage's checkpoints are dropped
    assert "resumes at step" in jobs.read_log(c)
    assert f"- resumed: continues run b: SFT goes on from step {step} of {STEPS} (its checkpoint);" in (
        c / "README.md").read_text()  # the model card says where the run came from
    with pytest.raises(jobs.TrainingError, match="resumed already as c"):
        jobs.prepare_resume(b)
    with pytest.raises(jobs.TrainingError, match="is succeeded; only a failed or cancelled run"):
        jobs.resume_point(c)


def test_a_run_killed_in_dpo_keeps_sft_and_goes_on_from_the_dpo_checkpoint(uninterrupted, monkeypatch):
    root, data, a = uninterrupted
    monkeypatch.setenv("R2TA_DATA_DIR", str(root / "data"))
    d = jobs.start_training(*data, recipe="tiny-cpu", run_dir=root / "d", max_steps=STEPS, overrides=EVERY_STEP)
    _until(lambda: _checkpoint(d).get("stage") == "dpo" and _checkpoint(d)["step"] >= 3)
    os.kill(jobs.read_status(d)["pid"], signal.SIGKILL)  # the out-of-memory killer: no chance to save anything
    killed = jobs.wait_for(d, timeout_s=60)
    assert killed.state == "failed" and "SIGKILL" in killed.error
    point = jobs.resume_point(d)
    assert point.done == ["sft"] and point.stage == "dpo" and point.step >= 3
    assert point.describe().startswith("SFT finished and kept; DPO goes on from step ")

    e = jobs.prepare_resume(d, new_dir=root / "e")
    assert jobs.read_status(e)["fraction"] == round((1 + point.step / STEPS) / 2, 4)
    assert (e / "sft" / "adapter_model.safetensors").is_file() and not list((e / "sft").glob("checkpoint-*"))
    jobs.launch(e)
    done = jobs.wait_for(e, timeout_s=600)
    assert done.state == "succeeded", jobs.read_log(e)
    assert _same(a / "dpo/adapter_model.safetensors", e / "dpo/adapter_model.safetensors") == 0.0
    assert done.status["metrics"]["sft"] == killed.status["metrics"]["sft"]  # carried over, not trained again
    assert not any(p["stage"] == "sft" and p.get("attempt") == 2 for p in done.points)


def test_a_run_that_failed_while_merging_only_merges(uninterrupted, monkeypatch):
    root, _, a = uninterrupted
    monkeypatch.setenv("R2TA_DATA_DIR", str(root / "data"))
    g = root / "g"
    shutil.copytree(a, g, ignore=shutil.ignore_patterns("merged", "db.json"))
    jobs.write_status(g, status="failed", stage="merging", error="OSError: No space left on device")
    assert jobs.resume_point(g).describe() == "SFT and DPO finished; only merging the weights is left"
    h = jobs.prepare_resume(g, new_dir=root / "h")
    jobs.launch(h)
    done = jobs.wait_for(h, timeout_s=600)
    assert done.state == "succeeded", jobs.read_log(h)
    assert _same(a / "merged/model.safetensors", h / "merged/model.safetensors") == 0.0
    assert set(done.status["artefacts"]) == {"sft", "dpo", "merged"} and (h / "README.md").is_file()


@pytest.mark.skipif(not __import__("training.hardware", fromlist=["x"]).cpu_has_native_bf16(),
                    reason="bf16 training on a CPU needs one with AMX or AVX512-BF16")
def test_a_bf16_run_that_failed_while_merging_merges_in_bf16_as_it_would_have(tmp_path, monkeypatch):
    """The merge left over from a bf16 run loads the base in bf16, as the run held it: the same merged weights."""
    monkeypatch.setenv("R2TA_DATA_DIR", str(tmp_path / "data"))
    a = jobs.start_training(*_data(tmp_path), recipe="tiny-cpu", run_dir=tmp_path / "a", max_steps=2, precision="bf16")
    assert jobs.wait_for(a, timeout_s=600).state == "succeeded", jobs.read_log(a)
    g = tmp_path / "g"
    shutil.copytree(a, g, ignore=shutil.ignore_patterns("merged", "db.json"))
    jobs.write_status(g, status="failed", stage="merging", error="OSError: No space left on device")
    h = jobs.prepare_resume(g, new_dir=tmp_path / "h")
    jobs.launch(h)
    assert jobs.wait_for(h, timeout_s=600).state == "succeeded", jobs.read_log(h)
    merged = _weights(h / "merged/model.safetensors")
    assert {t.dtype for t in merged.values()} == {t.dtype for t in _weights(a / "merged/model.safetensors").values()}
    assert _same(a / "merged/model.safetensors", h / "merged/model.safetensors") == 0.0


def test_what_cannot_be_resumed_says_why(tmp_path):
    sft, dpo = _data(tmp_path)
    running = jobs.prepare_run(sft, dpo, recipe="tiny-cpu", run_dir=tmp_path / "queued")
    with pytest.raises(jobs.TrainingError, match="is queued; only a failed or cancelled run can be resumed"):
        jobs.resume_point(running)
    early = jobs.prepare_run(sft, dpo, recipe="tiny-cpu", run_dir=tmp_path / "early")
    jobs.write_status(early, status="failed", stage="sft", error="boom")
    with pytest.raises(jobs.TrainingError, match="before its first checkpoint .*checkpoint_minutes"):
        jobs.resume_point(early)
    # A checkpoint cut off while it was written (no trainer_state.json yet) is not one; a whole one is.
    (early / "sft" / "checkpoint-4").mkdir(parents=True)
    with pytest.raises(jobs.TrainingError, match="before its first checkpoint"):
        jobs.resume_point(early)
    (early / "sft" / "checkpoint-2").mkdir()
    (early / "sft" / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"max_steps": 9}))
    assert jobs.resume_point(early).describe() == "SFT goes on from step 2 of 9 (its checkpoint)"
    # An older run that never recorded its finished stages: ended in DPO with SFT saved, so SFT is kept.
    older = jobs.prepare_run(sft, dpo, recipe="tiny-cpu", run_dir=tmp_path / "older")
    (older / "sft").mkdir()
    (older / "sft" / "adapter_config.json").write_text("{}")
    jobs.write_status(older, status="cancelled", stage="dpo")
    assert jobs.resume_point(older).describe() == "SFT finished and kept; DPO starts from its beginning"
    with pytest.raises(jobs.TrainingError, match="already holds a training run"):
        jobs.prepare_resume(older, new_dir=early)
    # Two reviewers at once: the second is told, and nothing of a second run is left behind. The first one here
    # is another process holding the lock; killed (a crashed resume), it leaves no lock that refuses the next one.
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(older / jobs.RESUME_LOCK)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(jobs.TrainingError, match="is being resumed right now"):
            jobs.prepare_resume(older, new_dir=tmp_path / "second")
        assert not (tmp_path / "second").exists()
    finally:
        holder.kill()
        holder.wait()
    assert (older / jobs.RESUME_LOCK).exists()  # what a killed resume leaves behind
    # A resume that fails half-way (the data copy is gone) leaves no half-made run folder, and no lock.
    data_copy = Path(jobs.read_request(older)["sft_file"])
    saved = data_copy.read_bytes()
    data_copy.unlink()
    with pytest.raises(jobs.TrainingError, match="cannot resume older: .*No such file"):
        jobs.prepare_resume(older, new_dir=tmp_path / "half")
    assert not (tmp_path / "half").exists() and not (older / jobs.RESUME_LOCK).exists()
    data_copy.write_bytes(saved)
    assert jobs.prepare_resume(older, new_dir=tmp_path / "whole").name == "whole"
    assert not (older / jobs.RESUME_LOCK).exists() and jobs.read_status(older)["resumed_by"] == str(tmp_path / "whole")


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_recipe_refuses_a_negative_checkpoint_interval(tmp_path):
    data = yaml.safe_load(jobs.recipe_file("tiny-cpu").read_text())
    assert load_recipe("smollm2-135m-cpu").run.checkpoint_minutes == 10
    for bad in (-1, float("nan")):
        data["run"]["checkpoint_minutes"] = bad
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
        with pytest.raises(RecipeError, match="checkpoint_minutes"):
            load_recipe(tmp_path / "bad.yaml")


RECIPE = {"run": {"precision": "auto"}, "model": {"use_peft": True},
          "sft": {"num_train_epochs": 2, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 2},
          "dpo": {"num_train_epochs": 1, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 4}}


def test_a_resumed_runs_rates_count_only_its_own_steps_and_its_estimate_only_what_is_left(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))
    # SFT: 10 rows x 2 epochs = 10 steps of 2 rows; resumed at step 6, so 4 steps (8 rows) took its 16 s.
    jobs.write_status(folder, status="succeeded", recipe="r", precision="fp32",
                      hardware={"description": "cpu", "processes": 1},
                      data=[{"stage": "sft", "rows": 10}, {"stage": "dpo", "rows": 8}],
                      metrics={"sft": {"steps": 10, "train_runtime_s": 16.0, "wall_s": 20.0, "resumed_from_step": 6},
                               "dpo": {"steps": 2, "train_runtime_s": 80.0, "wall_s": 95.0}})
    rates = timing.run_rates(folder)
    assert rates.stages["sft"] == timing.StageRate(2.0, 4.0)
    # A run going on from SFT step 100 of 225 (2 rows a step): 250 rows left, then all of DPO.
    resume = {"done": [], "stage": "sft", "step": 100}
    estimate = timing.estimate_run(rates, RECIPE, {"sft": 225, "dpo": 8}, resume=resume)
    assert estimate.stages == {"sft": 4.0 + 2.0 * 250, "dpo": 15.0 + 10.0 * 8}
    assert "SFT 8 min (225 rows × 2 epochs, from step 100)" in estimate.describe()
    kept = timing.estimate_run(rates, RECIPE, {"sft": 225, "dpo": 8}, resume={"done": ["sft"], "stage": "dpo"})
    assert list(kept.stages) == ["dpo"]
    # The time a step is this attempt's own: the points carried from the first run ran on another clock.
    carried = [{"stage": "sft", "step": s, "max_steps": 100, "elapsed_s": 500.0 + s,
                "time": "2026-12-05T10:00:00+00:00"} for s in range(1, 41)]
    own = [{"stage": "sft", "step": s, "max_steps": 100, "elapsed_s": 10.0 * (s - 40), "attempt": 2,
            "time": "2026-12-05T12:00:00+00:00"} for s in range(41, 44)]
    progress = jobs.RunProgress(folder, {"status": "running", "stage": "sft", "max_steps": 100}, carried + own)
    left = timing.stage_time_left(progress, now=timing.parse_time("2026-12-05T12:00:00+00:00"))
    assert left.seconds_per_step == pytest.approx(10.0) and left.seconds_left == pytest.approx(57 * 10.0)
    # one point of this attempt: its 30 s went on the 3 steps since step 40, not on 43 steps
    one = jobs.RunProgress(folder, progress.status, carried + [{**own[-1], "step": 43, "elapsed_s": 30.0}])
    assert timing.stage_time_left(one, now=timing.parse_time("2026-12-05T12:00:00+00:00")).seconds_per_step == 10.0


def test_r2ta_train_resume_continues_a_cancelled_run_and_says_how(tmp_path):
    sft, dpo = _data(tmp_path)
    run = jobs.start_training(sft, dpo, recipe="tiny-cpu", run_dir=tmp_path / "run", max_steps=STEPS,
                              overrides=EVERY_STEP)
    _until(lambda: _checkpoint(run).get("step", 0) >= 2)
    jobs.cancel(run, wait_s=120)
    step = _checkpoint(run)["step"]
    cmd = [sys.executable, "-m", "r2ta", "train"]
    followed = subprocess.run([*cmd, "--follow", str(run)], capture_output=True, text=True, timeout=120)
    assert followed.returncode == 130
    assert f"resume:     r2ta train --resume {run}  (SFT goes on from step {step} of {STEPS}" in followed.stderr
    done = subprocess.run([*cmd, "--resume", str(run), "--run-dir", str(tmp_path / "again")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming:   {run}: SFT goes on from step {step} of {STEPS} (its checkpoint)" in done.stdout
    assert f"run folder: {tmp_path / 'again'}" in done.stdout and "dpo step 12/12" in done.stdout
    # only the steps after the checkpoint are trained again (the ones before come from the first run's log)
    trained = [line.split()[2] for line in done.stdout.splitlines() if line.startswith("sft step")]
    assert trained == [f"{s}/{STEPS}" for s in range(1, STEPS + 1)]
    assert jobs.read_request(tmp_path / "again")["resume"]["step"] == step
    assert [p.get("attempt") for p in jobs.read_points(tmp_path / "again") if p["stage"] == "sft"] == (
        [None] * step + [2] * (STEPS - step))
    again = subprocess.run([*cmd, "--resume", str(tmp_path / "again")], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "is succeeded; only a failed or cancelled run can be resumed" in again.stderr


def test_sigterm_to_r2ta_train_cancels_the_run_it_follows(tmp_path):
    """`kill`, `timeout` or a scheduler stopping `r2ta train` stops its training as Ctrl-C does: before, the command
    died at once and the runner (a session of its own) trained on with nobody following it."""
    import signal

    sft, dpo = _data(tmp_path)
    run = tmp_path / "run"
    command = subprocess.Popen([sys.executable, "-m", "r2ta", "train", "--sft", str(sft), "--dpo", str(dpo),
                                "--recipe", "tiny-cpu", "--run-dir", str(run), "--max-steps", str(STEPS),
                                "--no-eval", *(f"--set={item}" for item in EVERY_STEP)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: run.is_dir() and _checkpoint(run).get("step", 0) >= 2)
        command.send_signal(signal.SIGTERM)
        out, err = command.communicate(timeout=180)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 130, out + err
    assert "cancelling (the current step finishes first)" in err
    assert f"resume:     r2ta train --resume {run}" in err
    assert jobs.read_status(run)["status"] == "cancelled"
    assert not jobs.process_alive(jobs.read_status(run).get("pid"))


def test_resuming_a_page_run_evaluates_the_new_run_as_the_old_one_would_have_been(tmp_path, monkeypatch):
    sft, dpo = _data(tmp_path)
    old = jobs.prepare_run(sft, dpo, recipe="tiny-cpu", run_dir=tmp_path / "old")
    eval_jobs.write_eval_status(old, status=eval_jobs.SKIPPED, split="test", limit=7, max_new_tokens=99,
                                tokens_per_construct=20)
    jobs.write_status(old, status="cancelled", stage="sft")
    (old / "sft" / "checkpoint-1").mkdir(parents=True)
    (old / "sft" / "checkpoint-1" / "trainer_state.json").write_text(json.dumps({"max_steps": 4}))
    spawned = []
    monkeypatch.setattr(eval_jobs, "_spawn", lambda run_dir, argv: spawned.append(argv) or subprocess.Popen(["true"]))
    new = eval_jobs.resume_training(old, new_dir=tmp_path / "new")
    assert spawned == [["supervise", str(new), "--split", "test", "--limit", "7", "--max-new-tokens", "99",
                        "--tokens-per-construct", "20"]]
    assert eval_jobs.read_eval_status(new)["status"] in (eval_jobs.WAITING, eval_jobs.FAILED)
    assert jobs.read_request(new)["resume"]["checkpoint"] == str(new / "sft" / "checkpoint-1")


def test_the_loop_goes_on_with_its_stopped_run_and_reuses_only_one_trained_on_the_same_data(tmp_path, monkeypatch):
    import types

    import r2ta.backends
    import r2ta.loop as loop

    out = tmp_path / "loop"
    out.mkdir()
    sft, dpo = _data(out)
    other_sft, other_dpo = _data(tmp_path / "other")
    other_sft.write_text(other_sft.read_text().splitlines()[0] + "\n")  # another export: one row

    def run(name, data=(sft, dpo), state="cancelled", checkpoint=True):
        folder = jobs.prepare_run(*data, recipe="tiny-cpu", run_dir=out / name)
        shutil.copyfile(jobs.recipe_file("tiny-cpu"), folder / "recipe.yaml")  # what the runner keeps
        jobs.write_status(folder, status=state, stage="sft")
        if checkpoint:
            (folder / "sft" / "checkpoint-5").mkdir(parents=True)
            (folder / "sft" / "checkpoint-5" / "trainer_state.json").write_text(json.dumps({"max_steps": 9}))
        return folder

    seen = []

    def fake_stage(name, argv, out, threads, say):
        seen.append((name, argv))
        if name == "train":
            raise StopIteration

    monkeypatch.setattr(loop, "run_stage", fake_stage)
    monkeypatch.setattr(loop, "variant_counts", lambda engine=None: {"train": 9, "test": 9})
    monkeypatch.setattr(loop, "bulk_accept", lambda **kw: 0)
    monkeypatch.setattr(r2ta.backends, "get_backend", lambda name=None, **kw: types.SimpleNamespace(id="base"))
    said = []
    config = loop.LoopConfig(train_limit=4, recipe="tiny-cpu", out=out)

    stopped = run("loop-run")
    run("loop-run-0900", data=(other_sft, other_dpo))  # trained on other data: never resumed nor reused
    run("loop-run-0800", checkpoint=False)  # stopped before its first checkpoint: nothing to go on from
    with pytest.raises(StopIteration):
        loop.run_loop(config, say=said.append)
    name, argv = seen[-1]
    assert argv[:3] == ["train", "--resume", str(stopped)] and argv[3] == "--run-dir"
    assert Path(argv[4]).parent == out and Path(argv[4]) != stopped
    assert any("loop-run stopped; SFT goes on from step 5 of 9 (its checkpoint)" in line for line in said)

    # the train stage stopped again (cancelled: r2ta train exits 130): the loop says how to go on, with its folder
    stopped_again = []

    def cancelled_again(name, argv, out_, threads, say):
        folder = Path(argv[argv.index("--run-dir") + 1])
        stopped_again.append(folder)
        jobs.prepare_run(sft, dpo, recipe="tiny-cpu", run_dir=folder)
        jobs.write_status(folder, status="cancelled", stage="sft")
        (folder / "sft" / "checkpoint-7").mkdir(parents=True)
        (folder / "sft" / "checkpoint-7" / "trainer_state.json").write_text(json.dumps({"max_steps": 9}))
        raise loop.LoopError("stage train failed (exit 130); log train.log")

    monkeypatch.setattr(loop, "run_stage", lambda name, *a: (cancelled_again if name == "train" else fake_stage)(name, *a))
    with pytest.raises(loop.LoopError) as err:
        loop.run_loop(config, say=said.append)
    assert str(err.value) == ("stage train failed (exit 130); log train.log\nThe run was cancelled; SFT goes on from "
                              f"step 7 of 9 (its checkpoint). To go on from there, run this r2ta loop command again "
                              f"with --out {out}: it reuses the traces and exports and resumes the run instead of "
                              "starting it again.")
    shutil.rmtree(stopped_again[0])
    # Ctrl-C or SIGTERM to the loop itself (r2ta.cli: a KeyboardInterrupt): the same hint, then it stops
    said.clear()

    def interrupted(name, argv, out_, threads, say):
        try:
            cancelled_again(name, argv, out_, threads, say)
        except loop.LoopError:
            raise KeyboardInterrupt from None

    monkeypatch.setattr(loop, "run_stage", lambda name, *a: (interrupted if name == "train" else fake_stage)(name, *a))
    with pytest.raises(KeyboardInterrupt):
        loop.run_loop(config, say=said.append)
    assert any(line.endswith(f"train: The run was cancelled; SFT goes on from step 7 of 9 (its checkpoint). To go on "
                             f"from there, run this r2ta loop command again with --out {out}: it reuses the traces "
                             "and exports and resumes the run instead of starting it again.") for line in said)
    monkeypatch.setattr(loop, "run_stage", fake_stage)
    shutil.rmtree(stopped_again[1])  # so that what follows sees the runs it saw before

    # once resumed, the stopped run is not resumed again; a fresh run starts instead
    jobs.prepare_resume(stopped, new_dir=out / "elsewhere")
    with pytest.raises(StopIteration):
        loop.run_loop(config, say=said.append)
    assert seen[-1][1][:3] == ["train", "--sft", str(out / "sft.jsonl")]

    # a run that succeeded on this data is reused, whatever its folder's name
    run("loop-run-1000", state="succeeded", checkpoint=False)
    monkeypatch.setattr(loop, "side_by_side", lambda model_ids, config: "table")
    seen.clear()
    assert loop.run_loop(config, say=said.append) == "table"
    assert "train" not in dict(seen) and any("loop-run-1000 already succeeded on this data" in line for line in said)
