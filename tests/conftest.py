"""Shared fixtures. Real data sets live outside the repository, in ../shared/datasets (or
$STRUCTRNN_DATA); tests that need one skip with the reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    env = os.environ.get("STRUCTRNN_DATA")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


@pytest.fixture
def data_root():
    """Root of the real data sets; the test is skipped when it is not there."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real data sets not found at {root} (set STRUCTRNN_DATA)")
    return root


def require_dataset(name: str) -> Path:
    path = shared_data_root() / name
    if not path.is_dir():
        pytest.skip(f"data set {name!r} not found at {path} (set STRUCTRNN_DATA)")
    return path


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
