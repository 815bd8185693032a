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


@pytest.fixture(scope="session")
def results_run(tmp_path_factory):
    """One real tiny search (analytic backend, 3 x 2 generations, dalp regime: all three mIoUs
    recorded), run once per test session for the results commands, the notebook and export."""
    from dalp_moo.search import run_search

    out = tmp_path_factory.mktemp("results") / "smoke"
    run_search(tiny_config(search={"population": 3, "generations": 2}, train={"regime": "dalp"}), out)
    return out
