"""Shared fixtures. Tests never touch the network or the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ROOT.parent / "shared" / "videos"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VIDEDIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "videdit-cache"))


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A tiny random-weight SD 1.5-class model with a ControlNet, written once per test session."""
    from videdit.tiny import write_tiny_model

    return write_tiny_model("sd15", tmp_path_factory.mktemp("tiny") / "sd15", with_controlnet=True)


@pytest.fixture(scope="session")
def videos() -> Path:
    if not VIDEOS.is_dir():
        pytest.skip(f"sample videos not found at {VIDEOS}")
    return VIDEOS


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models are latency-bound: one torch thread is several times faster than two on a
    busy 2-core machine. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
