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
