"""Training jobs: start SFT-then-DPO as a separate process, follow it, cancel it. Standard library only.

A run is a folder, and while it runs the files in it are the truth (the
database is synchronised from them, never the other way round):

``request.json``
    what to train: data files, recipe, precision, step limit (written here).
``data/sft.jsonl``, ``data/dpo.jsonl``
    copies of the exported files, so a later export cannot change a run.
``status.json``
    ``status`` (queued, running, succeeded, failed, cancelled), ``stage``,
    ``step``/``max_steps``, overall ``fraction``, ``pid``, timestamps,
    ``error``, ``hardware``, ``artefacts``, ``metrics``. Replaced atomically.
``progress.jsonl``
    one JSON object per logged training step: stage, step, loss,
    reward_margin (DPO), learning_rate, tokens_per_s, ...
``train.log``
    everything the process printed, tracebacks included.

The runner (``python -m training.runner RUN_DIR``) writes ``status.json`` and
``progress.jsonl``; this module starts it, reads those files, notices when the
process is gone without saying it finished (killed, out of memory) and marks the
run failed, and cancels a run with SIGTERM, which the runner treats as a clean
cancel. Nothing here imports torch, transformers or streamlit: pages and the CLI
call it freely.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from r2ta.config import PROJECT_ROOT, runs_dir
from r2ta.errors import R2taError

RECIPES_DIR = PROJECT_ROOT / "training" / "recipes"
DEFAULT_RECIPE = "smollm2-135m-cpu"

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})

REQUEST_FILE = "request.json"
STATUS_FILE = "status.json"
PROGRESS_FILE = "progress.jsonl"
LOG_FILE = "train.log"

# Popen objects of the runs this process started: polling them reaps the child, so a
# killed run is seen as gone instead of lingering as a zombie that still "exists".
_CHILDREN: dict[int, subprocess.Popen] = {}


class TrainingError(R2taError):
    """A training run cannot start, or it failed (the message says where its log is)."""


# --------------------------------------------------------------------------- files


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def recipe_file(recipe: str | Path) -> Path:
    """The YAML file of a recipe given by name (``tiny-cpu``) or by path."""
    text = str(recipe)
    if text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
        path = Path(text).expanduser().resolve()
    else:
        path = RECIPES_DIR / f"{text}.yaml"
    if not path.is_file():
        known = ", ".join(list_recipes()) or "none"
        raise TrainingError(f"recipe {text!r} not found (looked for {path}); known recipes: {known}")
    return path


def derive_recipe(recipe: str | Path, overrides: list[str], out: Path, *, written_by: str = "r2ta") -> Path:
    """``recipe`` with ``SECTION.KEY=VALUE`` overrides applied (values read as YAML), written to ``out`` and checked.

    The keys are checked against TRL's config classes (:func:`training.recipe.load_recipe`), so a misspelt
    setting fails here, before anything runs; ``out`` is removed again when it does not pass.
    """
    import yaml

    from training.recipe import load_recipe

    data = apply_overrides(yaml.safe_load(recipe_file(recipe).read_text(encoding="utf-8")), overrides)
    header = f"# {Path(str(recipe)).stem} with {', '.join(overrides)} (written by {written_by})\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    try:
        load_recipe(out)
    except R2taError:
        out.unlink(missing_ok=True)
        raise
    return out


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """A recipe's parsed YAML with ``SECTION.KEY=VALUE`` overrides applied (values read as YAML), in place."""
    import yaml

    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name.strip() or section not in data:
            raise TrainingError(f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION one of {', '.join(data)}")
        try:
            data[section][name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise TrainingError(f"--set {item!r}: the value is not readable as YAML ({err})") from None
    return data


def list_recipes() -> list[str]:
    """Names of the recipes shipped in ``training/recipes/``."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    # status.json is replaced atomically, so a read sees either the old or the new file.
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as err:
        raise TrainingError(f"{path} is not valid JSON ({err}); the run folder was edited or damaged") from None


def read_request(run_dir: str | Path) -> dict:
    path = Path(run_dir) / REQUEST_FILE
    if not path.is_file():
        raise TrainingError(f"{path} does not exist: {run_dir} is not a training run folder")
    return _read_json(path)


def read_status(run_dir: str | Path) -> dict:
    """``status.json`` as written, without checking whether the process is still alive."""
    return _read_json(Path(run_dir) / STATUS_FILE)


def write_status(run_dir: str | Path, **fields) -> dict:
    """Merge ``fields`` into ``status.json`` (atomically) and return the new status."""
    path = Path(run_dir) / STATUS_FILE
    status = _read_json(path)
    status.update(fields)
    status["updated_at"] = now_iso()
    _write_json_atomic(path, status)
    return status


def append_progress(run_dir: str | Path, record: dict) -> None:
    """Append one record to ``progress.jsonl`` (one line, flushed at once)."""
    line = json.dumps(record, sort_keys=True, default=str)
    with open(Path(run_dir) / PROGRESS_FILE, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def read_points(run_dir: str | Path) -> list[dict]:
    """Every record in ``progress.jsonl``; a half-written last line (the writer is mid-append) is skipped."""
    path = Path(run_dir) / PROGRESS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    points = []
    for line in text.splitlines():
        try:
            points.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return points


def read_log(run_dir: str | Path, max_chars: int = 20_000) -> str:
    """The last ``max_chars`` characters of the run's log ('' when there is none yet)."""
    path = Path(run_dir) / LOG_FILE
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_chars * 4))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return text[-max_chars:]


