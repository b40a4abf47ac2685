"""Where R2tA keeps its files, and the settings read from the environment.

* ``R2TA_DATA_DIR``: the data folder (default ``./data`` beside the project):
  the SQLite database, the built dataset, models, training runs.
* ``R2TA_DATABASE_URL``: overrides the database (default: SQLite file in the data folder).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"
SCHEMAS_DIR = ASSETS_DIR / "schemas"


def data_dir() -> Path:
    path = Path(os.environ.get("R2TA_DATA_DIR") or PROJECT_ROOT / "data")
    path.mkdir(parents=True, exist_ok=True)
    return path


def dataset_dir() -> Path:
    return data_dir() / "dataset"


def models_dir() -> Path:
    return data_dir() / "models"


def runs_dir() -> Path:
    return data_dir() / "runs"
