"""DPO again from a finished run's SFT: a sweep of DPO's settings without training SFT again.

The real test trains the tiny model through the real runner: one run SFT then DPO, then a DPO-again run with the
same settings (its DPO adapter must equal the first run's bit for bit: it starts from the same SFT adapter) and one
with another beta (SFT the same bytes, DPO different). The rest checks refusals, the command line, which model an
evaluation scores as the new run's SFT, and the Train page's settings diff.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from r2ta import eval_jobs, jobs, train_view
from r2ta.errors import R2taError
from test_resume import _data, _same  # the same tiny rows, and the largest difference between two weight files

pytestmark = pytest.mark.xdist_group("resume")
STEPS = 4


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo-again")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("R2TA_DATA_DIR", str(root / "data"))
        data = _data(root)
        run = jobs.start_training(*data, recipe="tiny-cpu", run_dir=root / "a", max_steps=STEPS,
                                  overrides=["dpo.learning_rate=0.001"])
        progress = jobs.wait_for(run, timeout_s=600)
    assert progress.state == "succeeded", jobs.read_log(run)
    return root, data, run


def test_dpo_again_starts_from_the_runs_sft_adapter_and_changes_only_dpo(source, monkeypatch):
    root, data, a = source
    monkeypatch.setenv("R2TA_DATA_DIR", str(root / "data"))
    before = (a / "status.json").read_text()

    same = jobs.prepare_dpo_again(a, new_dir=root / "same")
    request = jobs.read_request(same)
    assert request["sft_from"] == str(a) and request["resume"]["done"] == ["sft"]
    assert request["overrides"] == ["dpo.learning_rate=0.001"] and request["max_steps"] == STEPS
    assert jobs.read_status(same)["fraction"] == 0.5 and jobs.read_status(same)["sft_from"] == str(a)
    jobs.launch(same)
    done = jobs.wait_for(same, timeout_s=600)
    assert done.state == "succeeded", jobs.read_log(same)
    # the same SFT adapter, the same DPO settings and seed: the same DPO adapter as the run that trained both
    assert _same(a / "sft/adapter_model.safetensors", same / "sft/adapter_model.safetensors") == 0.0
    assert _same(a / "dpo/adapter_model.safetensors", same / "dpo/adapter_model.safetensors") == 0.0
    assert "resuming" in jobs.read_log(same) and "stage sft:" not in jobs.read_log(same)  # SFT was not trained

    beta = jobs.prepare_dpo_again(a, overrides=["dpo.beta=2.5"], new_dir=root / "beta")
    recipe = yaml.safe_load((beta / "recipe.yaml").read_text())
    assert recipe["dpo"]["beta"] == 2.5 and recipe["dpo"]["learning_rate"] == 0.001  # the source's change kept
    jobs.launch(beta)
    done = jobs.wait_for(beta, timeout_s=600)
    assert done.state == "succeeded", jobs.read_log(beta)
    assert _same(a / "sft/adapter_model.safetensors", beta / "sft/adapter_model.safetensors") == 0.0
    assert _same(a / "dpo/adapter_model.safetensors", beta / "dpo/adapter_model.safetensors") > 0.0
    source_status = jobs.read_status(a)
    assert done.status["metrics"]["sft"] == source_status["metrics"]["sft"]  # carried, not trained again
    assert done.status["metrics"]["dpo"]["steps"] == STEPS
    assert done.status["completed_stages"] == ["sft", "dpo"] and set(done.status["artefacts"]) == {"sft", "dpo", "merged"}
    # the loss curve: the source's SFT steps, then this run's DPO steps
    assert [p["step"] for p in done.points if p["stage"] == "sft"] == list(range(1, STEPS + 1))
    assert [p["step"] for p in done.points if p["stage"] == "dpo"] == list(range(1, STEPS + 1))
    card = (beta / "README.md").read_text()
    assert "- SFT: run a's SFT stage, carried over as it was saved" in card
    assert f"r2ta train --dpo-from {a} --set dpo.beta=2.5\n" in card  # the source run's own pairs
    assert (a / "status.json").read_text() == before  # the source run is left as it was
    # An evaluation of the new run scores the source's SFT (the same adapter: its answers are reused there).
    assert eval_jobs.sft_model(beta) == f"{a}:sft"
    assert eval_jobs.sft_model(a) == f"{a}:sft"
    # And a DPO-again run is itself a source: its SFT stage is the same bytes.
    assert jobs.sft_source(beta) == beta / "sft"


def test_dpo_again_refuses_what_it_cannot_keep_and_leaves_nothing(source, tmp_path, monkeypatch):
    root, data, a = source
    monkeypatch.setenv("R2TA_DATA_DIR", str(tmp_path / "data"))
    for bad, why in ((["sft.num_train_epochs=9"], "only dpo.* and run.* settings can change"),
                     (["model.lora_r=4"], "keeps a's SFT stage and model settings"),
                     (["dpo.no_such_setting=1"], "no_such_setting")):
        with pytest.raises(R2taError, match=why):
            jobs.prepare_dpo_again(a, overrides=bad, new_dir=tmp_path / "new")
        assert not (tmp_path / "new").exists()
    with pytest.raises(jobs.TrainingError, match="does not exist"):
        jobs.prepare_dpo_again(a, dpo_file=tmp_path / "missing.jsonl", new_dir=tmp_path / "new")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(jobs.TrainingError, match="holds no rows"):
        jobs.prepare_dpo_again(a, dpo_file=empty, new_dir=tmp_path / "new")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"prompt": "x"}\nnot json\n')
    with pytest.raises(R2taError, match=r"garbage.jsonl:1: expected keys"):
        jobs.prepare_dpo_again(a, dpo_file=garbage, new_dir=tmp_path / "new")
    assert not (tmp_path / "new").exists()
    with pytest.raises(jobs.TrainingError, match="already holds a training run"):
        jobs.prepare_dpo_again(a, new_dir=a)
    # a run still queued, one that failed in SFT, one whose SFT folder is gone
    sft, dpo = data
    queued = jobs.prepare_run(sft, dpo, recipe="tiny-cpu", run_dir=tmp_path / "queued")
    with pytest.raises(jobs.TrainingError, match="is queued; wait for it to finish"):
        jobs.prepare_dpo_again(queued)
    jobs.write_status(queued, status="failed", stage="sft", error="boom")
    with pytest.raises(jobs.TrainingError, match="has no finished SFT stage"):
        jobs.prepare_dpo_again(queued)
    jobs.write_status(queued, status="cancelled", stage="dpo", completed_stages=["sft"])
    with pytest.raises(jobs.TrainingError, match="has no finished SFT stage"):
        jobs.sft_source(queued)  # says SFT finished, but its adapter is not there
    (queued / "sft").mkdir()
    (queued / "sft" / "adapter_config.json").write_text("{}")
    assert jobs.sft_source(queued) == queued / "sft"  # a run cancelled in DPO keeps its SFT: a source too


def test_r2ta_train_dpo_from_starts_a_dpo_only_run_and_says_so(source, tmp_path):
    root, _, a = source
    cmd = [sys.executable, "-m", "r2ta", "train"]
    started = subprocess.run([*cmd, "--dpo-from", str(a), "--set", "dpo.beta=0.7", "--run-dir", str(tmp_path / "b"),
                              "--no-eval", "--max-steps", "2"], capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"dpo again:  from the SFT stage of {a}, with dpo.beta=0.7" in started.stdout
    assert "dpo step 2/2" in started.stdout and "sft step" not in started.stdout
    assert f"sft:        carried over from run a ({STEPS} steps, final loss " in started.stdout
    assert jobs.read_status(tmp_path / "b")["status"] == "succeeded"
    assert "stage sft:" not in jobs.read_log(tmp_path / "b")  # SFT was not trained
    refused = subprocess.run([*cmd, "--dpo-from", str(a), "--set", "sft.learning_rate=1e-3", "--no-eval"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "only dpo.* and run.* settings can change" in refused.stderr
    recipe = subprocess.run([*cmd, "--dpo-from", str(a), "--recipe", "tiny-cpu", "--no-eval"],
                            capture_output=True, text=True, timeout=120)
    assert recipe.returncode == 2 and "not --recipe" in recipe.stderr


def test_an_evaluation_scores_the_source_sft_while_it_is_there(tmp_path):
    sft, dpo = _data(tmp_path)
    a = jobs.prepare_run(sft, dpo, recipe="tiny-cpu", run_dir=tmp_path / "a")
    b = tmp_path / "b"
    b.mkdir()
    (b / "request.json").write_text(json.dumps({"sft_from": str(a)}))
    (b / "status.json").write_text("{}")
    assert eval_jobs.sft_model(b) == f"{b}:sft"  # the source has no SFT folder
    (a / "sft").mkdir()
    assert eval_jobs.sft_model(b) == f"{a}:sft"
    (b / "request.json").write_text("not json")
    assert eval_jobs.sft_model(b) == f"{b}:sft"


def test_the_pages_dpo_settings_are_diffed_against_what_the_run_ran_with(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    recipe = yaml.safe_load(jobs.recipe_file("tiny-cpu").read_text())
    recipe["dpo"]["beta"] = 0.5
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    form = {**train_view.recipe_settings("tiny-cpu"), "sft_term": 0.0}  # the page's form: the recipe's values
    assert train_view.dpo_again_overrides(run, form) == ["dpo.beta=0.1"]  # back to the recipe's beta
    form["dpo.beta"], form["sft.learning_rate"] = 0.5, 1e-3  # SFT's settings are not DPO's to change
    assert train_view.dpo_again_overrides(run, form) == []
    form["sft_term"] = 20.0
    assert train_view.dpo_again_overrides(run, form) == ["dpo.loss_type=[sigmoid, sft]",
                                                         "dpo.loss_weights=[1.0, 20.0]"]


def test_the_origins_table_says_a_dpo_again_model_came_from_another_runs_sft(tmp_path):
    import datetime as dt
    from types import SimpleNamespace

    from sqlmodel import Session

    from db.models import TrainingRunRow
    from r2ta.catalog import open_engine
    from r2ta.evaluation import model_origins

    engine = open_engine(f"sqlite:///{tmp_path / 'origins.db'}")
    with Session(engine) as session:
        sft = TrainingRunRow(run_dir="/runs/a:sft", stage="done", base_model="base", config={"request": {}})
        session.add(sft)
        session.commit()
        plain = TrainingRunRow(run_dir="/runs/a", stage="done", base_model="/runs/a/sft", parent_run_id=sft.id,
                               config={"request": {}})
        again = TrainingRunRow(run_dir="/runs/b", stage="done", base_model="/runs/b/sft", parent_run_id=sft.id,
                               config={"request": {"sft_from": "/runs/a", "overrides": ["dpo.beta=0.5"]}})
        session.add_all([plain, again])
        session.commit()
        ids = (sft.id, plain.id, again.id)
    when = dt.datetime(2026, 12, 7, 19, 0)
    models = [SimpleNamespace(model_id=name, run_id=run_id, settings={}, n_variants=3, created_at=when)
              for name, run_id in zip(("a:sft", "a:sft+dpo", "b:sft+dpo"), ids)]
    rows = {row["model"]: row for row in model_origins(models, engine=engine)}
    assert rows["a:sft"]["trained"] == "SFT" and rows["a:sft+dpo"]["trained"] == "SFT then DPO"
    assert rows["b:sft+dpo"]["trained"] == "DPO again on the SFT of a"
    assert rows["b:sft+dpo"]["changed settings"] == "dpo.beta=0.5"


def _terminated_during(monkeypatch, name: str):
    """Make ``shutil.<name>`` deliver SIGTERM to this process before it copies, the first time it is called."""
    import os
    import shutil
    import signal

    real = getattr(shutil, name)
    sent = []

    def copy(*args, **kwargs):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(shutil, name, copy)
    return sent


def test_sigterm_while_a_run_folder_is_made_leaves_no_half_made_folder(source, tmp_path, monkeypatch, capsys):
    """`r2ta train` killed (SIGTERM) while it copies the data or the SFT adapter: the command says so, exits 143, and
    removes the folder it was making (a folder holding only recipe.yaml was left before); the process's own SIGTERM
    handler is back afterwards."""
    import signal

    from r2ta import cli

    root, (sft, dpo), a = source
    monkeypatch.setenv("R2TA_DATA_DIR", str(tmp_path / "data"))
    before = signal.getsignal(signal.SIGTERM)
    sent = _terminated_during(monkeypatch, "copytree")
    code = cli.main(["train", "--dpo-from", str(a), "--set", "dpo.beta=0.7", "--run-dir", str(tmp_path / "again"),
                     "--no-eval"])
    assert sent and code == cli.EXIT_TERMINATED == 143
    assert "terminated" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()
    assert signal.getsignal(signal.SIGTERM) == before
    monkeypatch.undo()
    monkeypatch.setenv("R2TA_DATA_DIR", str(tmp_path / "data"))
    sent = _terminated_during(monkeypatch, "copyfile")
    code = cli.main(["train", "--sft", str(sft), "--dpo", str(dpo), "--recipe", "tiny-cpu", "--set",
                     "dpo.beta=0.7", "--no-eval"])
    assert sent and code == 143
    assert not list((tmp_path / "data" / "runs").iterdir())  # the new run's folder is gone, its recipe with it
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_full_disk_while_a_run_folder_is_made_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import errno
    import shutil

    monkeypatch.setenv("R2TA_DATA_DIR", str(tmp_path / "data"))
    sft, dpo = _data(tmp_path / "rows")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(jobs.TrainingError, match="cannot prepare the run folder .*No space left on device"):
        jobs.prepare_run(sft, dpo, recipe="tiny-cpu", run_dir=tmp_path / "run", overrides=["dpo.beta=0.7"])
    assert not (tmp_path / "run").exists()
    kept = tmp_path / "kept"  # a folder the user had filled is not removed
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(jobs.TrainingError, match="No space left"):
        jobs.prepare_run(sft, dpo, recipe="tiny-cpu", run_dir=kept)
    assert (kept / "notes.txt").read_text() == "mine"
