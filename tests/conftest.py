"""Shared fixtures. Tests never touch the user's data folder: R2TA_DATA_DIR points at a temp dir."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("R2TA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("R2TA_DATABASE_URL", raising=False)
    yield