# --------------------------------------------------------------------------- processes


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), to tell it from a later process with its id."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def process_alive(pid: int | None, start_ticks: int | None = None) -> bool:
    """Whether ``pid`` is a live process (not a zombie, and not a newer process that reused the id)."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _process_state(pid) == "Z":
        return False
    if start_ticks is not None:
        ticks = process_start_ticks(pid)
        if ticks is not None and ticks != start_ticks:
            return False
    return True


def _exit_description(pid: int) -> str:
    child = _CHILDREN.get(pid)
    code = child.returncode if child is not None else None
    if code is None:
        return "it was killed or crashed"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (SIGKILL: killed by hand or by the out-of-memory killer)" if -code == signal.SIGKILL else ""
        return f"it was killed by {name}{hint}"
    return f"it exited with status {code}"


# --------------------------------------------------------------------------- progress


@dataclass
class RunProgress:
    """A run's status and logged points, as the Train page and ``r2ta train`` show them."""

    run_dir: Path
    status: dict
    points: list[dict] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.status.get("status", QUEUED)

    @property
    def stage(self) -> str | None:
        return self.status.get("stage")

    @property
    def fraction(self) -> float:
        return float(self.status.get("fraction") or 0.0)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    @property
    def error(self) -> str | None:
        return self.status.get("error")

    def series(self, key: str, stage: str | None = None) -> list[tuple[int, float]]:
        """``(step, value)`` pairs of one logged quantity (``loss``, ``reward_margin``...), optionally of one stage."""
        return [
            (p["step"], p[key])
            for p in self.points
            if p.get(key) is not None and (stage is None or p.get("stage") == stage)
        ]


def read_progress(run_dir: str | Path) -> RunProgress:
    """Status and points of a run. A run whose process is gone without finishing is marked failed (or cancelled)."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if not status:
        raise TrainingError(f"{run_dir / STATUS_FILE} does not exist: {run_dir} is not a training run folder")
    # No pid yet: prepared and not launched (or being launched right now), so still queued.
    if (
        status.get("status") not in TERMINAL
        and status.get("pid")
        and not process_alive(status["pid"], status.get("pid_start"))
    ):
        # The process may have finished between reading the file and checking: read again.
        status = read_status(run_dir)
        if status.get("status") not in TERMINAL:
            status = _mark_dead(run_dir, status)
    return RunProgress(run_dir, status, read_points(run_dir))


def _mark_dead(run_dir: Path, status: dict) -> dict:
    pid = status.get("pid")
    if status.get("cancel_requested_at"):
        return write_status(run_dir, status=CANCELLED, finished_at=now_iso())
    how = _exit_description(pid)
    error = (
        f"the training process (pid {pid}) ended during stage {status.get('stage') or 'setup'} "
        f"without reporting a result: {how}. See {run_dir / LOG_FILE}."
    )
    return write_status(run_dir, status=FAILED, error=error, finished_at=now_iso())


# --------------------------------------------------------------------------- start / cancel


def new_run_dir(recipe: str) -> Path:
    """A fresh, empty folder under the data folder's ``runs/``, named by time and recipe (created here)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = re.sub(r"[^\w.\-]+", "_", Path(str(recipe)).stem)[:60]
    base = runs_dir() / f"{stamp}-{name}"
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()  # atomic: two runs started in the same second get two folders
            return path
        except FileExistsError:
            continue
    raise TrainingError(f"cannot find a free run folder name beside {base}")


