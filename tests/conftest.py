"""Shared fixtures: tiny configurations that run the real pipeline in seconds."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from dalp_moo.config import RunConfig, load_config  # noqa: E402


def tiny_config(**sections: dict) -> RunConfig:
    """The smoke preset shrunk further, with section overrides."""
    base = {
        "search": {"population": 4, "generations": 2},
        "data": {"n_tiles": 24, "tile_size": 32},
        "train": {"epochs": 1, "finetune_epochs": 1, "threads": 1, "regime": "ptq"},
        "backend": {"name": "analytic"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    return load_config("smoke", overrides=[base])


@pytest.fixture
def tiny_cfg() -> RunConfig:
    return tiny_config()