def prepare_run(
    sft_file: str | Path,
    dpo_file: str | Path,
    *,
    recipe: str | Path = DEFAULT_RECIPE,
    run_dir: str | Path | None = None,
    precision: str = "auto",
    max_steps: int | None = None,
    save_merged: bool | None = None,
    num_processes: int | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Create the run folder: copies of the data, ``request.json``, ``status.json`` (queued). Starts nothing.

    ``overrides`` (``SECTION.KEY=VALUE``, as ``r2ta train --set``) change the recipe for this run only: the
    changed recipe is written into the run folder as ``recipe.yaml`` and the run keeps the recipe's name.
    """
    recipe_path = recipe_file(recipe)
    overrides = [item for item in (overrides or []) if item.strip()]
    sources = {"sft": Path(sft_file), "dpo": Path(dpo_file)}
    from r2ta.pairs import read_rows  # validates every row, naming the line that breaks

    for stage, path in sources.items():
        if not path.is_file():
            raise TrainingError(f"{stage.upper()} data file {path} does not exist; export the reviewed data first")
        if not read_rows(path, stage):
            raise TrainingError(f"{stage.upper()} data file {path} holds no rows; review and export some data first")
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise TrainingError(f"precision {precision!r} is not one of auto, fp32, bf16, fp16")
    # absolute: the runner process starts in the project folder, not in the caller's
    run_dir = Path(run_dir).expanduser().resolve() if run_dir else None
    if run_dir and (run_dir / STATUS_FILE).exists():
        raise TrainingError(f"{run_dir} already holds a training run; choose another --run-dir")
    derived = None
    if overrides:  # checked before the run folder exists, so a bad setting leaves nothing behind
        import tempfile

        fd, tmp = tempfile.mkstemp(suffix=".yaml", prefix=f".{recipe_path.stem}-")
        os.close(fd)
        try:
            derived = derive_recipe(recipe_path, overrides, Path(tmp), written_by="r2ta train --set")
        finally:
            if derived is None:
                Path(tmp).unlink(missing_ok=True)
    ours = run_dir is None or not run_dir.exists() or not any(run_dir.iterdir())
    try:
        run_dir = run_dir or new_run_dir(recipe_path.stem)
        (run_dir / "data").mkdir(parents=True, exist_ok=True)
        recipe_name = recipe_path.stem
        if derived:
            recipe_path = Path(shutil.move(derived, run_dir / "recipe.yaml"))
            derived = None
        request = {
            "recipe": recipe_name,
            "recipe_file": str(recipe_path),
            "overrides": overrides,
            "precision": precision,
            "max_steps": max_steps,
            "save_merged": save_merged,
            "num_processes": num_processes,
            "created_at": now_iso(),
        }
        for stage, path in sources.items():
            copy = run_dir / "data" / f"{stage}.jsonl"
            shutil.copyfile(path, copy)
            request[f"{stage}_file"] = str(copy)
            request[f"{stage}_source"] = str(path.resolve())
        _write_json_atomic(run_dir / REQUEST_FILE, request)
        write_status(run_dir, status=QUEUED, stage=None, fraction=0.0, recipe=request["recipe"], overrides=overrides,
                     created_at=now_iso())
    except BaseException as err:  # a full disk, a SIGTERM (r2ta.cli): a half-made run folder would only mislead
        if derived:
            Path(derived).unlink(missing_ok=True)
        if run_dir is not None and ours and not (run_dir / STATUS_FILE).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(err, OSError):
            raise TrainingError(f"cannot prepare the run folder {run_dir}: {err}") from None
        raise
    return run_dir


# The memory allocator a training process runs on (Linux). glibc's malloc let a long CPU SFT run's memory grow step
# after step: on 64 real rows in bf16 without activation checkpointing, 2.9 GB after step 1, 8.8 GB after step 60,
# a 9.1 GB peak (run450 ended at 17.4 GB). tcmalloc held 5.1-5.4 GB from step 5 on (peak 5.4 GB) and ran at 210
# tokens/s against glibc's 175; jemalloc 2.1 GB after step 60 (peak 5.2 GB) at 157 tokens/s
# (docs/measured/sft-labelled-positions-2026-12-05.txt). So a run preloads tcmalloc where the system has it
# (Debian: libtcmalloc-minimal4, which scripts/install-system-deps.sh installs); R2TA_ALLOCATOR=jemalloc or
# =system (glibc's) choose otherwise.
ALLOCATOR_ENV = "R2TA_ALLOCATOR"
DEFAULT_ALLOCATOR = "tcmalloc"
ALLOCATOR_LIBS = {"tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"), "jemalloc": ("libjemalloc.so.2",)}
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def allocator_env(environ: dict | None = None, lib_dirs: tuple[str, ...] = LIB_DIRS) -> dict[str, str]:
    """What to add to a training process's environment so that it runs on the chosen allocator: {"LD_PRELOAD":
    ...}, or {} (glibc's malloc: asked for, not Linux, the library missing, or one preloaded already)."""
    environ = os.environ if environ is None else environ
    choice = (environ.get(ALLOCATOR_ENV) or DEFAULT_ALLOCATOR).strip().lower()
    if choice == "system":
        return {}
    if choice not in ALLOCATOR_LIBS:
        raise TrainingError(f"{ALLOCATOR_ENV}={choice!r}: use {', '.join(ALLOCATOR_LIBS)} or system")
    preload = environ.get("LD_PRELOAD", "")
    if not sys.platform.startswith("linux") or any(n in preload for names in ALLOCATOR_LIBS.values() for n in names):
        return {}
    lib = next((Path(d) / n for n in ALLOCATOR_LIBS[choice] for d in lib_dirs if (Path(d) / n).is_file()), None)
    if lib is None:
        return {}
    return {"LD_PRELOAD": f"{lib} {preload}".strip()}


def planned_allocator(environ: dict | None = None, lib_dirs: tuple[str, ...] = LIB_DIRS) -> str | None:
    """The allocator a run launched now would record (:func:`allocator_in_use` of its environment); None when
    ``R2TA_ALLOCATOR`` names none (the launch will refuse it)."""
    environ = dict(os.environ if environ is None else environ)
    try:
        return allocator_in_use({**environ, **allocator_env(environ, lib_dirs)})
    except TrainingError:
        return None


def allocator_in_use(environ: dict | None = None) -> str:
    """The allocator this process was started on (what a run records)."""
    preload = (os.environ if environ is None else environ).get("LD_PRELOAD", "")
    return next((name for name, libs in ALLOCATOR_LIBS.items() if any(lib in preload for lib in libs)), "glibc malloc")


def runner_command(run_dir: str | Path) -> list[str]:
    """The command that runs (or re-runs) a prepared run in the foreground."""
    return [sys.executable, "-m", "training.runner", str(run_dir)]


def launch(run_dir: str | Path, command: list[str] | None = None) -> subprocess.Popen:
    """Start the runner for a prepared run as its own process (own session, output into ``train.log``)."""
    run_dir = Path(run_dir).resolve()  # the process starts in PROJECT_ROOT
    command = command or runner_command(run_dir)
    try:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **allocator_env())
    except TrainingError as err:  # a misspelt R2TA_ALLOCATOR: the run is marked, not left queued forever
        write_status(run_dir, status=FAILED, error=str(err), finished_at=now_iso())
        raise
    with open(run_dir / LOG_FILE, "ab") as log:
        try:
            child = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal or a page reload does not reach it
            )
        except OSError as err:
            write_status(run_dir, status=FAILED, error=f"could not start {command[0]}: {err}", finished_at=now_iso())
            raise TrainingError(f"could not start the training process ({command[0]}): {err}") from None
    _CHILDREN[child.pid] = child
    write_status(run_dir, pid=child.pid, pid_start=process_start_ticks(child.pid), command=command)
    return child


def start_training(
    sft_file: str | Path,
    dpo_file: str | Path,
    *,
    recipe: str | Path = DEFAULT_RECIPE,
    run_dir: str | Path | None = None,
    precision: str = "auto",
    max_steps: int | None = None,
    save_merged: bool | None = None,
    num_processes: int | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Prepare a run and start SFT then DPO in the background; returns the run folder at once."""
    run_dir = prepare_run(
        sft_file,
        dpo_file,
        recipe=recipe,
        run_dir=run_dir,
        precision=precision,
        max_steps=max_steps,
        save_merged=save_merged,
        num_processes=num_processes,
        overrides=overrides,
    )
    launch(run_dir)
    return run_dir


# --------------------------------------------------------------------------- resume

CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)$")
RESUME_LOCK = "resume.lock"


@dataclass
class ResumePoint:
    """Where a failed or cancelled run can be continued from."""

    run_dir: Path
    done: list[str]  # stages that finished there: their outputs and metrics are carried over
    stage: str | None  # the stage that goes on (None: only merging the weights was left)
    step: int  # the checkpoint's step (0: the stage starts from its beginning)
    checkpoint: Path | None
    max_steps: int | None

    @property
    def fraction(self) -> float:
        """How far through the whole job (SFT then DPO) the run is, as the progress bar counts it."""
        if self.stage is None:
            return 1.0
        within = min(1.0, self.step / self.max_steps) if self.step and self.max_steps else 0.0
        return round((("sft", "dpo").index(self.stage) + within) / 2, 4)

    def describe(self) -> str:
        if self.stage is None:
            return "SFT and DPO finished; only merging the weights is left"
        kept = f"{', '.join(s.upper() for s in self.done)} finished and kept; " if self.done else ""
        if self.checkpoint is None:
            return f"{kept}{self.stage.upper()} starts from its beginning"
        of = f" of {self.max_steps}" if self.max_steps else ""
        return f"{kept}{self.stage.upper()} goes on from step {self.step}{of} (its checkpoint)"


def newest_checkpoint(stage_dir: Path) -> tuple[int, Path] | None:
    """The newest whole ``checkpoint-<step>`` folder of a stage (whole: its trainer_state.json, written last, is there)."""
    found = []
    if Path(stage_dir).is_dir():
        for entry in Path(stage_dir).iterdir():
            match = CHECKPOINT_NAME.match(entry.name)
            if match and (entry / "trainer_state.json").is_file():
                found.append((int(match.group(1)), entry))
    return max(found) if found else None


def remove_checkpoints(stage_dir: Path, *, keep: Path | None = None) -> None:
    """Remove a stage's ``checkpoint-<step>`` folders (whole or cut off while saving), all but ``keep``."""
    if not Path(stage_dir).is_dir():
        return
    for entry in Path(stage_dir).iterdir():
        if CHECKPOINT_NAME.match(entry.name) and entry != keep:
            shutil.rmtree(entry, ignore_errors=True)


def _stage_output_saved(stage_dir: Path) -> bool:
    return any((stage_dir / name).is_file() for name in ("adapter_config.json", "config.json"))


def resume_point(run_dir: str | Path) -> ResumePoint:
    """Where ``run_dir`` (failed or cancelled) would go on from; TrainingError says why it cannot."""
    run_dir = Path(run_dir)
    progress = read_progress(run_dir)
    status = progress.status
    if progress.state not in (FAILED, CANCELLED):
        raise TrainingError(f"{run_dir.name} is {progress.state}; only a failed or cancelled run can be resumed")
    later = status.get("resumed_by")
    if later and (Path(later) / STATUS_FILE).is_file():
        raise TrainingError(f"{run_dir.name} was resumed already as {Path(later).name}; follow or resume that run")
    done = status.get("completed_stages")
    if done is None:  # a run from before stages were recorded: the stage it ended in says what finished
        done = {"dpo": ["sft"], "merging": ["sft", "dpo"]}.get(status.get("stage"), [])
    done = [stage for stage in ("sft", "dpo") if stage in done and _stage_output_saved(run_dir / stage)]
    stage = next((s for s in ("sft", "dpo") if s not in done), None)
    found = newest_checkpoint(run_dir / stage) if stage else None
    if stage and found is None and not done:
        minutes = "run.checkpoint_minutes"
        raise TrainingError(
            f"{run_dir.name} stopped in {stage.upper()} before its first checkpoint (the recipe's {minutes} sets "
            "how often one is saved), so there is nothing to go on from; start a new run"
        )
    max_steps = None
    if found:
        try:
            max_steps = int(json.loads((found[1] / "trainer_state.json").read_text(encoding="utf-8"))["max_steps"])
        except (OSError, ValueError, KeyError, TypeError):
            max_steps = None
    return ResumePoint(run_dir, done, stage, found[0] if found else 0, found[1] if found else None, max_steps)


def prepare_resume(run_dir: str | Path, *, new_dir: str | Path | None = None) -> Path:
    """A new run that continues ``run_dir`` (failed or cancelled) where it stopped. Starts nothing.

    The new folder gets the old run's data and recipe, the outputs of its finished stages, the newest
    checkpoint of the stage it stopped in, and its progress up to that checkpoint; ``request.json`` says
    what to carry over (``resume``). The old run stays as it was (its log tells what happened), marked
    ``resumed_by``. The runner then restores weights, optimizer, scheduler, RNG state and step from the
    checkpoint, so the result is the one the uninterrupted run would have given.
    """
    old = Path(run_dir).resolve()
    resume_point(old)  # refuses before taking the lock: a running or finished run says so
    lock = old / RESUME_LOCK
    held = _take_resume_lock(lock)  # two reviewers clicking Resume at once: one resume, and the other is told
    target, ours = None, False
    try:
        point = resume_point(old)  # again, under the lock: a resume that finished meanwhile has marked it
        if new_dir:
            target = Path(new_dir).expanduser().resolve()
            if (target / STATUS_FILE).exists():
                raise TrainingError(f"{target} already holds a training run; choose another folder")
            ours = not target.exists()
        else:
            target, ours = new_run_dir(read_request(old).get("recipe") or "run"), True
        try:
            _copy_for_resume(point, target)
        except OSError as err:  # a file of the old run is gone, or the disk is full
            raise TrainingError(f"cannot resume {old.name}: {err}") from None
        write_status(old, resumed_by=str(target))
    except BaseException:
        if ours and not (target / STATUS_FILE).exists():
            shutil.rmtree(target, ignore_errors=True)  # a half-made run folder would only mislead
        raise
    finally:
        lock.unlink(missing_ok=True)
        if held is not None:
            os.close(held)
    return target


def _take_resume_lock(lock: Path) -> int | None:
    """Hold ``lock`` for one resume, or raise TrainingError when another holds it. Returns the descriptor to close.

    An OS lock (``flock``) on the file: the kernel drops it when its holder exits, so a resume killed half-way
    (the app's process killed, the machine off) leaves no lock that would refuse every later Resume. The file is
    removed on the way out; a descriptor that locked a file already removed meanwhile tries again. Where
    ``fcntl`` is missing (Windows) the file's existence is the lock (``O_EXCL``), which a crash can leave behind.
    """
    busy = TrainingError(f"{lock.parent.name} is being resumed right now (by someone else); reload to see the new run")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise TrainingError(f"{busy}, or remove {lock} if that resume crashed") from None
        return None
    for _ in range(10):
        fd = os.open(lock, os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise busy from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.write(fd, f"{os.getpid()} {now_iso()}\n".encode())
            return fd
        os.close(fd)  # the holder before us removed the file after we opened it: lock the new one
    raise busy


def _copy_for_resume(point: ResumePoint, target: Path) -> None:
    old = point.run_dir.resolve()
    request = read_request(old)
    old_status = read_status(old)
    (target / "data").mkdir(parents=True, exist_ok=True)
    new_request = {k: v for k, v in request.items() if k not in ("resume", "created_at")}
    for stage in ("sft", "dpo"):
        copy = target / "data" / f"{stage}.jsonl"
        shutil.copyfile(request[f"{stage}_file"], copy)
        new_request[f"{stage}_file"] = str(copy)
    # The recipe exactly as the old run read it (the runner keeps a copy; the file it was read from may have
    # changed since, and the checkpoint's optimizer and schedule belong to that text).
    ran_with = old / "recipe.yaml"
    shutil.copyfile(ran_with if ran_with.is_file() else request["recipe_file"], target / "recipe.yaml")
    new_request["recipe_file"] = str(target / "recipe.yaml")
    ignore = shutil.ignore_patterns("checkpoint-*")
    for stage in point.done:
        shutil.copytree(old / stage, target / stage, ignore=ignore, dirs_exist_ok=True)
    checkpoint = None
    if point.checkpoint is not None:
        checkpoint = target / point.stage / point.checkpoint.name
        shutil.copytree(point.checkpoint, checkpoint)
    kept = [p for p in read_points(old)
            if p.get("stage") in point.done or (p.get("stage") == point.stage and (p.get("step") or 0) <= point.step)]
    for record in kept:
        append_progress(target, record)
    new_request.update(
        attempt=int(request.get("attempt") or 1) + 1,
        resume={"from_run": str(old), "done": point.done, "stage": point.stage, "step": point.step,
                "max_steps": point.max_steps, "checkpoint": str(checkpoint) if checkpoint else None,
                "metrics": {s: (old_status.get("metrics") or {}).get(s) for s in point.done}},
        created_at=now_iso(),
    )
    _write_json_atomic(target / REQUEST_FILE, new_request)
    # status.json last: a folder without it is not a run (and is removed if the resume fails before this)
    write_status(target, status=QUEUED, stage=None, fraction=point.fraction, recipe=request.get("recipe"),
                 overrides=request.get("overrides") or [], resumed_from=str(old), resumed_at=point.describe(),
                 created_at=now_iso())


# --------------------------------------------------------------------------- DPO again from a run's SFT

# What a DPO-again run may change: DPO's settings, and the run's own (precision of the DPO stage, merge, checkpoints).
# The SFT stage and the model section (the LoRA the SFT adapter was trained with) are the source run's, as saved.
DPO_AGAIN_SECTIONS = ("dpo", "run")


def sft_source(run_dir: str | Path) -> Path:
    """The finished SFT stage of ``run_dir`` that a DPO-again run starts from; TrainingError says why there is none."""
    run_dir = Path(run_dir)
    progress = read_progress(run_dir)
    if not progress.finished:
        raise TrainingError(f"{run_dir.name} is {progress.state}; wait for it to finish (or cancel it) first")
    done = progress.status.get("completed_stages")
    if done is None:  # a run from before stages were recorded
        done = ["sft", "dpo"] if progress.state == SUCCEEDED else []
    if "sft" not in done or not _stage_output_saved(run_dir / "sft"):
        raise TrainingError(f"{run_dir.name} has no finished SFT stage to start DPO from; train SFT first")
    return run_dir / "sft"


def prepare_dpo_again(
    run_dir: str | Path,
    *,
    dpo_file: str | Path | None = None,
    overrides: list[str] | None = None,
    new_dir: str | Path | None = None,
    precision: str | None = None,
    max_steps: int | None = None,
) -> Path:
    """A new run that trains DPO again from ``run_dir``'s finished SFT stage. Starts nothing.

    A sweep of DPO's settings (beta, learning rate, epochs, an SFT term) or DPO on pairs exported since then need not
    train SFT again: the new folder gets the source run's SFT data, adapter and loss curve, its recipe as it ran with
    ``overrides`` (``dpo.*`` and ``run.*`` only) applied, and ``dpo_file`` (default: the source run's pairs); the
    runner carries the SFT stage over as a resumed run's and trains DPO from it. The source run is left as it was.
    ``precision`` / ``max_steps``: the DPO stage's (None: the source run's request).
    """
    source = Path(run_dir).resolve()
    sft_source(source)
    if precision is not None and precision not in ("auto", "fp32", "bf16", "fp16"):
        raise TrainingError(f"precision {precision!r} is not one of auto, fp32, bf16, fp16")
    overrides = [item for item in (overrides or []) if item.strip()]
    for item in overrides:
        section = item.partition("=")[0].strip().partition(".")[0]
        if section not in DPO_AGAIN_SECTIONS:
            raise TrainingError(
                f"--set {item!r}: DPO again keeps {source.name}'s SFT stage and model settings as they were trained; "
                f"only {' and '.join(s + '.*' for s in DPO_AGAIN_SECTIONS)} settings can change (train a new run "
                "to change the rest)")
    request = read_request(source)
    old_status = read_status(source)
    pairs = Path(dpo_file) if dpo_file else Path(request["dpo_file"])
    from r2ta.pairs import read_rows  # validates every row, naming the line that breaks

    if not pairs.is_file():
        raise TrainingError(f"DPO data file {pairs} does not exist; export the reviewed data first")
    if not read_rows(pairs, "dpo"):
        raise TrainingError(f"DPO data file {pairs} holds no rows; review and export some data first")
    ran_with = source / "recipe.yaml"  # the recipe exactly as the source run read it
    recipe_text = ran_with if ran_with.is_file() else Path(request["recipe_file"])
    target = Path(new_dir).expanduser().resolve() if new_dir else new_run_dir(request.get("recipe") or "run")
    if (target / STATUS_FILE).exists():
        raise TrainingError(f"{target} already holds a training run; choose another folder")
    ours = not target.exists() or not any(target.iterdir())
    try:
        target.mkdir(parents=True, exist_ok=True)
        if overrides:
            derive_recipe(recipe_text, overrides, target / "recipe.yaml", written_by="r2ta train --dpo-from")
        else:
            shutil.copyfile(recipe_text, target / "recipe.yaml")
        (target / "data").mkdir(exist_ok=True)
        new_request = {k: v for k, v in request.items() if k not in ("resume", "created_at", "attempt")}
        shutil.copyfile(request["sft_file"], target / "data" / "sft.jsonl")
        shutil.copyfile(pairs, target / "data" / "dpo.jsonl")
        shutil.copytree(source / "sft", target / "sft", ignore=shutil.ignore_patterns("checkpoint-*"))
        for record in read_points(source):
            if record.get("stage") == "sft":
                append_progress(target, record)
        all_overrides = [*(request.get("overrides") or []), *overrides]
        new_request.update(
            recipe_file=str(target / "recipe.yaml"), overrides=all_overrides,
            sft_file=str(target / "data" / "sft.jsonl"), dpo_file=str(target / "data" / "dpo.jsonl"),
            dpo_source=str(Path(dpo_file).resolve()) if dpo_file else request.get("dpo_source") or str(pairs),
            sft_from=str(source), dpo_again_overrides=overrides,
            dpo_again_pairs=str(Path(dpo_file).resolve()) if dpo_file else None,
            resume={"from_run": str(source), "done": ["sft"], "stage": "dpo", "step": 0, "max_steps": None,
                    "checkpoint": None, "metrics": {"sft": (old_status.get("metrics") or {}).get("sft")}},
            created_at=now_iso(),
        )
        if precision is not None:
            new_request["precision"] = precision
        if max_steps is not None:
            new_request["max_steps"] = max_steps
        _write_json_atomic(target / REQUEST_FILE, new_request)
        write_status(target, status=QUEUED, stage=None, fraction=0.5, recipe=request.get("recipe"),
                     overrides=all_overrides, sft_from=str(source), created_at=now_iso())
    except BaseException as err:
        if ours and not (target / STATUS_FILE).exists():
            shutil.rmtree(target, ignore_errors=True)  # a half-made run folder would only mislead
        if isinstance(err, OSError):
            raise TrainingError(f"cannot start DPO again from {source.name}: {err}") from None
        raise
    return target


def cancel(run_dir: str | Path, *, wait_s: float = 0.0, force: bool = False) -> RunProgress:
    """Ask a run to stop: SIGTERM, which the runner treats as a clean cancel at the next step.

    ``wait_s`` waits that long for the run to finish. With ``force``, a run still alive
    after ``wait_s`` gets SIGKILL (it is then marked cancelled here, since the request was ours).
    """
    run_dir = Path(run_dir)
    progress = read_progress(run_dir)
    if progress.finished:
        return progress
    pid = progress.status.get("pid")
    write_status(run_dir, cancel_requested_at=now_iso())
    if not process_alive(pid, progress.status.get("pid_start")):
        write_status(run_dir, status=CANCELLED, finished_at=now_iso())
        return read_progress(run_dir)
    os.kill(pid, signal.SIGTERM)
    progress = wait_for(run_dir, timeout_s=wait_s, poll_s=0.2)
    if force and not progress.finished:
        os.kill(pid, signal.SIGKILL)
        progress = wait_for(run_dir, timeout_s=10, poll_s=0.2)
    return progress


def wait_for(run_dir: str | Path, *, timeout_s: float | None = None, poll_s: float = 0.5) -> RunProgress:
    """Block until the run finishes (or ``timeout_s`` passes); returns its last progress."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        progress = read_progress(run_dir)
        if progress.finished or (deadline is not None and time.monotonic() >= deadline):
            return progress
        time.sleep(poll_s)


def list_runs() -> list[Path]:
    """Run folders under the data folder's ``runs/``, newest first."""
    root = runs_dir()
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / STATUS_FILE).is_file()]
    return sorted(runs, key=lambda p: p.name, reverse=True)


def training_run() -> Path | None:
    """A run that is queued or training now (not finished), if one is: another job beside it shares its cores."""
    return next((d for d in list_runs() if not read_progress(d).finished), None)


def training_since(since: str) -> Path | None:
    """A run that trained at some time since ``since`` (ISO, UTC, as :func:`now_iso` writes it), if one did: going
    now, or finished since then (a run that started and ended within that time included)."""
    for run_dir in list_runs():
        if not read_progress(run_dir).finished or (read_status(run_dir).get("finished_at") or "") >= since:
            return run_dir
    return None


# --------------------------------------------------------------------------- database


DB_LINK_FILE = "db.json"


def _stage_states(status: dict) -> dict[str, tuple[str, float, str]]:
    """(status, progress, error) of the sft and dpo rows, derived from the run's status.json and points."""
    state, stage = status.get("status", QUEUED), status.get("stage")
    step, max_steps = status.get("step") or 0, status.get("max_steps") or 0
    within = min(1.0, step / max_steps) if max_steps else 0.0
    error = status.get("error") or ""
    in_dpo = stage in ("dpo", "merging", "done")
    if state == QUEUED:
        return {"sft": (QUEUED, 0.0, ""), "dpo": (QUEUED, 0.0, "")}
    if state == RUNNING:
        if in_dpo:
            return {"sft": (SUCCEEDED, 1.0, ""), "dpo": (RUNNING, within if stage == "dpo" else 1.0, "")}
        return {"sft": (RUNNING, within if stage == "sft" else 0.0, ""), "dpo": (QUEUED, 0.0, "")}
    if state == SUCCEEDED:
        return {"sft": (SUCCEEDED, 1.0, ""), "dpo": (SUCCEEDED, 1.0, "")}
    # failed or cancelled: the stage it happened in takes the outcome; a stage that never ran is cancelled.
    if in_dpo:
        return {"sft": (SUCCEEDED, 1.0, ""), "dpo": (state, within, error)}
    not_run = "not run: the SFT stage " + ("failed" if state == FAILED else "was cancelled")
    return {"sft": (state, within, error), "dpo": (CANCELLED, 0.0, not_run)}


def _transitions(current: str, target: str) -> list[str]:
    """Statuses to pass through from ``current`` to ``target`` (the table allows queued → running → final)."""
    if current == target:
        return []
    if current == QUEUED and target == SUCCEEDED:  # finished between two syncs
        return [RUNNING, SUCCEEDED]
    return [target]


def sync_run_to_db(run_dir: str | Path, *, session) -> dict[str, int]:
    """Mirror a run folder into the ``training_run`` table; returns ``{"sft": id, "dpo": id}``.

    One row per stage (DPO's ``parent_run_id`` is the SFT row), with status,
    progress, artefacts, hardware and error; every progress point becomes a
    ``run_metric`` row; examples whose provenance names a ``review_id`` (SFT) or
    ``pair_id`` (DPO) are recorded as the run's examples. Idempotent: call it on
    every page refresh and once more at the end. Which rows belong to the run is
    kept in ``db.json`` in the run folder (per database URL). The run folder stays
    the truth: a crashed run is marked failed by :func:`read_progress` first.
    """
    from db import queries
    from db.errors import StoreError

    run_dir = Path(run_dir)
    progress = read_progress(run_dir)
    status = progress.status
    request = read_request(run_dir)
    url = session.get_bind().url.render_as_string(hide_password=True)
    links_path = run_dir / DB_LINK_FILE
    links = _read_json(links_path)
    link = links.get(url) or {}
    if not link:
        config = {"recipe": request.get("recipe"), "request": request, "run_dir": str(run_dir)}
        base = status.get("base_model") or request.get("recipe") or "?"
        sft = queries.create_training_run(
            session=session, stage="sft", base_model=base, config=config,
            hardware=status.get("hardware"), log_path=str(run_dir / LOG_FILE),
        )
        dpo = queries.create_training_run(
            session=session, stage="dpo", base_model=str(run_dir / "sft"), config=config, parent_run_id=sft.id,
            hardware=status.get("hardware"), log_path=str(run_dir / LOG_FILE),
        )
        link = {"sft": sft.id, "dpo": dpo.id, "points": {"sft": 0, "dpo": 0}, "examples": False}
        links[url] = link
        _write_json_atomic(links_path, links)

    artefacts = status.get("artefacts") or {}
    for stage, (target, fraction, error) in _stage_states(status).items():
        row = queries.get_training_run(link[stage], session=session)
        if row.status in ("succeeded", "failed", "cancelled"):
            continue  # final in the database already
        path = _transitions(row.status, target)
        extra = {"artefacts": {k: v for k, v in artefacts.items() if k == stage or (stage == "dpo" and k == "merged")},
                 "hardware": status.get("hardware"), "error": error or None}
        try:
            for step_status in path[:-1]:
                queries.update_training_run(row.id, session=session, status=step_status)
            queries.update_training_run(row.id, session=session, status=path[-1] if path else None,
                                        progress=round(fraction, 4), **extra)
        except StoreError:
            continue  # someone else (the page's cancel) moved it meanwhile: theirs stands

    for stage in ("sft", "dpo"):
        points = [p for p in progress.points if p.get("stage") == stage]
        for point in points[link["points"][stage]:]:
            queries.append_run_metrics(link[stage], session=session, step=int(point.get("step", 0)), metrics=point)
        link["points"][stage] = len(points)
    if not link.get("examples"):
        _record_examples(request, link, session)
        link["examples"] = True
    links[url] = link
    _write_json_atomic(links_path, links)
    return {"sft": link["sft"], "dpo": link["dpo"]}


def _record_examples(request: dict, link: dict, session) -> None:
    from db import queries

    for stage, key in (("sft", "review_id"), ("dpo", "pair_id")):
        ids = []
        with open(request[f"{stage}_file"], encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    value = (json.loads(line).get("provenance") or {}).get(key)
                    if isinstance(value, int):
                        ids.append(value)
        if ids:
            kwargs = {"review_ids": ids} if stage == "sft" else {"pair_ids": ids}
            queries.add_run_examples(link[stage], session=session, kind=stage, **kwargs)
